#!/usr/bin/perl

# B19: extranet smart lockout with the user file.  Client addresses are
# loopback addresses (127.0.0.2 ...) bound by the client: .2 is alice's
# familiar address, .3 a stranger, .4 a spraying address.  Refused logons
# look like wrong passwords; the owner keeps working from her familiar
# address; spray locks an address for every account; log_only refuses
# nothing; reload keeps the state; kcd_status lists the locks.

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

sub line { my ($u, $pw) = @_; return "$u:" . unpack('H*', nt_hash($pw)) . "\n" }

$t->write_file('users', line('KCD\\alice', 'Alice-1') . line('KCD\\bob', 'Bob-1')
    . line('KCD\\carol', 'Carol-1') . line('KCD\\dave', 'Dave-1')
    . line('KCD\\erin', 'Erin-1') . line('KCD\\o"ha\\ra', 'Ohara-1'));

$t->write_config(<<"EOF");
    kcd_lockout_zone lz:1m threshold=3 familiar_threshold=5 window=1h
                     familiar=2 spray=4;
    kcd_lockout_zone watch:1m threshold=2 window=1h log_only;

    log_format lo '\$remote_addr \$remote_user lockout=\$kcd_lockout_status';

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        access_log %%TESTDIR%%/lockout.log lo;

        location / {
            kcd_auth ntlm basic;
            kcd_lockout lz;
            add_header X-Lockout "\$kcd_lockout_status" always;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /watch/ {
            kcd_auth ntlm;
            kcd_lockout watch;
            add_header X-Lockout "\$kcd_lockout_status" always;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /open/ {
            kcd_auth ntlm;
            kcd_lockout off;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location = /status {
            kcd_status;
        }
    }

    # a zone too small for the attack: eviction policy
    kcd_lockout_zone tiny:32k threshold=3 spray=1000;

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        kcd_auth ntlm;
        kcd_lockout tiny;
        add_header X-Lockout "\$kcd_lockout_status" always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }
    }
EOF
$t->run;

sub conn {
    my ($addr, %o) = @_;
    return KcdTest::Conn->new(port => $o{ssl} ? port(8443) : port(8080),
                              local_addr => $addr, %o);
}

# one NTLM logon on a new connection from $addr: the final response
sub ntlm {
    my ($addr, $user, $pw, %o) = @_;
    my ($dom, $name) = $user =~ /^(.*)\\(.*)$/ ? ($1, $2) : ('', $user);
    my (undef, $r) = ntlm_login(conn($addr), $o{path} || '/app',
                                user => $name, domain => $dom,
                                password => $pw);
    return $r;
}

sub basic {
    my ($addr, $user, $pw) = @_;
    return conn($addr, ssl => 1)->get('/app', headers => [
        Authorization => 'Basic ' . encode_base64("$user:$pw", '')]);
}

sub challenges { return join '|', sort $_[0]->headers_all('WWW-Authenticate') }

# alice's familiar address

my $r = ntlm('127.0.0.2', 'KCD\\alice', 'Alice-1');
is($r->{status}, 200, 'alice logs on from 127.0.0.2');
is($r->header('X-Lockout'), 'unfamiliar', 'first logon: address unfamiliar');
$r = ntlm('127.0.0.2', 'alice', 'Alice-1');
is($r->header('X-Lockout'), 'familiar', 'second logon: address familiar');

# a stranger guesses: every spelling is the same account

my $mark = $t->log_mark;
my $wrong = ntlm('127.0.0.3', 'KCD\\alice', 'guess1');
is($wrong->{status}, 401, 'wrong password: 401');
is(ntlm('127.0.0.3', 'ALICE', 'guess2')->{status}, 401, 'wrong password 2');
is(basic('127.0.0.3', 'KCD\\Alice', 'guess3')->{status}, 401,
   'wrong password 3 (Basic)');
ok($t->wait_for_log(qr/\[warn\].*lockout: account "alice\@kcd\.test" locked for unfamiliar addresses after 3 failed logons \(last from 127\.0\.0\.3\) until \d{4}-\d\d-\d\dT/,
                    3, undef, $mark),
   'one warn line when the account locks');

# now the right password from the stranger's address looks like a wrong one

$mark = $t->log_mark;
my $refused = ntlm('127.0.0.3', 'KCD\\alice', 'Alice-1');
is($refused->{status}, 401, 'right password from a stranger: 401');
is(challenges($refused), challenges($wrong),
   'same challenges as a wrong password');
is($refused->header('X-Lockout'), 'locked', '$kcd_lockout_status locked');
is($refused->{body} =~ s/\s+//gr, $wrong->{body} =~ s/\s+//gr,
   'same body as a wrong password');
ok($t->wait_for_log(qr/\[info\].*logon of user "alice" domain "KCD" refused: account locked for unfamiliar addresses until/,
                    3, undef, $mark), 'refusal logged');
unlike($t->error_log(since => $mark) // '', qr/\[warn\].*locked for unfamiliar/,
       'no second warn line while locked');
is(basic('127.0.0.3', 'alice', 'Alice-1')->{status}, 401,
   'Basic from the stranger refused too');

# the owner keeps working from her familiar address

$r = ntlm('127.0.0.2', 'KCD\\alice', 'Alice-1');
is($r->{status}, 200, 'alice still logs on from her familiar address');
is($r->header('X-Lockout'), 'familiar', 'status familiar');

# a location without kcd_lockout is not affected

is(ntlm('127.0.0.3', 'KCD\\alice', 'Alice-1', path => '/open/x')->{status},
   200, 'kcd_lockout off: no lockout');

# spray: 4 distinct accounts fail from 127.0.0.4 (two of them unknown)

$mark = $t->log_mark;
is(ntlm('127.0.0.4', 'KCD\\bob', 'x')->{status}, 401, 'spray 1');
is(ntlm('127.0.0.4', 'KCD\\nosuch1', 'x')->{status}, 401, 'spray 2 (unknown)');
is(basic('127.0.0.4', 'KCD\\carol', 'x')->{status}, 401, 'spray 3');
is(ntlm('127.0.0.4', 'KCD\\nosuch2', 'x')->{status}, 401, 'spray 4 (unknown)');
ok($t->wait_for_log(qr/\[warn\].*lockout: client address 127\.0\.0\.4 locked for every account: 4 accounts failed from it \(spray\)/,
                    3, undef, $mark), 'one warn line when the address locks');
$r = ntlm('127.0.0.4', 'KCD\\dave', 'Dave-1');
is($r->{status}, 401, 'the spraying address is refused for another account');
is($r->header('X-Lockout'), 'locked', 'status locked');
is(ntlm('127.0.0.5', 'KCD\\dave', 'Dave-1')->{status}, 200,
   'the same account from another address logs on');
is(ntlm('127.0.0.5', 'KCD\\bob', 'Bob-1')->{status}, 200,
   'bob (one failure, below threshold) logs on elsewhere');

# the status listing

my $st = conn('127.0.0.1')->get('/status');
like($st->{body}, qr/^kcd_lockout_refused_total\{zone="lz",reason="lockout"\} [1-9]/m,
     'counter: refused by lockout');
like($st->{body}, qr/^kcd_lockout_refused_total\{zone="lz",reason="spray"\} [1-9]/m,
     'counter: refused by spray');
like($st->{body}, qr/^kcd_lockout_locked_until_seconds\{zone="lz",account="alice\@kcd\.test",addresses="unfamiliar"\} \d+$/m,
     'listing: alice locked for unfamiliar addresses');
like($st->{body}, qr/^kcd_lockout_locked_until_seconds\{zone="lz",address="127\.0\.0\.4"\} \d+$/m,
     'listing: the spraying address');
unlike($st->{body}, qr/nosuch/, 'unknown names take no account entry');

# reload keeps the state

$t->reload;
is(ntlm('127.0.0.3', 'KCD\\alice', 'Alice-1')->{status}, 401,
   'after reload: alice still locked for the stranger');
is(ntlm('127.0.0.4', 'KCD\\erin', 'Erin-1')->{status}, 401,
   'after reload: the spraying address still locked');
is(ntlm('127.0.0.2', 'KCD\\alice', 'Alice-1')->{status}, 200,
   'after reload: alice logs on from her familiar address');

# log_only: logs and counts, refuses nothing

$mark = $t->log_mark;
is(ntlm('127.0.0.6', 'KCD\\erin', 'x', path => '/watch/a')->{status}, 401,
   'log_only: wrong password 1');
is(ntlm('127.0.0.6', 'KCD\\erin', 'x', path => '/watch/a')->{status}, 401,
   'log_only: wrong password 2');
ok($t->wait_for_log(qr/\[warn\].*account "erin\@kcd\.test" locked for unfamiliar addresses after 2 failed logons.*log_only/,
                    3, undef, $mark), 'log_only: the lock is logged');
$r = ntlm('127.0.0.6', 'KCD\\erin', 'Erin-1', path => '/watch/a');
is($r->{status}, 200, 'log_only: the right password still works');
is($r->header('X-Lockout'), 'log_only_locked',
   '$kcd_lockout_status log_only_locked');
ok($t->wait_for_log(qr/\[info\].*logon of user "erin" domain "KCD" would be refused \(log_only\)/,
                    3, undef, $mark), 'log_only: the would-be refusal logged');

# memory: a zone full of attack state evicts it, never the familiar
# addresses of an account that logged on

sub ntlm_tiny {
    my ($addr, $user, $pw) = @_;
    my ($dom, $name) = $user =~ /^(.*)\\(.*)$/ ? ($1, $2) : ('', $user);
    my (undef, $r) = ntlm_login(KcdTest::Conn->new(port => port(8081),
                                                   local_addr => $addr),
                                '/t', user => $name, domain => $dom,
                                password => $pw);
    return $r;
}

is(ntlm_tiny('127.0.0.2', 'KCD\\carol', 'Carol-1')->{status}, 200,
   'tiny zone: carol logs on from 127.0.0.2');
$mark = $t->log_mark;
my $bad = 0;
for my $i (1 .. 300) {
    my $addr = sprintf('127.0.%d.%d', 10 + int($i / 200), 1 + $i % 200);
    my $who = $i % 2 ? sprintf('KCD\\rnd%04d', $i) : 'KCD\\dave';
    $bad++ if ntlm_tiny($addr, $who, 'Spray-1')->{status} != 401;
}
is($bad, 0, 'tiny zone: 300 failures from 300 addresses, all 401');
my @ev = ($t->error_log(since => $mark) // '') =~ /kcd_lockout_zone "tiny" is full/g;
is(scalar @ev, 1, 'tiny zone: one warn line when eviction starts');
$r = ntlm_tiny('127.0.0.2', 'KCD\\carol', 'Carol-1');
is($r->{status}, 200, 'tiny zone: carol still logs on');
is($r->header('X-Lockout'), 'familiar',
   'tiny zone: carol\'s familiar address survived the spray');

# kcd_status escapes an account name in its label (Prometheus text
# format: backslash, double quote, line feed)

is(basic('127.0.0.40', 'KCD\\o"ha\\ra', "Wrong-$_")->{status}, 401,
   "o\"ha\\ra: wrong password $_") for 1 .. 3;
$st = conn('127.0.0.1')->get('/status');
like($st->{body}, qr/^kcd_lockout_locked_until_seconds\{zone="lz",account="o\\"ha\\\\ra\@kcd\.test",addresses="unfamiliar"\} \d+$/m,
     'listing: the account\'s label escaped');

# the access log carries the status

ok($t->wait_for_log(qr/^127\.0\.0\.3 - lockout=locked$/m, 3, 'lockout.log'),
   'access log: locked');

done_testing();
