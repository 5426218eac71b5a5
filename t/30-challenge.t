#!/usr/bin/perl

# B1. Challenge: a request without credentials to a kcd_auth location gets
# 401 with one WWW-Authenticate per offered scheme, in configured order;
# Basic only over TLS; the realm is a quoted-string; the request body is
# discarded, the connection stays open and nothing reaches the upstream.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);

$t->make_cert('proxy', cn => 'proxy.kcd.test');
$t->write_file('users',
    "KCD\\alice:" . unpack('H*', nt_hash('Secret1')) . "\n");

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

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /nnb/ {
            kcd_auth ntlm negotiate basic;
            kcd_basic_realm "Exchange \"x\"";
            proxy_pass http://backend;
        }

        location /nn/ {
            kcd_auth negotiate ntlm;
            proxy_pass http://backend;
        }

        location /bn/ {
            kcd_auth basic ntlm;
            proxy_pass http://backend;
        }

        location /basiconly/ {
            kcd_auth basic;
            proxy_pass http://backend;
        }

        location /open/ {
            proxy_pass http://backend;
        }

        location /outer/ {
            kcd_auth ntlm;
            proxy_pass http://backend;

            location /outer/inner/ {
                kcd_auth off;
                proxy_pass http://backend;
            }
        }
    }
EOF
$t->run;

# the worker is forked after the listen sockets answer: wait for it
my @w0;
for (1 .. 100) { last if @w0 = $t->worker_pids; select(undef, undef, undef, 0.05) }
die "no nginx worker process" unless @w0;

sub challenges { return [$_[0]->headers_all('WWW-Authenticate')] }

sub plain { return KcdTest::Conn->new(port => port(8080)) }
sub tls {
    return KcdTest::Conn->new(port => port(8443), ssl => 1, sni => 'localhost');
}

# what reached the backend for a path prefix
sub seen {
    my ($prefix) = @_;
    return grep { index($_->{uri}, $prefix) == 0 } $b->requests;
}

###########################################################################

subtest 'schemes in configured order, Basic only over TLS' => sub {
    my $r = tls()->get('/nnb/a');
    is($r->{status}, 401, 'TLS, ntlm negotiate basic: 401');
    is_deeply(challenges($r),
              ['NTLM', 'Negotiate', 'Basic realm="Exchange \"x\""'],
              'TLS: NTLM, Negotiate, Basic with the escaped realm, in order');

    $r = plain()->get('/nnb/a');
    is($r->{status}, 401, 'plain HTTP, ntlm negotiate basic: 401');
    is_deeply(challenges($r), ['NTLM', 'Negotiate'],
              'plain HTTP: no Basic challenge');

    $r = tls()->get('/nn/a');
    is_deeply(challenges($r), ['Negotiate', 'NTLM'],
              'negotiate ntlm: Negotiate first, then NTLM');
    $r = plain()->get('/nn/a');
    is_deeply(challenges($r), ['Negotiate', 'NTLM'],
              'negotiate ntlm over plain HTTP: same order');

    $r = tls()->get('/bn/a');
    is_deeply(challenges($r), ['Basic realm="kcd"', 'NTLM'],
              'basic ntlm over TLS: Basic (default realm "kcd") first');
    $r = plain()->get('/bn/a');
    is_deeply(challenges($r), ['NTLM'], 'basic ntlm over plain HTTP: only NTLM');

    $r = plain()->get('/basiconly/a');
    isnt($r->{status}, 200, 'Basic-only location over plain HTTP: not served');
    ok(!grep({ /^Basic/i } challenges($r)),
       'Basic-only location over plain HTTP: Basic not offered');
    is(scalar(seen('/basiconly/')), 0, 'Basic-only over plain: nothing forwarded');

    $r = tls()->get('/basiconly/a');
    is($r->{status}, 401, 'Basic-only over TLS: 401');
    is_deeply(challenges($r), ['Basic realm="kcd"'], 'Basic-only over TLS');

    is(scalar(seen('/nnb/')) + scalar(seen('/nn/')) + scalar(seen('/bn/')), 0,
       'challenged requests never reached the backend');
};

subtest 'Basic credentials over plain HTTP are not accepted' => sub {
    my $mark = $t->log_mark;
    my $r = plain()->get('/nnb/b',
        headers => [Authorization => 'Basic ' . b64('alice:Secret1')]);
    is($r->{status}, 401, 'Basic over plain HTTP: 401');
    ok(!grep({ /^Basic/i } challenges($r)), 'and no Basic challenge');
    is(scalar(seen('/nnb/b')), 0, 'not forwarded');
    ok($t->wait_for_log(qr/kcd: Basic credentials refused on a connection without TLS/,
                        2, 'error.log', $mark),
       'log says why');
};

subtest 'POST body discarded, connection kept, nothing forwarded' => sub {
    $b->clear;
    my $c = plain();
    # the body looks like a request: if nginx read it as the next request
    # the backend would see /open/smuggled
    my $body = "GET /open/smuggled HTTP/1.1\r\nHost: x\r\n\r\n" . ('z' x 20000);
    my $r = $c->post('/nnb/upload', body => $body,
                     headers => ['Content-Type' => 'text/xml']);
    is($r->{status}, 401, 'POST with body: 401');
    is_deeply(challenges($r), ['NTLM', 'Negotiate'], 'with the challenges');
    my $conn = $r->header('Connection');
    ok(!(defined $conn && $conn =~ /close/i), 'no Connection: close');
    ok(!$r->{closed} && !$c->closed(timeout => 0.3), 'connection stays open');

    my $n = $c->get('/open/next');
    is($n->{status}, 200, 'same connection serves the next request');
    is($n->{body}, 'ok GET /open/next len=0', 'in sync: body was discarded');

    my $r2 = $c->post('/nnb/upload2', body => 'x' x 100);
    is($r2->{status}, 401, 'second POST on the connection: 401 again');
    is($c->get('/open/after')->{status}, 200, 'still usable');

    my @q = $b->requests;
    is_deeply([map { $_->{uri} } @q], ['/open/next', '/open/after'],
              'backend received only the unprotected requests');
    ok(!grep({ $_->{uri} =~ /smuggled|upload/ } @q),
       'no protected request, no smuggled request');

    # the same over TLS, with a chunked body
    my $s = tls();
    my $rc = $s->request({ method => 'POST', path => '/nnb/chunked',
                           chunked => ['a' x 5000, 'b' x 5000] });
    is($rc->{status}, 401, 'chunked POST over TLS: 401');
    is($s->get('/open/tls')->{body}, 'ok GET /open/tls len=0',
       'TLS connection in sync after the discarded chunked body');
};

subtest 'locations without kcd_auth untouched, kcd_auth off inside' => sub {
    $b->clear;
    my $c = plain();
    my $r = $c->get('/open/x');
    is($r->{status}, 200, 'no kcd_auth: 200');
    ok(!$r->has_header('WWW-Authenticate'), 'no challenge');

    my $ra = $c->get('/open/y', headers => [Authorization => 'Bearer abc']);
    is($ra->{status}, 200, 'foreign Authorization on an open location: 200');
    is($ra->header('X-Seen-Authorization'), 'Bearer abc',
       'passed through untouched where kcd_auth is off');

    $r = $c->get('/outer/x');
    is($r->{status}, 401, 'outer location: kcd_auth ntlm');
    is_deeply(challenges($r), ['NTLM'], 'outer: NTLM only');

    $r = $c->get('/outer/inner/x');
    is($r->{status}, 200, 'inner location with kcd_auth off: 200');
    ok(!$r->has_header('WWW-Authenticate'), 'inner: no challenge');
    is_deeply([map { $_->{uri} } $b->requests], ['/open/x', '/open/y', '/outer/inner/x'],
              'backend saw exactly the unprotected requests');
};

subtest 'nginx still running' => sub {
    ok(KcdTest::alive($t->pid), 'master alive');
    is_deeply([$t->worker_pids], \@w0, 'same worker (no crash)');
};

done_testing();
