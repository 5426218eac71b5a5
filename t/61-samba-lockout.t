#!/usr/bin/perl

# B19 and B20 against a real Active Directory (Samba AD DC, member winbindd,
# see t/lib/KcdSamba.pm).  AD's own lockout threshold is 10, the proxy's 5:
# a stranger (127.0.0.3) sending 30 wrong passwords for alice never brings
# AD's badPwdCount past 5 and never locks alice in AD, while alice keeps
# logging on from her familiar address (127.0.0.2); a spray of 20 accounts
# from 127.0.0.4 is cut off after `spray`; kcd_require admits members of
# "Exchange Users" (groups from the DC's logon answer, names through
# winbind) and refuses others; log_only changes nothing; reload keeps the
# state.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use MIME::Base64 qw(encode_base64);
use Test::More;
use Time::HiRes ();

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdSamba;
use KcdBackend;

plan skip_all => 'module not built' unless KcdTest->has_module;

$SIG{ALRM} = sub { die "61-samba-lockout.t: timeout after 170 s\n" };
alarm 170;

my $base = tempdir('kcd-lockout-XXXXXX', TMPDIR => 1,
    CLEANUP => !$ENV{KCD_TEST_KEEP});
chmod 0711, $base;

my $ad = KcdSamba->start(dir => "$base/ad");
unless ($ad) {
    plan skip_all => "no Samba AD: $KcdSamba::why" unless $KcdSamba::failed;
    plan tests => 1;
    fail("Samba AD fixture: $KcdSamba::why");
    exit;
}

# AD side: lockout after 10 bad passwords, the group "Exchange Users"

my $dc = $ad->dir . '/dc';
my @H = ('-s', $ad->dc_smb_conf, '-H', "$dc/private/sam.ldb");

sub samba_tool {
    my ($rc, $out) = KcdSamba::_run(['/usr/bin/samba-tool', @_, @H],
                                    timeout => 60);
    die "samba-tool @_: $out" if $rc;
    return $out;
}

samba_tool(qw(domain passwordsettings set --account-lockout-threshold=10
              --account-lockout-duration=30 --reset-account-lockout-after=30));
samba_tool('group', 'add', 'Exchange Users');
samba_tool('group', 'addmembers', 'Exchange Users', 'alice');

# badPwdCount and lockoutTime as AD has them
sub ad_account {
    my ($user) = @_;
    my $out = samba_tool('user', 'show', $user,
                         '--attributes=badPwdCount,lockoutTime');
    my %a = (badPwdCount => 0, lockoutTime => 0);
    $a{$1} = $2 while $out =~ /^(badPwdCount|lockoutTime): (\d+)/mg;
    return \%a;
}

my $wrapper = "$base/nginx-wrap";
{
    open(my $fh, '>', $wrapper) or die "$wrapper: $!";
    print $fh "#!/bin/sh\nexec " . scalar($ad->wrap(KcdTest::nginx_binary()))
        . ' "$@"' . "\n";
    close $fh;
    chmod 0755, $wrapper;
}

my $t = KcdTest->new(nginx => $wrapper);
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);
my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
my $member = $ad->member_name;
my $realm = $ad->realm;
my $apw = $ad->password('alice');
my $bpw = $ad->password('bob');

my $krb5 = $ad->krb5_conf;
my $kt = $ad->proxy_keytab;
my $svc = $ad->proxy_account . '@' . $realm;

$t->write_config(<<"EOF", main => "env KRB5_CONFIG=$krb5;\nthread_pool default threads=4;");
    kcd_keytab $kt;
    kcd_service_principal $svc;
    kcd_lockout_zone lz:1m threshold=5 familiar_threshold=20 window=30m
                     spray=5;
    kcd_lockout_zone watch:1m threshold=2 window=30m log_only;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_ntlm_domain KCD;
        kcd_ntlm_computer $member;
        kcd_ntlm_winbind on;
        kcd_realm $realm;
        kcd_auth ntlm basic;
        kcd_lockout lz;
        add_header X-Lockout \$kcd_lockout_status always;

        location / {
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /ex/ {
            kcd_auth ntlm negotiate basic;
            kcd_require "group=Exchange Users";
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /watch/ {
            kcd_lockout watch;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location = /kcd-status {
            kcd_auth off;
            kcd_status;
        }
    }
EOF

eval { $t->run(timeout => 10) };
ok(!$@, 'nginx started as a winbind client of the member') or do {
    diag $@;
    done_testing();
    exit;
};

sub ntlm {
    my ($addr, $user, $pw, $path) = @_;
    my ($dom, $name) = $user =~ /^(.*)\\(.*)$/ ? ($1, $2) : ('', $user);
    my $c = KcdTest::Conn->new(port => port(8080), local_addr => $addr,
                               timeout => 20);
    my (undef, $r) = ntlm_login($c, $path || '/', user => $name,
                                domain => $dom, password => $pw);
    return $r;
}

sub basic {
    my ($addr, $user, $pw, $path) = @_;
    return KcdTest::Conn->new(port => port(8443), ssl => 1,
                              local_addr => $addr, timeout => 20)
        ->get($path || '/', headers => [
            Authorization => 'Basic ' . encode_base64("$user:$pw", '')]);
}

###########################################################################
# alice's familiar address

my $r = ntlm('127.0.0.2', 'KCD\\alice', $apw);
is($r->{status}, 200, 'alice logs on from 127.0.0.2 (winbind)');
is(ad_account('alice')->{badPwdCount}, 0, 'AD: badPwdCount 0');

###########################################################################
# a stranger: 30 wrong passwords for alice, several spellings and schemes

my $mark = $t->log_mark;
my @st;
for my $i (1 .. 30) {
    my $who = ('KCD\\alice', 'ALICE', 'kcd\\Alice')[$i % 3];
    push @st, $i % 5 == 0 ? basic('127.0.0.3', $who, "Wrong-$i!")->{status}
                          : ntlm('127.0.0.3', $who, "Wrong-$i!")->{status};
}
is(join(',', grep { $_ != 401 } @st), '', '30 wrong passwords: 30 x 401');

my $acc = ad_account('alice');
cmp_ok($acc->{badPwdCount}, '<=', 5,
       "AD: badPwdCount $acc->{badPwdCount}, never past the proxy's 5");
is($acc->{lockoutTime}, 0, 'AD: alice is not locked out');

my $log = $t->error_log(since => $mark) // '';
my @dc = $log =~ /logon failed for user "\w+" domain "\w*".*NT_STATUS_WRONG_PASSWORD/ig;
is(scalar @dc, 5, 'the DC was asked 5 times, not 30');
like($log, qr/\[warn\].*lockout: account "alice\@kcd\.test" locked for unfamiliar addresses after 5 failed logons \(last from 127\.0\.0\.3\)/,
     'warn line: alice locked for unfamiliar addresses');

my $t0 = Time::HiRes::time();
$r = ntlm('127.0.0.3', 'KCD\\alice', $apw);
my $t_refused = Time::HiRes::time() - $t0;
is($r->{status}, 401, 'the right password from the stranger: 401');
$t0 = Time::HiRes::time();
ntlm('127.0.0.7', 'KCD\\Administrator', 'Wrong-timing!');
# informational, not asserted (timing is a benchmark's job)
diag(sprintf('NTLM logon answered in %.1f ms when refused by lockout, '
             . '%.1f ms for a wrong password checked by the DC',
             $t_refused * 1000, (Time::HiRes::time() - $t0) * 1000));
is($r->header('X-Lockout'), 'locked', '$kcd_lockout_status locked');

# the owner keeps working

$r = ntlm('127.0.0.2', 'KCD\\alice', $apw);
is($r->{status}, 200, 'alice still logs on from her familiar address');
is($r->header('X-Lockout'), 'familiar', '$kcd_lockout_status familiar');
is(basic('127.0.0.2', 'KCD\\alice', $apw)->{status}, 200,
   '... with Basic too');
is(ad_account('alice')->{lockoutTime}, 0, 'AD: alice still not locked');

###########################################################################
# one account whatever the case of its non-ASCII letters (Unicode simple
# case mapping): JÜRGEN, jürgen and Jürgen are one account for AD and for
# the proxy

samba_tool('user', 'create', "j\xc3\xbcrgen", 'J-Pass1!kcd');
$mark = $t->log_mark;
my @spell = ("J\x{dc}RGEN", "j\x{fc}rgen", "J\x{fc}rgen");
my $ok = 0;
for my $i (0 .. 8) {
    $ok++ if ntlm('127.0.0.8', "KCD\\$spell[$i % 3]", "Wrong-$i!")->{status}
             == 401;
}
is($ok, 9, 'jürgen in three spellings: 9 x 401');
$acc = ad_account("j\xc3\xbcrgen");
cmp_ok($acc->{badPwdCount}, '<=', 5,
       "AD: jürgen's badPwdCount $acc->{badPwdCount}, one proxy count");
like($t->error_log(since => $mark) // '',
     qr/lockout: account "j\xc3\xbcrgen\@kcd\.test" locked for unfamiliar/,
     'warn line: one account, in lower case');

###########################################################################
# spray: 20 accounts from one address, cut off after spray=5

$mark = $t->log_mark;
my @names = map { sprintf('spray%02d', $_) } 1 .. 19;
splice @names, 7, 0, 'bob';
my %seen;
for my $u (@names) {
    $seen{$u} = ntlm('127.0.0.4', "KCD\\$u", 'Summer2026!')->{status};
}
is(join(',', grep { $seen{$_} != 401 } @names), '', 'spray: 20 x 401');
$log = $t->error_log(since => $mark) // '';
my @asked = $log =~ /NTLM logon failed for user "(\w+)" domain "KCD" workstation "[^"]*": NT_STATUS/g;
is(join(',', @asked), join(',', @names[0 .. 4]),
   'the DC saw the first 5 names only');
like($log, qr/\[warn\].*lockout: client address 127\.0\.0\.4 locked for every account: 5 accounts failed from it \(spray\)/,
     'warn line: the address locked');
is(ad_account('bob')->{badPwdCount}, 0,
   'AD: bob (8th in the spray) never reached the DC');
is(ntlm('127.0.0.4', 'KCD\\bob', $bpw)->{status}, 401,
   'bob with the right password from the spraying address: 401');
is(ntlm('127.0.0.5', 'KCD\\bob', $bpw)->{status}, 200,
   'bob from another address: 200');

###########################################################################
# groups from the DC's logon answer

$r = ntlm('127.0.0.2', 'KCD\\alice', $apw, '/ex/a');
is($r->{status}, 200, 'alice (in "Exchange Users"): 200 (NTLM, winbind)');
$mark = $t->log_mark;
$r = ntlm('127.0.0.5', 'KCD\\bob', $bpw, '/ex/a');
is($r->{status}, 403, 'bob (not a member): 403');
like($t->wait_for_log(qr/access denied by kcd_require/, 3, undef, $mark) // '',
     qr/user "KCD\\bob" principal "bob\@KCD\.TEST" client 127\.0\.0\.5 .*\((?!0 )\d+ groups/,
     'info line; the DC named bob\'s other groups');
is(basic('127.0.0.2', 'KCD\\alice', $apw, '/ex/b')->{status}, 200,
   'alice: 200 (Basic, winbind)');
is(basic('127.0.0.5', 'KCD\\bob', $bpw, '/ex/b')->{status}, 403,
   'bob: 403 (Basic, winbind)');

# a Kerberos client: the groups of the PAC the Samba KDC put in the ticket

my $CURL = '/usr/bin/curl';
SKIP: {
    skip 'no curl', 4 unless -x $CURL;

    my $kerberos = sub {
        my ($user, $pw) = @_;
        my $cc = "FILE:$base/cc-$user";
        my %env = (KRB5_CONFIG => $krb5, KRB5CCNAME => $cc);
        my ($rc, $out) = KcdSamba::_run(['/bin/sh', '-c',
            'printf "%s\n" "$1" | kinit "$2"', 'kinit', $pw,
            "$user\@$realm"], env => \%env, timeout => 20);
        return "kinit: $out" if $rc;
        my $port = port(8080);
        ($rc, $out) = KcdSamba::_run([$CURL, '-s', '-o', '/dev/null',
            '-w', '%{http_code}', '--negotiate', '-u', ':',
            '--resolve', "proxy.kcd.test:$port:127.0.0.1",
            "http://proxy.kcd.test:$port/ex/k"], env => \%env, timeout => 20);
        return $out =~ /(\d{3})\s*\z/ ? $1 : "curl: $out";
    };

    $mark = $t->log_mark;
    is($kerberos->('alice', $apw), 200,
       'alice with a Kerberos ticket (PAC: "Exchange Users"): 200')
        or diag($t->error_log(since => $mark));
    like($t->error_log(since => $mark) // '', qr/Kerberos logon of "alice\@KCD\.TEST"/,
         '... a Kerberos logon');
    $mark = $t->log_mark;
    is($kerberos->('bob', $bpw), 403, 'bob with a Kerberos ticket: 403');
    like($t->wait_for_log(qr/access denied by kcd_require/, 3, undef, $mark) // '',
         qr/principal "bob\@KCD\.TEST".*\((?!0 )\d+ groups/,
         '... refused with the groups of his PAC');
}

###########################################################################
# log_only: every wrong password reaches the DC, the right one works

$mark = $t->log_mark;
my $before = ad_account('bob')->{badPwdCount};
is(ntlm('127.0.0.6', 'KCD\\bob', "Wrong-$_!", '/watch/')->{status}, 401,
   "log_only: wrong password $_") for 1 .. 3;
is(ad_account('bob')->{badPwdCount}, $before + 3,
   'log_only: the DC counted all 3');
$r = ntlm('127.0.0.6', 'KCD\\bob', $bpw, '/watch/');
is($r->{status}, 200, 'log_only: the right password works');
is($r->header('X-Lockout'), 'log_only_locked', 'status log_only_locked');
$log = $t->error_log(since => $mark) // '';
like($log, qr/\[warn\].*account "bob\@kcd\.test" locked for unfamiliar addresses after 2 failed logons.*log_only/,
     'log_only: the lock is logged');
like($log, qr/logon of user "bob" domain "KCD" would be refused \(log_only\)/,
     'log_only: the would-be refusal is logged');

###########################################################################
# reload keeps the state

my $count = ad_account('alice')->{badPwdCount};
$t->reload;
is(ntlm('127.0.0.3', 'KCD\\alice', $apw)->{status}, 401,
   'after reload: alice still locked for the stranger');
is(ntlm('127.0.0.3', 'KCD\\alice', 'Wrong-again!')->{status}, 401,
   'after reload: a wrong password, refused');
is(ad_account('alice')->{badPwdCount}, $count,
   'after reload: AD badPwdCount unchanged');
is(ntlm('127.0.0.2', 'KCD\\alice', $apw)->{status}, 200,
   'after reload: alice from her familiar address');

my $st = KcdTest::Conn->new(port => port(8080))->get('/kcd-status')->{body};
like($st, qr/^kcd_lockout_refused_total\{zone="lz",reason="lockout"\} [1-9]/m,
     'kcd_status: refused by lockout');
like($st, qr/^kcd_lockout_refused_total\{zone="lz",reason="spray"\} [1-9]/m,
     'kcd_status: refused by spray');
like($st, qr/^kcd_require_denied_total [1-9]/m,
     'kcd_status: denied by rules');

done_testing();
