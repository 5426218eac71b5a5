#!/usr/bin/perl

# kcd_ticket_cache: delegated tickets in shared memory, shared by all
# workers, keyed by (principal, SPN).  Counted at the KDC: many requests of
# one user over several connections and both workers cost one S4U2Self and
# one S4U2Proxy in total; margin= larger than the ticket lifetime means no
# entry is ever used; a tiny zone evicts without breaking anything; a
# reload keeps the cache.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;
use KcdApache;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "51-ticket-cache.t: timeout\n" };
# a connection nginx closed shows up as a failed test, not a silent death
$SIG{PIPE} = "IGNORE";
alarm 240;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $be = KcdApache->start(dir => $dir, realm => $realm);

# More users than the realm's three, for the eviction test.
my %PW = %KcdRealm::PASSWORDS;
my @MANY = map { sprintf('u%02d', $_) } 1 .. 30;
{
    my ($rc, $out) = $realm->kadmin(map { "addprinc -pw Pw-$_-1 $_" } @MANY);
    $PW{$_} = "Pw-$_-1" for @MANY;
    is($rc, 0, 'realm: 30 more users added') or diag($out);
}

$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));

my $krb5_conf = $realm->krb5_conf;
my $keytab = $realm->keytab('proxy');
my $aport = $be->port;
my $port = port(8080);

# The KDC's maximum ticket life, to pick a margin larger than it.
my $kdc_conf = do { local (@ARGV, $/) = ($realm->dir . '/kdc.conf'); <> };
my ($max_life) = $kdc_conf =~ /max_life\s*=\s*(\d+)h/;
ok(defined $max_life && $max_life < 48,
   "KDC max ticket life ${\ ($max_life // '?')}h < 2d (margin=2d is larger)");

sub config {
    my ($cache) = @_;
    $t->write_config(<<"EOF",
    log_format kcd '\$pid|\$kcd_principal|\$kcd_ticket_cache_status|\$status';

    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache $cache;

    upstream be {
        server 127.0.0.1:$aport;
        keepalive 8;
    }

    server {
        # reuseport: one listening socket per worker, the kernel spreads
        # the connections, so both workers serve requests
        listen 127.0.0.1:%%PORT_8080%% reuseport;
        server_name proxy.kcd.test;

        access_log %%TESTDIR%%/kcd.log kcd;

        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;

        location / {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host backend.kcd.test;
            add_header X-Worker \$pid always;
            add_header X-Cache \$kcd_ticket_cache_status always;
        }
    }
EOF
        workers => 2,
        main => "env KRB5_CONFIG=$krb5_conf;\n"
              . "thread_pool default threads=4;");
}

###############################################################################
# helpers

# KDC requests since a mark.  MIT logs the S4U user on the line after the
# TGS_REQ: "... PROTOCOL-TRANSITION s4u-client=alice@KCD.TEST" (S4U2Self)
# and "... CONSTRAINED-DELEGATION s4u-client=alice@KCD.TEST" (S4U2Proxy).
sub kdc {
    my ($mark) = @_;
    sleep 0.2;    # the KDC may log after it answered
    my %n = (as_proxy => 0, tgs => 0);
    open my $fh, '<', $realm->kdc_log or return \%n;
    seek $fh, $mark, 0;
    while (<$fh>) {
        $n{as_proxy}++
            if /: AS_REQ .*HTTP\/proxy\.kcd\.test\@KCD\.TEST for krbtgt\//;
        $n{tgs}++ if /: TGS_REQ /;
        $n{"s4u2self:$1"}++ if /PROTOCOL-TRANSITION s4u-client=(\w+)\@/;
        $n{"s4u2proxy:$1"}++ if /CONSTRAINED-DELEGATION s4u-client=(\w+)\@/;
    }
    return \%n;
}

# n requests for a user on one new connection (NTLM login, then
# connection-bound requests): list of responses
sub session {
    my ($user, $n) = @_;
    my $c = KcdTest::Conn->new(port => $port, timeout => 10);
    my ($r1, $r) = ntlm_login($c, '/echo', user => $user, domain => 'KCD',
                              password => $PW{$user});
    my @r = ($r // { status => $r1->{status}, body => '', headers => [] });
    bless $r[0], 'KcdTest::Response';
    push @r, $c->get('/echo') for 2 .. $n;
    $c->close;
    return @r;
}

sub ok_for {
    my ($user, @r) = @_;
    return scalar grep {
        $_->{status} == 200
            && ($_->{body} // '') =~ /^user=\Q$user\E\@KCD\.TEST /
    } @r;
}

sub statuses { return join(',', map { $_->header('X-Cache') // '-' } @_) }

###############################################################################
# Many requests, two workers, one user: one S4U2Self + one S4U2Proxy.

config('zone=tickets:1m');
my $mark = $realm->log_mark;
$t->run;

my @first = session('alice', 1);
is($first[0]{status}, 200, 'alice first request: 200');
is($first[0]->header('X-Cache'), 'MISS',
   'alice first request: $kcd_ticket_cache_status MISS');

my (@all, %workers);
my $conns = 0;
while ($conns < 8 || (keys %workers < 2 && $conns < 40)) {
    my @r = session('alice', 5);
    $workers{$_->header('X-Worker') // '?'}++ for @r;
    push @all, @r;
    $conns++;
}
note("alice: $conns connections, " . scalar(@all) . ' requests, workers '
     . join(' ', map { "$_=$workers{$_}" } sort keys %workers));

my %pids = map { $_ => 1 } $t->worker_pids;
is(scalar(grep { $pids{$_} } keys %workers), 2,
   'both worker processes served alice (X-Worker = $pid)');
is(ok_for('alice', @all), scalar @all,
   scalar(@all) . ' more requests for alice: all 200, Apache saw alice');
is(scalar(grep { ($_->header('X-Cache') // '') eq 'HIT' } @all), scalar @all,
   'every later request: $kcd_ticket_cache_status HIT, in both workers');

my $k = kdc($mark);
note('KDC since nginx start: '
     . join(' ', map { "$_=$k->{$_}" } sort keys %$k));
is($k->{'s4u2self:alice'} // 0, 1,
   'alice: one S4U2Self at the KDC for all ' . (@all + 1) . ' requests');
is($k->{'s4u2proxy:alice'} // 0, 1, 'alice: one S4U2Proxy at the KDC');
cmp_ok($k->{tgs}, '<=', 2, 'at most 2 TGS_REQ in total');
cmp_ok($k->{as_proxy}, '<=', 2,
       'at most one AS_REQ per worker for the proxy TGT');

my $log = $t->read_file('kcd.log') // '';
my @alice_log = grep { /\|alice\@KCD\.TEST\|/ } split /\n/, $log;
like(join("\n", @alice_log), qr/\A[^\n]*\|MISS\|200(?:\n[^\n]*\|HIT\|200)+\z/,
     'access log: alice MISS first, then only HIT');

###############################################################################
# A second user adds its own S4U2Self + S4U2Proxy, and only those.

$mark = $realm->log_mark;
my @carol = (session('carol', 3), session('carol', 3));
is(ok_for('carol', @carol), 6, 'carol: 6 requests, Apache saw carol');
is(statuses(@carol), 'MISS,HIT,HIT,HIT,HIT,HIT', 'carol: MISS then HIT');
is(ok_for('alice', session('alice', 2)), 2, 'alice still served');
$k = kdc($mark);
is($k->{'s4u2self:carol'} // 0, 1, 'carol: one S4U2Self');
is($k->{'s4u2proxy:carol'} // 0, 1, 'carol: one S4U2Proxy');
is($k->{'s4u2self:alice'} // 0, 0, 'alice: no new KDC request');
cmp_ok($k->{tgs}, '<=', 2, 'carol: at most 2 TGS_REQ');

###############################################################################
# nginx -s reload keeps the cache.

$t->reload;
$mark = $realm->log_mark;
my @after = session('alice', 3);
is(ok_for('alice', @after), 3, 'after reload: alice served');
is(statuses(@after), 'HIT,HIT,HIT', 'after reload: HIT at once');
$k = kdc($mark);
is($k->{tgs}, 0, 'after reload: no TGS_REQ at all');

unlike($t->error_log, qr/\[(?:alert|emerg|crit)\]|exited on signal/,
       'no alert, crit or crashed worker (shared cache)');
###############################################################################
# A burst of first requests (10 connections at once, both workers) for a
# user not in the cache: single flight, still one S4U2Self + one S4U2Proxy.

{
    my $mark = $realm->log_mark;
    my @c;

    for (1 .. 10) {
        my $c = KcdTest::Conn->new(port => $port, timeout => 20);
        my $t1 = type1();
        my $r1 = $c->request({ path => '/echo',
                               headers => [Authorization => 'NTLM ' . b64($t1)] });
        my ($v) = grep { /^NTLM \S/ } $r1->headers_all('WWW-Authenticate');
        my $t3 = type3(type1 => $t1, type2 => parse_type2(unb64(substr($v, 5))),
                       user => 'u30', domain => 'KCD', password => $PW{u30});
        push @c, [$c, $t3];
    }

    # all the Type 3s leave before any answer comes back
    $_->[0]->send($_->[0]->build_request({ path => '/echo',
        headers => [Authorization => 'NTLM ' . b64($_->[1])] })) for @c;

    my @r = map { $_->[0]->read_response } @c;
    $_->[0]->close for @c;

    is(ok_for('u30', @r), 10, 'cold burst: 10 concurrent first requests served');
    my %w = map { ($_->header('X-Worker') // '') => 1 } @r;
    my $k = kdc($mark);
    is($k->{'s4u2self:u30'} // 0, 1, 'cold burst: one S4U2Self in total');
    is($k->{'s4u2proxy:u30'} // 0, 1, 'cold burst: one S4U2Proxy in total');
    is(scalar(grep { ($_->header('X-Cache') // '') eq 'MISS' } @r) >= 1, 1,
       'cold burst: the first is a MISS, the others wait for it');
    note('workers serving the burst: ' . join(',', sort keys %w));
}

$t->stop;

###############################################################################
# margin= larger than the ticket lifetime: no entry is ever used.

config('zone=long:1m margin=2d');
$t->run;
$mark = $realm->log_mark;
my @m = (session('alice', 3), session('alice', 2));
is(ok_for('alice', @m), 5, 'margin=2d: alice served');
is(statuses(@m), 'MISS,MISS,MISS,MISS,MISS', 'margin=2d: every request MISS');
$k = kdc($mark);
is($k->{'s4u2self:alice'} // 0, 5, 'margin=2d: an S4U2Self for every request');
is($k->{'s4u2proxy:alice'} // 0, 5,
   'margin=2d: an S4U2Proxy for every request');
$t->stop;

###############################################################################
# A tiny zone: the least recently used entries go, requests still succeed.

config('zone=t:32k');
$t->run;
$mark = $realm->log_mark;
my (@tiny, $bad);
for my $u (@MANY) {
    my @r = session($u, 2);
    push @tiny, @r;
    $bad .= " $u" unless ok_for($u, @r) == 2;
}
is($bad, undef, 'tiny zone: 30 users, 60 requests, each served as itself');
my @last = session($MANY[-1], 1);
is($last[0]->header('X-Cache'), 'HIT', 'tiny zone: the last user is a HIT');
# How many entries the zone holds: newest first, until the first MISS (a
# HIT only moves its entry to the front, so the order of the rest stays).
my $held = 1;
for my $u (reverse @MANY[0 .. $#MANY - 1]) {
    my @r = session($u, 1);
    last unless ($r[0]->header('X-Cache') // '') eq 'HIT';
    $held++;
}
note("tiny zone (32k) held the credentials of $held users");
cmp_ok($held, '<', scalar @MANY, "tiny zone: fewer than 30 users held ($held)");
my @evicted = session($MANY[0], 1);
is($evicted[0]{status}, 200, 'tiny zone: the first user served again');
is($evicted[0]->header('X-Cache'), 'MISS',
   'tiny zone: the first user was evicted (MISS)');
my $hits = grep { ($_->header('X-Cache') // '') eq 'HIT' } @tiny;
is($hits, 30, 'tiny zone: the second request of each user is a HIT');
unlike($t->error_log, qr/too small|\[(?:alert|emerg|crit)\]|exited on signal/,
       'tiny zone: no "too small", alert or crash in the error log');

done_testing();
