#!/usr/bin/perl

# B7, B7a: credentials go nowhere but where they are meant to, whatever way
# nginx moves or copies the request.  The delegated token (a bearer AP-REQ)
# reaches only the upstream request of the location that delegated; the
# client's own Authorization (Basic password, NTLM messages) reaches no
# upstream at all, whatever the outcome of the logon.
#
# Every path nginx offers is tried: error_page to a URI (with and without
# "="), to a named location, after an upstream error, after our own 401;
# try_files; X-Accel-Redirect from the backend; index;
# mirror, SSI and auth_request subrequests.  The "other" backend records
# everything it receives: it must never see an Authorization header.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use MIME::Base64 qw(encode_base64);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;
use KcdRealm;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "70-side-paths.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 180;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $rec = KcdBackend->start(port => port(9000), dir => $dir, name => 'rec');
my $other = KcdBackend->start(port => port(9001), dir => $dir,
                              name => 'other');

my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', user_file_lines('KCD', %PW));

my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
my $keytab = $realm->keytab('proxy');
my $krb5_conf = $realm->krb5_conf;

# a port nothing listens on: the upstream fails, 502
my $down = port(9009);

mkdir "$dir/html";
mkdir "$dir/html/idx";
$t->write_file('html/idx/index.html', "index\n");

$t->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

    upstream rec {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 4;
    }

    upstream other {
        server 127.0.0.1:%%PORT_9001%%;
        keepalive 4;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name proxy.kcd.test;

        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_auth ntlm basic;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        # 1. the upstream fails; error_page to a kcd_auth off location
        location /eq/ {
            kcd_spn HTTP/backend.kcd.test;
            error_page 502 = /maintenance;
            proxy_pass http://127.0.0.1:$down;
        }

        location /noeq/ {
            kcd_spn HTTP/backend.kcd.test;
            error_page 502 /maintenance;
            proxy_pass http://127.0.0.1:$down;
        }

        location = /maintenance {
            kcd_auth off;
            proxy_pass http://other;
        }

        # the same into a location that authenticates but does not delegate
        location /eq-auth/ {
            kcd_spn HTTP/backend.kcd.test;
            error_page 502 = /sorry;
            proxy_pass http://127.0.0.1:$down;
        }

        location = /sorry {
            proxy_pass http://other;
        }

        # 2. a named location
        location /named/ {
            kcd_spn HTTP/backend.kcd.test;
            error_page 502 = \@fallback;
            proxy_pass http://127.0.0.1:$down;
        }

        location \@fallback {
            kcd_auth off;
            proxy_pass http://other;
        }

        # 3. proxy_intercept_errors: the backend answered, its error page
        #    comes from elsewhere
        location /intercept/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_intercept_errors on;
            error_page 503 = /maintenance;
            proxy_pass http://rec/status/503;
        }

        # 4. try_files
        location /tf/ {
            kcd_spn HTTP/backend.kcd.test;
            root %%TESTDIR%%/html;
            try_files \$uri \@tf;
        }

        location \@tf {
            kcd_auth off;
            proxy_pass http://other;
        }

        # 5. X-Accel-Redirect from the delegated backend
        location /xaccel/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://rec/set?h=X-Accel-Redirect:/internal/x;
        }

        location /internal/ {
            internal;
            kcd_auth off;
            proxy_pass http://other;
        }

        # 6. index into another upstream
        location /idx/ {
            kcd_spn HTTP/backend.kcd.test;
            root %%TESTDIR%%/html;
            index index.html;
        }

        location = /idx/index.html {
            kcd_auth off;
            proxy_pass http://other;
        }


        # 7. subrequests: mirror, SSI, auth_request
        location /mirrored/ {
            kcd_spn HTTP/backend.kcd.test;
            mirror /m;
            proxy_pass http://rec;
        }

        location = /m {
            internal;
            kcd_auth off;
            proxy_pass http://other;
        }

        location /ssi {
            kcd_spn HTTP/backend.kcd.test;
            ssi on;
            proxy_pass http://rec;
        }

        location = /ssi-inc {
            kcd_auth off;
            proxy_pass http://other;
        }

        location /authreq/ {
            kcd_spn HTTP/backend.kcd.test;
            auth_request /auth;
            proxy_pass http://rec;
        }

        location = /auth {
            internal;
            kcd_auth off;
            proxy_pass http://other;
        }

        # 8. our own 401 into an error page (B7: whatever the outcome)
        location /err401/ {
            error_page 401 /err;
            proxy_pass http://rec;
        }

        location = /err {
            kcd_auth off;
            proxy_pass http://other;
        }
    }
EOF
    main => "env KRB5_CONFIG=$krb5_conf;\nthread_pool default threads=4;");

$t->run;

my $port = port(8080);
my $sport = port(8443);

###############################################################################

sub login {
    my ($path, %o) = @_;
    my $c = KcdTest::Conn->new(port => $port, timeout => 10);
    my ($r1, $r) = ntlm_login($c, $path, user => 'alice', domain => 'KCD',
                              password => $PW{alice}, %o);
    return ($c, $r);
}

sub wait_other {
    my ($n) = @_;
    for (1 .. 60) {
        my @r = $other->requests;
        return @r if @r >= $n;
        select undef, undef, undef, 0.05;
    }
    return $other->requests;
}

# what "other" received since the last clear: every request, no credential
sub other_clean {
    my ($what, $n) = @_;
    my @r = wait_other($n // 1);
    ok(@r >= ($n // 1), "$what: the other backend was reached")
        or return;
    my @bad = grep {
        defined $_->header('Authorization')
            || grep { /^(Negotiate|NTLM|Basic) /i }
               map { $_->[1] } @{$_->{headers}}
    } @r;
    is(scalar @bad, 0, "$what: no Authorization, no credential at the "
       . 'other backend')
        or diag explain [ map { $_->{headers} } @bad ];
}

sub rec_has_token {
    my ($what) = @_;
    my @r = $rec->requests;
    ok(@r && ($r[-1]->header('Authorization') // '') =~ /^Negotiate \S+$/,
       "$what: the delegating location's own upstream got the token");
}

my ($c, $r);

# 1. error_page after the upstream failed
for my $p (['/eq/x', 'error_page 502 = /maintenance'],
           ['/noeq/x', 'error_page 502 /maintenance'],
           ['/eq-auth/x', 'error_page into a kcd_auth location without '
                          . 'kcd_spn'],
           ['/named/x', 'error_page 502 = @fallback'])
{
    $other->clear;
    ($c, $r) = login($p->[0]);
    ok($r->{status} == 200 || $r->{status} == 502,
       "$p->[1]: answered ($r->{status})");
    other_clean($p->[1]);

    # the next request on the authenticated connection: no header at all
    $other->clear;
    $r = $c->get($p->[0] . '?again');
    other_clean("$p->[1], connection-bound follow-up");
}

# 3. proxy_intercept_errors
$other->clear;
$rec->clear;
($c, $r) = login('/intercept/x');
rec_has_token('proxy_intercept_errors');
other_clean('proxy_intercept_errors + error_page');

# 4. try_files
$other->clear;
($c, $r) = login('/tf/missing');
is($r->{status}, 200, 'try_files: answered by the fallback');
other_clean('try_files into a named location');

# 5. X-Accel-Redirect
$other->clear;
$rec->clear;
($c, $r) = login('/xaccel/x');
rec_has_token('X-Accel-Redirect');
other_clean('X-Accel-Redirect from the delegated backend');

# 6. index
$other->clear;
($c, $r) = login('/idx/');
other_clean('index into another location');

# (rewrite ... last runs before the access phase: no logon, no token, and
# the target is a plain location; see docs/identity.md)

# 7. subrequests
$other->clear;
$rec->clear;
($c, $r) = login('/mirrored/x');
is($r->{status}, 200, 'mirror: 200');
rec_has_token('mirror');
other_clean('mirror subrequest');

$other->clear;
$rec->clear;
($c, $r) = login('/ssi');
is($r->{status}, 200, 'SSI: 200');
like($r->{body}, qr/^ssi:ok GET \/ssi-inc/, 'SSI: the include was served');
rec_has_token('SSI page');
other_clean('SSI include virtual');

$other->clear;
$rec->clear;
($c, $r) = login('/authreq/x');
is($r->{status}, 200, 'auth_request: 200');
rec_has_token('auth_request');
other_clean('auth_request subrequest');

# 8. the client's own credentials after our 401, into an error page
my $tls = KcdTest::Conn->new(port => $sport, ssl => 1, timeout => 10);
$other->clear;
$r = $tls->get('/err401/x', headers => [
    Authorization => 'Basic ' . encode_base64('KCD\\alice:Wrong-Guess9', '')]);
is($r->{status}, 401, 'wrong Basic password: 401 (error_page keeps it)');
other_clean('error_page 401 after a wrong Basic password');

my @seen = map { join ' ', map { $_->[1] } @{$_->{headers}} } $other->requests;
unlike(join("\n", @seen), qr/Wrong-Guess9|V3Jvbmct/,
       'the mistyped password reached no upstream, in clear or base64');

$other->clear;
$c = KcdTest::Conn->new(port => $port, timeout => 10);
$r = $c->get('/err401/x', headers => [Authorization => 'NTLM ' . b64(type1())]);
is($r->{status}, 401, 'NTLM Type 1: 401 (error_page)');
other_clean('error_page 401 after an NTLM Type 1');

# an NTLM Type 3 with a wrong password
$other->clear;
$c = KcdTest::Conn->new(port => $port, timeout => 10);
($r, my $r2) = ntlm_login($c, '/err401/x', user => 'alice', domain => 'KCD',
                          password => 'Wrong-Guess9');
is($r2->{status}, 401, 'NTLM wrong password: 401 (error_page)');
other_clean('error_page 401 after a failed NTLM Type 3', 2);

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/,
       'no alert, crit or crashed worker in the error log');

done_testing();
