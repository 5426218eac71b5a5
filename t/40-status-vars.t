#!/usr/bin/perl

# kcd_status (Prometheus text counters, shared by the workers) and the
# variables $kcd_user, $kcd_auth_scheme, $kcd_principal: in the access log,
# kcd_realm, kcd_domain_map (http level, wins over kcd_realm), and empty
# where nothing was authenticated.

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

$t->write_file('users', "KCD\\alice:" . unpack('H*', nt_hash('Password')) . "\n"
                        . "bob:" . unpack('H*', nt_hash('Bob pw')) . "\n");

$t->write_config(<<"EOF", workers => 2);
    log_format vars escape=none
        '\$connection \$status \$request_uri u=[\$kcd_user] s=[\$kcd_auth_scheme] '
        'p=[\$kcd_principal]';
    access_log %%TESTDIR%%/vars.log vars;

    kcd_domain_map KCD OTHER.REALM;

    upstream backend {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header X-Kcd-User \$kcd_user;
        proxy_set_header X-Kcd-Principal \$kcd_principal;

        location = /status {
            kcd_status;
        }

        location /app/ {
            kcd_auth ntlm basic;
            kcd_realm KCD.TEST;
            add_header X-User "\$kcd_user" always;
            add_header X-Scheme "\$kcd_auth_scheme" always;
            add_header X-Principal "\$kcd_principal" always;
            proxy_pass http://backend;
        }

        # no kcd_realm: the default realm of krb5.conf (SPEC)
        location /norealm/ {
            kcd_auth ntlm basic;
            add_header X-Principal "\$kcd_principal" always;
            proxy_pass http://backend;
        }

        location /open/ {
            add_header X-User "\$kcd_user" always;
            add_header X-Scheme "\$kcd_auth_scheme" always;
            add_header X-Principal "\$kcd_principal" always;
            add_header X-Cache "\$kcd_ticket_cache_status" always;
            proxy_pass http://backend;
        }
    }
EOF
# the default realm nginx reads (the master reads krb5.conf at start)
$t->write_file('krb5.conf', "[libdefaults]\n\tdefault_realm = DEFAULT.TEST\n");
$ENV{KRB5_CONFIG} = $t->testdir . '/krb5.conf';
$t->run;

sub conn { return KcdTest::Conn->new(port => port(8080)) }
sub tls { return KcdTest::Conn->new(port => port(8443), ssl => 1) }

# name => value from the kcd_status body; dies on a line that is not
# Prometheus text
my $last_status;
sub counters {
    my $r = conn()->get('/status');
    $last_status = $r;
    my %c;
    for my $l (split /\n/, $r->{body}) {
        next if $l =~ /^#/;
        die "not a Prometheus sample line: '$l'"
            unless $l =~ /^([a-z_:][a-z0-9_:]*(?:\{[a-z_]+="[^"]*"(?:,[a-z_]+="[^"]*")*\})?) (\d+)$/;
        $c{$1} = $2;
    }
    return \%c;
}

# what changed between two counter snapshots
sub delta {
    my ($a, $z) = @_;
    my %d;
    for my $k (keys %$z) {
        my $v = $z->{$k} - ($a->{$k} // 0);
        $d{$k} = $v if $v;
    }
    return \%d;
}

sub login {
    my ($c, $path, $user, $domain, $pw) = @_;
    my ($r1, $r2) = ntlm_login($c, $path, user => $user, domain => $domain,
                               password => $pw);
    return $r2 || $r1;
}

# the access log line of $uri (written in the log phase, after the
# response: wait for it)
sub vlog {
    my ($uri, $status) = @_;
    return $t->wait_for_log(qr/^\d+ $status \Q$uri\E /, 3, 'vars.log') // '';
}

###########################################################################
# kcd_status format

my $c0 = counters();
is($last_status->{status}, 200, 'kcd_status: 200');
is($last_status->header('Content-Type'), 'text/plain; version=0.0.4',
   'kcd_status: Prometheus content type');
ok(keys(%$c0) >= 10, 'kcd_status: every line is a Prometheus sample (' . keys(%$c0) . ')');
for my $k ('kcd_challenges_total', 'kcd_ntlm_logons_total{result="ok"}',
           'kcd_ntlm_logons_total{result="failed"}', 'kcd_basic_logons_total{result="ok"}',
           'kcd_basic_logons_total{result="failed"}', 'kcd_bad_requests_total')
{
    ok(exists $c0->{$k}, "kcd_status has $k");
}
is(scalar(grep { $_ != 0 } values %$c0), 0, 'kcd_status: all counters start at 0');
like($last_status->{body}, qr/\n\z/, 'kcd_status: body ends with a newline');

my $h = conn()->request({ method => 'HEAD', path => '/status' });
ok($h->{status} == 200 && $h->{body} eq '', 'kcd_status: HEAD 200 without body');
is(conn()->post('/status', body => 'x')->{status}, 405, 'kcd_status: POST 405');

###########################################################################
# counters move as expected

my $a = counters();
my $r = conn()->get('/app/x');
is($r->{status}, 401, 'challenge: 401');
my $z = counters();
is_deeply(delta($a, $z), { kcd_challenges_total => 1 }, 'challenge: challenges +1, nothing else');

$a = $z;
$r = login(conn(), '/app/good', 'alice', 'KCD', 'Password');
is($r->{status}, 200, 'good NTLM logon: 200');
$z = counters();
is_deeply(delta($a, $z), { kcd_challenges_total => 1, 'kcd_ntlm_logons_total{result="ok"}' => 1 },
          'good NTLM logon: Type 2 counted as a challenge, ntlm ok +1');

$a = $z;
$r = login(conn(), '/app/bad', 'alice', 'KCD', 'nope');
is($r->{status}, 401, 'bad NTLM logon: 401');
$z = counters();
is_deeply(delta($a, $z), { kcd_challenges_total => 2, 'kcd_ntlm_logons_total{result="failed"}' => 1 },
          'bad NTLM logon: ntlm failed +1, two challenges (Type 2 and the bare one)');

$a = $z;
$r = tls()->get('/app/basic-good', headers => [Authorization => 'Basic ' . encode_base64('alice:Password', '')]);
is($r->{status}, 200, 'good Basic logon: 200');
$r = tls()->get('/app/basic-bad', headers => [Authorization => 'Basic ' . encode_base64('alice:x', '')]);
is($r->{status}, 401, 'bad Basic logon: 401');
$z = counters();
is_deeply(delta($a, $z), { 'kcd_basic_logons_total{result="ok"}' => 1,
                           'kcd_basic_logons_total{result="failed"}' => 1,
                           kcd_challenges_total => 1 },
          'Basic: ok +1, failed +1, one challenge');

$a = $z;
$r = conn()->get('/app/bad-b64', headers => [Authorization => 'NTLM !!!!']);
is($r->{status}, 400, 'invalid base64: 400');
$z = counters();
is_deeply(delta($a, $z), { kcd_bad_requests_total => 1 }, 'invalid base64: bad requests +1');

# many connections over 2 workers: the counters are shared
$a = $z;
conn()->get("/app/many-$_") for 1 .. 10;
is(counters()->{kcd_challenges_total} - $a->{kcd_challenges_total}, 10,
   'ten challenges on ten connections (two workers): +10');

###########################################################################
# variables

# NTLM, domain KCD: kcd_domain_map KCD OTHER.REALM wins over kcd_realm
my $c = conn();
$r = login($c, '/app/v-ntlm', 'alice', 'KCD', 'Password');
is($r->{status}, 200, 'vars NTLM: 200');
is($r->header('X-User'), 'KCD\\alice', '$kcd_user is DOMAIN\\user for NTLM');
is($r->header('X-Scheme'), 'ntlm', '$kcd_auth_scheme ntlm');
is($r->header('X-Principal'), 'alice@OTHER.REALM', 'kcd_domain_map KCD OTHER.REALM: alice@OTHER.REALM');
my ($q) = grep { $_->{uri} eq '/app/v-ntlm' } $b->requests;
is($q && $q->header('X-Kcd-Principal'), 'alice@OTHER.REALM', 'backend got the same principal');
like(vlog('/app/v-ntlm', 200), qr/ 200 \S+ u=\[KCD\\alice\] s=\[ntlm\] p=\[alice\@OTHER\.REALM\]$/,
     'access log: NTLM user, scheme, principal');
$r = $c->get('/app/v-ntlm-2');
like(vlog('/app/v-ntlm-2', 200), qr/ 200 \S+ u=\[KCD\\alice\] s=\[ntlm\] p=\[alice\@OTHER\.REALM\]$/,
     'access log: connection-bound request has the same identity');

# the map compares the domain case-insensitively
$r = login(conn(), '/app/v-ntlm-lc', 'alice', 'kcd', 'Password');
is($r->header('X-Principal'), 'alice@OTHER.REALM', 'kcd_domain_map: domain "kcd" matches KCD');

# NTLM, domain not in the map: kcd_realm
$r = login(conn(), '/app/v-ntlm-lab', 'bob', 'LAB', 'Bob pw');
is($r->{status}, 200, 'vars NTLM LAB\\bob: 200');
is($r->header('X-User'), 'KCD\\bob', '$kcd_user KCD\\bob: the line has no domain, ours is used');
is($r->header('X-Principal'), 'bob@KCD.TEST', 'kcd_realm KCD.TEST: bob@KCD.TEST');
like(vlog('/app/v-ntlm-lab', 200), qr/u=\[KCD\\bob\] s=\[ntlm\] p=\[bob\@KCD\.TEST\]$/,
     'access log: KCD\\bob, ntlm, bob@KCD.TEST');

# no kcd_realm: the default realm of krb5.conf (DEFAULT.TEST here)
$r = login(conn(), '/norealm/ntlm', 'bob', 'LAB', 'Bob pw');
is($r->{status}, 200, 'no kcd_realm, NTLM LAB\\bob: 200');
is($r->header('X-Principal'), 'bob@DEFAULT.TEST',
   'no kcd_realm: $kcd_principal uses the default realm of krb5.conf');
$r = login(conn(), '/norealm/ntlm-map', 'alice', 'KCD', 'Password');
is($r->header('X-Principal'), 'alice@OTHER.REALM', 'no kcd_realm: kcd_domain_map still applies');

# Basic
$r = tls()->get('/app/v-basic', headers => [Authorization => 'Basic ' . encode_base64('alice:Password', '')]);
is($r->{status}, 200, 'vars Basic: 200');
is($r->header('X-User'), 'alice', '$kcd_user for Basic is the account name');
is($r->header('X-Scheme'), 'basic', '$kcd_auth_scheme basic');
is($r->header('X-Principal'), 'alice@OTHER.REALM',
   'Basic "alice": the account line KCD\\alice, mapped by kcd_domain_map (B6: canonical name)');
like(vlog('/app/v-basic', 200), qr/ 200 \S+ u=\[alice\] s=\[basic\] p=\[alice\@OTHER\.REALM\]$/,
     'access log: Basic user, scheme, principal');

$r = tls()->get('/app/v-basic-dom', headers => [Authorization => 'Basic ' . encode_base64('KCD\\alice:Password', '')]);
is($r->header('X-Principal'), 'alice@OTHER.REALM', 'Basic KCD\\alice: mapped to alice@OTHER.REALM');
like(vlog('/app/v-basic-dom', 200), qr/u=\[alice\] s=\[basic\] p=\[alice\@OTHER\.REALM\]$/,
     'access log: Basic KCD\\alice');

# nothing authenticated: empty
$r = conn()->get('/app/v-none');
like(vlog('/app/v-none', 401), qr/ 401 \S+ u=\[-?\] s=\[-?\] p=\[-?\]$/, 'access log: challenge has empty variables');

$r = conn()->get('/open/fresh');
is($r->{status}, 200, 'non-kcd location: 200');
is($r->header('X-User') // '', '', 'non-kcd location, fresh connection: $kcd_user empty');
is($r->header('X-Scheme') // '', '', 'non-kcd location, fresh connection: $kcd_auth_scheme empty');
is($r->header('X-Principal') // '', '', 'non-kcd location, fresh connection: $kcd_principal empty');
is($r->header('X-Cache') // '', '', 'non-kcd location: $kcd_ticket_cache_status empty');
like(vlog('/open/fresh', 200), qr/ 200 \S+ u=\[-?\] s=\[-?\] p=\[-?\]$/, 'access log: non-kcd location empty');
($q) = grep { $_->{uri} eq '/open/fresh' } $b->requests;
ok($q && ($q->header('X-Kcd-User') // '') eq '', 'backend got an empty X-Kcd-User');

# a failed logon leaves the variables empty too
$r = login(conn(), '/app/v-failed', 'alice', 'KCD', 'nope');
{
    # both legs (Type 2 and the failed Type 3) are logged as 401
    my @l;
    for (1 .. 60) {
        @l = grep { m{^\d+ 401 /app/v-failed } } split /\n/, ($t->read_file('vars.log') // '');
        last if @l >= 2;
        select(undef, undef, undef, 0.05);
    }
    is(scalar @l, 2, 'failed logon: two 401 lines in the access log');
    is(scalar(grep { / u=\[-?\] s=\[-?\] p=\[-?\]$/ } @l), 2,
       'access log: failed logon has empty variables');
}

done_testing();
