#!/usr/bin/perl

# B18: a reload (HUP) or a graceful stop (QUIT) waits for the requests
# parked on a KDC call in the thread pool: none is dropped.  The KDC sits
# behind a relay that holds every connection for 2 s.

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
use KcdRelay;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "74-graceful-reload.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 120;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $be = KcdApache->start(dir => $dir, realm => $realm);
my $relay = KcdRelay->start(dir => $dir, to_port => $realm->kdc_port);
$realm->set_kdc_address('127.0.0.1', $relay->port);

my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', user_file_lines('KCD', %PW));

my $keytab = $realm->keytab('proxy');
my $bport = $be->port;

$t->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;

        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        kcd_spn HTTP/backend.kcd.test;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host backend.kcd.test;

        location / {
            proxy_pass http://127.0.0.1:$bport;
        }
    }
EOF
    workers => 1,
    main => "env KRB5_CONFIG=@{[ $realm->krb5_conf ]};\n"
          . "thread_pool default threads=2;");

$t->run;
$relay->set_delay(2);

my $port = port(8080);

# the Type 3 goes out; its delegation waits for the slow KDC
sub park {
    my ($user, $path) = @_;
    my $c = KcdTest::Conn->new(port => $port, timeout => 15);
    my $t1 = type1();
    my $r1 = $c->get($path, headers => [Authorization => 'NTLM ' . b64($t1)]);
    die "no Type 2: $r1->{status} " . join(",", $r1->headers_all("WWW-Authenticate")) . "\n" unless ($r1->header("WWW-Authenticate") // "") =~ /^NTLM \S/;
    my $t2 = parse_type2(unb64(($r1->header('WWW-Authenticate') // '')
                               =~ /^NTLM (\S+)/ ? $1 : ''));
    my $t3 = type3(type1 => $t1, type2 => $t2, user => $user,
                   domain => 'KCD', password => $PW{$user});
    $c->send($c->build_request({ path => $path,
        headers => [Authorization => 'NTLM ' . b64($t3)] }));
    return $c;
}

for my $case (['HUP', 'reload', 'alice'], ['QUIT', 'graceful stop', 'carol'])
{
    my $mark = $t->log_mark;
    my $t0 = time;
    my $c = park($case->[2], "/echo?$case->[0]");

    sleep 0.7;
    ok(time - $t0 < 1.8, "$case->[1]: the request is parked on the KDC");
    $t->signal($case->[0]);

    my $r = eval { $c->read_response };
    ok($r, "$case->[1] while the request waits: a response came")
        or diag $@;
    is($r && $r->{status}, 200, "$case->[1]: 200");
    like($r ? $r->{body} : '', qr/^user=$case->[2]\@KCD\.TEST /,
         "$case->[1]: served as $case->[2] by the backend");
    ok(time - $t0 >= 1.9, "$case->[1]: after the KDC answered");

    my $log = $t->error_log(since => $mark);
    unlike($log, qr/open socket .* left in connection/,
           "$case->[1]: no connection left behind by the old worker");
    unlike($log, qr/\[(alert|crit|emerg)\]/, "$case->[1]: no alert");

    last if $case->[0] eq 'QUIT';

    # the new workers are up
    for (1 .. 50) {
        last if KcdTest::Conn->new(port => $port, timeout => 2);
        sleep 0.1;
    }
}

done_testing();
