#!/usr/bin/perl

# B17: secrets are read like TLS keys.  The keytab (root 0600) and the user
# file (root 0600) are read by the master at configuration time; workers
# run as "nobody" and never open them, and NTLM logons are delegated with
# S4U2Self + S4U2Proxy.  A reload re-reads both: after a key rotation
# (new kvno, the old key gone at the KDC, the keytab holding both keys as
# ktadd / msktutil leave it) a reload makes the new key work, tickets
# already in kcd_ticket_cache keep working until they expire, and so does
# a client's service ticket for the proxy issued under the old kvno.
# A reload whose keytab cannot be read fails with emerg, the path and the
# OS error, and the running workers keep serving.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Copy qw(copy);
use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;
use KcdApache;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;
plan skip_all => 'needs root (workers as nobody)' if $> != 0;
my (undef, undef, $nobody_uid) = getpwnam('nobody');
plan skip_all => 'no user nobody' unless defined $nobody_uid;

$SIG{ALRM} = sub { die "57-secrets.t: timeout\n" };
$SIG{PIPE} = "IGNORE";
alarm 180;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $be = KcdApache->start(dir => $dir, realm => $realm);

# nobody may walk to krb5.conf (workers read it), nothing else
chmod 0711, $dir, "$dir/realm";
chmod 0644, $realm->krb5_conf;

my %PW = %KcdRealm::PASSWORDS;
$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));
chmod 0600, "$dir/users";

my $keytab = "$dir/proxy.keytab";
copy($realm->keytab('proxy'), $keytab) or die "copy: $!";
chmod 0600, $keytab;

my $krb5_conf = $realm->krb5_conf;
my $aport = $be->port;

$t->write_config(<<"EOF",
    log_format kcd '\$kcd_user|\$kcd_ticket_cache_status|\$status';

    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        access_log %%TESTDIR%%/kcd.log kcd;

        kcd_auth ntlm negotiate;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;

        location / {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://127.0.0.1:$aport;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host backend.kcd.test;
            add_header X-Cache \$kcd_ticket_cache_status always;
        }
    }
EOF
    user => 'nobody nogroup',
    main => "env KRB5_CONFIG=$krb5_conf;\nenv KRB5RCACHEDIR=$dir/rcache;\n"
          . "thread_pool default threads=2;");

# the replay cache of accepted client tokens: written by the workers
mkdir "$dir/rcache";
chown $nobody_uid, -1, "$dir/rcache";

$t->run;

# a worker just forked is still root until ngx_worker_process_init()
# switches it to nobody: wait for that (up to 5 s), then look
my (@w, $uid);
for (1 .. 100) {
    @w = $t->worker_pids;
    $uid = @w ? (stat "/proc/$w[0]")[4] : undef;
    last if defined $uid && $uid == $nobody_uid;
    select(undef, undef, undef, 0.05);
}
ok(@w, 'workers running');
is($uid, $nobody_uid, 'workers run as nobody');
is((stat $keytab)[2] & 0777, 0600, 'keytab is root 0600');
is((stat "$dir/users")[2] & 0777, 0600, 'user file is root 0600');
ok(system('/usr/bin/setpriv', '--reuid=nobody', '--regid=nogroup',
          '--clear-groups', '/bin/sh', '-c', "cat $keytab >/dev/null 2>&1") != 0,
   'nobody cannot read the keytab');

sub login {
    my ($user) = @_;
    my $c = KcdTest::Conn->new(port => port(8080));
    my (undef, $r) = ntlm_login($c, '/echo', user => $user, domain => 'KCD',
                                password => $PW{$user});
    return $r || { status => 0 };
}

my $r = login('alice');
is($r->{status}, 200, 'alice: NTLM, delegated, 200');
is($r->header('X-Remote-User'), 'alice@KCD.TEST', 'Apache saw alice');
is($r->header('X-Cache'), 'MISS', 'first request: a new ticket');

my $errlog = $t->read_file('error.log') // '';
unlike($errlog, qr/Permission denied|No credentials cache|EACCES/,
       'no permission error in the workers');

# a Kerberos client holding a service ticket for the proxy (current kvno)
my $ccache = "FILE:$dir/alice.cc";
ok($realm->kinit('alice', $PW{alice}, $ccache), 'kinit alice')
    or diag($realm->last_output);

sub negotiate {
    my ($cc) = @_;
    my ($rc, $out) = $realm->run({ env => { KRB5CCNAME => $cc },
                                   timeout => 20 },
        '/usr/bin/curl', '-s', '-o', '/dev/null', '-w', '%{http_code}',
        '--max-time', '15', '--negotiate', '-u', ':', '--resolve',
        "proxy.kcd.test:${\ port(8080)}:127.0.0.1",
        "http://proxy.kcd.test:${\ port(8080)}/echo");
    my ($code) = $out =~ /(\d{3})\s*$/;
    return $code // 0;
}

is(negotiate($ccache), 200, 'curl --negotiate alice before rotation: 200');
my $klist = `KRB5CCNAME=$ccache KRB5_CONFIG=$krb5_conf klist 2>&1`;
like($klist, qr{HTTP/proxy\.kcd\.test\@KCD\.TEST}, 'alice holds a ticket for the proxy');

# key rotation as Active Directory does it: a new random key (kvno + 1)
# while the KDC keeps the previous one for tickets already issued (AD's
# n-1 key; MIT: -keepold), and a new keytab with both keys, as msktutil
# leaves it
my $newkt = "$dir/proxy-new.keytab";
my ($rc, $out) = $realm->kadmin("cpw -randkey -keepold HTTP/proxy.kcd.test",
                                "ktadd -norandkey -k $newkt HTTP/proxy.kcd.test");
is($rc, 0, 'kadmin: new key for HTTP/proxy.kcd.test') or diag($out);
my ($kvno) = sort { $b <=> $a } $out =~ /kvno (\d+)/g;
ok($kvno && $kvno > 1, "new kvno $kvno");
my $kl = `klist -k $newkt`;
like($kl, qr/^\s*1 HTTP\/proxy/m, 'the new keytab still holds kvno 1');
rename $newkt, $keytab or die "rename: $!";
chmod 0600, $keytab;

# until the reload the workers use the keys the master read at start: a
# ticket under the new kvno is refused (the file is not read again)
my $cc2 = "FILE:$dir/carol.cc";
ok($realm->kinit('carol', $PW{carol}, $cc2), 'kinit carol after rotation');
is(negotiate($cc2), 401, 'before the reload: a ticket under the new kvno '
   . 'is refused (keys in memory, not read from the file per request)');

my $mark = $realm->log_mark;
$t->reload;
# wait until the new workers answer: a request on a new connection
my $ok = 0;
for my $try (1 .. 50) {
    my %old = map { $_ => 1 } @w;
    my @now = $t->worker_pids;
    if (@now && !grep { $old{$_} } @now) { $ok = 1; last }
    select undef, undef, undef, 0.1;
}
ok($ok, 'reload: new workers');

$r = login('alice');
is($r->{status}, 200, 'after rotation and reload: alice (cached ticket) 200');
is($r->header('X-Cache'), 'HIT', '... from kcd_ticket_cache, no KDC call');

$r = login('carol');
is($r->{status}, 200, 'after rotation and reload: carol (new S4U) 200');
is($r->header('X-Remote-User'), 'carol@KCD.TEST', 'Apache saw carol');
is($r->header('X-Cache'), 'MISS', '... a new ticket');
is($realm->count_requests(type => 'AS_REQ', since => $mark,
                          match => qr/HTTP\/proxy\.kcd\.test/), 1,
   'the proxy got its TGT with the new key');

# the client's ticket for the proxy is under the old kvno: still accepted
is(negotiate($ccache), 200,
   'alice\'s service ticket from before the rotation: still accepted');
is(negotiate($cc2), 200, 'after the reload: carol, ticket under the new '
   . 'kvno: 200');
$klist = `KRB5CCNAME=$cc2 KRB5_CONFIG=$krb5_conf klist -e 2>&1`;
my $klist_kvno = `KRB5CCNAME=$cc2 KRB5_CONFIG=$krb5_conf kvno HTTP/proxy.kcd.test 2>&1`;
like($klist_kvno, qr/kvno = \Q$kvno\E/, "carol's ticket is for kvno $kvno");

# a reload with an unreadable keytab: emerg with path and OS error; the
# running workers keep serving
rename $keytab, "$keytab.away" or die;
$mark = $t->log_mark;
$t->reload;
ok($t->wait_for_log(qr/\[emerg\].*kcd_keytab ".*proxy\.keytab" cannot be opened \(2: No such file or directory\)/,
                    5, undef, $mark),
   'reload without the keytab: emerg, path and OS error');
rename "$keytab.away", $keytab or die;

$r = login('bob');
ok($r->{status} == 502 || $r->{status} == 200,
   'workers still serve after the failed reload');
$r = login('alice');
is($r->{status}, 200, 'alice still 200 after the failed reload');

done_testing();
