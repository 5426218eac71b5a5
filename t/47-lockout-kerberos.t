#!/usr/bin/perl

# B19 with Basic checked by a Kerberos AS exchange (MIT KDC, t/lib/
# KcdRealm.pm): wrong passwords from a stranger's address lock the account
# for unfamiliar addresses after `threshold`, and from then on the KDC sees
# no AS request for it from that address; unknown principals count at the
# address only; the owner keeps logging on from her familiar address.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use MIME::Base64 qw(encode_base64);

use KcdTest qw(port);
use KcdRealm;
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "47-lockout-kerberos.t: timeout\n" };
alarm 120;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm")
    or plan skip_all => 'realm did not start';
my $b = KcdBackend->start(port => port(9000), dir => $dir);
my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
my $kt = $realm->keytab('proxy');
my $krb5 = $realm->krb5_conf;

$t->write_config(<<"EOF", main => "env KRB5_CONFIG=$krb5;\nthread_pool default threads=4;");
    kcd_keytab             $kt;
    kcd_service_principal  HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_lockout_zone lz:1m threshold=3 window=30m spray=3;

    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate     $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_realm KCD.TEST;
        kcd_auth basic;
        kcd_lockout lz;
        add_header X-Lockout \$kcd_lockout_status always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }
    }
EOF
$t->run;

sub basic {
    my ($addr, $user, $pw) = @_;
    return KcdTest::Conn->new(port => port(8443), ssl => 1,
                              local_addr => $addr, timeout => 10)
        ->get('/x', headers => [
            Authorization => 'Basic ' . encode_base64("$user:$pw", '')]);
}

sub as_reqs {
    my ($mark, $who) = @_;
    return $realm->count_requests(type => 'AS_REQ', since => $mark,
                                  match => qr/\b\Q$who\E\@KCD\.TEST/);
}

my $apw = $realm->password('alice');

my $r = basic('127.0.0.2', 'alice', $apw);
is($r->{status}, 200, 'alice logs on from 127.0.0.2 (AS exchange)');

my $mark = $realm->log_mark;
my $tmark = $t->log_mark;
is(basic('127.0.0.3', 'alice', "Wrong-$_")->{status}, 401,
   "wrong password $_ from a stranger") for 1 .. 3;
ok($t->wait_for_log(qr/\[warn\].*account "alice\@kcd\.test" locked for unfamiliar addresses after 3 failed logons/,
                    3, undef, $tmark), 'warn line: alice locked');
my $asked = as_reqs($mark, 'alice');
ok($asked >= 3, "the KDC was asked for the 3 wrong passwords ($asked AS_REQ)");

$mark = $realm->log_mark;
is(basic('127.0.0.3', 'alice', "Wrong-$_")->{status}, 401,
   "more wrong passwords: 401") for 4 .. 6;
$r = basic('127.0.0.3', 'alice', $apw);
is($r->{status}, 401, 'the right password from the stranger: 401');
is($r->header('X-Lockout'), 'locked', 'status locked');
is(as_reqs($mark, 'alice'), 0, 'the KDC saw no AS_REQ for alice since the lock');

$r = basic('127.0.0.2', 'alice', $apw);
is($r->{status}, 200, 'alice still logs on from her familiar address');
is($r->header('X-Lockout'), 'familiar', 'status familiar');

# unknown principals: counted at the address (spray=3), no account entry

$tmark = $t->log_mark;
is(basic('127.0.0.4', "nosuch$_", 'x')->{status}, 401, "unknown user $_")
    for 1 .. 3;
ok($t->wait_for_log(qr/\[warn\].*client address 127\.0\.0\.4 locked for every account: 3 accounts/,
                    3, undef, $tmark), 'unknown users: the address locks');
$mark = $realm->log_mark;
is(basic('127.0.0.4', 'bob', $realm->password('bob'))->{status}, 401,
   'bob from that address: 401');
is(as_reqs($mark, 'bob'), 0, '... without asking the KDC');

done_testing();
