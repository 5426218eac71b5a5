#!/usr/bin/perl

# Packaging: `make deb` builds libnginx-mod-http-kcd with dh_nginx; it
# installs with `apt-get install ./...deb` on this machine's Debian nginx
# (module in /usr/lib/nginx/modules, snippet in modules-available enabled
# in /etc/nginx/modules-enabled, Depends on the exact nginx-abi-*, the hash
# tool in /usr/bin, docs and copyright in /usr/share/doc); Debian's own
# /etc/nginx/nginx.conf with a site of ours (conf.d, loopback high port,
# workers as www-data, user file root 0600) serves an NTLM logon with
# curl --ntlm; the master logs the module version of debian/changelog;
# removing the package leaves an nginx configuration that passes nginx -t,
# and the machine as it was.
#
# Other suites are not affected: they run their own nginx.conf, which
# includes nothing from /etc/nginx, with build/ngx_http_kcd_module.so.
# Runs only as root, with port 80 free and no system nginx running (the
# default site listens on 80), one instance at a time (a lock).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Fcntl qw(:flock);
use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(sleep);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $PKG = 'libnginx-mod-http-kcd';
my $NGINX = '/usr/sbin/nginx';
my $ROOT = KcdTest::repo_root();

plan skip_all => 'needs root' if $> != 0;
for my $tool ('/usr/bin/dpkg-buildpackage', '/usr/bin/dh_nginx', $NGINX,
              '/usr/bin/curl', '/etc/nginx/nginx.conf') {
    plan skip_all => "missing $tool" unless -e $tool;
}

open(my $lock, '>', '/run/lock/kcd-debian-package-test.lock') or die $!;
flock($lock, LOCK_EX) or die "flock: $!";

sub installed {
    my $s = `dpkg-query -W -f='\${Status}' $PKG 2>/dev/null`;
    return $s =~ /ok installed|config-files/;
}

plan skip_all => "$PKG is already installed: not touching it" if installed();
{
    my $pid = -s '/run/nginx.pid' ? 0 + `cat /run/nginx.pid` : 0;
    plan skip_all => 'a system nginx is running (/run/nginx.pid)'
        if $pid && kill(0, $pid);
}
{
    my $s = IO::Socket::INET->new(LocalAddr => '0.0.0.0', LocalPort => 80,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1);
    plan skip_all => "port 80 busy (Debian's default site listens there)"
        unless $s;
    close $s;
}

$SIG{ALRM} = sub { die "85-debian-package.t: timeout\n" };
alarm 600;

my $t = KcdTest->new;
my $dir = $t->testdir;
my $site = "/etc/nginx/conf.d/kcd-test-$$.conf";

sub ls_dir {
    my ($d) = @_;
    opendir(my $dh, $d) or return '';
    return join ' ', sort grep { !/^\.\.?$/ } readdir $dh;
}

my %before = map { $_ => ls_dir($_) } qw(/etc/nginx/modules-enabled
    /etc/nginx/conf.d /etc/nginx/sites-enabled /usr/share/nginx/modules-available
    /usr/lib/nginx/modules);

my $started = 0;

sub stop_nginx {
    return unless $started;
    my $pid = `cat /run/nginx.pid 2>/dev/null`;
    chomp $pid;
    if ($pid && kill('QUIT', $pid)) {
        for (1 .. 100) { last unless kill 0, $pid; sleep 0.1 }
        kill 'KILL', $pid if kill 0, $pid;
    }
    $started = 0;
}

sub apt {
    my (@args) = @_;
    my $out = `DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q @args 2>&1`;
    return ($? >> 8, $out);
}

END {
    local $?;
    stop_nginx();
    unlink $site;
    apt('purge', $PKG) if installed();
}

# build

my $out = `make -C '$ROOT' deb BUILD='$dir/b' 2>&1`;
is($?, 0, 'make deb') or diag(substr($out, -3000));
my ($deb) = glob("$dir/b/deb/${PKG}_*_*.deb");
ok($deb && -f $deb, 'package built') or BAIL_OUT('no package');

my ($version) = `sed -n '1s/^[^(]*(\\([^)]*\\)).*/\\1/p' '$ROOT/debian/changelog'` =~ /(\S+)/;
like($deb, qr/_\Q$version\E_/, "package version $version from debian/changelog");

my $info = `dpkg-deb -f '$deb' Depends`;
my ($abi) = `sed -n 's/^nginx:abi=//p' /usr/share/nginx/src/debian/libnginx-mod.abisubstvars` =~ /(\S+)/;
like($info, qr/(^|, )\Q$abi\E(,|$)/m, "Depends on the exact ABI $abi");

my $files = `dpkg-deb -c '$deb'`;
like($files, qr{\./usr/lib/nginx/modules/ngx_http_kcd_module\.so$}m, 'module in /usr/lib/nginx/modules');
like($files, qr{\./usr/share/nginx/modules-available/mod-http-kcd\.conf$}m, 'snippet in modules-available');
like($files, qr{\./usr/bin/kcd-ntlm-hash$}m, 'kcd-ntlm-hash in /usr/bin');
like($files, qr{\./usr/share/doc/$PKG/copyright$}m, 'copyright');
like($files, qr{\./usr/share/doc/$PKG/directives\.md}m, 'docs');

# install

my ($rc, $aout) = apt('install', $deb);
is($rc, 0, 'apt-get install ./...deb') or diag($aout);
ok(installed(), 'package installed');
my $link = '/etc/nginx/modules-enabled/50-mod-http-kcd.conf';
is(readlink($link), '/usr/share/nginx/modules-available/mod-http-kcd.conf',
   'module enabled on install');
like(`cat $link`, qr{^load_module modules/ngx_http_kcd_module\.so;}m,
     'the snippet loads the module');

my $hash = `printf 'Password\\n' | /usr/bin/kcd-ntlm-hash 'KCD\\alice'`;
is($hash, "KCD\\alice:a4f49c406510bdcab6824ee7c30fd852\n",
   '/usr/bin/kcd-ntlm-hash works');

# a site in Debian's configuration

my $be = KcdBackend->start(port => port(9000), dir => $dir);
$t->write_file('users', $hash);
chmod 0600, "$dir/users";
my $port = port(8080);
open(my $fh, '>', $site) or die "$site: $!";
print $fh <<"EOF";
# written by t/85-debian-package.t, removed at its end
server {
    listen 127.0.0.1:$port;
    access_log $dir/site-access.log;
    error_log $dir/site-error.log info;
    kcd_auth ntlm;
    kcd_ntlm_user_file $dir/users;
    kcd_ntlm_domain KCD;
    kcd_realm KCD.TEST;
    location / {
        proxy_pass http://127.0.0.1:${\ port(9000)};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
EOF
close $fh;

my $tout = `$NGINX -t 2>&1`;
is($?, 0, "nginx -t with Debian's nginx.conf and the site") or diag($tout);

my $mainlog = "$dir/main.log";
$out = `$NGINX -g 'error_log $mainlog notice;' 2>&1`;
is($?, 0, "Debian's nginx starts") or diag($out);
$started = 1;
for (1 .. 50) {
    last if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
    sleep 0.1;
}

# the master listens before it forks the workers: wait for them
my $who = '';
for (1 .. 50) {
    $who = `ps -o user= --ppid \$(cat /run/nginx.pid) 2>/dev/null | sort -u`;
    last if $who =~ /\S/;
    sleep 0.1;
}
like($who, qr/^www-data$/m, 'workers run as www-data (user file root 0600)');

my $body = `curl -sS --max-time 10 --ntlm -u 'KCD\\alice:Password' -o - -w '\\n%{http_code}' http://127.0.0.1:$port/app`;
like($body, qr/\n200$/, 'curl --ntlm: 200') or diag($body);
my @req = $be->requests;
is(scalar(@req), 1, 'one request reached the backend');
is($req[-1] && $req[-1]->header('Authorization'), undef,
   'the client Authorization did not');

$body = `curl -sS --max-time 10 --ntlm -u 'KCD\\alice:wrong' -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/app`;
is($body, '401', 'wrong password: 401');

my $log = do { local (@ARGV, $/) = ($mainlog); <> } // '';
like($log, qr/\[notice\].*ngx_http_kcd_module\/\Q$version\E \(nginx\/[\d.]+\)/,
     "start-up NOTICE with the version $version");

stop_nginx();
unlink $site;

# remove

($rc, $aout) = apt('remove', $PKG);
is($rc, 0, 'apt-get remove') or diag($aout);
ok(!-e '/usr/lib/nginx/modules/ngx_http_kcd_module.so', 'module removed');
ok(!-e $link, 'module no longer enabled');
$tout = `$NGINX -t 2>&1`;
is($?, 0, 'nginx -t still succeeds after removal') or diag($tout);

($rc, $aout) = apt('purge', $PKG);
is($rc, 0, 'apt-get purge') or diag($aout);
ok(!installed(), 'package gone');

my %after = map { $_ => ls_dir($_) } keys %before;
is_deeply(\%after, \%before, '/etc/nginx and the module directories as before');

done_testing();
