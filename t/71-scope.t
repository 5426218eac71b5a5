#!/usr/bin/perl

# B14: one identity, with its scope.  An identity bound to a connection
# holds only where the same checks would have accepted it: the same
# server, the same validation backend (the same user file, however many
# directives name it), the same realm mapping, and a kcd_channel_binding
# policy no stricter than the one it met.  Elsewhere: challenged again,
# variables empty.  Also B6 / the user file rules (canonical names, lines
# without a domain), B21 (a log line for every logon) and the variables
# $kcd_user_name, $kcd_user_domain, $remote_user.

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

$SIG{ALRM} = sub { die "71-scope.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 120;

my $rec = KcdBackend->start(port => port(9000), dir => $t->testdir);

# alice without a domain (any domain may name her); bob in KCD; the same
# file named twice; a second file with the same accounts
my $users = "alice:" . unpack('H*', nt_hash('Alice-Pass1')) . "\n"
          . "KCD\\bob:" . unpack('H*', nt_hash('Bob-Pass2')) . "\n";
$t->write_file('users', $users);
$t->write_file('users2', $users);

my $cert = $t->make_cert('proxy', cn => 'a.test');

# X-* headers: what each location's variables say
my $vars = join '', map { "            add_header X-$_->[0] \"$_->[1]\" always;\n" }
    ['User', '$kcd_user'], ['Principal', '$kcd_principal'],
    ['Name', '$kcd_user_name'], ['Domain', '$kcd_user_domain'],
    ['Remote-User', '$remote_user'], ['Scheme', '$kcd_auth_scheme'];

$t->write_config(<<"EOF");
    log_format scope '\$remote_user|\$kcd_user_name|\$kcd_user_domain|\$request_uri';

    kcd_domain_map EMEA EMEA.CORP.TEST;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name a.test;

        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        access_log %%TESTDIR%%/scope.log scope;

        kcd_auth ntlm basic;
        kcd_ntlm_domain KCD;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_realm KCD.TEST;

        location /allow/ {
            kcd_ntlm_user_file %%TESTDIR%%/users;
            kcd_channel_binding allow;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /off/ {
            kcd_ntlm_user_file %%TESTDIR%%/users;
            kcd_channel_binding off;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /require/ {
            kcd_ntlm_user_file %%TESTDIR%%/users;
            kcd_channel_binding require;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        # the same file again, by another directive
        location /same-file/ {
            kcd_ntlm_user_file %%TESTDIR%%/users;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location = /favicon.ico {
            kcd_ntlm_user_file %%TESTDIR%%/users;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        # another file, the same accounts
        location /other-file/ {
            kcd_ntlm_user_file %%TESTDIR%%/users2;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        # another realm
        location /second/ {
            kcd_ntlm_user_file %%TESTDIR%%/users;
            kcd_realm SECOND.TEST;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        # no authentication here
        location /public/ {
            kcd_auth off;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        # an internal redirect keeps the request's identity
        location /redirect/ {
            kcd_ntlm_user_file %%TESTDIR%%/users;
            error_page 404 = /public/after-redirect;
            proxy_intercept_errors on;
            proxy_pass http://127.0.0.1:%%PORT_9000%%/status/404;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name b.test;
        kcd_ntlm_domain KCD;

        location /public/ {
$vars            proxy_set_header X-User \$kcd_user;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /auth/ {
            kcd_auth ntlm;
            kcd_ntlm_user_file %%TESTDIR%%/users;
$vars            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }
    }
EOF
$t->run;

my $port = port(8080);
my $sport = port(8443);

sub plain { KcdTest::Conn->new(port => $port, timeout => 5, @_) }
sub tls { KcdTest::Conn->new(port => $sport, ssl => 1, sni => 'a.test',
                             timeout => 5) }

sub login {
    my ($c, $path, %o) = @_;
    my (undef, $r) = ntlm_login($c, $path, user => 'alice', domain => 'KCD',
                                password => 'Alice-Pass1',
                                headers => [Host => 'a.test'], %o);
    return $r;
}

sub get {
    my ($c, $path, $host) = @_;
    return $c->get($path, headers => [Host => $host || 'a.test']);
}

my ($c, $r);

###############################################################################
# Channel-binding policy (issue input 3): a logon that met "allow" without
# bindings does not hold where "require" applies.

$c = tls();
$r = login($c, '/allow/1', cb => 'none');
is($r->{status}, 200, 'logon without channel bindings at an "allow" location');
$r = get($c, '/allow/2');
is($r->{status}, 200, 'same policy, same connection: connection-bound, 200');
$r = get($c, '/require/1');
is($r->{status}, 401, 'sibling with "require": challenged again, not 200 as alice');
ok(!defined $r->header('X-User') || $r->header('X-User') eq '',
   '... and $kcd_user is empty there');
like($t->wait_for_log(qr/does not hold here \(channel binding/, 3) // '',
     qr/"KCD\\alice".*channel binding policy stricter/,
     '... the log says why');

$c = tls();
$r = login($c, '/off/1', cb => 'none');
is($r->{status}, 200, 'logon at a "kcd_channel_binding off" location');
is(get($c, '/allow/x')->{status}, 401, '"off" logon does not hold under "allow"');

$c = tls();
$r = login($c, '/allow/3');
is($r->{status}, 200, 'logon with the right channel bindings at "allow"');
$r = get($c, '/require/2');
is($r->{status}, 200, 'bindings that matched satisfy "require" on the same connection');
is($r->header('X-User'), 'KCD\\alice', '... as alice');

###############################################################################
# Realm (issue input 5) and the domain-less line (issue input 4)

$c = plain();
$r = login($c, '/second/1');
is($r->header('X-Principal'), 'alice@SECOND.TEST', 'kcd_realm SECOND.TEST: alice@SECOND.TEST');
$r = get($c, '/same-file/1');
is($r->{status}, 401, 'a location with another realm mapping: challenged again');
$r = login($c, '/same-file/2');
is($r->header('X-Principal'), 'alice@KCD.TEST', '... and logged on again: alice@KCD.TEST');

$c = plain();
$r = login($c, '/same-file/emea', domain => 'EMEA');
is($r->{status}, 200, 'line without domain, client names EMEA: 200');
is($r->header('X-Principal'), 'alice@KCD.TEST',
   'the client\'s domain does not choose the realm (not alice@EMEA.CORP.TEST)');
is($r->header('X-User'), 'KCD\\alice', '$kcd_user is in our domain, not EMEA');

$c = plain();
$r = login($c, '/same-file/any', domain => 'ANYTHING');
is($r->header('X-User'), 'KCD\\alice', 'ANYTHING\\alice: $kcd_user KCD\\alice');
is($r->header('X-Domain'), 'KCD', '$kcd_user_domain KCD');
is($r->header('X-Name'), 'alice', '$kcd_user_name alice');
is($r->header('X-Remote-User'), 'KCD\\alice', '$remote_user is $kcd_user');

###############################################################################
# The same backend in two locations (issue input 15)

$c = plain();
$r = login($c, '/allow/same');
is($r->{status}, 200, 'logon at /allow/');
$r = get($c, '/same-file/x');
is($r->{status}, 200, 'another directive naming the same file: same backend, 200');
is($r->header('X-User'), 'KCD\\alice', '... as alice');
$r = get($c, '/favicon.ico');
is($r->{status}, 200, 'the browser\'s /favicon.ico from a sibling location: no re-authentication');
$r = get($c, '/other-file/x');
is($r->{status}, 401, 'another user file: challenged again');

###############################################################################
# Another server on the same connection (issue input 6), and a location
# without kcd_auth

$c = plain();
$r = login($c, '/allow/srv');
is($r->{status}, 200, 'logon at a.test');
$r = get($c, '/public/x', 'b.test');
is($r->{status}, 200, 'b.test, location without kcd_auth: 200');
ok(!$r->header('X-User'), 'b.test: $kcd_user is empty');
my ($q) = grep { $_->{uri} eq '/public/x' } $rec->requests;
ok($q && !defined $q->header('X-User'),
   'b.test: the upstream got no X-User (proxy_set_header $kcd_user is empty)');
is(get($c, '/auth/x', 'b.test')->{status}, 401,
   'b.test with kcd_auth: challenged, a.test\'s logon does not hold');
$r = get($c, '/public/y', 'a.test');
is($r->{status}, 200, 'a.test, location without kcd_auth: 200');
ok(!$r->header('X-User'), 'a.test /public/: no identity was checked here, $kcd_user empty');

$c = plain();
$r = login($c, '/redirect/x');
is($r->{status}, 200, 'internal redirect to a location without kcd_auth: 200');
is($r->header('X-User'), 'KCD\\alice', 'the request keeps its identity after the redirect');

###############################################################################
# Basic: canonical principal (issue input 12), a log line for the logon
# (issue input 14)

my $mark = $t->log_mark;
$c = tls();
$r = $c->get('/same-file/basic', headers => [
    Authorization => 'Basic ' . encode_base64('BOB:Bob-Pass2', '')]);
is($r->{status}, 200, 'Basic BOB: 200');
is($r->header('X-Principal'), 'bob@KCD.TEST',
   'Basic BOB: the principal is the account\'s name, bob@KCD.TEST, not BOB@');
is($r->header('X-User'), 'bob', 'Basic BOB: $kcd_user bob');
like($t->wait_for_log(qr/kcd: Basic logon of/, 3, 'error.log', $mark) // '',
     qr/\[info\].*kcd: Basic logon of "bob" as "bob\@KCD\.TEST"/,
     'a successful Basic logon writes one info line');

$mark = $t->log_mark;
$c = plain();
login($c, '/allow/log');
like($t->wait_for_log(qr/kcd: NTLM logon of/, 3, 'error.log', $mark) // '',
     qr/\[info\].*kcd: NTLM logon of "KCD\\alice" as "alice\@KCD\.TEST"/,
     'a successful NTLM logon writes one info line');

my $log = $t->read_file('scope.log') // '';
like($log, qr/^KCD\\x5Calice\|alice\|KCD\|\/same-file\/any$/m,
     'access log: $remote_user, $kcd_user_name, $kcd_user_domain');

unlike($t->error_log, qr/\[(alert|crit|emerg)\]|signal \d+/,
       'no alert, crit or crashed worker');

###############################################################################
# B13: kcd_spn without kcd_auth (issue input 11)

for my $case (
    ['kcd_spn beside kcd_auth off',
     "location / { kcd_auth off; kcd_spn HTTP/backend.kcd.test; proxy_pass http://127.0.0.1:1; }"],
    ['kcd_spn with no kcd_auth anywhere',
     "location / { kcd_spn HTTP/backend.kcd.test; proxy_pass http://127.0.0.1:1; }"])
{
    my $t2 = KcdTest->new;
    $t2->write_file('users', $users);
    $t2->write_file('keytab', '');
    $t2->write_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        $case->[1]
    }
EOF
    my ($rc, $out) = $t2->nginx_test;
    isnt($rc, 0, "$case->[0]: nginx -t fails");
    like($out, qr/"kcd_spn" without "kcd_auth".*nginx\.conf:\d+/,
         "$case->[0]: the message names the mistake and file:line");
}

{
    my $t2 = KcdTest->new;
    $t2->write_file('users', $users);
    $t2->write_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT_8091%%;
        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth off;
            proxy_pass http://127.0.0.1:1;
        }
    }
EOF
    my ($rc, $out) = $t2->nginx_test;
    is($rc, 0, 'kcd_auth off alone (no kcd_spn): nginx -t succeeds')
        or diag $out;
}

done_testing();
