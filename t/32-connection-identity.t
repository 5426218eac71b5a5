#!/usr/bin/perl

# B3. Connection-bound identity: after an NTLM handshake, later requests on
# the same connection without Authorization proceed as that user; any
# other connection is challenged; identities of concurrent connections
# never mix, in the response nor upstream.

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
    "KCD\\alice:" . unpack('H*', nt_hash('Secret1')) . "\n"
    . "KCD\\bob:" . unpack('H*', nt_hash('BobPass2')) . "\n");
$t->write_file('users-bob', "KCD\\bob:" . unpack('H*', nt_hash('BobPass2')) . "\n");

$t->write_config(<<'EOF');
    upstream backend {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 2;
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

        location / {
            kcd_auth ntlm;

            add_header X-Kcd-User $kcd_user always;
            add_header X-Kcd-Scheme $kcd_auth_scheme always;

            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Kcd-User $kcd_user;
            proxy_set_header X-Kcd-Scheme $kcd_auth_scheme;
            proxy_pass http://backend;
        }

        location /basic/ {
            kcd_auth basic ntlm;
            add_header X-Kcd-User $kcd_user always;
            add_header X-Kcd-Scheme $kcd_auth_scheme always;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }

        # a location validated against another user file (no alice)
        location /bobonly/ {
            kcd_auth ntlm;
            kcd_ntlm_user_file %%TESTDIR%%/users-bob;
            add_header X-Kcd-User $kcd_user always;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }
    }

    # another site on the same listener: its own domain and user file
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name other.kcd.test;

        kcd_ntlm_user_file %%TESTDIR%%/users-bob;
        kcd_ntlm_domain OTHER;
        kcd_ntlm_computer GATE2;

        location / {
            kcd_auth ntlm;
            add_header X-Kcd-User $kcd_user always;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://backend;
        }
    }
EOF
$t->run;

# the worker is forked after the listen sockets answer: wait for it
my @w0;
for (1 .. 100) { last if @w0 = $t->worker_pids; select(undef, undef, undef, 0.05) }
die "no nginx worker process" unless @w0;

sub plain { return KcdTest::Conn->new(port => port(8080)) }
sub tls {
    return KcdTest::Conn->new(port => port(8443), ssl => 1, sni => 'localhost');
}

my %PW = (alice => 'Secret1', bob => 'BobPass2');

sub login {
    my ($c, $path, $user) = @_;
    my ($r1, $r2) = ntlm_login($c, $path, user => $user, domain => 'KCD',
                               password => $PW{$user});
    return $r2 || $r1;
}

sub upstream {
    my ($uri) = @_;
    my @q = grep { $_->{uri} eq $uri } $b->requests;
    return @q;
}

###########################################################################

for my $kind (['plain', \&plain], ['tls', \&tls]) {
    my ($name, $new) = @$kind;
    subtest "same connection keeps the identity ($name)" => sub {
        $b->clear;
        my $c = $new->();
        my $r = login($c, "/$name/login", 'alice');
        is($r->{status}, 200, 'handshake: 200');
        is($r->header('X-Kcd-User'), 'KCD\\alice', 'response: $kcd_user');
        is($r->header('X-Kcd-Scheme'), 'ntlm', 'response: $kcd_auth_scheme ntlm');

        for my $i (1 .. 3) {
            my $x = $c->get("/$name/next$i");
            is($x->{status}, 200, "request $i without Authorization: 200");
            is($x->header('X-Kcd-User'), 'KCD\\alice', "request $i: same user");
            my @q = upstream("/$name/next$i");
            is(scalar @q, 1, "request $i forwarded");
            is($q[0] && $q[0]->header('X-Kcd-User'), 'KCD\\alice',
               "request $i: backend got the user");
            is($q[0] && $q[0]->header('X-Kcd-Scheme'), 'ntlm',
               "request $i: backend got the scheme");
            ok($q[0] && !defined $q[0]->header('Authorization'),
               "request $i: no Authorization upstream");
        }
        my $p = $c->post("/$name/post", body => 'data' x 100);
        is($p->{status}, 200, 'POST with a body on the connection: 200');
        is($p->{body}, "ok POST /$name/post len=400", 'body forwarded');

        my $o = $new->();
        my $x = $o->get("/$name/other");
        is($x->{status}, 401, 'second connection without Authorization: 401');
        is_deeply([$x->headers_all('WWW-Authenticate')], ['NTLM'], 'challenged');
        ok(!$x->header('X-Kcd-User'), 'no identity on the second connection');
        is(scalar(upstream("/$name/other")), 0, 'not forwarded');

        is($c->get("/$name/still")->{status}, 200,
           'the first connection is still authenticated');

        $c->close;
        my $re = $new->();
        my $y = $re->get("/$name/reconnect");
        is($y->{status}, 401, 'closed and reconnected: identity gone, 401');
        is(scalar(upstream("/$name/reconnect")), 0, 'not forwarded');
    };
}

subtest 'interleaved connections never mix identities' => sub {
    $b->clear;
    my $ca = plain();
    my $cb = plain();
    is(login($ca, '/mix/login-a', 'alice')->{status}, 200, 'alice logged on');
    is(login($cb, '/mix/login-b', 'bob')->{status}, 200, 'bob logged on');

    my (@bad_resp, @bad_up);
    for my $i (1 .. 10) {
        for my $p ([$ca, 'alice'], [$cb, 'bob']) {
            my ($c, $u) = @$p;
            my $uri = "/mix/$u/$i";
            my $r = $c->get($uri);
            push @bad_resp, "$uri: $r->{status} " . ($r->header('X-Kcd-User') // '-')
                unless $r->{status} == 200
                    && ($r->header('X-Kcd-User') // '') eq "KCD\\$u";
            my @q = upstream($uri);
            push @bad_up, "$uri: " . join(',', map { $_->header('X-Kcd-User') // '-' } @q)
                unless @q == 1 && ($q[0]->header('X-Kcd-User') // '') eq "KCD\\$u";
        }
    }
    is_deeply(\@bad_resp, [], '10 alternations: every response names its user');
    is_deeply(\@bad_up, [], '10 alternations: the backend got the right user each time');

    # the two users shared the (keepalive 2) upstream connections: the
    # per-request header, not the upstream connection, carries the identity
    my %conns;
    $conns{$_->{conn}}{$_->header('X-Kcd-User') // '-'} = 1
        for grep { $_->{uri} =~ m{^/mix/} } $b->requests;
    ok(scalar(grep { keys %{$conns{$_}} > 1 } keys %conns),
       'at least one upstream connection carried both users')
        or diag explain \%conns;

    # pipelined on one connection: both answered as alice
    my $req = $ca->build_request({ path => '/mix/pipe1' })
            . $ca->build_request({ path => '/mix/pipe2' });
    $ca->send($req);
    my @r = ($ca->read_response, $ca->read_response);
    is_deeply([map { $_->header('X-Kcd-User') } @r], ['KCD\\alice', 'KCD\\alice'],
              'pipelined requests: same identity');
};

subtest 'a third connection stays anonymous' => sub {
    my $c = plain();
    my $r = $c->get('/mix/third');
    is($r->{status}, 401, 'new connection while alice and bob are on: 401');
    ok(!$r->header('X-Kcd-User'), 'no identity leaked');
};

subtest 'Basic is per request, not bound to the connection' => sub {
    $b->clear;
    my $c = tls();
    my $r = $c->get('/basic/a',
                    headers => [Authorization => 'Basic ' . b64('alice:Secret1')]);
    is($r->{status}, 200, 'Basic over TLS: 200');
    is($r->header('X-Kcd-User'), 'alice', '$kcd_user is the plain user name');
    is($r->header('X-Kcd-Scheme'), 'basic', '$kcd_auth_scheme basic');
    my $n = $c->get('/basic/b');
    is($n->{status}, 401, 'next request without Authorization: 401');
    is(scalar(upstream('/basic/b')), 0, 'not forwarded');
};

# The identity was validated by one location's or server's backend; a
# location or server with another user file never validated it.
subtest 'identity does not cross validation scopes' => sub {
    $b->clear;
    my $c = plain();
    is(login($c, '/scope/login', 'alice')->{status}, 200,
       'alice logged on (user file with alice)');
    my $r = $c->get('/bobonly/x');
    is($r->{status}, 401,
       'same connection, location whose user file has no alice: 401');
    is(scalar(upstream('/bobonly/x')), 0, 'not forwarded') or
        diag 'forwarded as ' . ($r->header('X-Kcd-User') // '-');

    my $d = plain();
    is(login($d, '/scope/login2', 'alice')->{status}, 200, 'alice logged on');
    my $o = $d->get('/other', host => 'other.kcd.test');
    is($o->{status}, 401,
       'same connection, Host of another server (own domain, no alice): 401');
    is(scalar(upstream('/other')), 0, 'not forwarded') or
        diag 'forwarded as ' . ($o->header('X-Kcd-User') // '-');

    # bob, present in both user files, may log on at /bobonly/ directly
    my $e = plain();
    my $rb = login($e, '/bobonly/y', 'bob');
    is($rb->{status}, 200, 'bob logs on at /bobonly/');
};

subtest 'nginx still running' => sub {
    ok(KcdTest::alive($t->pid), 'master alive');
    is_deeply([$t->worker_pids], \@w0, 'same worker (no crash)');
};

done_testing();
