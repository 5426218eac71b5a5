#!/usr/bin/perl

# B6, third backend: Basic over TLS validated by a Kerberos AS exchange with
# the user's password, when the location has neither a user file nor
# winbind (only kcd_keytab at http level).  With kcd_spn the request is then
# delegated to the Kerberos-only Apache; without it the module only
# authenticates.  A wrong password or an unknown user gets 401, a dead KDC
# 503, and Basic is never offered or accepted without TLS.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(time);

use KcdTest qw(port);
use KcdRealm;
use KcdApache;
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;

# a private copy of the module: a rebuild in place while nginx runs would
# crash its workers (SIGBUS on the mapped file), which is not what we test
system('cp', KcdTest::module_path(), $t->testdir . '/kcd_module.so') == 0
    or die "cannot copy the module\n";
$ENV{KCD_MODULE} = $t->testdir . '/kcd_module.so';

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;
plan skip_all => 'no curl' unless -x '/usr/bin/curl';

# Bounded: a hung KDC or nginx must not hang the suite.
$SIG{ALRM} = sub { die "54-basic-kerberos.t: timeout\n" };
alarm 120;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm")
    or plan skip_all => 'realm did not start';
my $be = KcdApache->start(dir => "$dir/apache", realm => $realm);
my $rec = KcdBackend->start(port => port(9000), dir => $dir, name => 'rec');

my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
my $kt = $realm->keytab('proxy');
my $krb5 = $realm->krb5_conf;
my $bport = $be->port;

$t->write_config(<<"EOF", main => "env KRB5_CONFIG=$krb5;\nthread_pool default threads=4;");
    log_format kcd '\$request_uri user=\$kcd_user principal=\$kcd_principal '
                   'scheme=\$kcd_auth_scheme \$status';
    access_log $dir/kcd.log kcd;

    kcd_keytab             $kt;
    kcd_service_principal  HTTP/proxy.kcd.test\@KCD.TEST;

    upstream apache {
        server 127.0.0.1:$bport;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;

        ssl_certificate     $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_realm KCD.TEST;

        # Basic only, checked with the KDC, delegated to Apache
        location / {
            kcd_auth basic;
            kcd_spn  HTTP/backend.kcd.test;

            proxy_pass          http://apache;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
            proxy_set_header    Host backend.kcd.test;
        }

        # Basic only, checked with the KDC, no delegation
        location /nospn/ {
            kcd_auth basic;

            proxy_pass          http://127.0.0.1:%%PORT_9000%%;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
        }

        # another scheme besides Basic: on plain HTTP only it is offered
        location /mixed/ {
            kcd_auth negotiate basic;

            proxy_pass          http://127.0.0.1:%%PORT_9000%%;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
        }
    }
EOF

my ($rc, $out) = $t->nginx_test;
is($rc, 0, 'nginx -t accepts kcd_auth basic with only kcd_keytab')
    or diag $out;
$t->run;

my $https = 'https://127.0.0.1:' . port(8443);
my $http = 'http://127.0.0.1:' . port(8080);

# curl(@args) -> {status, headers => [[n, v]...], body, header($n)}
sub curl {
    my (@args) = @_;
    my $hf = "$dir/curl.headers";
    my $bf = "$dir/curl.body";
    unlink $hf, $bf;
    my $pid = open(my $fh, '-|') // die "fork: $!";
    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        exec '/usr/bin/curl', '-sS', '-k', '--max-time', '10', '-D', $hf,
            '-o', $bf, '-w', '%{http_code}', @args;
        exit 127;
    }
    my $code = do { local $/; <$fh> };
    close $fh;
    my $r = bless { status => 0, headers => [], body => '', out => $code },
        'KcdTest::Response';
    $r->{status} = $1 + 0 if defined $code && $code =~ /(\d{3})\s*$/;
    if (open my $h, '<', $hf) {
        for (<$h>) {
            s/\r?\n\z//;
            push @{$r->{headers}}, [$1, $2] if /^([^:\s]+):\s*(.*)$/;
        }
    }
    if (open my $b, '<', $bf) {
        $r->{body} = do { local $/; <$b> } // '';
    }
    return $r;
}

# the access log line is written after the response: wait for it
sub kcd_log_since {
    my ($mark, $re) = @_;
    return $t->wait_for_log($re, 3, 'kcd.log', $mark) // '';
}

###############################################################################
# alice with her password, over TLS: the KDC says yes, Apache sees her.

my $kmark = $realm->log_mark;
my $amark = length($t->read_file('kcd.log') // '');

my $r = curl('--basic', '-u', 'alice:Alice-Pass1', "$https/echo");
is($r->{status}, 200, 'Basic alice over TLS, KDC-checked: 200')
    or diag "$r->{out}\n" . $t->error_log;
like($r->{body}, qr/^user=alice\@KCD\.TEST /,
     'the Kerberos-only backend ran the request as alice@KCD.TEST');
is($r->header('X-Remote-User'), 'alice@KCD.TEST',
   'backend X-Remote-User alice@KCD.TEST');
ok($realm->count_requests(since => $kmark, type => 'AS_REQ',
                          match => qr/alice\@KCD\.TEST/) >= 1,
   'the password was checked by an AS exchange for alice at the KDC');
like(kcd_log_since($amark, qr{^/echo user=}),
     qr{^/echo user=alice principal=alice\@KCD\.TEST scheme=basic 200$},
     '$kcd_user alice, $kcd_principal alice@KCD.TEST, $kcd_auth_scheme basic');

$r = curl("--basic", "-u", "alice:Alice-Pass1", "$https/index.html");
is($r->{status}, 200, 'static page through delegation: 200');
is($r->{body}, "backend ok\n", '... with the backend page');

# user@REALM typed by the user
$amark = length($t->read_file('kcd.log') // '');
$r = curl('--basic', '-u', 'alice@KCD.TEST:Alice-Pass1', "$https/echo");
is($r->{status}, 200, 'Basic alice@KCD.TEST: 200');
like($r->{body}, qr/^user=alice\@KCD\.TEST /,
     '... the backend sees alice@KCD.TEST');
like(kcd_log_since($amark, qr{^/echo user=}),
     qr{^/echo user=alice principal=alice\@KCD\.TEST scheme=basic 200$},
     '... $kcd_principal alice@KCD.TEST, $kcd_user the account name alice (B6)');

# carol too (a second user, own ticket)
$r = curl('--basic', '-u', 'carol:Carol-Pass1', "$https/echo");
is($r->{status}, 200, 'Basic carol: 200');
like($r->{body}, qr/^user=carol\@KCD\.TEST /, '... the backend sees carol');

###############################################################################
# Without kcd_spn: authentication only, nothing of the client's
# Authorization goes upstream.

$rec->clear;
$r = curl('--basic', '-u', 'alice:Alice-Pass1', "$https/nospn/x");
is($r->{status}, 200, 'no kcd_spn: Basic alice authenticated, 200');
like($r->{body}, qr{^ok GET /nospn/x}, '... the backend answered');
my @reqs = $rec->requests;
is(scalar @reqs, 1, '... one request reached the backend');
is(@reqs ? $reqs[0]->header('Authorization') : 'none', undef,
   '... without any Authorization header (the Basic password stays at '
   . 'the proxy)');

###############################################################################
# Refusals: wrong password, unknown user -> 401 + Basic challenge, logged.

my $mark = $t->log_mark;
$rec->clear;
$r = curl('--basic', '-u', 'alice:Wrong-Pass9', "$https/nospn/x");
is($r->{status}, 401, 'wrong password: 401');
like($r->header('WWW-Authenticate') // '', qr/^Basic realm="kcd"$/,
     '... with the Basic challenge again');
ok($t->wait_for_log(
       qr/\[info\].*kcd: Basic logon failed for user "alice".*wrong password/,
       3, 'error.log', $mark),
   '... info log line names the user and says "wrong password"')
    or diag $t->error_log(since => $mark);
is(scalar(my @x = $rec->requests), 0, '... nothing forwarded');

$mark = $t->log_mark;
$r = curl('--basic', '-u', 'alice:Wrong-Pass9', "$https/echo");
is($r->{status}, 401, 'wrong password on the delegating location: 401');

$mark = $t->log_mark;
$r = curl('--basic', '-u', 'mallory:Alice-Pass1', "$https/nospn/x");
is($r->{status}, 401, 'unknown user: 401');
ok($t->wait_for_log(
       qr/\[info\].*kcd: Basic logon failed for user "mallory"/,
       3, 'error.log', $mark),
   '... info log line names the unknown user')
    or diag $t->error_log(since => $mark);
is(scalar(@x = $rec->requests), 0, '... nothing forwarded');

# a service principal is not a user
$r = curl('--basic', '-u', 'HTTP/proxy.kcd.test:x', "$https/nospn/x");
is($r->{status}, 401, 'service principal as Basic user: 401');

###############################################################################
# KDC down: 503 with "KDC unreachable", back up: 200.

$realm->stop_kdc;
$mark = $t->log_mark;
my $t0 = time;
$r = curl('--basic', '-u', 'alice:Alice-Pass1', "$https/nospn/x");
is($r->{status}, 503, 'KDC stopped: 503');
cmp_ok(time - $t0, '<', 10, '... answered, not hung');
ok($t->wait_for_log(qr/kcd: Basic logon for user "alice".*KDC unreachable/,
                    3, 'error.log', $mark),
   '... error log says "KDC unreachable" for alice')
    or diag $t->error_log(since => $mark);
is(scalar(@x = $rec->requests), 0, '... nothing forwarded');

$r = curl('--basic', '-u', 'alice:Alice-Pass1', "$https/echo");
is($r->{status}, 503, 'KDC stopped, delegating location: 503');

$realm->start_kdc;
$r = curl('--basic', '-u', 'alice:Alice-Pass1', "$https/echo");
is($r->{status}, 200, 'KDC back: 200 again');
like($r->{body}, qr/^user=alice\@KCD\.TEST /, '... as alice');

###############################################################################
# Plain HTTP: Basic is neither offered nor accepted.

$mark = $t->log_mark;
$rec->clear;
$r = curl('--basic', '-u', 'alice:Alice-Pass1', "$http/mixed/x");
is($r->{status}, 401, 'plain HTTP, Basic credentials: 401');
my @ch = $r->{headers} ? map { $_->[1] } grep { lc $_->[0] eq 'www-authenticate' }
    @{$r->{headers}} : ();
is_deeply(\@ch, ['Negotiate'], '... only Negotiate offered, no Basic');
ok($t->wait_for_log(qr/kcd: Basic credentials refused on a connection without TLS/,
                    3, 'error.log', $mark),
   '... logged: Basic refused without TLS');
is(scalar(@x = $rec->requests), 0, '... nothing forwarded');

$kmark = $realm->log_mark;
$r = curl('--basic', '-u', 'alice:Alice-Pass1', "$http/nospn/x");
# nothing can be offered there: 403 (the module's choice) or a bare 401
like($r->{status}, qr/^40[13]$/,
     "plain HTTP, Basic-only location: refused ($r->{status})");
ok(!grep({ lc $_->[0] eq 'www-authenticate' && $_->[1] =~ /basic/i }
         @{$r->{headers}}),
   '... no Basic challenge offered');
is($realm->count_requests(since => $kmark, type => 'AS_REQ'), 0,
   '... and the password never went to the KDC');

$r = curl("$https/mixed/x");
@ch = map { $_->[1] } grep { lc $_->[0] eq 'www-authenticate' }
    @{$r->{headers}};
is_deeply(\@ch, ['Negotiate', 'Basic realm="kcd"'],
          'over TLS the same location offers Negotiate and Basic');

done_testing();
