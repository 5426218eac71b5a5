#!/usr/bin/perl

# B15: a backend that refuses the delegated ticket (here: Apache holding
# the key of another SPN, the classic wrong-keytab mistake) gives the
# client 502, never a 401 it could not answer; the error log names the
# principal, the SPN, the upstream and what the backend said; the cached
# ticket is dropped, so the next request asks the KDC again.
#
# B16: upstream challenges are parsed as RFC 9110 lists: "Negotiate, NTLM"
# in one field loses its Negotiate under kcd_strip_negotiate, whatever the
# spelling (params, token68, quoted strings, several fields).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);

sub uri_escape {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}
use KcdNTLM qw(:all);
use KcdBackend;
use KcdRealm;
use KcdApache;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "73-backend-refusal.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 120;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");

# the backend's keytab holds HTTP/notallowed.kcd.test, not the SPN asked for
my $wrong = KcdApache->start(dir => $dir, realm => $realm, name => 'wrong',
                             keytab => $realm->keytab('notallowed'));
my $rec = KcdBackend->start(port => port(9000), dir => $dir);

my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', user_file_lines('KCD', %PW));

my $keytab = $realm->keytab('proxy');
my $wport = $wrong->port;

$t->write_config(<<"EOF",
    log_format cache '\$kcd_ticket_cache_status|\$status|\$request_uri';

    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

    upstream wrongkey {
        server 127.0.0.1:$wport;
        keepalive 2;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name proxy.kcd.test;

        access_log %%TESTDIR%%/cache.log cache;

        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host backend.kcd.test;

        location / {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://wrongkey;
        }

        location /strip/ {
            kcd_auth off;
            kcd_strip_negotiate on;
            proxy_pass http://127.0.0.1:%%PORT_9000%%/;
        }

        location /nostrip/ {
            kcd_auth off;
            proxy_pass http://127.0.0.1:%%PORT_9000%%/;
        }
    }
EOF
    main => "env KRB5_CONFIG=@{[ $realm->krb5_conf ]};\n"
          . "thread_pool default threads=4;");

$t->run;

my $port = port(8080);

###############################################################################
# B15

my $c = KcdTest::Conn->new(port => $port, timeout => 10);
my $kmark = $realm->log_mark;
my $mark = $t->log_mark;
my (undef, $r) = ntlm_login($c, '/echo', user => 'alice', domain => 'KCD',
                            password => $PW{alice});
is($r->{status}, 502, 'backend refuses the ticket: 502, not 401');
ok(!$r->has_header('WWW-Authenticate'),
   '... with no challenge the client could not answer');
my $l = $t->wait_for_log(qr/refused the delegated ticket/, 3, 'error.log',
                         $mark) // '';
like($l, qr/\[error\]/, 'one error line');
like($l, qr/"alice\@KCD\.TEST"/, '... naming the principal');
like($l, qr/"HTTP\/backend\.kcd\.test"/, '... the SPN');
like($l, qr/127\.0\.0\.1:$wport/, '... the upstream');
like($l, qr/401/, '... and what the backend answered');
is($realm->count_requests(since => $kmark, type => 'TGS_REQ'), 2,
   'first request: S4U2Self + S4U2Proxy at the KDC');

$kmark = $realm->log_mark;
$c = KcdTest::Conn->new(port => $port, timeout => 10);
(undef, $r) = ntlm_login($c, '/echo?2', user => 'alice', domain => 'KCD',
                         password => $PW{alice});
is($r->{status}, 502, 'next request: 502 again');
ok($realm->count_requests(since => $kmark, type => 'TGS_REQ') >= 1,
   'the cached ticket was dropped: the KDC was asked again');
ok($t->wait_for_log(qr/^MISS\|502\|\/echo\?2$/m, 3, 'cache.log'),
   '$kcd_ticket_cache_status MISS after the drop');

###############################################################################
# B16

sub challenges {
    my ($path, @www) = @_;
    my $q = join '&', 'status=401',
        map { 'h=' . uri_escape("WWW-Authenticate:$_") } @www;
    my $c = KcdTest::Conn->new(port => $port, timeout => 5);
    my $r = $c->get("$path/set?$q");
    return [ $r->headers_all('WWW-Authenticate') ];
}

is_deeply(challenges('/strip', 'Negotiate, NTLM'), ['NTLM'],
          '"Negotiate, NTLM" in one field: Negotiate stripped');
is_deeply(challenges('/strip', 'NTLM, Negotiate'), ['NTLM'],
          '"NTLM, Negotiate": Negotiate stripped');
is_deeply(challenges('/strip', 'negotiate,NTLM,Basic realm="a, b"'),
          ['NTLM, Basic realm="a, b"'],
          'lower case, no spaces, a quoted comma: the rest kept as it was');
is_deeply(challenges('/strip', 'Basic realm="x", charset="UTF-8", Negotiate'),
          ['Basic realm="x", charset="UTF-8"'],
          'auth-params belong to their challenge');
is_deeply(challenges('/strip', 'Negotiate', 'NTLM', 'Negotiate, Basic realm="r"'),
          ['NTLM', 'Basic realm="r"'], 'several fields, each parsed');
is_deeply(challenges('/nostrip', 'Negotiate, NTLM'), ['Negotiate, NTLM'],
          'without stripping, a bare Negotiate stays');
is_deeply(challenges('/nostrip', 'Negotiate oYG2MIGzoAMKAQA=, NTLM'), ['NTLM'],
          'a Negotiate token (mutual authentication) never reaches the client');
is_deeply(challenges('/strip', 'Negotiate realm="a'), [],
          'a malformed field that names Negotiate is removed');

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/,
       'no alert, crit or crashed worker');

###############################################################################
# B15 with the proxy's clock 20 minutes ahead (libfaketime): the KDC still
# issues the ticket, the backend refuses the authenticator (clock skew) with
# a bare 401.

SKIP: {
    my $lib = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1';
    skip "no $lib (package faketime)", 4 unless -f $lib;

    my $good = KcdApache->start(dir => $dir, realm => $realm, name => 'good');
    my $t2 = KcdTest->new;
    $t2->write_file('users', $t->read_file('users'));
    my $gport = $good->port;

    $t2->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;

    server {
        listen 127.0.0.1:%%PORT_8090%%;
        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        kcd_spn HTTP/backend.kcd.test;
        proxy_set_header Host backend.kcd.test;

        location / {
            proxy_pass http://127.0.0.1:$gport;
        }
    }
EOF
        main => "env KRB5_CONFIG=@{[ $realm->krb5_conf ]};\nenv LD_PRELOAD;\n"
              . "env FAKETIME;\nthread_pool default threads=4;");

    {
        local $ENV{LD_PRELOAD} = $lib;
        local $ENV{FAKETIME} = '+20m';
        $t2->run;
    }

    my $c2 = KcdTest::Conn->new(port => port(8090), timeout => 10);
    my (undef, $r2) = ntlm_login($c2, '/echo', user => 'alice',
                                 domain => 'KCD', password => $PW{alice});
    is($r2->{status}, 502, 'proxy clock 20 min off: 502, not a bare 401');
    ok(!$r2->has_header('WWW-Authenticate'), '... no challenge');
    like($t2->wait_for_log(qr/refused the delegated ticket/, 3) // '',
         qr/\[error\].*"alice\@KCD\.TEST" for "HTTP\/backend\.kcd\.test"/,
         '... the log names principal and SPN');
    like(do { local $/; open my $fh, '<', $good->error_log; <$fh> // '' },
         qr/Clock skew too great/, '(the backend refused it for clock skew)');
    $t2->stop;
}

done_testing();
