#!/usr/bin/perl

# B9: never block the event loop.  A delaying TCP relay (t/lib/KcdRelay.pm)
# sits between nginx and the KDC (the realm's krb5.conf uses TCP only).
# With one worker and a small thread pool, a request that needs the KDC
# (NTLM login of a user whose ticket is not cached) waits for the slow KDC
# in the pool, while requests on other connections that need no KDC call
# (a static file, the 401 + Type 2 leg of an NTLM handshake, a delegated
# request served from the ticket cache) are answered at once.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use IO::Select;
use Time::HiRes qw(time sleep);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;
use KcdApache;
use KcdRelay;

my $t = KcdTest->new->skip_unless_module;

# a private copy of the module: a rebuild in place while nginx runs would
# crash its workers (SIGBUS on the mapped file), which is not what we test
system('cp', KcdTest::module_path(), $t->testdir . '/kcd_module.so') == 0
    or die "cannot copy the module\n";
$ENV{KCD_MODULE} = $t->testdir . '/kcd_module.so';

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;

# Bounded: a blocked worker must fail the test, not hang the suite.
$SIG{ALRM} = sub { die "52-nonblocking.t: timeout\n" };
alarm 150;

my $DELAY = 2;          # seconds the relay holds every KDC connection
my $FAST = 1;           # "not delayed": well under the relay delay

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm")
    or plan skip_all => 'realm did not start';

# more users than threads, so that parallel KDC waits can be tested
my %pw = %KcdRealm::PASSWORDS;
for my $u (qw(dave erin frank)) {
    $pw{$u} = ucfirst($u) . '-Pass1';
}
my ($krc, $kout) = $realm->kadmin(map { "addprinc -pw $pw{$_} $_" }
                                  qw(dave erin frank));
die "kadmin: $kout" if $krc;

my $be = KcdApache->start(dir => "$dir/apache", realm => $realm);

my $relay = KcdRelay->start(dir => $dir, to_port => $realm->kdc_port);
$realm->set_kdc_address('127.0.0.1', $relay->port);

$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($pw{$_})) . "\n" } sort keys %pw));
mkdir "$dir/html";
$t->write_file('html/static.txt', "static file\n");

my $kt = $realm->keytab('proxy');
my $krb5 = $realm->krb5_conf;
my $bport = $be->port;

$t->write_config(<<"EOF", workers => 1, main => "env KRB5_CONFIG=$krb5;\nthread_pool default threads=2;");
    log_format kcd '\$request_uri \$kcd_principal cache=\$kcd_ticket_cache_status '
                   '\$status \$request_time';
    access_log $dir/kcd.log kcd;

    kcd_keytab             $kt;
    kcd_service_principal  HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache       zone=tickets:1m;

    upstream apache {
        server 127.0.0.1:$bport;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        kcd_ntlm_domain KCD;

        location /static/ {
            root $dir/html;
            rewrite ^/static/(.*)\$ /\$1 break;
        }

        location / {
            kcd_auth            ntlm;
            kcd_ntlm_user_file  $dir/users;
            kcd_realm           KCD.TEST;
            kcd_spn             HTTP/backend.kcd.test;

            proxy_pass          http://apache;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
            proxy_set_header    Host backend.kcd.test;
        }
    }
EOF
$t->run;

my $T0 = time;
my @events;    # [name, seconds since the slow request was sent]

sub ev { push @events, [$_[0], time - $T0] }

# The first leg of an NTLM handshake on a new connection: returns the
# connection, the Type 1 and the Type 3 request text (not sent).
sub ntlm_prepare {
    my ($user, $path) = @_;
    my $c = KcdTest::Conn->new(port => port(8080), timeout => 30);
    my $t1 = type1();
    my $r = $c->get($path, headers => [Authorization => 'NTLM ' . b64($t1)]);
    die "no Type 2 for $user: status $r->{status}\n" unless $r->{status} == 401;
    my ($t2) = map { /^NTLM\s+(\S+)/ ? unb64($1) : () }
        $r->headers_all('WWW-Authenticate');
    die "no Type 2 for $user\n" unless $t2;
    my $t3 = type3(type1 => $t1, type2 => $t2, user => $user,
                   domain => 'KCD', password => $pw{$user});
    my $req = $c->build_request({ method => 'GET', path => $path,
        headers => [Authorization => 'NTLM ' . b64($t3)] });
    return ($c, $req);
}

sub login {
    my ($user, $path) = @_;
    my ($c, $req) = ntlm_prepare($user, $path);
    my $t0 = time;
    $c->send($req);
    my $r = $c->read_response;
    return ($r, time - $t0, $c);
}

sub pending {
    my ($c) = @_;
    return !IO::Select->new($c->socket)->can_read(0) && !$c->{eof}
        && !length $c->{buf};
}

###############################################################################
# Warm-up at full speed: carol's ticket gets cached, and the proxy has its
# own TGT.

my ($r, $el) = login('carol', '/echo');
is($r->{status}, 200, 'warm-up: carol logs in at full KDC speed');
like($r->{body}, qr/^user=carol\@KCD\.TEST /, '... the backend sees carol');
cmp_ok($el, '<', $FAST, sprintf('... in %.3f s', $el));

###############################################################################
# The KDC becomes slow: alice's login waits for it, other connections don't.

$relay->set_delay($DELAY);
my $kdc_conns = $relay->connections;

my ($slow, $slow_req) = ntlm_prepare('alice', '/echo');
$T0 = time;
$slow->send($slow_req);
ev('slow sent');

# a static file, no kcd_auth
my $c = KcdTest::Conn->new(port => port(8080));
my $st = $c->get('/static/static.txt');
ev('static');
my $static_t = $events[-1][1];
my $static_pending = pending($slow);

# the 401 + Type 2 leg of a handshake on a kcd location
my $c2 = KcdTest::Conn->new(port => port(8080));
my $r2 = $c2->get('/echo', headers => [Authorization => 'NTLM ' . b64(type1())]);
ev('type2');
my $type2_t = $events[-1][1];
my $type2_pending = pending($slow);

# a plain 401 challenge
my $c3 = KcdTest::Conn->new(port => port(8080));
my $r3 = $c3->get('/echo');
ev('challenge');
my $chal_t = $events[-1][1];

# carol again on a new connection: ticket cache HIT, no KDC call
my ($rc, $carol_t) = login('carol', '/echo');
ev('cached');
my $cached_t = $events[-1][1];
my $cached_pending = pending($slow);

# now the slow one
my $rs = $slow->read_response(timeout => 30);
ev('slow done');
my $slow_t = $events[-1][1];

diag(join(', ', map { sprintf('%s %.3f s', @$_) } @events));

is($st->{status}, 200, 'static file while the KDC is slow: 200');
is($st->{body}, "static file\n", '... with its content');
cmp_ok($static_t, '<', $FAST,
       sprintf('... answered in %.3f s, not delayed by the KDC', $static_t));
ok($static_pending, '... while the KDC-bound login was still pending');

is($r2->{status}, 401, 'NTLM Type 1 while the KDC is slow: 401');
ok(scalar(grep { /^NTLM \S+/ } $r2->headers_all('WWW-Authenticate')),
   '... with a Type 2 challenge');
cmp_ok($type2_t, '<', $FAST,
       sprintf('... answered in %.3f s', $type2_t));
ok($type2_pending, '... while the KDC-bound login was still pending');

is($r3->{status}, 401, 'bare challenge while the KDC is slow: 401');
cmp_ok($chal_t, '<', $FAST, sprintf('... answered in %.3f s', $chal_t));

is($rc->{status}, 200, 'cached user (ticket cache HIT) while the KDC is slow: 200');
like($rc->{body}, qr/^user=carol\@KCD\.TEST /, '... delegated as carol');
cmp_ok($cached_t, '<', $FAST,
       sprintf('... answered in %.3f s (the handshake included)', $cached_t));
ok($cached_pending, '... while the KDC-bound login was still pending');

is($rs->{status}, 200, 'the KDC-bound login completes: 200');
like($rs->{body}, qr/^user=alice\@KCD\.TEST /, '... as alice');
cmp_ok($slow_t, '>=', $DELAY * 0.9,
       sprintf('... after the relay delay (%.3f s)', $slow_t));
cmp_ok($slow_t, '>', $cached_t, '... and after every fast request');
ok($relay->connections > $kdc_conns, '... it did go through the relay');

# the access log line is written after the response: wait for it
ok($t->wait_for_log(qr{^/echo alice\@KCD\.TEST cache=MISS 200 }, 3, 'kcd.log'),
   'access log: alice was a ticket cache MISS');

###############################################################################
# Two slow logins in parallel with two threads: they overlap, they are not
# served one after the other.

my ($sd, $sd_req) = ntlm_prepare('dave', '/echo');
my ($se, $se_req) = ntlm_prepare('erin', '/echo');
$kdc_conns = $relay->connections;
$T0 = time;
@events = ();
$sd->send($sd_req);
$se->send($se_req);

$st = KcdTest::Conn->new(port => port(8080))->get('/static/static.txt');
ev('static');
my $both_pending = pending($sd) && pending($se);

my $rd = $sd->read_response(timeout => 30);
ev('dave');
my $re = $se->read_response(timeout => 30);
ev('erin');
diag(join(', ', map { sprintf('%s %.3f s', @$_) } @events));

is($st->{status}, 200, 'static file while both pool threads wait on the KDC');
cmp_ok($events[0][1], '<', $FAST,
       sprintf('... in %.3f s', $events[0][1]));
ok($both_pending, '... while both logins were pending');
is($rd->{status}, 200, 'parallel slow login dave: 200');
is($re->{status}, 200, 'parallel slow login erin: 200');
my $both = $events[-1][1];
cmp_ok($both, '<', $slow_t * 1.5,
       sprintf('... both done in %.3f s: in parallel (one alone took %.3f s)',
               $both, $slow_t));

###############################################################################
# The delay off: normal speed is back.

$relay->set_delay(0);
($r, $el) = login('frank', '/echo');
is($r->{status}, 200, 'KDC fast again: frank (not cached) logs in');
like($r->{body}, qr/^user=frank\@KCD\.TEST /, '... as frank');
cmp_ok($el, '<', $FAST, sprintf('... at normal speed (%.3f s)', $el));
ok($t->wait_for_log(qr{^/echo frank\@KCD\.TEST cache=MISS 200 }, 3, 'kcd.log'),
   '... and it did ask the KDC (cache MISS)');

done_testing();
