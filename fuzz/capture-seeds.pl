#!/usr/bin/perl
# Regenerates the captured seeds of the NTLM fuzz harnesses: a throwaway
# HTTP server on 127.0.0.1 answers every NEGOTIATE with one fixed
# CHALLENGE (fuzz/kcd_fuzz_ntlm.h: the same bytes, challenge, timestamp
# and NT hash of "Secret1"), and the real clients the tests use log in
# as KCD\alice.  Their NEGOTIATE and AUTHENTICATE messages are written to
# fuzz/corpus/ntlm_negotiate/ and fuzz/corpus/ntlm_authenticate/.
#
#   perl fuzz/capture-seeds.pl          (then commit the corpus files)
#
# Clients: curl --ntlm, python3 requests_ntlm (MIC, no bindings over
# HTTP), Perl Authen::NTLM (v1 and v2 modes), t/lib/KcdNTLM.pm (MIC,
# channel bindings, target name).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use KcdNTLM qw(:all);
use KcdTest;

my $DIR = "$FindBin::Bin/corpus";
mkdir $DIR;
my $TS = pack('VV', 134116992000000000 & 0xffffffff,
              134116992000000000 >> 32);    # 2026-01-01T00:00:00Z

my $type2 = make_type2(
    challenge => "\x01\x23\x45\x67\x89\xab\xcd\xef",
    flags => 0xA2898205,    # what the module sends to a Windows client
    target_name => 'KCD',
    av => [[2, utf16le('KCD')], [1, utf16le('WEB01')],
           [4, utf16le('kcd.test')], [3, utf16le('web01.kcd.test')],
           [7, $TS]]);

print "CHALLENGE (for kcd_fuzz_ntlm.h):\n", unpack('H*', $type2), "\n";

my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                Listen => 16, ReuseAddr => 1)
    or die "listen: $!";
my $port = $srv->sockport;
my $url = "http://127.0.0.1:$port";

sub save {
    my ($sub, $name, $bytes) = @_;
    mkdir "$DIR/$sub";
    open(my $fh, '>', "$DIR/$sub/$name") or die "$DIR/$sub/$name: $!";
    binmode $fh;
    print $fh $bytes;
    close $fh;
    print "  $sub/$name (", length $bytes, " bytes)\n";
}

# serves one client run; returns the NTLM messages seen, in order
sub serve {
    my ($child) = @_;
    my @msgs;
    $srv->blocking(0);
    my $deadline = time + 20;
    my @conns;
    while (time < $deadline) {
        if (my $c = $srv->accept) { $c->blocking(1); push @conns, [$c, ''] }
        for my $e (@conns) {
            my ($c) = @$e;
            next unless $c;
            my $rin = '';
            vec($rin, fileno($c), 1) = 1;
            next unless select(my $rout = $rin, undef, undef, 0);
            my $n = sysread($c, my $buf, 65536);
            if (!$n) { close $c; $e->[0] = undef; next }
            $e->[1] .= $buf;
            while ($e->[1] =~ s/^(.*?\r\n\r\n)//s) {
                my $head = $1;
                my $len = $head =~ /^Content-Length:\s*(\d+)/mi ? $1 : 0;
                substr($e->[1], 0, $len, '');
                my ($tok) = $head =~ /^Authorization:\s*(?:NTLM|Negotiate)\s+(\S+)/mi;
                my $resp;
                if ($tok) {
                    my $m = unb64($tok);
                    push @msgs, $m;
                    if (substr($m, 8, 4) eq pack('V', 1)) {
                        $resp = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM "
                              . b64($type2) . "\r\nContent-Length: 0\r\n\r\n";
                    } else {
                        $resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                    }
                } else {
                    $resp = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: NTLM\r\n"
                          . "Content-Length: 0\r\n\r\n";
                }
                syswrite($c, $resp);
            }
        }
        last if $child && waitpid($child, WNOHANG) == $child;
        sleep 0.005;
    }
    close $_->[0] for grep { $_->[0] } @conns;
    return @msgs;
}

sub run_client {
    my ($name, $env, @cmd) = @_;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        $ENV{$_} = $env->{$_} for keys %$env;
        open(STDOUT, '>', '/dev/null');
        exec(@cmd) or POSIX::_exit(127);
    }
    my @m = serve($pid);
    print "$name: ", scalar(@m), " messages\n";
    for my $i (0 .. $#m) {
        my $type = unpack('V', substr($m[$i], 8, 4));
        save($type == 1 ? 'ntlm_negotiate' : 'ntlm_authenticate',
             "$name-type$type", $m[$i]);
    }
}

# curl: NTLMv2, no MIC, no bindings
run_client('curl', {}, '/usr/bin/curl', '-s', '--ntlm', '-u', 'KCD\\alice:Secret1',
           '-o', '/dev/null', "$url/curl");

# python requests_ntlm (MD4 through the OpenSSL legacy provider)
my $t = KcdTest->new;
my $cnf = $t->openssl_legacy_conf;
$t->write_file('client.py', <<'PY');
import sys, requests
from requests_ntlm import HttpNtlmAuth
requests.get(sys.argv[1], auth=HttpNtlmAuth('KCD\\alice', 'Secret1'), timeout=5)
PY
run_client('python-requests-ntlm', { OPENSSL_CONF => $cnf }, '/usr/bin/python3',
           $t->testdir . '/client.py', "$url/py");

# Perl Authen::NTLM (v1 default and its v2 mode) and the tests' KcdNTLM
my $pid = fork() // die;
if ($pid == 0) {
    require Authen::NTLM;
    for my $v (1, 2) {
        my $n = Authen::NTLM->new(user => 'alice', password => 'Secret1',
                                  domain => 'KCD', host => 'PERLWS', version => $v);
        my $c = KcdTest::Conn->new(port => $port);
        my $r = $c->get('/perl', headers => [Authorization => 'NTLM ' . $n->challenge]);
        my ($t2) = map { /^NTLM\s+(\S+)/ ? $1 : () } $r->headers_all('WWW-Authenticate');
        $c->get('/perl', headers => [Authorization => 'NTLM ' . $n->challenge($t2)]);
    }
    for my $o ([], [cb_hash => "\x11" x 16, target_name => 'HTTP/web01.kcd.test']) {
        my $c = KcdTest::Conn->new(port => $port);
        ntlm_login($c, '/kcdntlm', user => 'alice', domain => 'KCD',
                   password => 'Secret1', workstation => 'KCDWS', @$o);
    }
    POSIX::_exit(0);
}
my @m = serve($pid);
my @names = ('perl-authen-ntlm-v1', 'perl-authen-ntlm-v2', 'kcdntlm', 'kcdntlm-cb');
for my $i (0 .. $#m) {
    my $type = unpack('V', substr($m[$i], 8, 4));
    save($type == 1 ? 'ntlm_negotiate' : 'ntlm_authenticate',
         $names[int($i / 2)] . "-type$type", $m[$i]);
}
