#!/usr/bin/perl

# Adversarial review (B7, B7a, B10, B14, B15): where the delegated token,
# the client's own Authorization or an identity can go through other nginx
# features.  The upstream is a second server{} of the same nginx that logs
# the Authorization it receives (and can answer X-Accel-Redirect, Range,
# SSI and 401), so every path is visible in one log line per request.
#
# Findings (fail on de72088):
#   - slice + proxy_pass with a variable: the slice subrequests replay the
#     main request's AP-REQ (B7a: never to a subrequest; B7: fresh token);
#   - $http_authorization is the delegated token in the delegating
#     location: access log, add_header, SSI echo (B7a: one place only);
#   - proxy_intercept_errors + error_page 401: a backend refusing our
#     ticket gives the client 401 without a challenge, no B15 log line;
#   - a pre-access error (413) in a kcd_auth location with error_page to
#     another location sends the client's Basic password / NTLM message
#     upstream (B7: never reaches any upstream);
#   - proxy_cache in a delegating location serves alice's response to
#     carol (B10/B14: one identity per request): now refused by nginx -t.
# The other paths (mirror, auth_request, SSI include, X-Accel-Redirect,
# error_page with and without "=", post_action, try_files to a named
# location, keep-alive reuse by anonymous and authenticate-only requests)
# hold and are asserted too.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "80-adversary.t: timeout\n" };
$SIG{PIPE} = "IGNORE";
alarm 200;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));

mkdir "$dir/www";
$t->write_file('www/big', 'x' x 100);
$t->write_file('www/page.html', 'before <!--# include virtual="/pub/ssi-inc" -->'
               . '[<!--# echo var="http_authorization" default="" -->]'
               . " after\n");

my $krb5_conf = $realm->krb5_conf;
my $keytab = $realm->keytab('proxy');
my $port = port(8080);
my $bport = port(9100);

$t->write_config(<<"EOF",
    log_format bk '\$uri|\$http_authorization|\$connection|\$http_range';
    log_format front '\$uri|\$status|\$http_authorization|\$remote_user';

    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;

    proxy_cache_path %%TESTDIR%%/cache keys_zone=c:1m;

    upstream bk {
        server 127.0.0.1:$bport;
        keepalive 4;
    }

    # the upstream: one log line per request with its Authorization
    server {
        listen 127.0.0.1:$bport;
        access_log %%TESTDIR%%/bk.log bk;
        root %%TESTDIR%%/www;

        location /xar/ {
            add_header X-Accel-Redirect /pub/after-xar;
            return 200 "xar\\n";
        }
        location /s401/ {
            add_header WWW-Authenticate
                "Negotiate oRQwEqADCgEBoQsGCSqGSIb3EgECAg==" always;
            return 401;
        }
        location /s404/ {
            return 404;
        }
        location /cached/ {
            return 200 "content for \$http_authorization\\n";
        }
        location / {
            return 200 "ok \$uri\\n";
        }
        location /big {
        }
        location /page.html {
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name proxy.kcd.test;

        access_log %%TESTDIR%%/front.log front;
        root %%TESTDIR%%/www;

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

        location \@named {
            kcd_auth off;
            proxy_pass http://bk;
        }

        location /plain/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://bk;
        }

        location /hdr/ {
            kcd_spn HTTP/backend.kcd.test;
            add_header X-Debug-Auth \$http_authorization always;
            proxy_pass http://bk;
        }

        location /mirror/ {
            kcd_spn HTTP/backend.kcd.test;
            mirror /pub/mirrored;
            proxy_pass http://bk;
        }

        location /ar/ {
            kcd_spn HTTP/backend.kcd.test;
            auth_request /pub/authreq;
            proxy_pass http://bk;
        }

        location /xar/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://bk;
        }

        location /ep/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_intercept_errors on;
            error_page 404 = /pub/after-ep;
            proxy_pass http://bk/s404/;
        }

        location /epnoeq/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_intercept_errors on;
            error_page 404 /pub/after-epnoeq;
            proxy_pass http://bk/s404/;
        }

        location /ep401/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_intercept_errors on;
            error_page 401 /pub/after-401;
            proxy_pass http://bk/s401/;
        }

        location /pa/ {
            kcd_spn HTTP/backend.kcd.test;
            post_action /pub/post-action;
            proxy_pass http://bk;
        }

        location /tf/ {
            kcd_spn HTTP/backend.kcd.test;
            try_files /nonexistent \@named;
        }

        location /ssi/ {
            kcd_spn HTTP/backend.kcd.test;
            ssi on;
            rewrite ^ /page.html break;
            proxy_pass http://bk;
        }

        location /slicevar/ {
            kcd_spn HTTP/backend.kcd.test;
            set \$be 127.0.0.1:$bport;
            slice 40;
            proxy_set_header Range \$slice_range;
            proxy_set_header Connection "";
            rewrite ^ /big break;
            proxy_pass http://\$be;
        }

        location /small/ {
            kcd_spn HTTP/backend.kcd.test;
            client_max_body_size 10;
            error_page 413 = /pub/too-big;
            proxy_pass http://bk;
        }

        location /authonly/ {
            proxy_pass http://bk;
        }
    }
EOF
    main => "env KRB5_CONFIG=$krb5_conf;\n"
          . "env KRB5RCACHEDIR=" . $realm->dir . "/rcache;\n"
          . "thread_pool default threads=2;");

$t->run;

###############################################################################

sub login {
    my ($user, $path) = @_;
    my $c = KcdTest::Conn->new(port => $port, timeout => 10);
    my ($r1, $r) = ntlm_login($c, $path, user => $user, domain => 'KCD',
                              password => $PW{$user});
    return ($c, $r);
}

# the upstream's log lines: [uri, authorization, connection, range]
sub bk {
    my $deadline = time + 2;
    my @l;
    while (1) {
        @l = map { [ split /\|/, $_, -1 ] }
             split /\n/, $t->read_file('bk.log') // '';
        return @l if time > $deadline;
        sleep 0.1;
        my @m = map { [ split /\|/, $_, -1 ] }
                split /\n/, $t->read_file('bk.log') // '';
        return @m if @m == @l;
    }
}

sub bk_uri {
    my ($re) = @_;
    return grep { $_->[0] =~ $re } bk();
}

my $TOKEN = qr/Negotiate YII/;

my ($c, $r) = login('alice', '/plain/x');
is($r->{status}, 200, 'alice logs on and is delegated');
my ($first) = bk_uri(qr{^/plain/x$});
like($first->[1] // '', $TOKEN, 'the upstream of /plain/ gets the token');

my %resp;
for my $p (qw(/hdr/x /mirror/x /ar/x /xar/x /ep/x /epnoeq/x /ep401/x /pa/x
              /tf/x /ssi/x /slicevar/x /cached/x /plain/ka /pub/after-ka
              /authonly/x))
{
    $resp{$p} = $c->get($p);
}

###############################################################################

subtest 'held: no token in internal redirects and subrequests (B7a)' => sub {
    for my $u (qw(/pub/mirrored /pub/authreq /pub/after-xar /pub/after-ep
                  /pub/after-epnoeq /pub/post-action /tf/x /pub/ssi-inc))
    {
        my @l = bk_uri(qr{^\Q$u\E$});
        ok(@l, "$u reached the upstream");
        is(scalar(grep { ($_->[1] // '-') ne '-' } @l), 0,
           "$u: no Authorization upstream");
    }
};

subtest 'held: a token-carrying upstream connection is not reused by '
        . 'anonymous or authenticate-only requests (B10)' => sub {
    my ($anon) = bk_uri(qr{^/pub/after-ka$});
    my ($ao) = bk_uri(qr{^/authonly/x$});
    my %tagged = map { $_->[2] => 1 } grep { ($_->[1] // '') =~ $TOKEN } bk();
    ok(!$tagged{$anon->[2]}, 'kcd_auth off location: fresh connection');
    ok(!$tagged{$ao->[2]}, 'authenticate-only location: fresh connection');
};

subtest 'finding: slice subrequests replay the delegated token (B7a, B7)'
        => sub {
    my @l = bk_uri(qr{^/big$});
    cmp_ok(scalar @l, '>=', 2, 'the upstream got several ranges');
    my @tok = grep { ($_->[1] // '') =~ $TOKEN } @l;
    is(scalar @tok, 1, 'slice + proxy_pass with a variable: only the main '
       . 'request carries the delegated token, no slice subrequest');
    my %u = map { $_->[1] => 1 } @tok;
    is(scalar keys %u, scalar @tok, 'no AP-REQ is sent twice');
};

subtest 'finding: $http_authorization is the delegated token (B7a)' => sub {
    my $h = $resp{'/hdr/x'}->header('X-Debug-Auth') // '';
    ok($h !~ $TOKEN, 'add_header $http_authorization: not sent to the client');
    ok($resp{'/ssi/x'}{body} !~ $TOKEN,
       'SSI echo var=http_authorization: not in the page sent to the client');
    ok(($t->read_file('front.log') // '') !~ $TOKEN,
       'log_format $http_authorization: not written to the access log');
};

subtest 'finding: backend refuses the ticket under proxy_intercept_errors + '
        . 'error_page 401 (B15)' => sub {
    is($resp{'/ep401/x'}{status}, 502, '502, never a 401 without a challenge')
        or diag('got ' . $resp{'/ep401/x'}{status} . ', WWW-Authenticate: '
                . ($resp{'/ep401/x'}->header('WWW-Authenticate') // 'none'));
    like($t->error_log, qr/refused the delegated ticket/,
         'the error log names the refusal');
};

subtest 'finding: proxy_cache in a delegating location would serve alice\'s '
        . 'response to carol (B10, B14): nginx -t refuses it' => sub {
    my $t2 = KcdTest->new;
    $t2->write_file('users', $t->read_file('users'));
    $t2->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    proxy_cache_path %%TESTDIR%%/cache keys_zone=c:1m;
    server {
        listen 127.0.0.1:%%PORT_8095%%;
        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location /cached/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_cache c;
            proxy_cache_valid 200 10m;
            proxy_pass http://127.0.0.1:1;
        }
        location /static/ {
            kcd_auth off;
            proxy_cache c;
            proxy_pass http://127.0.0.1:1;
        }
    }
EOF
        main => "env KRB5_CONFIG=$krb5_conf;");
    my ($rc, $out) = $t2->nginx_test;
    isnt($rc, 0, 'nginx -t fails');
    like($out, qr/"proxy_cache" in a location that delegates .*nginx\.conf:\d+/,
         'the message says why, with file:line');
};

subtest 'finding: client Authorization goes upstream after a pre-access '
        . 'error (413) + error_page (B7)' => sub {
    for my $cred (['Basic', 'Basic ' . b64("KCD\\alice:$PW{alice}")],
                  ['NTLM Type 1', 'NTLM ' . b64(type1())])
    {
        my $c3 = KcdTest::Conn->new(port => $port, timeout => 10);
        my $x = $c3->post('/small/x', body => 'y' x 100,
                          headers => [Authorization => $cred->[1]]);
        is($x->{status}, 200, "$cred->[0] + 413: error_page target served");
        $c3->close;
    }
    my @l = bk_uri(qr{^/pub/too-big$});
    is(scalar @l, 2, 'both 413 error pages went upstream');
    is(join(', ', map { $_->[1] } @l), '-, -',
       "the client's Basic password / NTLM message never reaches an "
       . 'upstream');
};

$c->close;

done_testing();
