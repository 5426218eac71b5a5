#!/usr/bin/perl

# B5: NTLM inside SPNEGO, the way Windows sends it when it cannot reach a
# KDC.  "kcd_auth negotiate ntlm" with a keytab and a user file; the
# client's Negotiate tokens are written by Convert::ASN1 (t/lib/KcdSPNEGO.pm)
# in the shape of a Windows 10 client: mechTypes [NTLMSSP, MS-KRB5, KRB5,
# NegoEx], an NTLM NEGOTIATE with flags 0xe208b297, the AUTHENTICATE in a
# negTokenResp with mechListMIC.  Over HTTP and HTTPS (channel bindings
# "require"), GET, POST with a body, keep-alive follow-up, re-authentication
# (B4) and the Communicator replay inside SPNEGO, and every token the module
# cannot complete.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::SHA qw(sha256_hex);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdSPNEGO qw(:all);
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);

$SIG{ALRM} = sub { die "43-spnego-ntlm.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 120;

my $dir = $t->testdir;
$t->make_cert('proxy', cn => 'mail.kcd.test');
$t->write_file('users',
    "KCD\\alice:" . unpack('H*', nt_hash('Secret1')) . "\n");

# a keytab, as in the report: without the SPNEGO code, MIT's acceptor got
# the token and answered "use Kerberos" (made offline with ktutil)
my $keytab = "$dir/proxy.keytab";
system('sh', '-c', "printf 'addent -password -p HTTP/proxy.kcd.test\@KCD.TEST"
    . " -k 1 -e aes256-cts-hmac-sha1-96\\nPw-123456\\nwkt $keytab\\n' "
    . "| ktutil >/dev/null 2>&1");
ok(-s $keytab, 'keytab for HTTP/proxy.kcd.test');

my $server = <<"EOF";
        server_name mail.kcd.test;

        ssl_certificate %%TESTDIR%%/proxy.crt;
        ssl_certificate_key %%TESTDIR%%/proxy.key;

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_ntlm_computer PROXY;
        kcd_ntlm_dns_domain kcd.test;
        kcd_realm KCD.TEST;

        add_header X-Kcd-User \$kcd_user always;
        add_header X-Kcd-Scheme \$kcd_auth_scheme always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location / {
            kcd_auth negotiate ntlm;
            proxy_pass http://exchange;
        }

        location /stripped/ {
            kcd_auth negotiate ntlm;
            kcd_strip_negotiate on;
            proxy_pass http://exchange;
        }
EOF

$t->write_config(<<"EOF");
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;

    upstream exchange {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
$server
    }

    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        kcd_channel_binding require;
$server
    }
EOF
$t->run;

sub conn {
    my ($tls) = @_;
    return KcdTest::Conn->new(port => port($tls ? 8443 : 8080),
                              ($tls ? (ssl => 1) : ()));
}

sub forwarded {
    my ($path) = @_;
    return scalar grep { $_->{uri} eq $path } $b->requests;
}

sub challenges {
    my ($r) = @_;
    return join ' | ', map { (split / /, $_)[0] }
        $r->headers_all('WWW-Authenticate');
}

for my $tls (0, 1) {
    my $proto = $tls ? 'HTTPS' : 'HTTP';

    # 1. the Windows 10 shape
    my $c = conn($tls);
    my ($r1, $r2, $i) = spnego_ntlm_login($c, "/w/$tls", user => 'alice',
        domain => 'KCD', password => 'Secret1');
    is($r1->{status}, 401, "$proto Windows shape: 401");
    is($i->{reply1}{state}, 1, "$proto negTokenResp accept-incomplete");
    is($i->{reply1}{mech}, 'ntlmssp', "$proto supportedMech NTLMSSP");
    ok($i->{type2}, "$proto responseToken is the Type 2");
    ok($i->{type2} && ($i->{type2}{flags} & NTLMSSP_NEGOTIATE_SIGN),
       "$proto Type 2 grants SIGN");
    is($r2 && $r2->{status}, 200, "$proto Type 3 + mechListMIC: 200");
    is($r2 && $r2->header('X-Kcd-User'), 'KCD\\alice', "$proto as KCD\\alice");
    is($i->{final} && $i->{final}{state}, 0,
       "$proto final negTokenResp accept-completed");
    is(unpack('H*', $i->{final}{mic} // ''),
       unpack('H*', $i->{expected_server_mic}),
       "$proto final mechListMIC is the server's NTLM signature");
    is(forwarded("/w/$tls"), 1, "$proto forwarded once");
    my $k = $c->get("/w2/$tls");
    is($k->{status}, 200, "$proto keep-alive follow-up without Authorization");
    is($k->header('X-Kcd-User'), 'KCD\\alice', "$proto follow-up as alice");
    ok(!$k->has_header('WWW-Authenticate'),
       "$proto no SPNEGO token on the follow-up");

    # 2. POST with a body
    $c = conn($tls);
    my $body = "x" x 5000;
    ($r1, $r2, $i) = spnego_ntlm_login($c, "/post/$tls", method => 'POST',
        body => $body, user => 'alice', domain => 'KCD',
        password => 'Secret1');
    is($r2 && $r2->{status}, 200, "$proto POST with a body: 200");
    my ($p) = grep { $_->{uri} eq "/post/$tls" } $b->requests;
    is($p && $p->{body_sha256}, sha256_hex($body),
       "$proto POST body forwarded byte-exact");
    is(forwarded("/post/$tls"), 1, "$proto POST forwarded once");

    # 3. re-authentication (B4) and the Communicator replay inside SPNEGO
    my $t1 = type1(flags => 0xe208b297, domain => 'KCD', workstation => 'WS1');
    my $re = $c->request({ method => 'POST', path => "/reauth/$tls",
        headers => [Authorization => 'Negotiate '
            . b64(spnego_init(mechs => [qw(ntlmssp mskrb5 krb5 negoex)],
                              token => $t1))],
        body => '' });
    is($re->{status}, 401, "$proto SPNEGO Type 1 on an authenticated "
       . "connection: 401");
    is(forwarded("/reauth/$tls"), 0,
       "$proto bodyless re-authentication POST not forwarded");
    ($r1, $r2, $i) = spnego_ntlm_login($c, "/reauth/$tls", method => 'POST',
        body => 'real body', user => 'alice', domain => 'KCD',
        password => 'Secret1');
    is($r2 && $r2->{status}, 200, "$proto re-authenticated POST: 200");
    is(forwarded("/reauth/$tls"), 1, "$proto real POST forwarded once");

    # 4. NegoEx first, NTLMSSP last: selected, NEGOTIATE in the next leg
    $c = conn($tls);
    ($r1, $r2, $i) = spnego_ntlm_login($c, "/negoex/$tls",
        mechs => [qw(negoex mskrb5 krb5 ntlmssp)], user => 'alice',
        domain => 'KCD', password => 'Secret1');
    is($i->{reply1} && $i->{reply1}{mech}, 'ntlmssp',
       "$proto NegoEx first: NTLMSSP selected");
    ok($i->{reply1} && !defined $i->{reply1}{token},
       "$proto ... with no token in that reply");
    ok($i->{type2}, "$proto Type 2 after the NEGOTIATE leg");
    is($r2 && $r2->{status}, 200, "$proto NegoEx first: 200");
    ok($i->{final} && $i->{final}{mic}, "$proto server mechListMIC");

    # 5. NTLM not first and no mechListMIC: refused (RFC 4178 5)
    $c = conn($tls);
    my $mark = $t->log_mark;
    ($r1, $r2, $i) = spnego_ntlm_login($c, "/nomic/$tls",
        mechs => [qw(negoex ntlmssp)], mic => 0, user => 'alice',
        domain => 'KCD', password => 'Secret1');
    is($r2 && $r2->{status}, 401, "$proto NTLM not first, no mechListMIC: 401");
    like($t->error_log(since => $mark), qr/mechListMIC absent/,
         "$proto log: mechListMIC absent");
    like(challenges($r2), qr/Negotiate/, "$proto challenges offered again");

    # 6. NTLM first and no mechListMIC (MIT's gss-ntlmssp): accepted
    $c = conn($tls);
    ($r1, $r2, $i) = spnego_ntlm_login($c, "/mic0/$tls", mic => 0,
        user => 'alice', domain => 'KCD', password => 'Secret1');
    is($r2 && $r2->{status}, 200, "$proto NTLM first without mechListMIC: 200");
    ok($i->{final} && !defined $i->{final}{mic},
       "$proto final token without mechListMIC");

    # 7. a wrong mechListMIC
    $c = conn($tls);
    $mark = $t->log_mark;
    ($r1, $r2, $i) = spnego_ntlm_login($c, "/badmic/$tls", mic => 'bad',
        user => 'alice', domain => 'KCD', password => 'Secret1');
    is($r2 && $r2->{status}, 401, "$proto wrong mechListMIC: 401");
    like($t->error_log(since => $mark), qr/mechListMIC invalid/,
         "$proto log: mechListMIC invalid");
    is(forwarded("/badmic/$tls"), 0, "$proto not forwarded");

    # 8. [MS-SPNG] negTokenInit2
    $c = conn($tls);
    ($r1, $r2, $i) = spnego_ntlm_login($c, "/init2/$tls", init2 => 1,
        user => 'alice', domain => 'KCD', password => 'Secret1');
    is($r2 && $r2->{status}, 200, "$proto negTokenInit2: 200");

    # 9. wrong password inside SPNEGO
    $c = conn($tls);
    ($r1, $r2, $i) = spnego_ntlm_login($c, "/badpw/$tls", user => 'alice',
        domain => 'KCD', password => 'nope');
    is($r2 && $r2->{status}, 401, "$proto wrong password: 401");
}

# tokens the module cannot complete: 401 with the location's challenges
# and an info line, never a dead end
my %cannot = (
    'unknown mechanism only' => spnego_init(mechs => ['other'],
                                            token => 'abc'),
    'broken DER' => "\x60\x82\x01\x00\x06\x06\x2b\x06\x01\x05\x05\x02\xa0",
    'NegoEx only' => spnego_init(mechs => ['negoex'], token => 'abc'),
    'NTLMSSP listed, mechToken not NTLM' =>
        spnego_init(mechs => ['ntlmssp'], token => 'abc'),
    'negTokenResp without a handshake' =>
        spnego_resp(token => "NTLMSSP\0\3\0\0\0" . "\0" x 80),
);
for my $name (sort keys %cannot) {
    my $c = conn(0);
    my $mark = $t->log_mark;
    my $r = $c->get('/cannot', headers => [Authorization => 'Negotiate '
        . b64($cannot{$name})]);
    is($r->{status}, 401, "$name: 401");
    like(challenges($r), qr/^Negotiate \| NTLM$/,
         "$name: both challenges offered");
    ok(!grep({ /^Negotiate \S/ } $r->headers_all('WWW-Authenticate')),
       "$name: no dead-end Negotiate token");
    like($t->error_log(since => $mark), qr/\[info\].*kcd: .*(SPNEGO|Negotiate)/,
         "$name: info log line");
}

# a Type 3 outside SPNEGO after a SPNEGO CHALLENGE
{
    my $c = conn(0);
    my $t1 = type1(flags => 0xe208b297);
    my $r = $c->get('/mix', headers => [Authorization => 'Negotiate '
        . b64(spnego_init(mechs => ['ntlmssp'], token => $t1))]);
    my ($v) = grep { /^Negotiate \S/ } $r->headers_all('WWW-Authenticate');
    my $p = parse_spnego(unb64((split / /, $v // '')[1] // ''));
    my $t3 = type3(type1 => $t1, type2 => $p->{token}, user => 'alice',
                   domain => 'KCD', password => 'Secret1');
    my $mark = $t->log_mark;
    $r = $c->get('/mix', headers => [Authorization => 'NTLM ' . b64($t3)]);
    is($r->{status}, 401, 'raw Type 3 answering a SPNEGO CHALLENGE: 401');
    like($t->error_log(since => $mark), qr/AUTHENTICATE outside SPNEGO/,
         'log: outside SPNEGO');
}

# with kcd_strip_negotiate the module offers no Negotiate, but a client
# that sends one anyway is still served (docs/negotiate.md)
{
    my $c = conn(0);
    my $r = $c->get('/stripped/x');
    is(challenges($r), 'NTLM', 'stripped: only NTLM offered');
    my ($r1, $r2, $i) = spnego_ntlm_login($c, '/stripped/y', user => 'alice',
        domain => 'KCD', password => 'Secret1');
    is($r2 && $r2->{status}, 200, 'stripped: SPNEGO sent anyway still works');
}

done_testing();
