#!/usr/bin/perl

# Second adversarial review of the design "the token is in headers_in only
# while the upstream request is built" (B7, B7a, B10, B15): where the
# delegated token, the client's credentials or an identity still go.  The
# upstreams are other server{} blocks of the same nginx that log what they
# receive (HTTP/1.1; HTTP/2 for grpc_pass) and a small uwsgi responder.
#
# Findings (each subtest fails on 151de4c):
#   - an upstream that fails while the proxy handler runs ("no live
#     upstreams", also an unresolvable proxy_pass variable) with error_page
#     to a named location: the whole upstream start-up runs inside the
#     wrapped content handler, the token is still in headers_in and goes to
#     the error_page target's upstream, whose connection is then not tagged
#     (B7a, B10); when the target authenticates, its access handler takes
#     the delegated token as the client's Authorization: an authenticated
#     user gets a 401 challenge (B14);
#   - $http_authorization evaluated while the request is built ("proxy_set_
#     header Authorization $http_authorization") is a cacheable variable:
#     the access log and add_header show the token afterwards, and an
#     error_page target with the same proxy_set_header sends it to its own
#     upstream (B7a);
#   - proxy_next_upstream: reinit_request resets u->process_header, the
#     retried request loses the B15 wrapper, the client gets a bare 401;
#   - a B15 refusal is an "invalid header" for nginx, so a failed server
#     (max_fails): two users' refusals take a two-server farm down for
#     everyone;
#   - grpc_pass: HPACK (Huffman) hides the token from the "was it sent"
#     check: the connection is not tagged and is reused by a kcd_auth off
#     location (B10), and a refusal is a bare 401 (B15);
#   - uwsgi_cache (and fastcgi_cache, scgi_cache: same code path) in a
#     delegating location serves alice's response to carol (B10, B14), as
#     proxy_cache did; so does proxy_store (a file served to the next
#     user);
#   - an error nginx finds while reading the request head (TRACE: 405,
#     an unknown Transfer-Encoding: 501, a bad Content-Length: 400) with a
#     server-level error_page: the internal redirect starts at the server
#     rewrite phase, post-read never runs, the client's Basic password or
#     NTLM message reaches the error_page target's upstream (B7);
#   - "Authorization:<TAB>Basic ..." (OWS, RFC 9110 5.6.3) is not taken
#     into custody: the client's password reaches the upstream (B7);
#   - "if" inside a delegating location: NULL content handler, the worker
#     crashes (last: it takes the worker down).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use POSIX ();
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "81-adversary.t: timeout\n" };
$SIG{PIPE} = "IGNORE";
alarm 200;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));

my $krb5_conf = $realm->krb5_conf;
my $keytab = $realm->keytab('proxy');
my $port = port(8080);
my $bport = port(9100);
my $gport = port(9101);
my $p444 = port(9102);
my $uport = port(9103);
my $dead = port(9104);      # nothing listens there
my $bport2 = port(9105);

# uwsgi responder: logs "REQUEST_URI|HTTP_AUTHORIZATION", answers with a tag
# of the Authorization it got
$t->write_file('uwsgi.py', <<'EOF');
import socket, sys, struct, threading, hashlib
port = int(sys.argv[1]); logf = sys.argv[2]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', port)); s.listen(16)
def rd(c, n):
    b = b''
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x: raise EOFError
        b += x
    return b
def h(c):
    try:
        hdr = rd(c, 4); size = struct.unpack('<H', hdr[1:3])[0]
        body = rd(c, size); v = {}; i = 0
        while i < len(body):
            kl = struct.unpack('<H', body[i:i+2])[0]; i += 2
            k = body[i:i+kl].decode(); i += kl
            vl = struct.unpack('<H', body[i:i+2])[0]; i += 2
            v[k] = body[i:i+vl].decode(); i += vl
        auth = v.get('HTTP_AUTHORIZATION', '-')
        with open(logf, 'a') as f:
            f.write('%s|%s\n' % (v.get('REQUEST_URI', ''), auth))
        tag = hashlib.sha256(auth.encode()).hexdigest()[:16]
        b = ('content for %s\n' % tag).encode()
        c.sendall(('HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n'
                   'Content-Length: %d\r\n\r\n' % len(b)).encode() + b)
    except Exception:
        pass
    c.close()
open(logf, 'a').close()
while True:
    c, _ = s.accept()
    threading.Thread(target=h, args=(c,), daemon=True).start()
EOF

my $upid = fork;
die "fork: $!" unless defined $upid;
if ($upid == 0) {
    exec('/usr/bin/python3', "$dir/uwsgi.py", $uport, "$dir/uwsgi.log")
        or POSIX::_exit(127);
}
END { kill 'TERM', $upid if $upid; }

$t->write_config(<<"EOF",
    log_format bk '\$uri|\$http_authorization|\$connection';
    log_format front '\$uri|\$status|\$http_authorization|\$remote_user';

    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;

    upstream bk {
        server 127.0.0.1:$bport;
        keepalive 4;
    }

    upstream retry {
        server 127.0.0.1:$p444 max_fails=0;
        server 127.0.0.1:$bport backup;
    }

    # a farm of two servers (nginx defaults: max_fails=1 fail_timeout=10s)
    upstream pair {
        server 127.0.0.1:$bport;
        server 127.0.0.1:$bport2;
    }

    # a drained pool: every request gets "no live upstreams" at once
    upstream deadpool {
        server 127.0.0.1:$dead down;
    }

    # HTTP/1.1 upstream: one log line per request with its Authorization
    server {
        listen 127.0.0.1:$bport;
        listen 127.0.0.1:$bport2;
        access_log %%TESTDIR%%/bk.log bk;

        location /s401/ {
            add_header WWW-Authenticate
                "Negotiate oRQwEqADCgEBoQsGCSqGSIb3EgECAg==" always;
            return 401;
        }
        location /s404/ {
            return 404;
        }
        location /echo/ {
            return 200 "content for \$http_authorization\\n";
        }
        location / {
            return 200 "ok \$uri\\n";
        }
    }

    # HTTP/2 (h2c) upstream for grpc_pass
    server {
        listen 127.0.0.1:$gport http2;
        access_log %%TESTDIR%%/g.log bk;

        location /g401/ {
            add_header WWW-Authenticate
                "Negotiate oRQwEqADCgEBoQsGCSqGSIb3EgECAg==" always;
            return 401;
        }
        location / {
            return 200 "ok \$uri\\n";
        }
    }

    # closes every connection without an answer: proxy_next_upstream
    server {
        listen 127.0.0.1:$p444;
        return 444;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name proxy.kcd.test;

        access_log %%TESTDIR%%/front.log front;

        # errors nginx finds while reading the request head
        error_page 405 501 = \@fallback;

        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /pub/ {
            kcd_auth off;
            proxy_pass http://bk;
        }

        location \@fallback {
            kcd_auth off;
            proxy_pass http://bk;
        }

        location /plain/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://bk;
        }

        location /if/ {
            kcd_spn HTTP/backend.kcd.test;
            if (\$request_method = GET) {
                set \$is_get 1;
            }
            proxy_pass http://bk;
        }

        location /dead/ {
            kcd_spn HTTP/backend.kcd.test;
            error_page 502 = \@fallback;
            proxy_pass http://deadpool;
        }

        location /dead2/ {
            kcd_spn HTTP/backend.kcd.test;
            error_page 502 = /plain/after-dead2;
            proxy_pass http://deadpool;
        }

        location /deadvar/ {
            kcd_spn HTTP/backend.kcd.test;
            set \$be nosuch.invalid;
            error_page 502 = \@fallback;
            proxy_pass http://\$be;
        }

        location /cachevar/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_set_header Authorization \$http_authorization;
            add_header X-Debug-Auth \$http_authorization always;
            proxy_pass http://bk;
        }

        location /refuse/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://bk/s401/;
        }

        location /pair/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://pair/;
        }

        location /cachevar2/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_set_header Authorization \$http_authorization;
            proxy_intercept_errors on;
            error_page 404 = \@fallback2;
            proxy_pass http://bk/s404/;
        }

        location \@fallback2 {
            kcd_auth off;
            proxy_set_header Authorization \$http_authorization;
            proxy_pass http://bk;
        }

        location /retry/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://retry/s401/;
        }
    }
EOF
    main => "env KRB5_CONFIG=$krb5_conf;\n"
          . "env KRB5RCACHEDIR=" . $realm->dir . "/rcache;\n"
          . "thread_pool default threads=2;");

$t->run;

for (1 .. 50) { last if -e "$dir/uwsgi.log"; sleep 0.1; }

###############################################################################

sub login {
    my ($user, $path, $p) = @_;
    my $c = KcdTest::Conn->new(port => $p || $port, timeout => 10);
    my ($r1, $r) = ntlm_login($c, $path, user => $user, domain => 'KCD',
                              password => $PW{$user});
    return ($c, $r);
}

# a second front nginx (same realm, users, backends) for features a fix may
# refuse in "nginx -t": returns the running instance, or undef and the
# output of nginx -t
sub front {
    my ($portn, $http, $locations) = @_;
    my $f = KcdTest->new;
    $f->write_file('users', $t->read_file('users'));
    $f->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    $http
    server {
        listen 127.0.0.1:%%PORT_$portn%%;
        server_name proxy.kcd.test;
        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
$locations
    }
EOF
        main => "env KRB5_CONFIG=$krb5_conf;\n"
              . "env KRB5RCACHEDIR=" . $realm->dir . "/rcache;\n"
              . "thread_pool default threads=2;");
    my ($rc, $out) = $f->nginx_test;
    return (undef, $out) if $rc != 0;
    $f->run;
    return ($f, $out);
}

sub lines {
    my ($file) = @_;
    my $deadline = time + 2;
    my @l;
    while (1) {
        @l = map { [ split /\|/, $_, -1 ] }
             split /\n/, $t->read_file($file) // '';
        return @l if time > $deadline;
        sleep 0.1;
        my @m = map { [ split /\|/, $_, -1 ] }
                split /\n/, $t->read_file($file) // '';
        return @m if @m == @l;
    }
}

my $TOKEN = qr/Negotiate YII/;

# connections (of the upstream) that carried a delegated token
sub token_conns {
    my ($file) = @_;
    return map { $_->[2] => 1 } grep { ($_->[1] // '') =~ $TOKEN }
           lines($file);
}

sub line_of {
    my ($file, $uri) = @_;
    my ($l) = grep { $_->[0] eq $uri } lines($file);
    return $l || [];
}

my ($c, $r) = login('alice', '/plain/x');
is($r->{status}, 200, 'alice logs on and is delegated');
like(line_of('bk.log', '/plain/x')->[1] // '', $TOKEN,
     'the upstream of /plain/ gets the token');

###############################################################################

subtest 'finding: an upstream that fails inside the proxy handler + '
        . 'error_page to a named location gets the token there (B7a)' => sub {
    my $x = $c->get('/dead/x');
    is($x->{status}, 200, 'no live upstreams: the error_page target answers');
    my $l = line_of('bk.log', '/dead/x');
    ok(@$l, '@fallback (kcd_auth off) reached its upstream');
    is($l->[1], '-', 'the delegated token is not sent to the upstream of '
       . 'the error_page target')
        or diag('it got ' . substr($l->[1] // '', 0, 40) . '...');

    my $v = $c->get('/deadvar/x');
    is($v->{status}, 200, 'proxy_pass with an unresolvable variable: the '
       . 'error_page target answers');
    is(line_of('bk.log', '/deadvar/x')->[1] // '', '-',
       'the delegated token is not sent there either');

    my $y = $c->get('/pub/after-dead');
    is($y->{status}, 200, 'anonymous request');
    my %tagged = token_conns('bk.log');
    ok(!$tagged{line_of('bk.log', '/pub/after-dead')->[2]},
       'the anonymous request does not reuse a connection that carried '
       . 'the token (B10)');
};

subtest 'finding: the same, error_page into a delegating location: the '
        . 'delegated token is taken as the client\'s Authorization, an '
        . 'authenticated user is challenged (B14)' => sub {
    my $mark = $t->log_mark;
    my $x = $c->get('/dead2/x');
    is($x->{status}, 200, 'the error_page target (kcd_auth, kcd_spn, the '
       . 'identity holds) serves alice')
        or diag('got ' . $x->{status} . ', WWW-Authenticate: '
                . join(', ', $x->headers_all('WWW-Authenticate')));
    like(line_of('bk.log', '/plain/after-dead2')->[1] // '', $TOKEN,
         'delegated there');
    unlike($t->error_log(since => $mark), qr/scheme "Negotiate" is not offered/,
           'the module never reads its own token as client credentials');
};

subtest 'finding: $http_authorization evaluated while the request is built '
        . 'stays cached with the token (B7a)' => sub {
    my $x = $c->get('/cachevar/x');
    is($x->{status}, 200, 'delegated');
    # (the upstream gets the token through "proxy_set_header Authorization
    # $http_authorization"; that is the delegating location's own upstream)
    my $h = $x->header('X-Debug-Auth') // '';
    unlike($h, $TOKEN, 'add_header $http_authorization: not sent to the '
           . 'client');
    my ($f) = grep { $_->[0] eq '/cachevar/x' } lines('front.log');
    unlike($f->[2] // '', $TOKEN, 'log_format $http_authorization: not in '
           . 'the access log');

    my $y = $c->get('/cachevar2/x');
    is($y->{status}, 200, 'backend 404, error_page to a kcd_auth off named '
       . 'location');
    my $l = line_of('bk.log', '/cachevar2/x');
    ok(@$l, 'the error_page target reached its upstream');
    is($l->[1], '-', 'the token cached in $http_authorization is not sent '
       . 'to the error_page target\'s upstream')
        or diag('it got ' . substr($l->[1] // '', 0, 40) . '...');
};

subtest 'finding: proxy_next_upstream drops the B15 check: the retried '
        . 'request\'s refusal is a bare 401 (B15)' => sub {
    my $mark = $t->log_mark;
    my $x = $c->get('/retry/x');
    like(line_of('bk.log', '/s401/x')->[1] // '', $TOKEN,
         'the backup server got the token and answered 401');
    is($x->{status}, 502, 'the client gets 502, never a 401 without a '
       . 'challenge')
        or diag('got ' . $x->{status} . ', WWW-Authenticate: '
                . ($x->header('WWW-Authenticate') // 'none'));
    like($t->error_log(since => $mark), qr/refused the delegated ticket/,
         'the error log names the refusal');
};

subtest 'held: slow and chunked bodies (create_request after the handler), '
        . 'pipelining, B15 on the deferred path' => sub {
    my $big = 'z' x 200000;
    $c->send("POST /plain/body HTTP/1.1\r\nHost: localhost\r\n"
             . 'Content-Length: ' . length($big) . "\r\n\r\n");
    sleep 0.3;
    $c->send($big);
    is($c->read_response->{status}, 200, 'POST, body after a pause');
    like(line_of('bk.log', '/plain/body')->[1] // '', $TOKEN,
         'the token goes with the deferred request');

    my $x = $c->request({ method => 'POST', path => '/plain/chunked',
                          chunked => ['a' x 10, 'b' x 70000] });
    is($x->{status}, 200, 'chunked POST');
    like(line_of('bk.log', '/plain/chunked')->[1] // '', $TOKEN,
         'the token goes with it');

    $c->send("POST /refuse/slow HTTP/1.1\r\nHost: localhost\r\n"
             . "Content-Length: 100000\r\n\r\n");
    sleep 0.3;
    $c->send('q' x 100000);
    is($c->read_response->{status}, 502,
       'a refusal on the deferred path is 502 (B15)');

    $c->send("GET /plain/pipe1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
             . "GET /pub/pipe2 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    is($c->read_response->{status}, 200, 'pipelined: delegated');
    is($c->read_response->{status}, 200, 'pipelined: anonymous');
    is(line_of('bk.log', '/pub/pipe2')->[1], '-', 'no token on the '
       . 'anonymous pipelined request');
};

subtest 'finding: a backend refusal (B15) counts as a failed server: two '
        . 'refusals take a two-server farm down for everyone' => sub {
    my $mark = $t->log_mark;
    for my $p ('/pair/s401/a', '/pair/s401/b') {
        is($c->get($p)->{status}, 502, "$p: refused ticket, 502 (B15)");
    }
    my ($c5, $x) = login('carol', '/pair/ok');
    is($x->{status}, 200, 'carol\'s next request to the farm is served')
        or diag($t->error_log(since => $mark) =~ /(no live upstreams)/
                ? 'no live upstreams' : 'got ' . $x->{status});
    unlike($t->error_log(since => $mark), qr/no live upstreams/,
           'no "no live upstreams" after refusals of a user\'s ticket');
    $c5->close;
};

subtest 'finding: grpc_pass: the token is sent, but unseen (HPACK): the '
        . 'connection is not tagged, a refusal is a bare 401 (B10, B15)'
        => sub {
    my ($g, $out) = front(8081, <<"EOF", <<'EOF');
    upstream gk {
        server 127.0.0.1:$gport;
        keepalive 4;
    }
EOF
        location /g/ {
            kcd_spn HTTP/backend.kcd.test;
            grpc_pass grpc://gk;
        }
        location /g401/ {
            kcd_spn HTTP/backend.kcd.test;
            grpc_pass grpc://gk;
        }
        location /ganon/ {
            kcd_auth off;
            grpc_pass grpc://gk;
        }
EOF
    unless ($g) {
        like($out, qr/grpc_pass.*nginx\.conf:\d+/,
             'grpc_pass in a delegating location refused by nginx -t, '
             . 'with file:line');
        return;
    }
    my ($cg, $x) = login('alice', '/g/x', port(8081));
    is($x->{status}, 200, 'grpc_pass delegated');
    like(line_of('g.log', '/g/x')->[1] // '', $TOKEN,
         'the HTTP/2 upstream got the token');
    my $y = $cg->get('/ganon/x');
    is($y->{status}, 200, 'kcd_auth off grpc_pass to the same upstream{}');
    my %tagged = token_conns('g.log');
    ok(!$tagged{line_of('g.log', '/ganon/x')->[2] // ''},
       'the anonymous request does not reuse the connection that carried '
       . 'alice\'s token');
    my $z = $cg->get('/g401/x');
    is($z->{status}, 502, 'a refusal of the ticket gives 502, not 401')
        or diag('got ' . $z->{status} . ', WWW-Authenticate: '
                . ($z->header('WWW-Authenticate') // 'none'));
    like($g->error_log, qr/refused the delegated ticket/,
         'the error log names the refusal');
    $cg->close;
    $g->stop;
};

subtest 'finding: uwsgi_cache in a delegating location serves alice\'s '
        . 'response to carol (B10, B14)' => sub {
    my ($u, $out) = front(8082,
                          'uwsgi_cache_path %%TESTDIR%%/ucache keys_zone=u:1m;',
                          <<"EOF");
        location /uc/ {
            kcd_spn HTTP/backend.kcd.test;
            uwsgi_cache u;
            uwsgi_cache_key \$uri;
            uwsgi_cache_valid 200 10m;
            include /etc/nginx/uwsgi_params;
            uwsgi_pass 127.0.0.1:$uport;
        }
EOF
    unless ($u) {
        like($out,
             qr/"uwsgi_cache" in a location that delegates.*nginx\.conf:\d+/s,
             'refused by nginx -t, with file:line');
        return;
    }
    my ($ca, $x) = login('alice', '/uc/x', port(8082));
    is($x->{status}, 200, 'alice through uwsgi_pass');
    like(line_of('uwsgi.log', '/uc/x')->[1] // '', $TOKEN,
         'the uwsgi backend got alice\'s token');
    my ($cc, $y) = login('carol', '/uc/x', port(8082));
    is($y->{status}, 200, 'carol logs on');
    isnt($y->{body}, $x->{body}, 'carol does not get the response the '
         . 'backend made for alice\'s token');
    $ca->close;
    $cc->close;
    $u->stop;
};

subtest 'finding: proxy_store in a delegating location keeps alice\'s '
        . 'response as a file that carol is served (B10, B14)' => sub {
    my ($s, $out) = front(8083, '', <<"EOF");
        location /echo/ {
            kcd_spn HTTP/backend.kcd.test;
            root %%TESTDIR%%/store;
            try_files \$uri \@fetch;
        }
        location \@fetch {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://127.0.0.1:$bport;
            proxy_store on;
            root %%TESTDIR%%/store;
        }
EOF
    unless ($s) {
        like($out,
             qr/"proxy_store" in a location that delegates.*nginx\.conf:\d+/s,
             'refused by nginx -t, with file:line');
        return;
    }
    my ($ca, $x) = login('alice', '/echo/x', port(8083));
    is($x->{status}, 200, 'alice through proxy_store');
    like($x->{body}, $TOKEN, 'the backend\'s answer for alice (it shows '
         . 'her token)');
    my ($cc, $y) = login('carol', '/echo/x', port(8083));
    is($y->{status}, 200, 'carol logs on');
    isnt($y->{body}, $x->{body}, 'carol does not get the response the '
         . 'backend made for alice');
    $ca->close;
    $cc->close;
    $s->stop;
};

subtest 'finding: an error found while reading the request head (TRACE: '
        . '405, Transfer-Encoding: 501) + error_page: post-read never runs, '
        . 'the client\'s Authorization reaches the upstream (B7)' => sub {
    my $basic = b64("KCD\\alice:$PW{alice}");
    my $type1 = 'NTLM ' . b64(type1());
    for my $req (["TRACE /trace/basic HTTP/1.1\r\nHost: localhost\r\n"
                  . "Authorization: Basic $basic\r\n\r\n", '/trace/basic'],
                 ["GET /te/ntlm HTTP/1.1\r\nHost: localhost\r\n"
                  . "Transfer-Encoding: gzip\r\n"
                  . "Authorization: $type1\r\n\r\n", '/te/ntlm'])
    {
        my $c3 = KcdTest::Conn->new(port => $port, timeout => 10);
        my $x = eval { $c3->request($req->[0]) };
        ok($x, "$req->[1]: answered");
        my $l = line_of('bk.log', $req->[1]);
        is($l->[1] // '-', '-', "$req->[1]: the client's credentials do not "
           . 'reach the upstream of the error_page target')
            or diag('it got ' . $l->[1]);
        $c3->close;
    }
};

subtest 'finding: a client Authorization with a tab before the scheme '
        . '(RFC 9110 OWS) is not taken: it reaches the upstream (B7)' => sub {
    my $basic = b64("KCD\\alice:$PW{alice}");
    my $c3 = KcdTest::Conn->new(port => $port, timeout => 10);
    my $x = $c3->request("GET /pub/tab HTTP/1.1\r\nHost: localhost\r\n"
                         . "Authorization:\tBasic $basic\r\n\r\n");
    is($x->{status}, 200, 'kcd_auth off location answered');
    my $l = line_of('bk.log', '/pub/tab');
    ok(@$l, 'the request reached the upstream');
    unlike($l->[1] // '', qr/Basic/, 'alice\'s Basic password is not sent '
           . 'upstream');
    $c3->close;
};

subtest 'finding: "if" in a delegating location crashes the worker' => sub {
    my $mark = $t->log_mark;
    my $c4 = KcdTest::Conn->new(port => $port, timeout => 10);
    my ($r1, $x) = eval {
        ntlm_login($c4, '/if/x', user => 'alice', domain => 'KCD',
                   password => $PW{alice});
    };
    is($x && $x->{status}, 200, 'the request is answered')
        or diag($@);
    like(line_of('bk.log', '/if/x')->[1] // '', $TOKEN,
         'and delegated');
    unlike($t->error_log(since => $mark), qr/exited on signal/,
           'no worker crashed');
};

$c->close;

done_testing();
