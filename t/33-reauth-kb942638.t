#!/usr/bin/perl

# B4. Re-authentication on an authenticated keep-alive connection
# (KB 942638): Office Communicator sends "POST, Content-Length: 0,
# Authorization: NTLM <Type 1>" on a connection that is already
# authenticated.  ISA 2006 kept the context and forwarded the bodyless
# POST (Exchange answered 500).  The module must drop the identity, answer
# 401 + Type 2, never forward the handshake leg, and forward the real POST
# (Type 3 + body) once, byte-exact.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Digest::SHA qw(sha256_hex);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);

$t->make_cert('proxy', cn => 'mail.kcd.test');
$t->write_file('users',
    "KCD\\alice:" . unpack('H*', nt_hash('Secret1')) . "\n"
    . "KCD\\bob:" . unpack('H*', nt_hash('BobPass2')) . "\n");

$t->write_config(<<'EOF');
    upstream exchange {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name mail.kcd.test;

        ssl_certificate %%TESTDIR%%/proxy.crt;
        ssl_certificate_key %%TESTDIR%%/proxy.key;

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_ntlm_computer PROXY;
        kcd_ntlm_dns_domain kcd.test;

        add_header X-Kcd-User $kcd_user always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Kcd-User $kcd_user;

        location /EWS/ {
            kcd_auth ntlm;
            kcd_strip_negotiate on;
            proxy_pass http://exchange;
        }

        location /neg/ {
            kcd_auth negotiate ntlm;
            proxy_pass http://exchange;
        }

        location = /kcd-status {
            kcd_status;
        }
    }
EOF
$t->run;

# the worker is forked after the listen sockets answer: wait for it
my @w0;
for (1 .. 100) { last if @w0 = $t->worker_pids; select(undef, undef, undef, 0.05) }
die "no nginx worker process" unless @w0;

sub tls {
    return KcdTest::Conn->new(port => port(8443), ssl => 1,
                              sni => 'mail.kcd.test');
}

sub counter {
    my ($name) = @_;
    my $r = tls()->get('/kcd-status');
    return undef unless $r->{status} == 200;
    return $r->{body} =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

sub type2_of {
    my ($r, $scheme) = @_;
    for my $v ($r->headers_all('WWW-Authenticate')) {
        return parse_type2(unb64($1)) if $v =~ /^\Q$scheme\E ([A-Za-z0-9+\/=]+)$/;
    }
    return undef;
}

my $UA = 'Microsoft+Office+Communicator/2.0';
my $CT = 'text/xml; charset=utf-8';

my $soap = <<'EOF';
<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
               xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
               xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header>
    <t:RequestServerVersion Version="Exchange2007_SP1"/>
    <t:TimeZoneContext>
      <t:TimeZoneDefinition Id="W. Europe Standard Time"/>
    </t:TimeZoneContext>
  </soap:Header>
  <soap:Body>
    <m:GetUserAvailabilityRequest>
      <t:TimeZone>
        <t:Bias>-60</t:Bias>
        <t:StandardTime><t:Bias>0</t:Bias><t:Time>03:00:00</t:Time>
          <t:DayOrder>5</t:DayOrder><t:Month>10</t:Month>
          <t:DayOfWeek>Sunday</t:DayOfWeek></t:StandardTime>
        <t:DaylightTime><t:Bias>-60</t:Bias><t:Time>02:00:00</t:Time>
          <t:DayOrder>5</t:DayOrder><t:Month>3</t:Month>
          <t:DayOfWeek>Sunday</t:DayOfWeek></t:DaylightTime>
      </t:TimeZone>
      <m:MailboxDataArray>
        <t:MailboxData>
          <t:Email><t:Address>alice@kcd.test</t:Address></t:Email>
          <t:AttendeeType>Required</t:AttendeeType>
          <t:ExcludeConflicts>false</t:ExcludeConflicts>
        </t:MailboxData>
      </m:MailboxDataArray>
      <t:FreeBusyViewOptions>
        <t:TimeWindow>
          <t:StartTime>2026-11-22T00:00:00</t:StartTime>
          <t:EndTime>2026-11-23T00:00:00</t:EndTime>
        </t:TimeWindow>
        <t:MergedFreeBusyIntervalInMinutes>30</t:MergedFreeBusyIntervalInMinutes>
        <t:RequestedView>FreeBusy</t:RequestedView>
      </t:FreeBusyViewOptions>
    </m:GetUserAvailabilityRequest>
  </soap:Body>
</soap:Envelope>
EOF
$soap =~ s/\n/\r\n/g;

###########################################################################

subtest 'Office Communicator replay (KB 942638)' => sub {
    $b->clear;
    my $reauth0 = counter('kcd_reauthentications_total');
    ok(defined $reauth0, 'kcd_status shows kcd_reauthentications_total');

    my $c = tls();
    my ($g1, $g2) = ntlm_login($c, '/EWS/Exchange.asmx', user => 'alice',
                               domain => 'KCD', password => 'Secret1',
                               workstation => 'LAPTOP1',
                               headers => ['User-Agent' => $UA]);
    is($g1->{status}, 401, 'GET + Type 1: 401');
    is($g2 && $g2->{status}, 200, 'GET + Type 3: 200');
    is($g2 && $g2->header('X-Kcd-User'), 'KCD\\alice', 'authenticated as alice');

    # Communicator re-authenticates on this authenticated connection
    my $mark = $t->log_mark;
    my $t1 = type1();
    my $p1 = $c->request({ method => 'POST', path => '/EWS/Exchange.asmx',
        headers => ['User-Agent' => $UA, 'Content-Type' => $CT,
                    'Content-Length' => 0,
                    Authorization => 'NTLM ' . b64($t1)] });
    is($p1->{status}, 401, 'POST, Content-Length: 0, Type 1: 401 (not forwarded)');
    my $t2 = type2_of($p1, 'NTLM');
    ok($t2, 'with WWW-Authenticate: NTLM <Type 2>') or return;
    isnt(unpack('H*', $t2->{challenge}),
         unpack('H*', $g1->{ntlm_type2}{challenge}), 'a new challenge');
    ok(!$p1->{closed} && !$c->closed(timeout => 0.2), 'connection kept open');

    my $t3 = type3(type1 => $t1, type2 => $t2, user => 'alice', domain => 'KCD',
                   password => 'Secret1', workstation => 'LAPTOP1',
                   cb_hash => cb_hash_from_cert_der($c->tls_cert_der));
    my $p2 = $c->request({ method => 'POST', path => '/EWS/Exchange.asmx',
        headers => ['User-Agent' => $UA, 'Content-Type' => $CT,
                    Authorization => 'NTLM ' . b64($t3)],
        body => $soap });
    is($p2->{status}, 200, 'POST with the SOAP body and Type 3: 200');
    is($p2->{body}, 'ok POST /EWS/Exchange.asmx len=' . length($soap),
       'backend answered the real POST');

    my @q = $b->requests;
    my @posts = grep { $_->{method} eq 'POST' } @q;
    is(scalar(grep { $_->{body_length} == 0 } @posts), 0,
       'no POST with an empty body ever reached the backend');
    is(scalar @posts, 1, 'the POST reached the backend once');
    is($posts[0]{body_length}, length($soap), 'with the full body length');
    is($posts[0]{body_sha256}, sha256_hex($soap), 'byte-exact body (sha256)');
    is($posts[0]->header('X-Kcd-User'), 'KCD\\alice', 'as alice');
    is($posts[0]->header('User-Agent'), $UA, 'Communicator\'s request');
    ok(!defined $posts[0]->header('Authorization'),
       'the client\'s Authorization not forwarded');
    is(scalar @q, 2, 'backend got exactly the GET and the POST');

    ok($t->wait_for_log(qr/kcd: re-authentication on an authenticated connection: "KCD\\alice" dropped, handshake restarted, request \(POST, content length 0\) not forwarded/,
                        2, 'error.log', $mark),
       'error log: the re-authentication line');
    is(counter('kcd_reauthentications_total'), ($reauth0 // 0) + 1,
       'kcd_reauthentications_total incremented');

    is($c->get('/EWS/after')->{status}, 200,
       'connection authenticated again after the Type 3');
};

subtest 'Type 1 drops the identity (fail closed)' => sub {
    $b->clear;
    my $c = tls();
    my (undef, $r) = ntlm_login($c, '/EWS/a', user => 'alice', domain => 'KCD',
                                password => 'Secret1');
    is($r && $r->{status}, 200, 'logged on');
    my $x = $c->get('/EWS/b', headers => [Authorization => 'NTLM ' . b64(type1())]);
    is($x->{status}, 401, 'GET + Type 1 on the authenticated connection: 401');
    my $y = $c->get('/EWS/c');
    is($y->{status}, 401, 'then a request without Authorization: 401');
    ok(!$y->header('X-Kcd-User'), 'no identity left');
    is_deeply([map { $_->{uri} } $b->requests], ['/EWS/a'],
              'neither request forwarded');
};

subtest 'Type 1 under Negotiate restarts too' => sub {
    $b->clear;
    my $c = tls();
    my (undef, $r) = ntlm_login($c, '/neg/a', user => 'alice', domain => 'KCD',
                                password => 'Secret1');
    is($r && $r->{status}, 200, 'NTLM logon');
    my $reauth0 = counter('kcd_reauthentications_total');
    my $t1 = type1();
    my $x = $c->request({ method => 'POST', path => '/neg/b',
        headers => [Authorization => 'Negotiate ' . b64($t1)], body => '' });
    is($x->{status}, 401, 'POST + Negotiate <Type 1>: 401');
    my $t2 = type2_of($x, 'Negotiate');
    ok($t2, 'answered with Negotiate <Type 2>') or return;
    is($c->get('/neg/c')->{status}, 401, 'identity dropped');
    is(counter('kcd_reauthentications_total'), ($reauth0 // 0) + 1, 'counted');

    # the handshake of the request just refused: a Type 1, then a Type 3
    my $t1b = type1();
    my $x2 = $c->request({ method => 'POST', path => '/neg/b',
        headers => [Authorization => 'Negotiate ' . b64($t1b)], body => '' });
    my $t2b = type2_of($x2, 'Negotiate');
    my $t3 = type3(type1 => $t1b, type2 => $t2b, user => 'alice', domain => 'KCD',
                   password => 'Secret1',
                   cb_hash => cb_hash_from_cert_der($c->tls_cert_der));
    my $ok = $c->request({ method => 'POST', path => '/neg/b',
        headers => [Authorization => 'Negotiate ' . b64($t3)], body => 'hello' });
    is($ok->{status}, 200, 'Negotiate <Type 3> with the body: 200');
    my @posts = grep { $_->{method} eq 'POST' } $b->requests;
    is_deeply([map { $_->{body_length} } @posts], [5],
              'only the POST with its body forwarded');
};

subtest 'IE style: POST with a body and a Type 1' => sub {
    $b->clear;
    my $c = tls();
    my (undef, $r) = ntlm_login($c, '/EWS/ie0', user => 'alice', domain => 'KCD',
                                password => 'Secret1');
    is($r && $r->{status}, 200, 'logged on');

    my $body = "GET /EWS/smuggled HTTP/1.1\r\nHost: x\r\n\r\n" . ('q' x 9000);
    my $t1 = type1();
    my $x = $c->request({ method => 'POST', path => '/EWS/ie',
        headers => [Authorization => 'NTLM ' . b64($t1)], body => $body });
    is($x->{status}, 401, 'POST with body + Type 1: 401');
    my $t2 = type2_of($x, 'NTLM');
    ok($t2, 'Type 2') or return;
    ok(!$c->closed(timeout => 0.2), 'connection still open');
    my $t3 = type3(type1 => $t1, type2 => $t2, user => 'alice', domain => 'KCD',
                   password => 'Secret1',
                   cb_hash => cb_hash_from_cert_der($c->tls_cert_der));
    my $ok = $c->request({ method => 'POST', path => '/EWS/ie',
        headers => [Authorization => 'NTLM ' . b64($t3)], body => $body });
    is($ok->{status}, 200, 'the same POST with Type 3: 200 (body was discarded, in sync)');
    my @q = grep { $_->{uri} ne '/EWS/ie0' } $b->requests;
    is(scalar @q, 1, 'one request forwarded after the logon');
    is($q[0] && $q[0]{body_sha256}, sha256_hex($body), 'with its body, byte-exact');
    ok(!grep({ $_->{uri} =~ /smuggled/ } $b->requests), 'nothing smuggled');
};

subtest 're-authentication as another user switches identity' => sub {
    $b->clear;
    my $c = tls();
    my (undef, $r) = ntlm_login($c, '/EWS/u1', user => 'alice', domain => 'KCD',
                                password => 'Secret1');
    is($r && $r->header('X-Kcd-User'), 'KCD\\alice', 'alice');
    is($c->get('/EWS/u2')->header('X-Kcd-User'), 'KCD\\alice', 'still alice');
    my (undef, $r2) = ntlm_login($c, '/EWS/u3', method => 'POST', body => 'x',
                                 user => 'bob', domain => 'KCD',
                                 password => 'BobPass2');
    is($r2 && $r2->{status}, 200, 're-authenticated as bob');
    is($r2 && $r2->header('X-Kcd-User'), 'KCD\\bob', 'response: bob');
    my $n = $c->get('/EWS/u4');
    is($n->header('X-Kcd-User'), 'KCD\\bob', 'next request on the connection: bob');
    my %up = map { $_->{uri} => $_->header('X-Kcd-User') } $b->requests;
    is_deeply(\%up, { '/EWS/u1' => 'KCD\\alice', '/EWS/u2' => 'KCD\\alice',
                      '/EWS/u3' => 'KCD\\bob', '/EWS/u4' => 'KCD\\bob' },
              'backend: each request with the right user, no Type 1 leg');

    # a failed re-authentication leaves nobody
    my (undef, $r3) = ntlm_login($c, '/EWS/u5', user => 'alice', domain => 'KCD',
                                 password => 'wrong');
    is($r3 && $r3->{status}, 401, 'failed re-authentication: 401');
    is($c->get('/EWS/u6')->{status}, 401, 'then no identity (not bob)');
};

subtest 'nginx still running' => sub {
    ok(KcdTest::alive($t->pid), 'master alive');
    is_deeply([$t->worker_pids], \@w0, 'same worker (no crash)');
};

done_testing();
