#!/usr/bin/perl
# Regenerates the seeds of the SPNEGO and WWW-Authenticate fuzz harnesses:
# fuzz/corpus/spnego_decode/ and fuzz/corpus/authlist/.
#
#   perl fuzz/capture-spnego-seeds.pl      (then commit the corpus files)
#
# spnego_decode, every token of real exchanges:
#  - MIT krb5 SPNEGO + gss-ntlmssp on both sides (fuzz/gss-exchange.py):
#    negTokenInit with the NTLM NEGOTIATE, the acceptor's negTokenResp
#    with the CHALLENGE, the AUTHENTICATE leg, the final accept-completed
#    with mechListMIC;
#  - Kerberos in a throw-away MIT realm (t/lib/KcdRealm.pm), alice ->
#    HTTP/proxy.kcd.test: MIT SPNEGO both sides (negTokenInit with the
#    AP-REQ, negTokenResp with the AP-REP), raw Kerberos (RFC 2743 framed,
#    thisMech krb5: the NOT_SPNEGO path), and `curl --negotiate`'s token;
#  - the Windows / Chromium shape the module's suites send (t/43,
#    t/lib/KcdSPNEGO.pm, Convert::ASN1): mechTypes [NTLMSSP, MS-KRB5, KRB5,
#    NegoEx] with the NEGOTIATE (flags 0xe208b297), NegoEx first (the
#    module selects NTLMSSP further down), the [MS-SPNG] 2.2.1
#    negTokenInit2 with the server's hint, the client's NEGOTIATE and
#    AUTHENTICATE legs in negTokenResp with mechListMIC; lists of 32
#    mechanisms (the limit) and 33, an unknown OID first;
#  - the module's own replies, written by its codec (build/spnego_unit
#    resp): accept-incomplete + supportedMech NTLMSSP + CHALLENGE, the bare
#    "NTLMSSP selected" reply, accept-completed + mechListMIC, and MIT's
#    request-mic answer of t/unit/spnego_unit.c.
#
# authlist: WWW-Authenticate values as IIS, Exchange, Apache
# (mod_auth_gssapi) and proxies send them (fixed strings below).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use KcdNTLM qw(:all);
use KcdSPNEGO qw(:all);
use KcdRealm;

my $ROOT = "$FindBin::Bin/..";
my $DIR = "$FindBin::Bin/corpus";
my $PY = '/usr/bin/python3';
my $EXCHANGE = "$FindBin::Bin/gss-exchange.py";
my $SO = '/usr/lib/x86_64-linux-gnu/gssntlmssp/gssntlmssp.so';
my $tmp = tempdir(CLEANUP => 1);

sub save {
    my ($sub, $name, $bytes) = @_;
    mkdir "$DIR/$sub";
    open(my $fh, '>', "$DIR/$sub/$name") or die "$DIR/$sub/$name: $!";
    binmode $fh;
    print $fh $bytes;
    close $fh;
    print "  $sub/$name (", length $bytes, " bytes)\n";
}

sub spnego { save('spnego_decode', @_) }

# runs gss-exchange.py with %env; returns ([side, bytes], ...)
sub exchange {
    my ($env, @args) = @_;
    local %ENV = (%ENV, %$env);
    delete $ENV{$_} for grep { !defined $ENV{$_} } keys %ENV;
    my @out = `$PY $EXCHANGE @args 2>&1`;
    chomp @out;
    my @tok = map { /^([ia]) ([0-9a-f]+)$/ ? [$1, pack('H*', $2)] : () } @out;
    my ($end) = grep { /^(complete|error)/ } @out;
    print "gss-exchange @args: ", scalar(@tok), " tokens, ",
        $end // 'no result', "\n";
    return @tok;
}

# the module's codec: negTokenResp(state, mech, token, mic)
sub module_resp {
    my ($state, $mech, $token, $mic) = @_;
    my @a = ($state, $mech, unpack('H*', $token // ''));
    push @a, unpack('H*', $mic) if defined $mic;
    my $out = `$ROOT/build/spnego_unit resp @{[map { "'$_'" } @a]}`;
    $out =~ /^token ([0-9a-f]+)/ or die "spnego_unit resp @a: $out";
    return pack 'H*', $1;
}

system("make -s -C '$ROOT' build/spnego_unit") == 0
    or die "cannot build build/spnego_unit\n";

# 1. MIT SPNEGO + gss-ntlmssp, initiator and acceptor

if (-e $SO) {
    open my $fh, '>', "$tmp/mech" or die;
    print $fh "gssntlmssp_v1 1.3.6.1.4.1.311.2.2.10 $SO\n";
    close $fh;
    open $fh, '>', "$tmp/users" or die;
    print $fh "KCD:alice:Secret1\n";
    close $fh;
    my @t = exchange({ GSS_MECH_CONFIG => "$tmp/mech",
                       NTLM_USER_FILE => "$tmp/users",
                       KRB5_CONFIG => '/dev/null', KRB5_KTNAME => undef },
                     'spnego', 'KCD\\\\alice', 'HTTP@server.kcd.test');
    my @names = ('mit-ntlmssp-init', 'mit-ntlmssp-resp-challenge',
                 'mit-ntlmssp-resp-authenticate', 'mit-ntlmssp-resp-final');
    spnego($names[$_], $t[$_][1]) for grep { $names[$_] } 0 .. $#t;
} else {
    print "gss-ntlmssp not installed: no MIT NTLM seeds\n";
}

# 2. Kerberos: a realm, alice's TGT, MIT both sides, curl --negotiate

my $realm = KcdRealm->start(dir => "$tmp/realm");
if ($realm && $realm->kinit('alice')) {
    my %env = (%{$realm->env}, KRB5_KTNAME => $realm->keytab('proxy'),
               GSS_MECH_CONFIG => '/dev/null');
    my @t = exchange(\%env, 'spnego', 'alice@' . $realm->realm,
                     'HTTP@proxy.kcd.test');
    spnego('mit-krb5-init', $t[0][1]) if @t > 0;
    spnego('mit-krb5-resp-aprep', $t[1][1]) if @t > 1;
    @t = exchange(\%env, 'krb5', 'alice@' . $realm->realm,
                  'HTTP@proxy.kcd.test');
    spnego('mit-krb5-raw-apreq', $t[0][1]) if @t > 0;
    spnego('mit-krb5-raw-aprep', $t[1][1]) if @t > 1;

    # curl: one 401 with "Negotiate", then the token it sends
    my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                    Listen => 4, ReuseAddr => 1)
        or die "listen: $!";
    my $port = $srv->sockport;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        local %ENV = (%ENV, %env);
        delete $ENV{$_} for grep { !defined $ENV{$_} } keys %ENV;
        open(STDOUT, '>', '/dev/null');
        open(STDERR, '>', '/dev/null');
        exec('/usr/bin/curl', '-s', '--max-time', '10', '--negotiate',
             '-u', ':', '--resolve', "proxy.kcd.test:$port:127.0.0.1",
             "http://proxy.kcd.test:$port/") or POSIX::_exit(127);
    }
    my $tok;
    my $deadline = time + 10;
    $srv->blocking(0);
    while (!defined $tok && time < $deadline) {
        my $c = $srv->accept or do { sleep 0.01; next };
        $c->blocking(1);
        my $head = '';
        while ($head !~ /\r\n\r\n/) {
            sysread($c, my $buf, 65536) or last;
            $head .= $buf;
        }
        if ($head =~ /^Authorization:\s*Negotiate\s+(\S+)/mi) {
            $tok = unb64($1);
            syswrite($c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                         . "Connection: close\r\n\r\n");
        } else {
            syswrite($c, "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: "
                         . "Negotiate\r\nContent-Length: 0\r\n\r\n");
            # curl sends the next request on the same connection
            $head = '';
            while ($head !~ /\r\n\r\n/) {
                sysread($c, my $buf, 65536) or last;
                $head .= $buf;
            }
            if ($head =~ /^Authorization:\s*Negotiate\s+(\S+)/mi) {
                $tok = unb64($1);
                syswrite($c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                             . "Connection: close\r\n\r\n");
            }
        }
        close $c;
    }
    waitpid($pid, 0);
    if (defined $tok) {
        spnego('curl-negotiate-krb5-init', $tok);
    } else {
        print "curl --negotiate: no token captured\n";
    }
    $realm->stop;
} else {
    print "no MIT realm (", KcdRealm->missing // 'kinit failed',
        "): no Kerberos seeds\n";
}

# 3. the Windows / Chromium shape of t/43, and the module's replies

my @win = qw(ntlmssp mskrb5 krb5 negoex);
my $t1 = type1(flags => 0xe208b297, domain => 'KCD', workstation => 'WS1');
my $t2 = make_type2(
    challenge => "\x01\x23\x45\x67\x89\xab\xcd\xef",
    flags => 0xE28A8235,
    target_name => 'KCD',
    av => [[MsvAvNbDomainName, utf16le('KCD')],
           [MsvAvNbComputerName, utf16le('PROXY')],
           [MsvAvDnsDomainName, utf16le('kcd.test')],
           [MsvAvTimestamp, pack('Q<', 134116992000000000)]]);
my ($t3, $i3) = type3(type1 => $t1, type2 => $t2, user => 'alice',
                      domain => 'KCD', password => 'Secret1',
                      workstation => 'WS1',
                      client_challenge => "\x11" x 8);
my $key = $i3->{session_base_key} // "\0" x 16;
my $cmic = ntlm_mech_list_mic($key, mech_list_der(@win), 'client');
my $smic = ntlm_mech_list_mic($key, mech_list_der(@win), 'server');

spnego('windows-init-ntlmssp', spnego_init(mechs => \@win, token => $t1));
spnego('windows-init-negoex-first',
       spnego_init(mechs => [qw(negoex mskrb5 krb5 ntlmssp)],
                   token => "\x01\x02\x03"));
spnego('windows-init-no-token', spnego_init(mechs => [qw(mskrb5 ntlmssp)]));
spnego('windows-init-mic', spnego_init(mechs => \@win, token => $t1,
                                       mic => $cmic));
spnego('ms-spng-init2-hint', spnego_init(mechs => \@win, init2 => 1));
spnego('ms-spng-init2-ntlmssp', spnego_init(mechs => \@win, init2 => 1,
                                            token => $t1));
spnego('limit-32-mechs', spnego_init(mechs => [(@win) x 8], token => $t1));
spnego('over-33-mechs', spnego_init(mechs => [(@win) x 8, 'ntlmssp'],
                                    token => $t1));
spnego('unknown-mech-first', spnego_init(mechs => [qw(other ntlmssp)],
                                         token => $t1));
spnego('windows-resp-negotiate', spnego_resp(token => $t1));
spnego('windows-resp-authenticate-mic', spnego_resp(token => $t3,
                                                    mic => $cmic));
spnego('windows-resp-reject', spnego_resp(state => 2));
spnego('module-resp-challenge', module_resp(1, 'ntlmssp', $t2));
spnego('module-resp-select', module_resp(1, 'ntlmssp', ''));
spnego('module-resp-final-mic', module_resp(0, '', '', $smic));
spnego('mit-resp-request-mic',
       pack('H*', 'a1143012a0030a0103a10b06092a864882f712010202'));

# 4. WWW-Authenticate values

my %auth = (
    'iis-negotiate-ntlm'   => 'Negotiate, NTLM',
    'iis-negotiate-token'  => 'Negotiate oYGyMIGvoAMKAQChCwYJKoZIgvcSAQIC'
                              . 'ooGaBIGXYIGUBgkqhkiG9xIBAgICAG+BhDCBgaADAgEF'
                              . 'oQMCAQ+idTBzoAMCARKibARq',
    'exchange-basic-ntlm'  => 'Basic realm="mail.kcd.test", NTLM',
    'exchange-all'         => 'Negotiate, NTLM, Basic realm="mail.kcd.test"',
    'ntlm-challenge'       => 'NTLM TlRMTVNTUAACAAAABgAGADgAAAAFgomiASNF'
                              . 'Z4mrze8AAAAAAAAAAFwAXAA+AAAABgBwFwAAAA9LAEMA'
                              . 'RAA=',
    'digest-params'        => 'Digest realm="kcd.test", qop="auth,auth-int",'
                              . ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",'
                              . ' opaque="5ccc069c403ebaf9f0171e9517f40e41"',
    'quoted-escapes'       => 'Basic realm="a \"quoted\" \\\\ realm, too",'
                              . ' charset="UTF-8"',
    'empty-elements'       => ', ,Negotiate ,, NTLM,  ,',
    'bearer-params'        => 'Bearer realm="example", error="invalid_token",'
                              . ' error_description="The access token expired"',
    'params-bws'           => 'Basic realm = "x" , charset=UTF-8',
    'mod-auth-gssapi'      => 'Negotiate oRQwEqADCgEAoQsGCSqGSIb3EgECAg==',
    'token68-padding'      => 'Newauth abc==, Basic realm=simple',
    'tab-separated'        => "Negotiate\t,\tNTLM",
    'unterminated-quote'   => 'Basic realm="open',
);
save('authlist', $_, $auth{$_}) for sort keys %auth;
