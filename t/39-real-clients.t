#!/usr/bin/perl

# Real client programs against the module (B2, B3, B7, channel binding):
#   curl --ntlm            (NTLMv2 without MIC and without channel bindings)
#   python requests_ntlm   (NTLMv2 with MIC and tls-server-end-point bindings)
#   Perl Authen::NTLM      (NTLMv1 by default; an "ntlmv2" mode)
# and keep-alive: one authenticated connection carries a whole session.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use JSON::PP;
use Digest::SHA qw(sha256_hex);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);
my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
my $sha1 = $t->make_cert('proxy-sha1', cn => 'proxy.kcd.test', sig => 'sha1');

$t->write_file('users', "KCD\\alice:" . unpack('H*', nt_hash('Password')) . "\n");

my $srv_common = <<'EOF';
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_ntlm_dns_domain kcd.test;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Kcd-User $kcd_user;

        location /allow/ {
            kcd_auth ntlm;
            kcd_channel_binding allow;
            proxy_pass http://backend;
        }

        location /require/ {
            kcd_auth ntlm;
            kcd_channel_binding require;
            proxy_pass http://backend;
        }
EOF

$t->write_config(<<"EOF");
    log_format kcd '\$connection \$status \$request_uri "\$kcd_user" '
                   '"\$kcd_auth_scheme" \$upstream_http_x_backend_conn';
    access_log %%TESTDIR%%/kcd.log kcd;

    upstream backend {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
$srv_common
    }

    server {
        listen 127.0.0.1:%%PORT_8444%% ssl;
        ssl_certificate $sha1->{cert};
        ssl_certificate_key $sha1->{key};
$srv_common
    }
EOF

# Allow a SHA-1 signed server certificate in this nginx (OpenSSL security
# level 0 for the test only): it is what the sha1 case needs.
{
    my $conf = $t->read_file('nginx.conf');
    $conf =~ s/(listen 127\.0\.0\.1:\d+ ssl;\n\s+ssl_certificate \Q$sha1->{cert}\E;)/$1\n        ssl_ciphers DEFAULT:\@SECLEVEL=0;/;
    $t->write_file('nginx.conf', $conf);
}
$t->run;

# runs a program with a time limit; returns (exit code, stdout, stderr)
sub run_prog {
    my ($env, @cmd) = @_;
    my $d = $t->testdir;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        $ENV{$_} = $env->{$_} for keys %$env;
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', "$d/prog.out");
        open(STDERR, '>', "$d/prog.err");
        exec(@cmd) or POSIX::_exit(127);
    }
    my $deadline = time + 20;
    while (waitpid($pid, WNOHANG) == 0) {
        if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
        sleep 0.02;
    }
    my $rc = $? >> 8;
    return ($rc, $t->read_file('prog.out') // '', $t->read_file('prog.err') // '');
}

sub status_of_last { my @s = $_[0] =~ /^HTTP\/\S+\s+(\d{3})/mg; return $s[-1] // 0 }

sub backend_saw { my ($uri) = @_; return grep { $_->{uri} eq $uri } $b->requests }

sub access_lines {
    my ($re) = @_;
    return grep { $_ =~ $re } split /\n/, ($t->read_file('kcd.log') // '');
}

###########################################################################
# curl

my $CURL = '/usr/bin/curl';
SKIP: {
    skip "no $CURL with NTLM", 12
        unless -x $CURL && `$CURL -V 2>/dev/null` =~ /^Features:.*\bNTLM\b/m;

    my @curl = ($CURL, '-sS', '--max-time', '5', '-D', '-', '-o', '/dev/null',
                '--ntlm', '-u', 'KCD\\alice:Password');
    my $http = 'http://127.0.0.1:' . port(8080);
    my $https = 'https://127.0.0.1:' . port(8443);

    my ($rc, $out, $err) = run_prog({}, @curl, "$http/allow/curl-http");
    is(status_of_last($out), 200, 'curl --ntlm over HTTP: 200') or diag($out, $err);
    my @q = backend_saw('/allow/curl-http');
    is(scalar @q, 1, 'curl over HTTP: forwarded once (handshake legs not forwarded)');
    ok(@q && !defined $q[0]->header('Authorization'), 'curl over HTTP: no Authorization upstream');
    is(@q && $q[0]->header('X-Kcd-User'), 'KCD\\alice', 'curl over HTTP: user KCD\\alice');

    ($rc, $out, $err) = run_prog({}, @curl, '-k', "$https/allow/curl-https");
    is(status_of_last($out), 200,
       'curl --ntlm over HTTPS, kcd_channel_binding allow (curl sends no bindings): 200')
        or diag($out, $err);
    @q = backend_saw('/allow/curl-https');
    ok(@q == 1 && !defined $q[0]->header('Authorization'),
       'curl over HTTPS: forwarded once without Authorization');

    my $mark = $t->log_mark;
    ($rc, $out, $err) = run_prog({}, @curl, '-k', "$https/require/curl-https");
    is(status_of_last($out), 401,
       'curl over HTTPS, kcd_channel_binding require: 401 (no bindings sent)');
    ok($t->wait_for_log(qr/NTLM logon failed for user "alice".*bind/i, 3, 'error.log', $mark),
       'require without bindings: the log names the user and the bindings');
    is(scalar(backend_saw('/require/curl-https')), 0, 'require without bindings: not forwarded');

    $mark = $t->log_mark;
    ($rc, $out, $err) = run_prog({}, $CURL, '-sS', '--max-time', '5', '-D', '-',
                                 '-o', '/dev/null', '--ntlm', '-u', 'KCD\\alice:Wrong',
                                 "$http/allow/curl-wrong");
    is(status_of_last($out), 401, 'curl with a wrong password: 401');
    ok($t->wait_for_log(qr/NTLM logon failed for user "alice" domain "KCD".*wrong password/,
                        3, 'error.log', $mark), 'curl wrong password: logged');
    is(scalar(backend_saw('/allow/curl-wrong')), 0, 'curl wrong password: not forwarded');
}

###########################################################################
# python requests + requests_ntlm

my $PY = '/usr/bin/python3';
my $py_ok = -x $PY && system($PY, '-c', 'import requests, requests_ntlm',
                             ) == 0;

# python's ntlm_auth needs MD4 from hashlib: OpenSSL's legacy provider,
# for the client only
$t->openssl_legacy_conf;

$t->write_file('client.py', <<'EOF');
import json, sys, warnings
import requests
from requests_ntlm import HttpNtlmAuth
warnings.filterwarnings('ignore')
url, user, password, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = requests.Session()
s.auth = HttpNtlmAuth(user, password)
out = []
for i in range(n):
    r = s.get('%s?i=%d' % (url, i), verify=False, timeout=5)
    out.append({'status': r.status_code,
                'history': [h.status_code for h in r.history],
                'backend_conn': r.headers.get('X-Backend-Conn'),
                'www': r.headers.get('WWW-Authenticate')})
print(json.dumps(out))
EOF

sub py_client {
    my ($url, $user, $pw, $n) = @_;
    my ($rc, $out, $err) = run_prog({ OPENSSL_CONF => $t->testdir . '/openssl-legacy.cnf' },
                                    $PY, $t->testdir . '/client.py', $url, $user, $pw, $n);
    my $res = eval { decode_json($out) };
    diag("python: rc $rc\n$out\n$err") unless $res;
    return $res || [];
}

SKIP: {
    skip "$PY with requests and requests_ntlm not available", 17 unless $py_ok;

    my $https = 'https://127.0.0.1:' . port(8443);
    my $mark = $t->log_mark;
    my $res = py_client("$https/require/py", 'KCD\\alice', 'Password', 1);
    is($res->[0]{status}, 200,
       'requests_ntlm over HTTPS, kcd_channel_binding require: 200 (bindings from the cert)');
    is_deeply($res->[0]{history}, [401, 401], 'requests_ntlm: 401, then 401 + Type 2, then 200');
    my @q = backend_saw('/require/py?i=0');
    ok(@q == 1 && !defined $q[0]->header('Authorization'),
       'requests_ntlm: forwarded once, without Authorization');
    unlike($t->error_log(since => $mark), qr/logon failed/, 'requests_ntlm: no failed logon logged');

    $res = py_client("$https/require/py-wrong", 'KCD\\alice', 'Wrong', 1);
    is($res->[0]{status}, 401, 'requests_ntlm with a wrong password: 401');
    is(scalar(backend_saw('/require/py-wrong?i=0')), 0, 'requests_ntlm wrong password: not forwarded');

    # sha1-signed certificate: tls-server-end-point hashes with SHA-256
    is(cert_sig_hash($sha1->{der}), 'sha1', 'the second certificate is sha1-signed');
    is(unpack('H*', tls_server_end_point($sha1->{der})), sha256_hex($sha1->{der}),
       'its tls-server-end-point hash is SHA-256 (RFC 5929)');
    my $c = KcdTest::Conn->new(port => port(8444), ssl => 1,
                               ssl_opts => { SSL_cipher_list => 'DEFAULT:@SECLEVEL=0' });
    is(unpack('H*', $c->tls_cert_der), unpack('H*', $sha1->{der}),
       'port 8444 presents the sha1-signed certificate');
    $c->close;
    $res = py_client('https://127.0.0.1:' . port(8444) . '/require/py-sha1',
                     'KCD\\alice', 'Password', 1);
    is($res->[0]{status}, 200, 'requests_ntlm, sha1-signed server cert, require: 200');

    # keep-alive: 20 requests over one Session, one handshake
    $b->clear;
    $res = py_client("$https/allow/session", 'KCD\\alice', 'Password', 20);
    is(scalar(grep { $_->{status} == 200 } @$res), 20, 'session: 20 requests, all 200');
    my $hist = join(',', map { scalar @{$_->{history}} } @$res);
    is($hist, '2' . (',0' x 19), 'session: only the first request needed the handshake');
    # access log lines are written after the responses: wait for the last
    $t->wait_for_log(qr{ /allow/session\?i=19 }, 3, 'kcd.log');
    my @lines = access_lines(qr{ /allow/session\?i=\d+ });
    is(scalar @lines, 22, 'session: access log has 2 handshake legs + 20 requests');
    my %cid = map { (split / /)[0] => 1 } @lines;
    is(scalar keys %cid, 1, 'session: all on one client connection ($connection)')
        or diag(join("\n", @lines));
    is(scalar(grep { / 200 \S+ "KCD\\x5Calice" "ntlm" \d+$/ } @lines), 20,
       'session: $kcd_user / $kcd_auth_scheme logged for every request (\\ escaped as \\x5C)');
    my @bq = grep { $_->{uri} =~ m{^/allow/session} } $b->requests;
    is(scalar @bq, 20, 'session: the backend saw exactly the 20 requests');
    my %bc = map { $_->{conn} => 1 } @bq;
    ok(keys(%bc) <= 2, 'session: upstream keep-alive reused (' . scalar(keys %bc)
       . ' backend connection(s))');
}

###########################################################################
# Perl Authen::NTLM over a raw socket

SKIP: {
    skip 'Authen::NTLM (libauthen-ntlm-perl) not installed', 9
        unless eval { require Authen::NTLM; 1 };

    my $exchange = sub {
        my (%o) = @_;
        my $n = Authen::NTLM->new(user => 'alice', password => 'Password',
                                  host => 'PERLWS', %o);
        my $c = KcdTest::Conn->new(port => port(8080));
        my $r1 = $c->get($o{path}, headers => [Authorization => 'NTLM ' . $n->challenge]);
        my ($t2) = map { /^NTLM\s+(\S+)/ ? $1 : () } $r1->headers_all('WWW-Authenticate');
        return ($r1, undef) unless $t2;
        my $t3 = $n->challenge($t2);
        return ($r1, $c->get($o{path}, headers => [Authorization => "NTLM $t3"]), $t3);
    };

    # default: NTLMv1
    my $mark = $t->log_mark;
    my ($r1, $r2, $t3) = $exchange->(version => 1, domain => 'KCD', path => '/allow/perl-v1');
    is($r1->{status}, 401, 'Authen::NTLM v1: Type 2 challenge');
    is(length(parse_type3(unb64($t3))->{nt}), 24, 'Authen::NTLM v1 sends a 24-byte NTLMv1 response');
    is($r2->{status}, 401, 'Authen::NTLM v1 (NTLMv1): refused with 401');
    ok($t->wait_for_log(qr/NTLM logon failed for user "alice".*NTLMv1/, 3, 'error.log', $mark),
       'Authen::NTLM v1: log says NTLMv1 refused');

    # ntlmv2 mode, no domain: a real NTLMv2 response (no MIC, no bindings)
    ($r1, $r2, $t3) = $exchange->(version => 2, domain => '', path => '/allow/perl-v2');
    ok(length(parse_type3(unb64($t3))->{nt}) > 24, 'Authen::NTLM v2 sends an NTLMv2 response');
    is($r2->{status}, 200, 'Authen::NTLM v2 without domain: 200 (logs on to the server domain)');
    my @q = backend_saw('/allow/perl-v2');
    ok(@q == 1 && $q[0]->header('X-Kcd-User') eq 'KCD\\alice'
       && !defined $q[0]->header('Authorization'),
       'Authen::NTLM v2: forwarded as KCD\\alice without Authorization');

    # ntlmv2 mode with a domain: Authen::NTLM puts the domain in 8-bit
    # characters under the Unicode flag (odd length): a malformed message
    $mark = $t->log_mark;
    ($r1, $r2, $t3) = $exchange->(version => 2, domain => 'KCD', path => '/allow/perl-v2d');
    is($r2->{status}, 400, 'Authen::NTLM v2 with a domain: 400 (its domain field is not UTF-16)');
    ok($t->wait_for_log(qr/malformed NTLM AUTHENTICATE/, 3, 'error.log', $mark),
       'Authen::NTLM v2 with a domain: logged as malformed');
}

done_testing();
