#!/usr/bin/perl

# B2. NTLM handshake: Type 1 -> 401 + Type 2 (flags, target info, fresh
# challenge, timestamp); Type 3 verified as NTLMv2 on the same connection
# (NTLMv1, anonymous, bad MIC, altered target info refused; one use of a
# challenge; channel bindings per kcd_channel_binding); failures give the
# bare challenges and an info log line naming user, domain, reason, client.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);

my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
$t->write_file('users',
    "# test accounts\n"
    . "KCD\\alice:" . unpack('H*', nt_hash('Secret1')) . "\n"
    . "bob:" . unpack('H*', nt_hash('BobPass2')) . "\n");

$t->write_config(<<'EOF');
    upstream backend {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name localhost;

        ssl_certificate %%TESTDIR%%/proxy.crt;
        ssl_certificate_key %%TESTDIR%%/proxy.key;

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_ntlm_computer PROXY;
        kcd_ntlm_dns_domain kcd.test;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        add_header X-Kcd-User $kcd_user always;

        location / {
            kcd_auth ntlm;
            proxy_pass http://backend;
        }

        location /neg/ {
            kcd_auth negotiate ntlm;
            proxy_pass http://backend;
        }

        location /cb-require/ {
            kcd_auth ntlm;
            kcd_channel_binding require;
            proxy_pass http://backend;
        }

        location /cb-off/ {
            kcd_auth ntlm;
            kcd_channel_binding off;
            proxy_pass http://backend;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        server_name nodns;

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain OTHERDOM;
        kcd_ntlm_computer GATE2;

        location / {
            kcd_auth ntlm;
            proxy_pass http://backend;
        }
    }
EOF
$t->run;

# the worker is forked after the listen sockets answer: wait for it
my @w0;
for (1 .. 100) { last if @w0 = $t->worker_pids; select(undef, undef, undef, 0.05) }
die "no nginx worker process" unless @w0;

sub plain { return KcdTest::Conn->new(port => port(shift || 8080)) }
sub tls {
    return KcdTest::Conn->new(port => port(8443), ssl => 1, sni => 'localhost');
}

sub type2_of {
    my ($r, $scheme) = @_;
    $scheme ||= 'NTLM';
    for my $v ($r->headers_all('WWW-Authenticate')) {
        return parse_type2(unb64($1)) if $v =~ /^\Q$scheme\E ([A-Za-z0-9+\/=]+)$/;
    }
    return undef;
}

sub neg1 {
    my ($c, $path, %o) = @_;
    my $t1 = type1(%{$o{type1} || {}});
    my $r = $c->get($path, headers => [Authorization => ($o{scheme} || 'NTLM')
                                       . ' ' . b64($t1)]);
    return ($r, $t1, type2_of($r, $o{scheme}));
}

sub send3 {
    my ($c, $path, $t3, %o) = @_;
    return $c->get($path, headers => [Authorization => ($o{scheme} || 'NTLM')
                                      . ' ' . b64($t3)]);
}

# one handshake; returns the final response; %o goes to ntlm_login
sub login {
    my ($c, $path, %o) = @_;
    my ($r1, $r2) = ntlm_login($c, $path, user => 'alice', domain => 'KCD',
                               password => 'Secret1', workstation => 'WS', %o);
    return $r2 || $r1;
}

sub forwarded {
    my ($uri) = @_;
    return scalar grep { $_->{uri} eq $uri } $b->requests;
}

# the response of a refused Type 3: 401, bare challenges, not forwarded,
# log line with the reason
sub refused {
    my ($name, $r, $uri, $reason, $mark) = @_;
    subtest "refused: $name" => sub {
        is($r->{status}, 401, 'status 401');
        is_deeply([$r->headers_all('WWW-Authenticate')], ['NTLM'],
                  'bare WWW-Authenticate: NTLM');
        is(forwarded($uri), 0, 'nothing forwarded');
        ok(!defined $r->header('X-Kcd-User') || $r->header('X-Kcd-User') eq '',
           'no identity');
        if (defined $reason) {
            ok(my $l = $t->wait_for_log($reason, 2, 'error.log', $mark),
               "log: $reason");
            like($l || '', qr/\[info\].*client: 127\.0\.0\.1/,
                 'info level, client address') if defined $l;
        }
    };
}

my $FT_EPOCH = 11644473600;

###########################################################################

subtest 'Type 2' => sub {
    my $c = plain();
    my ($r, $t1, $t2) = neg1($c, '/t2');
    is($r->{status}, 401, 'Type 1 -> 401');
    is(scalar($r->headers_all('WWW-Authenticate')), 1,
       'exactly one WWW-Authenticate');
    ok($t2, 'WWW-Authenticate: NTLM <Type 2>') or return;
    my $f = $t2->{flags};
    ok($f & NTLMSSP_NEGOTIATE_NTLM, 'flag NTLM');
    ok($f & NTLMSSP_NEGOTIATE_UNICODE, 'flag UNICODE');
    ok($f & NTLMSSP_NEGOTIATE_TARGET_INFO, 'flag TARGET_INFO');
    ok($f & NTLMSSP_REQUEST_TARGET, 'flag REQUEST_TARGET');
    ok($f & NTLMSSP_TARGET_TYPE_DOMAIN, 'flag TARGET_TYPE_DOMAIN');
    for my $n (qw(KEY_EXCH SIGN SEAL LM_KEY DATAGRAM)) {
        my $v = KcdNTLM->can("NTLMSSP_NEGOTIATE_$n")->();
        ok(!($f & $v), "no $n");
    }
    ok(!($f & NTLMSSP_ANONYMOUS), 'no ANONYMOUS');
    is($t2->{target_name}, 'KCD', 'target name is the NetBIOS domain');
    is(length $t2->{challenge}, 8, '8-byte challenge');
    isnt(unpack('H*', $t2->{challenge}), '0000000000000000', 'challenge not zero');

    is(from_utf16le(av_get($t2->{av}, MsvAvNbDomainName) // ''), 'KCD',
       'NbDomainName = kcd_ntlm_domain');
    is(from_utf16le(av_get($t2->{av}, MsvAvNbComputerName) // ''), 'PROXY',
       'NbComputerName = kcd_ntlm_computer');
    is(from_utf16le(av_get($t2->{av}, MsvAvDnsDomainName) // ''), 'kcd.test',
       'DnsDomainName = kcd_ntlm_dns_domain');
    ok(defined $t2->{timestamp} && length $t2->{timestamp} == 8, 'timestamp present');
    my $ts = unpack('Q<', $t2->{timestamp} // "\0" x 8) / 1e7 - $FT_EPOCH;
    cmp_ok(abs($ts - time), '<', 120, 'timestamp close to now');

    # a client asking for session security gets SIGN (MS-NLMP lets a
    # server grant it; SPNEGO's mechListMIC and gss-ntlmssp need it), and
    # nothing that would encrypt
    my ($rs, undef, $t2s) = neg1($c, '/t2',
        type1 => { flags => DEFAULT_TYPE1_FLAGS | NTLMSSP_NEGOTIATE_SIGN
                   | NTLMSSP_NEGOTIATE_SEAL | NTLMSSP_NEGOTIATE_KEY_EXCH
                   | NTLMSSP_NEGOTIATE_LM_KEY | NTLMSSP_NEGOTIATE_DATAGRAM });
    ok($t2s, 'Type 2 for a client asking SIGN|SEAL|KEY_EXCH|LM_KEY|DATAGRAM');
    ok($t2s && ($t2s->{flags} & NTLMSSP_NEGOTIATE_SIGN), 'SIGN granted');
    ok($t2s && !($t2s->{flags} & (NTLMSSP_NEGOTIATE_SEAL
        | NTLMSSP_NEGOTIATE_KEY_EXCH | NTLMSSP_NEGOTIATE_LM_KEY
        | NTLMSSP_NEGOTIATE_DATAGRAM)), 'SEAL, KEY_EXCH, LM_KEY, DATAGRAM not');

    my $o = plain(8081);
    my (undef, undef, $t2o) = neg1($o, '/t2');
    ok($t2o, 'Type 2 from the second server') or return;
    is(from_utf16le(av_get($t2o->{av}, MsvAvNbDomainName) // ''), 'OTHERDOM',
       'per-server NbDomainName');
    is(from_utf16le(av_get($t2o->{av}, MsvAvNbComputerName) // ''), 'GATE2',
       'per-server NbComputerName');
    ok(!defined av_get($t2o->{av}, MsvAvDnsDomainName),
       'no DnsDomainName without kcd_ntlm_dns_domain');
    is(forwarded('/t2'), 0, 'Type 1 requests never forwarded');
};

subtest 'challenges are fresh' => sub {
    my %seen;
    my $c = plain();
    # 150: past two refills of the worker's pool of 64 challenges
    for my $i (1 .. 150) {
        $c = plain() if $i % 10 == 1;    # ten handshakes per connection
        my (undef, undef, $t2) = neg1($c, '/fresh');
        $seen{unpack('H*', $t2->{challenge})}++ if $t2;
    }
    is(scalar keys %seen, 150, '150 handshakes, 150 distinct challenges');
    ok(!grep({ $_ eq '00' x 8 } keys %seen), 'no all-zero challenge');
};

subtest 'valid Type 3' => sub {
    $b->clear;
    my $c = plain();
    my ($r1, $r) = ntlm_login($c, '/ok', user => 'alice', domain => 'KCD',
                              password => 'Secret1', workstation => 'WS');
    is($r1->{status}, 401, 'Type 1 leg: 401');
    is($r->{status}, 200, 'Type 3 leg: 200');
    is($r->header('X-Kcd-User'), 'KCD\\alice', '$kcd_user');
    my @q = $b->requests;
    is(scalar @q, 1, 'backend got exactly the Type 3 request');
    is($q[0]{uri}, '/ok', 'that request');
    ok(!grep({ lc $_->[0] eq 'authorization' } @{$q[0]{headers} || []}),
       'backend request has no Authorization header at all')
        or diag explain $q[0]{headers};
    is($r->header('X-Seen-Authorization'), 'none', 'backend says: none');
};

subtest 'wrong password, unknown user' => sub {
    my $mark = $t->log_mark;
    my $r = login(plain(), '/badpw', password => 'nope');
    refused('wrong password', $r, '/badpw',
            qr/kcd: NTLM logon failed for user "alice" domain "KCD" workstation "WS": wrong password/,
            $mark);

    $mark = $t->log_mark;
    $r = login(plain(), '/unknown', user => 'mallory', password => 'x');
    refused('unknown user', $r, '/unknown',
            qr/kcd: NTLM logon failed for user "mallory" domain "KCD".*unknown user/,
            $mark);

    $mark = $t->log_mark;
    $r = login(plain(), '/otherdom', domain => 'OTHER');
    refused('KCD\\alice line does not match domain OTHER', $r, '/otherdom',
            qr/user "alice" domain "OTHER"/, $mark);

    $r = login(plain(), '/proofdom', proof_domain => 'OTHER');
    refused('proof computed for another domain', $r, '/proofdom', undef);
};

subtest 'refused message kinds' => sub {
    my $mark = $t->log_mark;
    refused('NTLMv1', login(plain(), '/v1', ntlmv1 => 1), '/v1',
            qr/user "alice".*NTLMv1/, $mark);

    $mark = $t->log_mark;
    refused('anonymous', login(plain(), '/anon', anonymous => 1, user => ''),
            '/anon', qr/kcd: NTLM logon failed.*anonymous/, $mark);

    $mark = $t->log_mark;
    refused('corrupt MIC', login(plain(), '/mic', corrupt_mic => 1), '/mic',
            qr/user "alice".*MIC/, $mark);
    refused('zero MIC', login(plain(), '/zmic', zero_mic => 1), '/zmic', undef);

    $mark = $t->log_mark;
    refused('timestamp AV dropped',
            login(plain(), '/dropts', drop_av => [MsvAvTimestamp]), '/dropts',
            qr/user "alice".*(target info|timestamp)/, $mark);
    refused('NbComputerName dropped',
            login(plain(), '/dropcomp', drop_av => [MsvAvNbComputerName]),
            '/dropcomp', undef);
    refused('NbComputerName changed',
            login(plain(), '/chcomp',
                  change_av => { MsvAvNbComputerName() => utf16le('EVIL') }),
            '/chcomp', undef);
    refused('NbDomainName changed',
            login(plain(), '/chdom',
                  change_av => { MsvAvNbDomainName() => utf16le('EVIL') }),
            '/chdom', undef);
    refused('timestamp AV changed',
            login(plain(), '/chts',
                  change_av => { MsvAvTimestamp() => pack('Q<', 130000000000000000) }),
            '/chts', undef);
    # the blob's own timestamp (after NTProofStr was computed)
    refused('timestamp in the blob tampered',
            login(plain(), '/blobts', type3_hook => sub {
                my $m = shift;
                my ($len, undef, $off) = unpack('vvV', substr($m, 20, 8));
                substr($m, $off + 16 + 8, 1) ^= "\x01";
                return $m;
            }), '/blobts', undef);
};

subtest 'MIC optional only when not announced' => sub {
    $b->clear;
    my $r = login(plain(), '/nomicflag', no_mic_flag => 1);
    is($r->{status}, 200, 'MIC field present, not announced, valid proof: 200');
    $r = login(plain(), '/nomic', mic => 0);
    is($r->{status}, 200, 'no MIC at all (curl-like): 200');
    is(forwarded('/nomic'), 1, 'forwarded');
};

subtest 'one-use challenge, replay' => sub {
    $b->clear;
    my $c = plain();
    my ($r1, $r) = ntlm_login($c, '/replay', user => 'alice', domain => 'KCD',
                              password => 'Secret1');
    is($r->{status}, 200, 'first use: 200');
    my $t3 = $r->{ntlm}{type3};

    my $mark = $t->log_mark;
    my $x = send3($c, '/replay2', $t3);
    is($x->{status}, 401, 'same Type 3 again on the connection: 401');
    ok($t->wait_for_log(qr/kcd: NTLM AUTHENTICATE without a CHALLENGE/, 2,
                        'error.log', $mark), 'logged');
    is($c->get('/replay2b')->{status}, 401,
       'the replay dropped the identity (fail closed)');

    my (undef, undef, $t2) = neg1($c, '/replay3');
    ok($t2, 'new Type 2');
    is(send3($c, '/replay3', $t3)->{status}, 401,
       'old Type 3 after a new Type 2: 401');

    # a refused Type 3 consumes the challenge too
    my $d = plain();
    my ($dt1) = type1();
    my $dr = $d->get('/once', headers => [Authorization => 'NTLM ' . b64($dt1)]);
    my $dt2 = type2_of($dr);
    my $bad = type3(type1 => $dt1, type2 => $dt2, user => 'alice',
                    domain => 'KCD', password => 'wrong');
    my $good = type3(type1 => $dt1, type2 => $dt2, user => 'alice',
                     domain => 'KCD', password => 'Secret1');
    is(send3($d, '/once', $bad)->{status}, 401, 'bad Type 3: 401');
    is(send3($d, '/once', $good)->{status}, 401,
       'good Type 3 for the consumed challenge: 401');

    # and a good one cannot be used twice on another connection
    is(send3(plain(), '/replay4', $t3)->{status}, 401,
       'replay on a new connection: 401');
    is(forwarded('/replay2') + forwarded('/replay3') + forwarded('/once')
       + forwarded('/replay4') + forwarded('/replay2b'), 0,
       'no replayed request forwarded');
};

subtest 'Type 3 on another connection' => sub {
    $b->clear;
    my $a = plain();
    my ($t1) = type1();
    my $r = $a->get('/xconn', headers => [Authorization => 'NTLM ' . b64($t1)]);
    my $t2 = type2_of($r);
    my $t3 = type3(type1 => $t1, type2 => $t2, user => 'alice', domain => 'KCD',
                   password => 'Secret1');
    my $mark = $t->log_mark;
    my $other = plain();
    is(send3($other, '/xconn', $t3)->{status}, 401,
       'Type 3 on a different connection: 401');
    ok($t->wait_for_log(qr/kcd: NTLM AUTHENTICATE without a CHALLENGE on this connection/,
                        2, 'error.log', $mark), 'logged');
    is(forwarded('/xconn'), 0, 'not forwarded');
    is(send3($a, '/xconn', $t3)->{status}, 200,
       'the same Type 3 on its own connection: 200');
};

subtest 'domains and names' => sub {
    my $r = login(plain(), '/nodom', domain => '');
    is($r->{status}, 200, 'no domain sent: matched against KCD\\alice');
    is($r->header('X-Kcd-User'), 'KCD\\alice', '$kcd_user gets our domain');

    $r = login(plain(), '/bob1', user => 'bob', domain => 'ANYDOM',
               password => 'BobPass2');
    is($r->{status}, 200, 'line without domain: any domain (ANYDOM)');
    is($r->header('X-Kcd-User'), 'KCD\\bob',
       '$kcd_user KCD\\bob: a line without domain logs on in our domain, not the client\'s');
    $r = login(plain(), '/bob2', user => 'bob', domain => 'KCD',
               password => 'BobPass2');
    is($r->{status}, 200, 'line without domain: KCD too');
    $r = login(plain(), '/bob3', user => 'bob', domain => '', password => 'BobPass2');
    is($r->{status}, 200, 'line without domain: no domain sent');
    $r = login(plain(), '/bob4', user => 'bob', domain => 'KCD', password => 'Secret1');
    is($r->{status}, 401, 'bob with alice\'s password: 401');

    $r = login(plain(), '/case', user => 'ALICE', domain => 'kcd');
    is($r->{status}, 200, 'user and domain compare case-insensitively');
    $r = login(plain(), '/case2', user => 'aLiCe', domain => 'Kcd');
    is($r->{status}, 200, 'mixed case');
};

subtest 'channel binding' => sub {
    my $wrong = "\x42" x 16;
    my $s = sub { return login(tls(), @_) };

    is($s->('/cb-require/a', cb => 'auto')->{status}, 200,
       'require + correct binding: 200');
    my $mark = $t->log_mark;
    refused('require + zero binding', $s->('/cb-require/z', cb => 'none'),
            '/cb-require/z', qr/user "alice".*channel binding/, $mark);
    refused('require + no binding', $s->('/cb-require/o', cb => 'omit'),
            '/cb-require/o', undef);
    refused('require + wrong binding', $s->('/cb-require/w', cb => $wrong),
            '/cb-require/w', undef);

    is($s->('/allow-a', cb => 'auto')->{status}, 200, 'allow + correct: 200');
    is($s->('/allow-o', cb => 'omit')->{status}, 200, 'allow + absent: 200');
    is($s->('/allow-z', cb => 'none')->{status}, 200, 'allow + zero: 200');
    $mark = $t->log_mark;
    refused('allow + wrong binding', $s->('/allow-w', cb => $wrong), '/allow-w',
            qr/user "alice".*channel binding mismatch/, $mark);

    # a binding for another certificate (a TLS-terminating man in the middle)
    my $mitm = $t->make_cert('mitm', cn => 'proxy.kcd.test');
    refused('allow + binding of another certificate',
            $s->('/allow-m', cb => cb_hash_from_cert_der($mitm->{der})),
            '/allow-m', undef);

    is($s->('/cb-off/w', cb => $wrong)->{status}, 200, 'off + wrong binding: 200');

    $mark = $t->log_mark;
    refused('plain HTTP + non-zero binding (allow)',
            login(plain(), '/plain-cb', cb => $wrong), '/plain-cb',
            qr/user "alice".*channel binding/, $mark);
    is(login(plain(), '/plain-nocb', cb => 'none')->{status}, 200,
       'plain HTTP + zero binding: 200');
};

subtest 'raw NTLMSSP under Negotiate' => sub {
    $b->clear;
    my $c = plain();
    my ($r1, $r2) = ntlm_login($c, '/neg/x', scheme => 'Negotiate',
                               user => 'alice', domain => 'KCD',
                               password => 'Secret1');
    is($r1->{status}, 401, 'Negotiate <Type 1>: 401');
    my @wa = $r1->headers_all('WWW-Authenticate');
    is(scalar @wa, 1, 'one WWW-Authenticate');
    like($wa[0] // '', qr/^Negotiate TlRMTVNTUAAC/, 'Negotiate <Type 2>');
    ok(!grep({ /^NTLM/ } @wa), 'not answered under NTLM');
    ok($r2, 'Type 2 parsed') or return;
    is($r2->{status}, 200, 'Negotiate <Type 3>: 200');
    is($r2->header('X-Kcd-User'), 'KCD\\alice', 'identity');
    is(forwarded('/neg/x'), 1, 'forwarded once');
    ok(!grep({ lc $_->[0] eq 'authorization' } map { @{$_->{headers}} } $b->requests),
       'no Authorization reached the backend');
};

subtest 'foreign clients: python requests_ntlm, curl' => sub {
    # ntlm_auth needs MD4 from hashlib: OpenSSL's legacy provider (client
    # side only)
    my $ossl = $t->openssl_legacy_conf;
    local $ENV{OPENSSL_CONF} = $ossl;
    $b->clear;

    my $py = $t->write_file('client.py', <<'EOF');
import sys, warnings, requests
from requests_ntlm import HttpNtlmAuth
warnings.filterwarnings('ignore')
s = requests.Session()
r = s.get(sys.argv[1], auth=HttpNtlmAuth(sys.argv[2], sys.argv[3]),
          verify=False, timeout=5)
print(r.status_code, r.headers.get('X-Kcd-User', '-'))
EOF
    SKIP: {
        skip 'no python3 requests_ntlm', 3
            unless system('/usr/bin/python3', '-c', 'import requests_ntlm') == 0;
        my $url = 'https://127.0.0.1:' . port(8443);
        my ($rc, $out) = $t->_run_capture('/usr/bin/python3', $py,
            "$url/cb-require/py", 'KCD\\alice', 'Secret1');
        is($out, "200 KCD\\alice\n",
           'requests_ntlm over TLS, channel binding required: 200') or diag $out;
        ($rc, $out) = $t->_run_capture('/usr/bin/python3', $py,
            "$url/cb-require/py2", 'KCD\\alice', 'wrong');
        is($out, "401 -\n", 'requests_ntlm, wrong password: 401') or diag $out;
        is(forwarded('/cb-require/py') + forwarded('/cb-require/py2'), 1,
           'only the successful request forwarded');
    }

    SKIP: {
        skip 'no curl', 2 unless -x '/usr/bin/curl';
        my ($rc, $out) = $t->_run_capture('/usr/bin/curl', '-s', '--max-time', '5',
            '--ntlm', '-u', 'KCD\\alice:Secret1', '-o', '/dev/null',
            '-w', '%{http_code}', 'http://127.0.0.1:' . port(8080) . '/curl');
        is($out, '200', 'curl --ntlm (no MIC) over plain HTTP: 200');
        is(forwarded('/curl'), 1, 'forwarded once');
    }
};

subtest 'nginx still running' => sub {
    ok(KcdTest::alive($t->pid), 'master alive');
    is_deeply([$t->worker_pids], \@w0, 'same worker (no crash)');
    unlike($t->error_log, qr/\[(alert|emerg|crit)\]|exited on signal/,
           'no alert, crit or crash in the error log');
};

done_testing();
