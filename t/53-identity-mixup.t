#!/usr/bin/perl

# B10: no identity mix-up upstream.  Two users on two client connections
# interleave through one upstream keep-alive pool (keepalive 1: the same
# Apache connection carries both users' requests); every response shows
# its own user.  The upstream's mutual-authentication
# "WWW-Authenticate: Negotiate <token>" and "Persistent-Auth" never reach
# the client.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;
use KcdRealm;
use KcdApache;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "53-identity-mixup.t: timeout\n" };
# a connection nginx closed shows up as a failed test, not a silent death
$SIG{PIPE} = "IGNORE";
alarm 240;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $be = KcdApache->start(dir => $dir, realm => $realm);
my $rec = KcdBackend->start(port => port(9000), dir => $dir, name => 'rec');

my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));

my $krb5_conf = $realm->krb5_conf;
my $keytab = $realm->keytab('proxy');
my $aport = $be->port;
my $port = port(8080);

# debug: the module logs each upstream WWW-Authenticate it removes, which
# proves Apache really sent one.
$t->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

    upstream be {
        server 127.0.0.1:$aport;
        keepalive 1;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name proxy.kcd.test;

        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        kcd_spn HTTP/backend.kcd.test;

        # at server level: a proxy_set_header in a location would drop
        # the inherited ones (and "Connection: close" would come back)
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host backend.kcd.test;

        location / {
            proxy_pass http://be;
        }

        location /mutual {
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }
    }
EOF
    log_level => 'debug',
    main => "env KRB5_CONFIG=$krb5_conf;\nthread_pool default threads=4;");

$t->run;

###############################################################################
# helpers

sub login {
    my ($user, $path) = @_;
    my $c = KcdTest::Conn->new(port => $port, timeout => 10);
    my ($r1, $r) = ntlm_login($c, $path || '/echo', user => $user,
                              domain => 'KCD', password => $PW{$user});
    return ($c, $r);
}

# "" when the response is what $user must see, else what was wrong
sub check {
    my ($user, $r) = @_;
    return 'no response' unless $r;
    return "status $r->{status}" unless $r->{status} == 200;
    my $xru = $r->header('X-Remote-User') // '';
    return "X-Remote-User '$xru'" unless $xru eq "$user\@KCD.TEST";
    return "body '$r->{body}'"
        unless ($r->{body} // '') =~ /^user=\Q$user\E\@KCD\.TEST /;
    return 'WWW-Authenticate reached the client'
        if $r->has_header('WWW-Authenticate');
    return 'Persistent-Auth reached the client'
        if $r->has_header('Persistent-Auth');
    return '';
}

my %ports;    # Apache client port -> {user => count}

sub record {
    my ($user, $r) = @_;
    $ports{$1}{$user}++ if ($r->{body} // '') =~ / port=(\d+)/;
}

###############################################################################
# Interleaved, one request at a time: alice, carol, alice, carol ...

my ($ca, $ra) = login('alice');
my ($cc, $rc) = login('carol');
is(check('alice', $ra), '', 'alice logged in, Apache saw alice');
is(check('carol', $rc), '', 'carol logged in, Apache saw carol');
record(alice => $ra);
record(carol => $rc);

my (@bad, $n);
for my $i (1 .. 30) {
    for ([alice => $ca], [carol => $cc]) {
        my ($u, $c) = @$_;
        my $r = $c->get("/echo?$u-$i");
        my $e = check($u, $r);
        push @bad, "$u #$i: $e" if $e;
        record($u => $r);
        $n++;
    }
}
is(join('; ', @bad), '', "interleaved: $n requests, each shows its own user");

my @shared = grep { $ports{$_}{alice} && $ports{$_}{carol} } keys %ports;
ok(@shared, 'one Apache connection carried requests of both users (port '
   . join(',', @shared) . ')');
note("Apache port $_: alice=" . ($ports{$_}{alice} // 0) . ' carol='
     . ($ports{$_}{carol} // 0)) for sort keys %ports;

###############################################################################
# Fast alternation: both connections' requests in flight at once, and
# pipelined requests on each connection.

@bad = ();
$n = 0;
for my $i (1 .. 30) {
    $ca->send($ca->build_request({ path => "/echo?fast-a-$i" }));
    $cc->send($cc->build_request({ path => "/echo?fast-c-$i" }));
    for ([alice => $ca], [carol => $cc]) {
        my ($u, $c) = @$_;
        my $r = eval { $c->read_response };
        my $e = check($u, $r);
        push @bad, "$u fast #$i: $e" if $e;
        record($u => $r) if $r;
        $n++;
    }
}
is(join('; ', @bad), '', "both in flight: $n requests, each its own user");

@bad = ();
$n = 0;
for my $i (1 .. 5) {
    $ca->send(join '', map { $ca->build_request({ path => "/echo?p-a-$i-$_" }) }
              1 .. 3);
    $cc->send(join '', map { $cc->build_request({ path => "/echo?p-c-$i-$_" }) }
              1 .. 3);
    for ([alice => $ca], [carol => $cc]) {
        my ($u, $c) = @$_;
        for my $k (1 .. 3) {
            my $r = eval { $c->read_response };
            my $e = check($u, $r);
            push @bad, "$u pipelined #$i.$k: $e" if $e;
            $n++;
        }
    }
}
is(join('; ', @bad), '', "pipelined, 3 at a time: $n requests, each its own "
   . 'user');

$ca->close;
$cc->close;

###############################################################################
# Upstream mutual authentication never reaches the client.

my $removed = () = $t->error_log =~
    /kcd: Negotiate removed from upstream "WWW-Authenticate: Negotiate \S+"/g;
cmp_ok($removed, '>', 0, "Apache did send 'WWW-Authenticate: Negotiate "
       . "<token>' on 200 ($removed times); the module removed it");

{
    my ($c, $r) = login('alice', '/mutual');
    is($r->{status}, 200, 'recording backend /mutual: 200');
    my @req = $rec->requests;
    is(scalar @req, 1, '/mutual forwarded once');
    like(@req ? $req[0]->header('Authorization') // '' : '',
         qr/^Negotiate \S+$/, '/mutual carried our Negotiate token');
    is($r->header('WWW-Authenticate'), undef,
       "upstream 'WWW-Authenticate: Negotiate <mutual token>' not passed "
       . 'to the client');
    is($r->header('Persistent-Auth'), undef,
       "upstream 'Persistent-Auth' not passed to the client");
    my $r2 = $c->get('/mutual?again');
    is($r2->{status}, 200, '/mutual keep-alive: 200');
    ok(!$r2->has_header('WWW-Authenticate')
       && !$r2->has_header('Persistent-Auth'),
       '/mutual keep-alive: neither header passed');
    $c->close;
}

unlike($t->error_log, qr/\[(?:alert|emerg|crit)\]|exited on signal/,
       'no alert, crit or crashed worker in the error log');

done_testing();
