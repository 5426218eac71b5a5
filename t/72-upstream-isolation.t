#!/usr/bin/perl

# B10: an upstream connection that has carried a delegated request is
# never reused for a request that carries no token of its own.  The
# backend is Apache + mod_auth_gssapi with GssapiConnectionBound On: like
# IIS (authPersistNonNTLM), it keeps the Kerberos identity for the
# connection, so a reused connection would serve the anonymous request as
# the last user.  The configuration shares one upstream{} (keepalive 1)
# between a delegating server and a kcd_auth off location, as an
# administrator publishing /public/ beside /owa/ would.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;
use KcdApache;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "72-upstream-isolation.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 120;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $be = KcdApache->start(dir => $dir, realm => $realm,
                          connection_bound => 1);

my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', user_file_lines('KCD', %PW));

my $keytab = $realm->keytab('proxy');
my $aport = $be->port;

$t->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

    upstream exch {
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

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host backend.kcd.test;

        location / {
            proxy_pass http://exch;
        }

        location /public/ {
            kcd_auth off;
            proxy_pass http://exch/;
        }
    }

    # another virtual host on the same upstream, no authentication at all
    server {
        listen 127.0.0.1:%%PORT_8081%%;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host backend.kcd.test;

        location / {
            proxy_pass http://exch;
        }
    }
EOF
    main => "env KRB5_CONFIG=@{[ $realm->krb5_conf ]};\n"
          . "thread_pool default threads=4;");

$t->run;

my $port = port(8080);

sub alice {
    my ($path) = @_;
    my $c = KcdTest::Conn->new(port => $port, timeout => 10);
    my (undef, $r) = ntlm_login($c, $path, user => 'alice', domain => 'KCD',
                                password => $PW{alice});
    return ($c, $r);
}

sub port_of { ($_[0]{body} // '') =~ /port=(\d+)/ ? $1 : '' }

my ($c, $r) = alice('/echo');
is($r->{status}, 200, 'alice, delegated: 200');
like($r->{body}, qr/^user=alice\@KCD\.TEST /, '... Apache saw alice');
my $alice_port = port_of($r);

$r = $c->get('/echo?2');
like($r->{body}, qr/^user=alice\@KCD\.TEST /, 'alice again (keep-alive)');
is(port_of($r), $alice_port,
   'delegated requests do reuse the upstream connection (each with its token)');

for my $case (['/public/echo', 8080, 'kcd_auth off location'],
              ['/echo', 8081, 'another server without authentication'])
{
    my $anon = KcdTest::Conn->new(port => port($case->[1]), timeout => 10);
    $r = $anon->get($case->[0]);
    unlike($r->{body} // '', qr/user=alice/,
           "$case->[2]: the anonymous request is not served as alice");
    is($r->{status}, 401,
       "$case->[2]: Apache asks the anonymous request to authenticate");
    is($r->header('X-Remote-User') // '', '',
       "$case->[2]: no remote user");

    # and alice keeps working, with her own token
    $r = $c->get('/echo?after');
    like($r->{body}, qr/^user=alice\@KCD\.TEST /,
         "$case->[2]: alice keeps working after it");
}

# two users interleaved on the shared upstream: each its own identity
my ($cb, $rb) = (KcdTest::Conn->new(port => $port, timeout => 10));
(undef, $rb) = ntlm_login($cb, '/echo', user => 'carol', domain => 'KCD',
                          password => $PW{carol});
like($rb->{body}, qr/^user=carol\@KCD\.TEST /, 'carol: Apache saw carol');
for my $i (1 .. 5) {
    like($c->get("/echo?a$i")->{body}, qr/^user=alice\@/, "interleaved $i: alice");
    like($cb->get("/echo?c$i")->{body}, qr/^user=carol\@/, "interleaved $i: carol");
}

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/,
       'no alert, crit or crashed worker');

done_testing();
