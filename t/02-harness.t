#!/usr/bin/perl

# Tests of the test harness itself (t/lib): runs without the module, against
# plain nginx proxying to the recording backend, so that the module's own
# suites can trust KcdTest, KcdNTLM and KcdBackend.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::MD5 qw(md5);
use Digest::SHA qw(sha256_hex sha256 sha384);
use Time::HiRes qw(time);
use IO::Socket::INET;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $t = KcdTest->new;

###########################################################################
# NTLM crypto: MS-NLMP 4.2.1 / 4.2.4 vectors, RFC 1320 MD4, RFC 2202 HMAC

subtest 'crypto primitives' => sub {
    is(unpack('H*', md4('')), '31d6cfe0d16ae931b73c59d7e0c089c0', 'md4 ""');
    is(unpack('H*', md4('abc')), 'a448017aaf21d8525fc10ae87aa6729d', 'md4 abc');
    is(unpack('H*', md4('1234567890' x 8)), 'e33b4ddc9c38f2199c3e7b164fcc0536',
       'md4 80 digits (two blocks)');
    is(unpack('H*', hmac_md5("\x0b" x 16, 'Hi There')),
       '9294727a3638bb1c13f48ef8158bfc9d', 'hmac-md5 RFC 2202 #1');
    is(unpack('H*', hmac_md5('Jefe', 'what do ya want for nothing?')),
       '750c783e6ab0b503eaa86e310a5db738', 'hmac-md5 RFC 2202 #2');
    is(unpack('H*', hmac_md5("\xaa" x 80,
                             'Test Using Larger Than Block-Size Key - Hash Key First')),
       '6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd', 'hmac-md5 RFC 2202 #6 (long key)');
    is(b64(unb64("TlRMTVNTUAABAAAA")), 'TlRMTVNTUAABAAAA', 'base64 round trip');
};

subtest 'MS-NLMP 4.2.4 NTLMv2 vector' => sub {
    my $t2 = make_type2(
        challenge => pack('H*', '0123456789abcdef'),
        flags => 0xE28A8233, target_name => 'Server',
        av => [[MsvAvNbDomainName, utf16le('Domain')],
               [MsvAvNbComputerName, utf16le('Server')]]);
    my $p2 = parse_type2($t2);
    is(unpack('H*', $p2->{challenge}), '0123456789abcdef', 'type2 challenge parsed');
    is($p2->{target_name}, 'Server', 'type2 target name parsed');
    is_deeply([map { $_->[0] } @{$p2->{av}}], [2, 1], 'type2 AV order kept');
    ok(!defined $p2->{timestamp}, 'no timestamp in the vector');

    my ($m, $i) = type3(type2 => $t2, user => 'User', domain => 'Domain',
                        password => 'Password', client_challenge => "\xaa" x 8,
                        timestamp => "\0" x 8, mic => 0, no_cb => 1,
                        workstation => 'COMPUTER');
    is(unpack('H*', $i->{nt_hash}), 'a4f49c406510bdcab6824ee7c30fd852', 'NT hash');
    is(unpack('H*', $i->{ntowfv2}), '0c868a403bfd7a93a3001ef22ef02e3f', 'NTOWFv2');
    is(unpack('H*', $i->{nt_proof}), '68cd0ab851e51c96aabc927bebef6a1c', 'NTProofStr');
    is(unpack('H*', $i->{session_base_key}), '8de40ccadbc14a82f15cb0ad0de95ca3',
       'SessionBaseKey');
    is(unpack('H*', $i->{lm_response}),
       '86c35097ac9cec102554764a57cccc19aaaaaaaaaaaaaaaa', 'LMv2 response');
    is(unpack('H*', nt_hash('Password')), 'a4f49c406510bdcab6824ee7c30fd852',
       'nt_hash()');
    my $p3 = parse_type3($m);
    is($p3->{user}, 'User', 'type3 user');
    is($p3->{domain}, 'Domain', 'type3 domain');
    is($p3->{workstation}, 'COMPUTER', 'type3 workstation');
    is(unpack('H*', $p3->{nt_proof}), '68cd0ab851e51c96aabc927bebef6a1c',
       'type3 carries the NTProofStr');
    ok(!defined $p3->{mic}, 'no MIC when mic => 0');
};

###########################################################################
# Type 1 / Type 3 shape and the negative-test mutators, checked with the
# reference verifier (verify_type3) which is itself checked against
# python3-ntlm-auth below.

my $T2 = make_type2(
    challenge => pack('H*', '1122334455667788'), flags => 0xA2898205,
    target_name => 'KCD',
    av => [[MsvAvNbDomainName, utf16le('KCD')], [MsvAvNbComputerName, utf16le('PROXY')],
           [MsvAvDnsDomainName, utf16le('kcd.test')],
           [MsvAvTimestamp, pack('Q<', 133000000000000000)]]);

subtest 'type1' => sub {
    my $t1 = type1();
    is(length $t1, 40, 'type1 with version is 40 bytes');
    is(substr($t1, 0, 12), "NTLMSSP\0\x01\0\0\0", 'signature and type');
    my $p = parse_type1($t1);
    is(sprintf('%08x', $p->{flags}), 'a2088207', 'default flags');
    ok(!($p->{flags} & NTLMSSP_NEGOTIATE_KEY_EXCH), 'no KEY_EXCH by default');
    my $c = type1(flags => 0x00088207, no_version => 1);
    is(length $c, 32, 'Chromium-shaped type1 is 32 bytes');
    is(unpack('V', substr($c, 12, 4)), 0x00088207, 'flags option');
};

subtest 'type3 shape and verification' => sub {
    my $t1 = type1();
    my $cb = "\x42" x 16;
    my ($m, $i) = type3(type1 => $t1, type2 => $T2, user => 'alice',
                        domain => 'KCD', password => 'Secret1',
                        target_name => 'HTTP/proxy.kcd.test', cb_hash => $cb);
    my $p = parse_type3($m);
    ok(defined $p->{mic}, 'MIC present');
    is(unpack('H*', $p->{mic}), unpack('H*', $i->{mic}), 'MIC at offset 72');
    my @off = map { unpack('V', substr($m, $_ + 4, 4)) } (12, 20, 28, 36, 44, 52);
    ok(!(grep { $_ < 88 } @off), 'every payload offset >= 88');
    is(unpack('H*', $p->{lm}), '00' x 24, 'LM response is Z(24) with a timestamp');
    is_deeply([map { $_->[0] } @{$p->{av}}], [2, 1, 4, 7, 6, 10, 9],
              'AV echo: server pairs, then Flags, ChannelBindings, TargetName');
    is(unpack('V', av_get($p->{av}, MsvAvFlags)), 2, 'MsvAvFlags = MIC present');
    is(av_get($p->{av}, MsvAvChannelBindings), $cb, 'channel bindings');
    is(av_get($p->{av}, MsvAvTimestamp), pack('Q<', 133000000000000000),
       'timestamp echoed from Type 2');
    is(from_utf16le(av_get($p->{av}, MsvAvTargetName)), 'HTTP/proxy.kcd.test',
       'target name');

    my @v = verify_type3(type1 => $t1, type2 => $T2, type3 => $m,
                         password => 'Secret1', cb_hash => $cb, require_cb => 1);
    is($v[1], 'ok', 'valid message verifies');
    is(unpack('H*', $v[2]{session_base_key}), unpack('H*', $i->{session_base_key}),
       'session base key agrees');
    is((verify_type3(type1 => $t1, type2 => $T2, type3 => $m,
                     password => 'wrong'))[1], 'bad proof', 'wrong password refused');
    my $nt = unpack('H*', nt_hash('Secret1'));
    is((verify_type3(type1 => $t1, type2 => $T2, type3 => scalar type3(
            type1 => $t1, type2 => $T2, user => 'alice', domain => 'KCD',
            nt_hash => $nt), password => 'Secret1'))[1], 'ok', 'nt_hash option');

    my %neg = (
        'ntlmv1'        => [{ ntlmv1 => 1 }, 'ntlmv1'],
        'anonymous'     => [{ anonymous => 1, user => '' }, 'anonymous'],
        'corrupt_mic'   => [{ corrupt_mic => 1 }, 'bad mic'],
        'zero_mic'      => [{ zero_mic => 1 }, 'bad mic'],
        'no_mic_flag'   => [{ no_mic_flag => 1 }, 'no mic'],
        'mic => 0'      => [{ mic => 0 }, 'no mic'],
        'drop timestamp'=> [{ drop_av => [MsvAvTimestamp] }, 'av 7 not echoed'],
        'change domain' => [{ change_av => { 2 => utf16le('EVIL') } }, 'av 2 not echoed'],
        'cb mismatch'   => [{ cb_hash => "\x43" x 16 }, 'cb mismatch'],
        'cb none'       => [{}, 'cb missing'],
        'proof domain'  => [{ proof_domain => 'OTHER' }, 'bad proof'],
        'tamper'        => [{ tamper => sub { my $x = shift; substr($x, 61, 1) ^= "\x01"; $x } },
                            'bad mic'],
    );
    for my $k (sort keys %neg) {
        my ($opt, $why) = @{$neg{$k}};
        my $b = type3(type1 => $t1, type2 => $T2, user => 'alice', domain => 'KCD',
                      password => 'Secret1', %$opt);
        my @r = verify_type3(type1 => $t1, type2 => $T2, type3 => $b,
                             password => 'Secret1', cb_hash => $cb, require_cb => 1);
        is($r[1], $why, "mutator $k is refused: $why");
    }
    my $v1 = parse_type3(scalar type3(type2 => $T2, user => 'a', password => 'p',
                                      ntlmv1 => 1));
    is(length $v1->{nt}, 24, 'ntlmv1 => 24-byte NT response');
    my $an = parse_type3(scalar type3(type2 => $T2, anonymous => 1));
    ok($an->{user} eq '' && $an->{nt} eq '' && $an->{lm} eq "\0"
       && ($an->{flags} & NTLMSSP_ANONYMOUS), 'anonymous shape');
    my $oem = parse_type3(scalar type3(type2 => $T2, user => 'bob', password => 'p',
                                       oem => 1));
    ok(!($oem->{flags} & NTLMSSP_NEGOTIATE_UNICODE) && $oem->{user} eq 'bob',
       'oem strings');
};

# An independent implementation (Debian python3-ntlm-auth) must produce
# Type 3 messages - MIC and channel bindings included - that our verifier
# accepts: this ties the MIC and CB formulas to a second implementation.
subtest 'cross-check with python3-ntlm-auth' => sub {
    my $py = '/usr/bin/python3';
    my $script = <<'PY';
import sys, base64
from ntlm_auth.ntlm import NtlmContext
from ntlm_auth.gss_channel_bindings import GssChannelBindingsStruct
cbt = GssChannelBindingsStruct()
cbt[cbt.APPLICATION_DATA] = bytes.fromhex(sys.argv[3])
ctx = NtlmContext('Carol', '00000000000000000000000000000000:' + sys.argv[2],
                  'KCD', 'PYWS', cbt_data=cbt)
t1 = ctx.step()
t3 = ctx.step(base64.b64decode(sys.argv[1]))
print(base64.b64encode(t1).decode())
print(base64.b64encode(t3).decode())
PY
    plan skip_all => 'python3-ntlm-auth not installed'
        if system($py, '-c', 'import ntlm_auth', '2>/dev/null') != 0;
    my $app = 'tls-server-end-point:' . sha256('a certificate');
    my $nth = unpack('H*', nt_hash('Pa55 w0rd'));
    open(my $ph, '-|', $py, '-c', $script, b64($T2), $nth, unpack('H*', $app))
        or die "python: $!";
    my @out = <$ph>;
    close $ph;
    chomp @out;
    is(scalar @out, 2, 'python produced Type 1 and Type 3') or return;
    my ($t1, $t3) = map { unb64($_) } @out;
    my $cb = md5(("\0" x 16) . pack('V', length $app) . $app);
    my @r = verify_type3(type1 => $t1, type2 => $T2, type3 => $t3,
                         password => 'Pa55 w0rd', cb_hash => $cb, require_cb => 1);
    is($r[1], 'ok', 'python Type 3 (MIC + CB) verifies');
    ok(defined parse_type3($t3)->{mic}, 'python sent a MIC');
    is((verify_type3(type1 => $t1 . 'x', type2 => $T2, type3 => $t3,
                     password => 'Pa55 w0rd'))[1], 'bad mic',
       'MIC covers the Type 1');
    is((verify_type3(type1 => $t1, type2 => $T2, type3 => $t3,
                     password => 'Pa55 w0rd', cb_hash => "\1" x 16))[1],
       'cb mismatch', 'CB compared');
};

###########################################################################
# Certificates and tls-server-end-point

my %cert;
subtest 'certificates and channel-binding hash' => sub {
    for my $sig (qw(sha256 sha1 sha384)) {
        my $c = $cert{$sig} = $t->make_cert("cert-$sig", cn => 'proxy.kcd.test',
                                            sig => $sig);
        ok(-s $c->{cert} && -s $c->{key}, "$sig cert and key written");
        is(cert_sig_hash($c->{der}), $sig, "$sig: signature hash detected");
        my $alg = $sig eq 'sha1' ? 'sha256' : $sig;
        my ($rc, $fp) = $t->_run_capture('/usr/bin/openssl', 'x509', '-in',
                                         $c->{cert}, '-noout', '-fingerprint', "-$alg");
        $fp =~ s/.*=//s;
        $fp =~ s/[:\s]//g;
        is(unpack('H*', tls_server_end_point($c->{der})), lc $fp,
           "$sig: end-point hash is the openssl $alg fingerprint");
        my $app = 'tls-server-end-point:' . pack('H*', $fp);
        is(unpack('H*', cb_hash_from_cert_der($c->{der})),
           unpack('H*', md5(("\0" x 16) . pack('V', length $app) . $app)),
           "$sig: MsvAvChannelBindings = MD5(Z16 || len || app data)");
    }
    is(length tls_server_end_point($cert{sha384}{der}), 48, 'sha384 keeps 48 bytes');
    isnt(unpack('H*', cb_hash_from_cert_der($cert{sha256}{der})),
         unpack('H*', cb_hash_from_cert_der($cert{sha1}{der})),
         'different certs, different bindings');
};

###########################################################################
# nginx (no module) + recording backend

my $backend = KcdBackend->start(port => port(9000), dir => $t->testdir);

$t->write_config(<<'EOF', module => 0);
    upstream backend {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name localhost;

        ssl_certificate %%TESTDIR%%/cert-sha256.crt;
        ssl_certificate_key %%TESTDIR%%/cert-sha256.key;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location / {
            proxy_pass http://backend;
        }

        location /stream/ {
            proxy_request_buffering off;
            proxy_pass http://backend;
        }

        location /subst/ {
            sub_filter_types *;
            sub_filter 'ok' 'OK';
            proxy_pass http://backend;
        }

        location = /multi {
            add_header X-Multi one;
            add_header X-Multi two;
            add_header x-multi three;
            return 200 "multi\n";
        }

        location = /bye {
            keepalive_timeout 0;
            return 200 "bye\n";
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8444%% ssl;
        server_name sha1.kcd.test;
        ssl_certificate %%TESTDIR%%/cert-sha1.crt;
        ssl_certificate_key %%TESTDIR%%/cert-sha1.key;
        location / {
            return 200 "sha1 server\n";
        }
    }
EOF

unlike($t->read_file('nginx.conf'), qr/load_module/, 'module => 0: no load_module');
like($t->read_file('nginx.conf'), qr/proxy_pass http:\/\/backend/, 'body inside http');
my ($rc, $out) = $t->nginx_test;
is($rc, 0, 'nginx -t passes') or diag($out);

$t->run;
ok($t->pid && KcdTest::_alive($t->pid), 'nginx master running');
my @workers = $t->worker_pids;
is(scalar @workers, 1, 'one worker process');

subtest 'response parsing' => sub {
    my $c = KcdTest::Conn->new(port => port(8080));
    my $r = $c->get('/multi');
    is($r->{status}, 200, 'status');
    is($r->{body}, "multi\n", 'body by Content-Length');
    is_deeply([$r->headers_all('X-MULTI')], [qw(one two three)],
              'repeated headers kept in order, case-insensitive');
    is($r->header('x-multi'), 'one', 'header() gives the first value');
    ok(!$r->{closed} && !$c->closed, 'keep-alive connection stays open');

    my $h = $c->request({ method => 'HEAD', path => '/multi' });
    is($h->{status}, 200, 'HEAD status');
    is($h->{body}, '', 'HEAD: no body read');
    is($c->get('/multi')->{body}, "multi\n", 'next request after HEAD in sync');

    my $b = $c->get('/bye');
    is($b->{body}, "bye\n", 'body');
    ok($b->{closed}, 'Connection: close response: closed seen');
    ok($c->closed, '$c->closed');

    my $c2 = KcdTest::Conn->new(port => port(8080));
    my $raw = $c2->request("GET /multi HTTP/1.0\r\nHost: x\r\n\r\n");
    is($raw->{status}, 200, 'raw request text');
    ok($raw->{closed}, 'HTTP/1.0 without keep-alive: closed');

    my $c3 = KcdTest::Conn->new(port => port(8080));
    my $s = $c3->get('/subst/x');
    ok($s->{chunked}, 'sub_filter response is chunked');
    is($s->{body}, 'OK GET /subst/x len=0', 'chunked body decoded');
    is($c3->get('/subst/y')->{body}, 'OK GET /subst/y len=0',
       'in sync after a chunked response');
};

subtest 'backend records bodies exactly' => sub {
    $backend->clear;
    my $c = KcdTest::Conn->new(port => port(8080));
    my $body = join('', map { chr(($_ * 7) % 256) } 0 .. 9999);
    my $r = $c->post('/upload?x=1', body => $body,
                     headers => ['X-Test' => 'a', 'X-Test' => 'b']);
    is($r->{status}, 200, 'POST proxied');
    is($r->{body}, 'ok POST /upload?x=1 len=10000', 'backend answer');
    is($r->header('X-Seen-Authorization'), 'none', 'no Authorization seen');

    my $small = "h\x{e9}llo\0\xff\r\n";
    $c->post('/small', body => $small);
    $c->post('/chunked', chunked => ['abc', 'de' x 3000, "\0\xff"]);
    # nginx sends a chunked body upstream only when it is still reading
    # it from the client: send the last chunk late
    my $c2 = KcdTest::Conn->new(port => port(8080));
    my $req = $c2->build_request({ method => 'POST', path => '/stream/chunked',
                                   chunked => ['0123456789' x 500, 'end'] });
    my $cut = index($req, "3\r\nend");
    $c2->send(substr($req, 0, $cut));
    select(undef, undef, undef, 0.3);
    $c2->send(substr($req, $cut));
    is($c2->read_response->{body}, 'ok POST /stream/chunked len=5003',
       'unbuffered chunked request');
    $c2->post('/empty', body => '');

    my @q = $backend->requests;
    is(scalar @q, 5, 'five requests recorded');
    is($q[0]{method}, 'POST', 'method');
    is($q[0]{uri}, '/upload?x=1', 'uri');
    is($q[0]{body_length}, 10000, 'body length');
    is($q[0]{body_sha256}, sha256_hex($body), 'body sha256');
    ok(!exists $q[0]{body}, 'no body kept for >= 4 KiB');
    is_deeply([$q[0]->headers_all('x-test')], ['a', 'b'], 'repeated request headers');
    is($q[1]{body}, $small, 'small binary body kept byte-exact');
    is($q[2]{body_length}, 6005, 'chunked request body length');
    is($q[2]{body_sha256}, sha256_hex('abc' . ('de' x 3000) . "\0\xff"),
       'chunked request body sha256');
    ok(defined $q[3]->header('Transfer-Encoding'),
       'unbuffered upstream request is chunked') or diag explain $q[3]{headers};
    is($q[3]{body_sha256}, sha256_hex(('0123456789' x 500) . 'end'),
       'backend decodes chunked bodies');
    is($q[4]{body_length}, 0, 'empty body');
    is($q[4]->header('Content-Length'), '0', 'Content-Length: 0 forwarded');
};

subtest 'keep-alive on both sides' => sub {
    my $c = KcdTest::Conn->new(port => port(8080));
    my $r1 = $c->get('/a');
    my $r2 = $c->get('/b');
    ok($r1->header('X-Backend-Conn'), 'backend connection id');
    is($r2->header('X-Backend-Conn'), $r1->header('X-Backend-Conn'),
       'same upstream connection reused');
    cmp_ok($r2->header('X-Backend-Req'), '>', $r1->header('X-Backend-Req'),
           'request counter grows on that connection');

    # the backend sees distinct connections when they are distinct
    my $d1 = KcdTest::Conn->new(port => port(9000));
    my $d2 = KcdTest::Conn->new(port => port(9000));
    my ($x1, $x2) = ($d1->get('/x'), $d2->get('/y'));
    isnt($x1->header('X-Backend-Conn'), $x2->header('X-Backend-Conn'),
         'two concurrent direct connections have distinct ids');
    is($d1->get('/z')->header('X-Backend-Req'), 2, 'direct keep-alive');
    is($d1->local_port, $x1->header('X-Backend-Conn'), 'conn id is the peer port');
};

subtest 'backend special paths' => sub {
    my $c = KcdTest::Conn->new(port => port(8080));
    my $r = $c->get('/401neg', headers => [Authorization => 'Basic eDp5']);
    is($r->{status}, 401, '/401neg status');
    is_deeply([$r->headers_all('WWW-Authenticate')],
              ['Negotiate', 'NTLM', 'Basic realm="x"'],
              'three challenges, in order, through nginx');
    is($r->header('X-Seen-Authorization'), 'Basic eDp5',
       'backend reports the Authorization it saw');
    my $m = $c->get('/mutual');
    is($m->header('WWW-Authenticate'), 'Negotiate ' . KcdBackend::mutual_token(),
       '/mutual token');
    is($m->header('Persistent-Auth'), 'true', '/mutual Persistent-Auth');
    is($c->get('/status/503')->{status}, 503, '/status/503');
    is($c->get('/status/204')->{status}, 204, '/status/204');
    is($c->get('/after')->{body}, 'ok GET /after len=0', 'in sync after 204');
};

subtest 'TLS listener' => sub {
    my $c = KcdTest::Conn->new(port => port(8443), ssl => 1, sni => 'localhost');
    ok($c->is_tls, 'is_tls');
    is(unpack('H*', $c->tls_cert_der), unpack('H*', $cert{sha256}{der}),
       'tls_cert_der is the configured certificate');
    my $r1 = $c->post('/tls', body => 'x' x 100);
    is($r1->{body}, 'ok POST /tls len=100', 'request over TLS');
    my $r2 = $c->get('/tls2');
    is($r2->header('X-Backend-Conn'), $r1->header('X-Backend-Conn'),
       'keep-alive over TLS reuses the upstream connection');

    my $c1 = KcdTest::Conn->new(port => port(8444), ssl => 1, sni => 'sha1.kcd.test');
    is($c1->get('/')->{body}, "sha1 server\n", 'second TLS server');
    is(unpack('H*', cb_hash_from_cert_der($c1->tls_cert_der)),
       unpack('H*', cb_hash_from_cert_der($cert{sha1}{der})),
       'bindings from the live sha1 certificate');
};

subtest 'ntlm_login against the reference NTLM backend' => sub {
    my $c = KcdTest::Conn->new(port => port(8080));
    my ($r1, $r2) = ntlm_login($c, '/ntlm/x', user => 'User', domain => 'Dom',
                               password => 'Password', target_name => 'HTTP/localhost');
    is($r1->{status}, 401, 'Type 2 answer is 401');
    ok($r1->{ntlm_type2} && length $r1->{ntlm_type2}{challenge} == 8,
       'Type 2 parsed');
    is($r2->{status}, 200, 'Type 3 accepted');
    is($r2->header('X-NTLM-Result'), 'ok Dom\\User', 'verified by the backend');
    like($r2->header('X-Seen-Authorization'), qr/^NTLM TlRMTVNTUAAD/,
         'Type 3 on the wire');

    my ($b1, $b2) = ntlm_login($c, '/ntlm/y', user => 'User', password => 'nope');
    is($b2->{status}, 401, 'wrong password refused');
    is($b2->header('X-NTLM-Result'), 'bad proof', 'reason');

    my ($p1, $p2) = ntlm_login($c, '/ntlm/post', method => 'POST',
                               body => 'payload', scheme => 'Negotiate',
                               user => 'User', password => 'Password',
                               corrupt_mic => 1);
    is($p2->header('X-NTLM-Result'), 'bad mic', 'mutators pass through ntlm_login');
    my @q = grep { $_->{uri} eq '/ntlm/post' } $backend->requests;
    is_deeply([map { $_->{body_length} } @q], [0, 7],
              'Type 1 leg sends Content-Length: 0, Type 3 leg the body');
    like($q[0]->header('Authorization'), qr/^Negotiate TlRMTVNTUAAB/,
         'scheme => Negotiate');

    my $s = KcdTest::Conn->new(port => port(8443), ssl => 1, sni => 'localhost');
    my ($s1, $s2) = ntlm_login($s, '/ntlm/tls', user => 'User',
                               password => 'Password');
    is($s2->{status}, 200, 'handshake over TLS');
    is(unpack('H*', av_get($s2->{ntlm}{av}, MsvAvChannelBindings)),
       unpack('H*', cb_hash_from_cert_der($cert{sha256}{der})),
       "cb => 'auto' binds to the server certificate");

    my ($n1, $n2) = ntlm_login($c, '/multi', user => 'u', password => 'p');
    ok(!defined $n2 && $n1->{ntlm_error}, 'no Type 2: undef and ntlm_error');
};

###########################################################################
# Harness behaviour: timeouts, log waits, config errors, stop

subtest 'timeouts and logs' => sub {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => port(9999),
                                  Listen => 5, ReuseAddr => 1) or die $!;
    my $c = KcdTest::Conn->new(port => port(9999), timeout => 1);
    my $start = time;
    my $ok = eval { $c->get('/'); 1 };
    ok(!$ok, 'silent server: request dies');
    like($@, qr/timeout/, 'with a timeout message');
    cmp_ok(time - $start, '<', 3, 'within the timeout');
    close $l;

    my $mark = $t->log_mark('access.log');
    KcdTest::Conn->new(port => port(8080))->get('/logged-request');
    ok($t->wait_for_log(qr{GET /logged-request}, 5, 'access.log'),
       'wait_for_log finds an access log line');
    ok(!defined $t->wait_for_log(qr{GET /multi}, 0.2, 'access.log', $mark),
       'wait_for_log with a mark skips older lines');
    ok(defined $t->wait_for_log(qr{GET /multi}, 0.2, 'access.log'),
       'the older line is there without a mark');
    $start = time;
    ok(!defined $t->wait_for_log(qr/never-written-xyz/, 0.3), 'wait_for_log gives up');
    cmp_ok(time - $start, '<', 2, 'promptly');
};

subtest 'nginx -t on a bad config' => sub {
    my $bad = KcdTest->new;
    $bad->write_config(<<'EOF', module => 0);
    server {
        listen 127.0.0.1:%%PORT_8181%%;
        location / { no_such_directive on; }
    }
EOF
    my ($rc, $out) = $bad->nginx_test;
    isnt($rc, 0, 'nginx -t fails');
    like($out, qr/unknown directive "no_such_directive" in \S+nginx\.conf:\d+/,
         'message with file:line');
    ok(!eval { $bad->run; 1 }, 'run dies');
    like($@, qr/failed to start/, 'run says why');
};

subtest 'load_module line' => sub {
    my $stock = '/usr/lib/nginx/modules/ngx_stream_module.so';
    plan skip_all => "no $stock" unless -f $stock;
    local $ENV{KCD_MODULE} = $stock;
    my $m = KcdTest->new;
    ok($m->has_module, 'has_module follows KCD_MODULE');
    $m->write_config(<<'EOF', main => 'stream { }');
    server { listen 127.0.0.1:%%PORT_8182%%; }
EOF
    like($m->read_file('nginx.conf'), qr/\Aload_module \Q$stock\E;$/m,
         'load_module %%MODULE%% emitted first');
    my ($rc, $out) = $m->nginx_test;
    is($rc, 0, 'nginx -t with the loaded module and main-context text')
        or diag $out;
    $m->write_config("server { listen 127.0.0.1:%%PORT_8182%%; }", module => 0);
    unlike($m->read_file('nginx.conf'), qr/load_module/, 'module => 0 wins');
};

subtest 'stop' => sub {
    my $pid = $t->pid;
    my @w = $t->worker_pids;
    $t->stop;
    ok(!KcdTest::_alive($pid), 'master gone');
    ok(!(grep { KcdTest::_alive($_) } @w), 'workers gone');
    ok(!eval { KcdTest::Conn->new(port => port(8080), timeout => 1); 1 },
       'port closed');
    my $bpid = $backend->pid;
    $backend->stop;
    ok(!kill(0, $bpid), 'backend gone');
};

done_testing();
