#!/usr/bin/perl

# kcd_strip_negotiate (SPEC directive table, B1), what crosses the proxy
# (B7: the client's Authorization never reaches the upstream; B10: upstream
# mutual-auth "WWW-Authenticate: Negotiate <token>" and Persistent-Auth
# never reach the client) and the inheritance of kcd_strip_negotiate
# http -> server -> location.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use MIME::Base64 qw(encode_base64);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);
my $cert = $t->make_cert('proxy');

$t->write_file('users', "KCD\\alice:" . unpack('H*', nt_hash('Password')) . "\n");

$t->write_config(<<"EOF");
    map \$http_user_agent \$nonego {
        ~*Communicator  1;
        default         "";
    }

    upstream backend {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    kcd_ntlm_user_file %%TESTDIR%%/users;
    kcd_strip_negotiate on;

    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
        kcd_ntlm_domain KCD;

        # overrides the http level
        kcd_strip_negotiate off;

        location /on/ {
            kcd_auth ntlm negotiate basic;
            kcd_strip_negotiate on;
            proxy_pass http://backend/;
        }

        location /off/ {
            kcd_auth ntlm negotiate basic;
            proxy_pass http://backend/;
        }

        location /ua/ {
            kcd_auth ntlm negotiate;
            kcd_strip_negotiate \$nonego;
            proxy_pass http://backend/;
        }

        # an administrator copying the client's header on purpose gets
        # nothing: the value is gone, not renamed
        location /copy/ {
            kcd_auth ntlm basic;
            proxy_set_header Connection "";
            proxy_set_header X-Auth-Copy "[\$http_authorization]";
            proxy_set_header X-KA-Copy "[\$http_keep_alive]";
            proxy_pass http://backend/;
        }

        location /var/ {
            kcd_auth ntlm negotiate;
            kcd_strip_negotiate \$http_x_strip;
            proxy_pass http://backend/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        kcd_ntlm_domain KCD;
        kcd_auth ntlm negotiate;

        location /inh/ {
            proxy_pass http://backend/;
        }

        location /ovr/ {
            kcd_strip_negotiate off;
            proxy_pass http://backend/;
        }
    }
EOF
$t->run;

sub conn { return KcdTest::Conn->new(port => port(shift), @_) }

# the scheme names of every WWW-Authenticate of a response
sub schemes {
    my ($r) = @_;
    return join(',', map { /^(\S+)/ ? $1 : '' } $r->headers_all('WWW-Authenticate'));
}

sub has_negotiate {
    my ($r) = @_;
    return scalar grep { /^\s*Negotiate\b/i } $r->headers_all('WWW-Authenticate');
}

sub challenge {
    my ($port, $path, @h) = @_;
    return conn($port)->get($path, headers => [@h]);
}

###########################################################################
# the module's own 401

my $r = challenge(8080, '/on/x');
is($r->{status}, 401, 'strip on: 401');
is(schemes($r), 'NTLM', 'strip on: only NTLM offered (no Basic without TLS)');
ok(!has_negotiate($r), 'strip on: no Negotiate in the module\'s challenge');

$r = challenge(8080, '/off/x');
is(schemes($r), 'NTLM,Negotiate', 'strip off (server level): NTLM and Negotiate in order');

$r = conn(8443, ssl => 1)->get('/on/x');
is(schemes($r), 'NTLM,Basic', 'strip on over TLS: NTLM and Basic, no Negotiate');
$r = conn(8443, ssl => 1)->get('/off/x');
is(schemes($r), 'NTLM,Negotiate,Basic', 'strip off over TLS: all three in order');

my $comm = 'Microsoft Office Communicator 2007 (OC/2.0.6362.0)';
my $ff = 'Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Firefox/115.0';

$r = challenge(8080, '/ua/x', 'User-Agent' => $comm);
is($r->{status}, 401, 'map: Communicator gets 401');
ok(!has_negotiate($r), 'map: Communicator is not offered Negotiate');
is(schemes($r), 'NTLM', 'map: Communicator still offered NTLM');
$r = challenge(8080, '/ua/x', 'User-Agent' => $ff);
ok(has_negotiate($r), 'map: a browser is offered Negotiate');
$r = challenge(8080, '/ua/x');
ok(has_negotiate($r), 'map: no User-Agent -> empty -> Negotiate offered');

$r = challenge(8080, '/var/x', 'X-Strip' => '0');
ok(has_negotiate($r), 'variable value "0" means off');
$r = challenge(8080, '/var/x', 'X-Strip' => '1');
ok(!has_negotiate($r), 'variable value "1" means on');
$r = challenge(8080, '/var/x', 'X-Strip' => 'yes');
ok(!has_negotiate($r), 'any other non-empty value means on');
$r = challenge(8080, '/var/x', 'X-Strip' => '00');
ok(!has_negotiate($r), 'value "00" is not "0": on');
$r = challenge(8080, '/var/x');
ok(has_negotiate($r), 'unset variable (empty) means off');

# inheritance
$r = challenge(8081, '/inh/x');
is(schemes($r), 'NTLM', 'http-level "on" inherited by server and location');
$r = challenge(8081, '/ovr/x');
is(schemes($r), 'NTLM,Negotiate', 'location "off" overrides the inherited "on"');

###########################################################################
# upstream 401 after the client authenticated

sub login {
    my ($port, $path, %o) = @_;
    my $c = conn($port, %o);
    my ($r1, $r2) = ntlm_login($c, $path, user => 'alice', domain => 'KCD',
                               password => 'Password');
    return ($c, $r1, $r2);
}

$b->clear;
my ($c, $r1, $r2) = login(8080, '/on/401neg');
is($r1->{status}, 401, 'upstream 401 (strip on): Type 2 first');
ok(defined $r1->{ntlm_type2}, 'upstream 401 (strip on): got a Type 2')
    or diag($r1->{ntlm_error});
ok($r2 && $r2->header('X-Backend-Conn'), 'upstream 401 (strip on): answer comes from the backend');
is($r2 && $r2->{status}, 401, 'upstream 401 (strip on): backend 401 passed');
is($r2 && schemes($r2), 'NTLM,Basic',
   'upstream 401 (strip on): client sees NTLM and Basic, no Negotiate');
my $seen_token = $r2 ? b64($r2->{ntlm}{type3}) : 'none';

# a failed logon in a strip-on location: the bare challenges, no Negotiate
{
    my $fc = conn(8443, ssl => 1);
    my ($f1, $f2) = ntlm_login($fc, '/on/failed', user => 'alice', domain => 'KCD',
                               password => 'wrong');
    is($f2 && $f2->{status}, 401, 'strip on, failed NTLM logon: 401');
    is($f2 && schemes($f2), 'NTLM,Basic', 'strip on, failed NTLM logon: NTLM and Basic, no Negotiate');
    ($f1, $f2) = ntlm_login(conn(8443, ssl => 1), '/off/failed', user => 'alice',
                            domain => 'KCD', password => 'wrong');
    is($f2 && schemes($f2), 'NTLM,Negotiate,Basic', 'strip off, failed NTLM logon: all three');
}

# same connection, now connection-bound: still stripped
$r = $c->get('/on/401neg');
is(schemes($r), 'NTLM,Basic', 'upstream 401 (strip on), bound connection: no Negotiate');

($c, $r1, $r2) = login(8080, '/off/401neg');
is($r2 && $r2->{status}, 401, 'upstream 401 (strip off): backend 401 passed');
is($r2 && schemes($r2), 'Negotiate,NTLM,Basic',
   'upstream 401 (strip off): client sees Negotiate, NTLM and Basic');

($c, $r1, $r2) = login(8080, '/ua/401neg');
$r = $c->get('/ua/401neg', headers => ['User-Agent' => $comm]);
is(schemes($r), 'NTLM,Basic', 'upstream 401 with the map: Communicator sees no Negotiate');
$r = $c->get('/ua/401neg', headers => ['User-Agent' => $ff]);
is(schemes($r), 'Negotiate,NTLM,Basic', 'upstream 401 with the map: a browser sees Negotiate');

($c, $r1, $r2) = login(8081, '/inh/401neg');
is($r2 && schemes($r2), 'NTLM,Basic', 'upstream 401, inherited "on": no Negotiate');
($c, $r1, $r2) = login(8081, '/ovr/401neg');
is($r2 && schemes($r2), 'Negotiate,NTLM,Basic', 'upstream 401, location "off": Negotiate passes');

###########################################################################
# B10: upstream mutual authentication never reaches the client

for my $loc (qw(on off)) {
    ($c, $r1, $r2) = login(8080, "/$loc/mutual");
    is($r2 && $r2->{status}, 200, "/mutual (strip $loc): 200");
    is($r2 && scalar($r2->headers_all('WWW-Authenticate')), 0,
       "/mutual (strip $loc): no WWW-Authenticate: Negotiate <token> for the client");
    ok($r2 && !$r2->has_header('Persistent-Auth'),
       "/mutual (strip $loc): no Persistent-Auth for the client");
    unlike($r2 ? $r2->{raw_head} : '', qr/\Q${\ substr(KcdBackend::mutual_token(), 0, 24)}\E/,
           "/mutual (strip $loc): the mutual token is nowhere in the response head");
    $r = $c->get("/$loc/mutual");
    ok(!$r->has_header('WWW-Authenticate') && !$r->has_header('Persistent-Auth'),
       "/mutual (strip $loc), bound connection: still hidden");
}

###########################################################################
# B7: the client's Authorization never reaches the upstream

$b->clear;
my @tokens;
for my $i (1 .. 3) {
    ($c, $r1, $r2) = login(8080, "/off/ntlm-upstream-$i");
    is($r2 && $r2->{status}, 200, "NTLM logon $i: 200");
    push @tokens, b64($r2->{ntlm}{type3}) if $r2;
    push @tokens, b64(type1());
    $r = $c->post("/off/after-$i", body => 'x' x 10);
    is($r->{status}, 200, "NTLM logon $i: bound request 200");
}

my $basic = encode_base64('KCD\\alice:Password', '');
push @tokens, $basic;
my $tc = conn(8443, ssl => 1);
for my $i (1 .. 2) {
    $r = $tc->get("/off/basic-$i", headers => [Authorization => "Basic $basic"]);
    is($r->{status}, 200, "Basic logon over TLS $i: 200");
}
my ($sc, $s1, $s2) = login(8443, '/off/tls-ntlm', ssl => 1);
is($s2 && $s2->{status}, 200, 'NTLM logon over TLS: 200');
push @tokens, b64($s2->{ntlm}{type3}) if $s2;

($c, $r1, $r2) = login(8080, '/copy/ntlm-copy');
is($r2 && $r2->{status}, 200, 'NTLM logon, location copying $http_authorization: 200');
push @tokens, b64($r2->{ntlm}{type3}) if $r2;
$r = $tc->get('/copy/basic-copy', headers => [Authorization => "Basic $basic"]);
is($r->{status}, 200, 'Basic logon, location copying $http_authorization: 200');
for my $u ('/ntlm-copy', '/basic-copy') {
    my ($cq) = grep { $_->{uri} eq $u } $b->requests;
    is($cq && $cq->header('X-Auth-Copy'), '[]', "$u: \$http_authorization is empty upstream");
    is($cq && $cq->header('X-KA-Copy'), '[]', "$u: \$http_keep_alive is empty upstream");
}

my @q = grep { $_->{uri} =~ m{^/(?:ntlm-upstream|after|basic|tls-ntlm|ntlm-copy)} } $b->requests;
is(scalar @q, 11, 'every authenticated request reached the backend once');
is(scalar(grep { defined $_->header('Authorization') } @q), 0,
   'no request reached the backend with an Authorization header');

my @leak;
for my $q (@q) {
    for my $h (@{$q->{headers}}) {
        for my $tok (@tokens) {
            # a prefix long enough to be unique, short enough to catch
            # a truncated copy
            push @leak, "$q->{uri}: $h->[0]: $h->[1]"
                if index($h->[1], substr($tok, 0, 16)) >= 0
                || index($h->[1], 'TlRMTVNTUA') >= 0;
        }
    }
}
is(scalar @leak, 0, 'no header value at the backend carries the client\'s token')
    or diag(join("\n", @leak));
is(scalar(grep { lc $_->[0] eq 'keep-alive' } map { @{$_->{headers}} } @q), 0,
   'the hidden header is not forwarded under another name (Keep-Alive)');

my %conns = map { $_->{conn} => 1 } @q;
ok(keys(%conns) < @q, 'upstream keep-alive connections were reused ('
   . scalar(keys %conns) . ' for ' . scalar(@q) . ' requests)');

done_testing();
