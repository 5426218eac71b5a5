#!/usr/bin/perl

# Cost of kcd_lockout on the hot path (B19): every request a logon (Basic
# over TLS, user file, 100 accounts in rotation), side by side in one
# nginx, one worker: /plain/ without kcd_lockout, /lock/ with it (check
# before the password, success after it: two lookups and an update under
# the zone's mutex).  CPU of the worker per request from /proc, rounds
# alternated, medians; the difference is the lockout's cost per logon.
#
#   sh bench/lockout.sh [--seconds 2] [--rounds 12] [--conns 8] [--users 100]

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use Getopt::Long;
use MIME::Base64 qw(encode_base64);
use POSIX ();
use Time::HiRes ();

use KcdTest qw(port);
use KcdNTLM qw(nt_hash);

my %o = (seconds => 2, rounds => 12, conns => 8, users => 100);
GetOptions(\%o, 'seconds=i', 'rounds=i', 'conns=i', 'users=i')
    or die "usage: $0 [--seconds N] [--rounds N] [--conns N] [--users N]\n";

die "no wrk\n" unless -x '/usr/bin/wrk';

my $t = KcdTest->new;
die "module not built\n" unless $t->has_module;
my $cert = $t->make_cert('proxy');

my @users = map { sprintf('user%03d', $_) } 1 .. $o{users};
$t->write_file('users', join '', map {
    "KCD\\$_:" . unpack('H*', nt_hash("Pw-$_")) . "\n" } @users);
mkdir $t->testdir . "/www";
mkdir $t->testdir . "/www/$_" for qw(plain lock);
$t->write_file('www/plain/x.txt', "ok\n");
$t->write_file('www/lock/x.txt', "ok\n");

# wrk: one Authorization per request, the users in rotation
$t->write_file('rotate.lua', "local h = {\n" . join('', map {
    "  \"Basic " . encode_base64("KCD\\$_:Pw-$_", '') . "\",\n" } @users)
    . "}\nlocal i = 0\nrequest = function()\n  i = i % #h + 1\n"
    . "  wrk.headers[\"Authorization\"] = h[i]\n"
    . "  return wrk.format(nil)\nend\n");

$t->write_config(<<"EOF", workers => 1);
    kcd_lockout_zone lz:4m;

    server {
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
        access_log off;

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        kcd_auth basic;
        root %%TESTDIR%%/www;

        location /plain/ { }
        location /lock/  { kcd_lockout lz; }
    }
EOF
$t->run;

my ($worker) = $t->worker_pids;
my $HZ = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

sub cpu_ticks {
    open(my $fh, '<', "/proc/$worker/stat") or die "stat: $!";
    my @f = split / /, (split /\) /, scalar <$fh>)[1];
    return $f[11] + $f[12];        # utime + stime
}

sub wrk {
    my ($path) = @_;
    my $url = 'https://127.0.0.1:' . port(8443) . $path;
    my $c0 = cpu_ticks();
    my $out = `/usr/bin/wrk -t1 -c$o{conns} -d$o{seconds}s -s ${\ $t->testdir}/rotate.lua $url 2>&1`;
    my $cpu = (cpu_ticks() - $c0) / $HZ;
    my ($n) = $out =~ /(\d+) requests in/ or die "wrk: $out";
    die "wrk on $path: non-2xx responses\n$out" if $out =~ /Non-2xx/;
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    return { n => $n, rps => $rps, us => $cpu / $n * 1e6 };
}

sub median {
    my @s = sort { $a <=> $b } @_;
    return @s % 2 ? $s[$#s / 2] : ($s[@s / 2 - 1] + $s[@s / 2]) / 2;
}

# warm-up: every account logs on once through both locations
wrk($_) for '/plain/x.txt', '/lock/x.txt';

my (%us, %rps);
for my $round (1 .. $o{rounds}) {
    for my $loc ($round % 2 ? ('plain', 'lock') : ('lock', 'plain')) {
        my $r = wrk("/$loc/x.txt");
        push @{$us{$loc}}, $r->{us};
        push @{$rps{$loc}}, $r->{rps};
        printf STDERR "round %d %-5s %8.0f req/s %6.2f us CPU/request\n",
            $round, $loc, $r->{rps}, $r->{us};
    }
}

my $st = KcdTest::Conn->new(port => port(8443), ssl => 1)->get('/lock/x.txt');

printf "| location | logons/s (median) | worker CPU per logon (median) |\n";
printf "|---|---|---|\n";
printf "| `/plain/` (no kcd_lockout) | %.0f | %.2f us |\n",
    median(@{$rps{plain}}), median(@{$us{plain}});
printf "| `/lock/` (kcd_lockout) | %.0f | %.2f us |\n",
    median(@{$rps{lock}}), median(@{$us{lock}});
# each round runs both locations back to back: the paired differences
# cancel most of what the other processes on the machine do
my @d = sort { $a <=> $b }
        map { $us{lock}[$_] - $us{plain}[$_] } 0 .. $o{rounds} - 1;
printf "\nkcd_lockout costs %.2f us of CPU per logon: median of %d paired "
    . "rounds (quartiles %.2f .. %.2f us; %d s each, %d connections, %d "
    . "accounts in rotation, 1 worker)\n",
    median(@d), $o{rounds}, $d[int($#d / 4)], $d[int(3 * $#d / 4)],
    $o{seconds}, $o{conns}, $o{users};

$t->stop;
