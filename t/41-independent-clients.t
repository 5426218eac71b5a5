#!/usr/bin/perl

# Independent clients (implementations no one here wrote) against the
# module, each over HTTP and HTTPS, GET, POST with a body and a keep-alive
# follow-up without Authorization (B3).  Channel binding "require" where
# the client sends bindings; "allow" for the others.
#
#   gss-ntlmssp via MIT SPNEGO  curl --negotiate (NTLM inside SPNEGO, B5)
#   gss-ntlmssp via MIT SPNEGO  python3-gssapi (with channel bindings)
#   gss-ntlmssp raw             python3-gssapi, default flags (SIGN asked)
#   Samba ntlm_auth             --helper-protocol=ntlmssp-client-1 (NTLM)
#   Samba ntlm_auth             --helper-protocol=gss-spnego-client (SPNEGO)
#   Node httpntlm (npm, pinned) NTLM
#   OpenJDK HttpURLConnection   NTLM
#   Chromium headless           NTLM (MIC, bindings), Negotiate without
#                               Kerberos falling back to NTLM
#
# A client whose package cannot be installed is skipped, and named in the
# summary printed at the end (the client x scheme x transport matrix).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::SHA qw(sha256_hex);
use IPC::Open2 qw(open2);
use JSON::PP;
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdSPNEGO qw(:all);
use KcdBackend;

my $ROOT = KcdTest::repo_root();
my $PY = '/usr/bin/python3';
my $GSSNTLM = '/usr/lib/x86_64-linux-gnu/gssntlmssp/gssntlmssp.so';

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);

$SIG{ALRM} = sub { die "41-independent-clients.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 400;

my $dir = $t->testdir;
my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
my $PW = 'Secret-1';
$t->write_file('users', "KCD\\alice:" . unpack('H*', nt_hash($PW)) . "\n");

my $common = <<'EOF';
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_ntlm_computer PROXY;
        kcd_ntlm_dns_domain kcd.test;
        kcd_realm KCD.TEST;

        add_header X-Kcd-User $kcd_user always;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /nt/ {
            kcd_auth ntlm;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /neg/ {
            kcd_auth negotiate ntlm;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        # clients that send no channel bindings
        location /allow/ {
            kcd_auth negotiate ntlm;
            kcd_channel_binding allow;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }
EOF

$t->write_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name proxy.kcd.test;
$common
    }

    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name proxy.kcd.test;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
        kcd_channel_binding require;
$common
    }

    # the other choice: KEY_EXCH granted to the clients that ask for it
    server {
        listen 127.0.0.1:%%PORT_8081%%;
        server_name proxy.kcd.test;
        kcd_ntlm_key_exch on;
$common
    }

    server {
        listen 127.0.0.1:%%PORT_8444%% ssl;
        server_name proxy.kcd.test;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
        kcd_channel_binding require;
        kcd_ntlm_key_exch on;
$common
    }
EOF
$t->run;

my %matrix;      # client => { "scheme transport" => result }
my %skipped;

# 0: the default (no KEY_EXCH), 1: kcd_ntlm_key_exch on
our $KX = 0;

sub pt { my ($tls) = @_; return port(($tls ? 8443 : 8080) + $KX) }

sub url {
    my ($tls, $path) = @_;
    $path =~ s{^(/\w+/)}{$1kx$KX-};
    return ($tls ? 'https' : 'http') . "://127.0.0.1:" . pt($tls) . $path;
}

sub record {
    my ($client, $what, $ok) = @_;
    $client .= ' [kcd_ntlm_key_exch on]' if $KX;
    $matrix{$client}{$what} = $ok ? 'pass' : 'FAIL';
}

sub saw {
    my ($uri) = @_;
    $uri =~ s{^(/\w+/)}{$1kx$KX-};
    return grep { $_->{uri} eq $uri } $b->requests;
}

my $BODY = join "", map { ("a" .. "z", 0 .. 9)[$_ % 36] } 0 .. 4999;

# ---------------------------------------- gss-ntlmssp, MIT SPNEGO, raw

my $have_gss = -e $GSSNTLM
    && system("$PY -c 'import gssapi' 2>/dev/null") == 0;
$skipped{'gss-ntlmssp'} = 'package gss-ntlmssp or python3-gssapi missing'
    unless $have_gss;

my $mech = $t->write_file('gss-mech', "gssntlmssp_v1 1.3.6.1.4.1.311.2.2.10 "
                          . "$GSSNTLM\n");
my $ufile = $t->write_file('ntlm-users', "KCD:alice:$PW\n");

# drive python3-gssapi through one keep-alive connection
sub gss_login {
    my (%o) = @_;
    local $ENV{GSS_MECH_CONFIG} = $mech;
    local $ENV{NTLM_USER_FILE} = $ufile;
    local $ENV{KRB5_CONFIG} = '/dev/null';
    my $c = KcdTest::Conn->new(port => pt($o{tls}),
                               ($o{tls} ? (ssl => 1) : ()));
    $o{path} =~ s{^(/\w+/)}{$1kx$KX-};
    my @cb;
    if ($o{cb} && $o{tls}) {
        @cb = ('--cb', unpack('H*', 'tls-server-end-point:'
                                    . tls_server_end_point($c->tls_cert_der)));
    }
    my $pid = open2(my $out, my $in, $PY, "$ROOT/t/lib/spnego_initiator.py",
        'KCD\\alice', 'HTTP@proxy.kcd.test', '--mech', $o{mech}, @cb);
    my ($r, $tok, $last, $flags1, $flags2);
    my $scheme = $o{scheme};
    my $method = $o{method} // 'GET';
    for my $leg (1 .. 4) {
        my $l = <$out> // 'error eof';
        chomp $l;
        last if $l eq 'complete' || $l =~ /^error/;
        if ($leg == 1 && $o{mech} eq 'ntlmssp') {
            $flags1 = parse_type1(pack 'H*', $l)->{flags};
        }
        $r = $c->request({ method => $method, path => $o{path},
            headers => [Authorization => "$scheme " . b64(pack 'H*', $l)],
            ($method eq 'POST' ? (body => $o{body}) : ()) });
        $last = $r;
        my ($v) = grep { /^\Q$scheme\E \S+/ } $r->headers_all('WWW-Authenticate');
        last unless $v;
        if ($leg == 1 && $o{mech} eq 'ntlmssp') {
            $flags2 = eval { parse_type2(unb64((split / /, $v)[1]))->{flags} };
        }
        print $in unpack('H*', unb64((split / /, $v)[1])), "\n";
        last if $r->{status} != 401;
    }
    close $in;
    my $rest = do { local $/; <$out> } // '';
    waitpid $pid, 0;
    my $f = $c->get($o{path} . 'again');
    return ($last, $f, $flags1, $rest, $flags2);
}

my $have_samba = -x '/usr/bin/ntlm_auth';
$skipped{'Samba ntlm_auth'} = 'package winbind missing' unless $have_samba;

my $smbconf = $t->write_file('smb.conf', "[global]\n"
    . "    workgroup = KCD\n    client ntlmv2 auth = yes\n"
    . "    state directory = $dir/samba\n    cache directory = $dir/samba\n"
    . "    lock directory = $dir/samba\n    private dir = $dir/samba\n"
    . "    ncalrpc dir = $dir/samba\n");
mkdir "$dir/samba";

# helper protocols: "YR" / "TT <b64>" -> "YR|TT|KK|AF <b64>"
sub samba_login {
    my (%o) = @_;
    my $c = KcdTest::Conn->new(port => pt($o{tls}),
                               ($o{tls} ? (ssl => 1) : ()));
    $o{path} =~ s{^(/\w+/)}{$1kx$KX-};
    my $pid = open2(my $out, my $in, '/usr/bin/ntlm_auth',
        "--configfile=$smbconf", "--helper-protocol=$o{proto}",
        '--username=alice', '--domain=KCD', "--password=$PW");
    my $scheme = $o{scheme};
    my $method = $o{method} // 'GET';
    print $in "YR\n";
    my ($r, $last, $mic_seen);
    for my $leg (1 .. 4) {
        my $l = <$out> // '';
        chomp $l;
        my ($code, $tok) = split / /, $l, 2;
        last unless $code && ($code eq 'YR' || $code eq 'KK' || $code eq 'TT'
                              || $code eq 'AF') && $tok;
        if ($scheme eq 'Negotiate' && $leg > 1) {
            my $sp = parse_spnego(unb64($tok));
            $mic_seen = $sp && defined $sp->{mic} && length $sp->{mic};
        }
        $r = $c->request({ method => $method, path => $o{path},
            headers => [Authorization => "$scheme $tok"],
            ($method eq 'POST' ? (body => $o{body}) : ()) });
        $last = $r;
        my ($v) = grep { /^\Q$scheme\E \S+/ } $r->headers_all('WWW-Authenticate');
        last unless $v && $r->{status} == 401;
        print $in "TT " . (split / /, $v)[1] . "\n";
    }
    close $in;
    kill 'TERM', $pid;
    waitpid $pid, 0;
    my $f = $c->get($o{path} . 'again');
    return ($last, $f, $mic_seen);
}

my $node_dir = "$ROOT/t/clients/node";
my $have_node = -x '/usr/bin/node' && -d "$node_dir/node_modules/httpntlm";
$skipped{'Node httpntlm'} = 'node or npm package httpntlm missing '
    . '(tools/deps.sh installs it)' unless $have_node;

my $have_java = -x '/usr/bin/java';
$skipped{'OpenJDK'} = 'package openjdk-17-jdk-headless missing'
    unless $have_java;

require "$ROOT/t/lib/KcdChromium.pm";

my $chrome = KcdChromium::binary();
$skipped{'Chromium'} = 'package chromium missing' unless $chrome;

for my $kx (0, 1) {
    local $KX = $kx;

SKIP: {
    skip 'gss-ntlmssp: not installed', 1 unless $have_gss;

    for my $tls (0, 1) {
        my $tr = $tls ? 'HTTPS' : 'HTTP';
        for my $m ('GET', 'POST') {
            # raw gss-ntlmssp, default flags: asks for SIGN (and KEY_EXCH)
            my $p = "/nt/gss-raw-$tls-$m/";
            my ($r, $f, $fl, undef, $fl2) = gss_login(mech => 'ntlmssp',
                scheme => 'NTLM', tls => $tls, cb => 1, path => $p,
                method => $m, body => $BODY);
            ok($fl && ($fl & NTLMSSP_NEGOTIATE_SIGN)
               && ($fl & NTLMSSP_NEGOTIATE_KEY_EXCH),
               sprintf("raw gss-ntlmssp asks for SIGN and KEY_EXCH (0x%08x)",
                       $fl // 0));
            is(($fl2 // 0) & NTLMSSP_NEGOTIATE_KEY_EXCH,
               $KX ? NTLMSSP_NEGOTIATE_KEY_EXCH : 0,
               'KEY_EXCH ' . ($KX ? 'granted' : 'not granted'));
            my $ok = is($r && $r->{status}, 200,
                        "raw gss-ntlmssp $tr $m: 200");
            is($f->{status}, 200, "raw gss-ntlmssp $tr keep-alive follow-up");
            if ($m eq 'POST') {
                my ($s) = saw($p);
                is($s && $s->{body_sha256}, sha256_hex($BODY),
                   "raw gss-ntlmssp $tr POST body forwarded");
            }
            record('gss-ntlmssp raw (python3-gssapi)', "NTLM $tr $m",
                   $ok && $f->{status} == 200);

            # the same inside MIT's SPNEGO, with channel bindings
            $p = "/neg/gss-spnego-$tls-$m/";
            ($r, $f) = gss_login(mech => 'spnego', scheme => 'Negotiate',
                tls => $tls, cb => 1, path => $p, method => $m,
                body => $BODY);
            $ok = is($r && $r->{status}, 200,
                     "MIT SPNEGO + gss-ntlmssp $tr $m: 200");
            is($f->{status}, 200, "MIT SPNEGO $tr keep-alive follow-up");
            record('gss-ntlmssp in MIT SPNEGO (python3-gssapi)',
                   "Negotiate $tr $m", $ok && $f->{status} == 200);
        }
    }

    # curl --negotiate: MIT SPNEGO, gss-ntlmssp, no channel bindings
    for my $tls (0, 1) {
        my $tr = $tls ? 'HTTPS' : 'HTTP';
        my $loc = $tls ? 'allow' : 'neg';
        local $ENV{GSS_MECH_CONFIG} = $mech;
        local $ENV{NTLM_USER_FILE} = $ufile;
        local $ENV{NTLMUSER} = 'alice';
        local $ENV{NTLMDOMAIN} = 'KCD';
        local $ENV{KRB5_CONFIG} = '/dev/null';
        my $bf = $t->write_file('body', $BODY);
        my $out = `curl -sk --negotiate -u : -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\\n' @{[url($tls, "/$loc/curl-$tls/")]} @{[url($tls, "/$loc/curl-$tls/again")]} --next -sk --negotiate -u : -o /dev/null -w '%{http_code} %{num_connects}\\n' --data-binary \@$bf @{[url($tls, "/$loc/curl-post-$tls/")]} 2>&1`;
        my @l = split /\n/, $out;
        my $ok = like($l[0] // '', qr/^200 /, "curl --negotiate $tr GET: 200")
            or diag $out;
        like($l[1] // '', qr/^200 0$/,
             "curl --negotiate $tr follow-up on the same connection");
        my $okp = like($l[2] // '', qr/^200 /, "curl --negotiate $tr POST: 200");
        my ($s) = saw("/$loc/curl-post-$tls/");
        is($s && $s->{body_sha256}, sha256_hex($BODY),
           "curl --negotiate $tr POST body forwarded");
        record('curl --negotiate (MIT SPNEGO + gss-ntlmssp)',
               "Negotiate $tr GET", $ok && ($l[1] // '') =~ /^200 0$/);
        record('curl --negotiate (MIT SPNEGO + gss-ntlmssp)',
               "Negotiate $tr POST", $okp);
    }
}

# ---------------------------------------------------- Samba ntlm_auth

SKIP: {
    skip 'Samba ntlm_auth: not installed', 1 unless $have_samba;

    for my $tls (0, 1) {
        my $tr = $tls ? 'HTTPS' : 'HTTP';
        for my $m ('GET', 'POST') {
            for my $case (['ntlmssp-client-1', 'NTLM', 'Samba ntlm_auth '
                           . '(ntlmssp-client-1)'],
                          ['gss-spnego-client', 'Negotiate', 'Samba ntlm_auth '
                           . '(gss-spnego-client)'])
            {
                my ($proto, $scheme, $name) = @$case;
                my $p = "/allow/samba-$proto-$tls-$m/";
                my ($r, $f, $mic) = samba_login(proto => $proto,
                    scheme => $scheme, tls => $tls, path => $p, method => $m,
                    body => $BODY);
                my $ok = is($r && $r->{status}, 200, "$name $tr $m: 200");
                # Samba's helper asks for no SIGN: no NTLM MIC, and with
                # NTLMSSP first no mechListMIC (RFC 4178 5 allows that)
                ok(!$mic, "$name: no mechListMIC, accepted")
                    if $scheme eq 'Negotiate';
                is($f->{status}, 200, "$name $tr keep-alive follow-up");
                record($name, "$scheme $tr $m", $ok && $f->{status} == 200);
            }
        }
    }
}

# ---------------------------------------------------------- Node

SKIP: {
    skip 'Node httpntlm: not installed', 1 unless $have_node;

    for my $tls (0, 1) {
        my $tr = $tls ? 'HTTPS' : 'HTTP';
        for my $m ('GET', 'POST') {
            my $p = "/allow/node-$tls-$m/";
            my $out = `cd '$node_dir' && node ntlm-client.js '@{[url($tls, $p)]}' alice KCD '$PW' $m '$BODY' 2>&1`;
            my $j = eval { decode_json((split /\n/, $out)[-1]) } || {};
            my $ok = is($j->{final}, 200, "Node httpntlm $tr $m: 200")
                or diag $out;
            is($j->{follow}, 200, "Node httpntlm $tr keep-alive follow-up");
            is($j->{conns}, 1, "Node httpntlm $tr: one connection");
            record('Node httpntlm 1.8.13', "NTLM $tr $m",
                   $ok && ($j->{follow} // 0) == 200);
        }
    }
}

# ---------------------------------------------------------- Java

SKIP: {
    skip 'OpenJDK: not installed', 1 unless $have_java;

    for my $tls (0, 1) {
        my $tr = $tls ? 'HTTPS' : 'HTTP';
        for my $m ('GET', 'POST') {
            my $p = "/allow/java-$tls-$m/";
            my $out = `java -Dhttp.auth.preference=NTLM '$ROOT/t/clients/java/NtlmClient.java' '@{[url($tls, $p)]}' 'KCD\\alice' '$PW' @{[$m eq 'POST' ? "'$BODY'" : '']} 2>&1`;
            my $ok = like($out, qr/^final 200 KCD\\alice$/m,
                          "OpenJDK NTLM $tr $m: 200 as KCD\\alice")
                or diag $out;
            like($out, qr/^follow 200$/m, "OpenJDK $tr keep-alive follow-up");
            record('OpenJDK 17 HttpURLConnection', "NTLM $tr $m",
                   $ok && $out =~ /^follow 200$/m);
        }
    }
}

# ---------------------------------------------------------- Chromium

SKIP: {
    skip 'Chromium: not installed', 1 unless $chrome;

    for my $tls (0, 1) {
        my $tr = $tls ? 'HTTPS' : 'HTTP';
        for my $case (['nt', 'NTLM'], ['neg', 'Negotiate->NTLM']) {
            my ($loc, $what) = @$case;
            my $res = KcdChromium::run(dir => "$dir/chromium-$loc-$tls-$KX",
                get => url($tls, "/$loc/chromium-$tls/"),
                post => url($tls, "/$loc/chromium-post-$tls/"),
                follow => url($tls, "/$loc/chromium-$tls/again"),
                user => 'KCD\\alice', password => $PW, body => $BODY);
            my $ok = is($res->{get}, 200, "Chromium $what $tr GET: 200")
                or diag explain $res;
            is($res->{post}, 200, "Chromium $what $tr POST: 200");
            is($res->{follow}, 200, "Chromium $what $tr follow-up: 200");
            my ($s) = saw("/$loc/chromium-post-$tls/");
            is($s && $s->{body_sha256}, sha256_hex($BODY),
               "Chromium $what $tr POST body forwarded");
            record('Chromium ' . KcdChromium::version(), "$what $tr GET",
                   $ok);
            record('Chromium ' . KcdChromium::version(), "$what $tr POST",
                   ($res->{post} // 0) == 200);
        }
    }
}

}

# the matrix, for docs/clients.md
diag '';
diag 'client x scheme x transport:';
for my $c (sort keys %matrix) {
    diag sprintf '  %-48s %s', $c, join ', ',
        map { "$_: $matrix{$c}{$_}" } sort keys %{$matrix{$c}};
}
diag "  SKIPPED $_: $skipped{$_}" for sort keys %skipped;

done_testing();
