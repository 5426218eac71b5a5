#!/usr/bin/perl

# B20: kcd_require with the user file's third field (groups): users by
# name in any accepted spelling, groups from the logon, 403 + info line
# when no rule matches, never delegated; inheritance; nginx -t errors of
# kcd_require and kcd_lockout / kcd_lockout_zone.

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

sub line {
    my ($u, $pw, $g) = @_;
    return "$u:" . unpack('H*', nt_hash($pw)) . (defined $g ? ":$g" : '') . "\n";
}

$t->write_file('users',
      line('KCD\\alice', 'Alice-1', 'Exchange Users, Staff')
    . line('KCD\\bob', 'Bob-1', 'Staff')
    . line('KCD\\carol', 'Carol-1')
    . line('dave', 'Dave-1', '')
    . line('KCD\\erin', 'Erin-1', "\xc3\x84rzte"));

$t->write_config(<<"EOF");
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        kcd_auth ntlm basic;
        kcd_require "group=Exchange Users";

        location / {
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /carol/ {
            kcd_require user=carol\@KCD.TEST "group=KCD\\Staff";
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /dave/ {
            kcd_require user=KCD\\dave;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /aerzte/ {
            kcd_require "group=\xc3\xa4RZTE";
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /public/ {
            kcd_auth off;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location = /status {
            kcd_auth off;
            kcd_status;
        }
    }
EOF
$t->run;

sub ntlm {
    my ($user, $pw, $path) = @_;
    my ($dom, $name) = $user =~ /^(.*)\\(.*)$/ ? ($1, $2) : ('', $user);
    my $c = KcdTest::Conn->new(port => port(8080));
    my (undef, $r) = ntlm_login($c, $path, user => $name, domain => $dom,
                                password => $pw);
    return wantarray ? ($r, $c) : $r;
}

sub basic {
    my ($user, $pw, $path) = @_;
    return KcdTest::Conn->new(port => port(8443), ssl => 1)->get($path,
        headers => [Authorization => 'Basic ' . encode_base64("$user:$pw", '')]);
}

my $n = $b->requests;

my ($r, $c) = ntlm('KCD\\alice', 'Alice-1', '/a');
is($r->{status}, 200, 'alice, in "Exchange Users": admitted (NTLM)');
is($c->get('/a2')->{status}, 200, 'connection-bound identity keeps its groups');
is(basic('alice', 'Alice-1', '/a')->{status}, 200,
   'alice admitted (Basic)');

my $mark = $t->log_mark;
($r, $c) = ntlm('KCD\\bob', 'Bob-1', '/b');
is($r->{status}, 403, 'bob, not in "Exchange Users": 403');
ok(!$r->has_header('WWW-Authenticate'), '403 without a challenge');
is($c->get('/b2')->{status}, 403, 'bob refused on his connection too');
ok($t->wait_for_log(qr/\[info\].*access denied by kcd_require: user "KCD\\bob" principal "bob\@KCD\.TEST" client 127\.0\.0\.1/,
                    3, undef, $mark), 'info line names user, principal, client');
is(basic('KCD\\bob', 'Bob-1', '/b')->{status}, 403, 'bob refused (Basic)');

my @paths = map { $_->{uri} } $b->requests;
ok(!grep({ m{^/b} } @paths), 'refused requests never reach the upstream');

# users by name, any spelling; groups with a domain

is(ntlm('KCD\\carol', 'Carol-1', '/carol/x')->{status}, 200,
   'user=carol@KCD.TEST admits KCD\\carol');
is(basic('CAROL', 'Carol-1', '/carol/x')->{status}, 200,
   'and CAROL (Basic, no domain)');
is(ntlm('KCD\\bob', 'Bob-1', '/carol/x')->{status}, 403,
   'group=KCD\\Staff: groups of the user file carry no domain');
is(ntlm('KCD\\alice', 'Alice-1', '/carol/x')->{status}, 403,
   'location rules replace the server rules');
is(ntlm('dave', 'Dave-1', '/dave/x')->{status}, 200,
   'user=KCD\\dave admits dave');
is(ntlm('KCD\\dave', 'Dave-1', '/')->{status}, 403,
   'an empty groups field: no groups');
is(ntlm('KCD\\erin', 'Erin-1', '/aerzte/x')->{status}, 200,
   'group=äRZTE admits a member of "Ärzte" (Unicode case mapping)');
is(ntlm('KCD\\bob', 'Bob-1', '/aerzte/x')->{status}, 403,
   '... and no one else');
is(KcdTest::Conn->new(port => port(8080))->get('/public/x')->{status}, 200,
   'kcd_auth off: inherited rules do not apply');

like(KcdTest::Conn->new(port => port(8080))->get('/status')->{body},
     qr/^kcd_require_denied_total [1-9]\d*$/m,
     'kcd_status counts the refusals (no lockout zone needed)');

# nginx -t

my $k = 0;
# the message, and the file:line of the last line that matches $marker
sub conf_fails {
    my ($what, $body, $re, $marker) = @_;
    my $name = sprintf('bad%02d.conf', ++$k);
    $t->write_config($body, name => $name);
    my ($rc, $out) = $t->nginx_test;
    isnt($rc, 0, "$what: nginx -t fails");
    like($out, $re, "$what: message") or diag($out);
    return unless $marker;
    my @l = split /\n/, $t->read_file($name);
    my ($line) = reverse grep { $l[$_ - 1] =~ $marker } 1 .. @l;
    like($out, qr/\Q$name\E:$line\b/, "$what: names $name:$line");
}

my $srv = "listen 127.0.0.1:%%PORT_8080%%; kcd_ntlm_user_file %%TESTDIR%%/users;";

conf_fails('kcd_require without kcd_auth', <<"EOF",
    server { $srv
        location / { kcd_require user=alice; }
    }
EOF
    qr/"kcd_require" in a location without "kcd_auth" would admit everyone/,
    qr/kcd_require user=alice/);
conf_fails('kcd_require bad rule', <<"EOF",
    server { $srv
        location / { kcd_auth ntlm; kcd_require alice; }
    }
EOF
    qr/invalid rule "alice" in "kcd_require"/, qr/kcd_require alice/);
conf_fails('kcd_lockout unknown zone', <<"EOF",
    server { $srv
        location / { kcd_auth ntlm; kcd_lockout nosuch; }
    }
EOF
    qr/unknown kcd_lockout_zone "nosuch"/, qr/kcd_lockout nosuch/);
conf_fails('kcd_lockout_zone bad parameter', <<"EOF",
    kcd_lockout_zone z:1m threshold=0;
EOF
    qr/invalid value "threshold=0" in "kcd_lockout_zone"/, qr/threshold=0/);
conf_fails('kcd_lockout_zone without size', <<"EOF",
    kcd_lockout_zone z;
EOF
    qr/invalid zone "z" in "kcd_lockout_zone": use name:size/,
    qr/kcd_lockout_zone z;/);
conf_fails('kcd_lockout_zone twice', <<"EOF",
    kcd_lockout_zone z:1m;
    kcd_lockout_zone z:1m;
EOF
    qr/duplicate kcd_lockout_zone "z"/, qr/kcd_lockout_zone z:1m/);
conf_fails('kcd_lockout_zone in a server', <<"EOF",
    server { $srv kcd_lockout_zone z:1m; }
EOF
    qr/"kcd_lockout_zone" directive is not allowed here/);
conf_fails('user file: empty group name', <<"EOF",
    server { listen 127.0.0.1:%%PORT_8080%%;
             kcd_ntlm_user_file %%TESTDIR%%/badgroups; }
EOF
    qr/badgroups:1: empty group name/)
    if $t->write_file('badgroups', line('bob', 'Bob-1', 'Staff,,X'));

done_testing();
