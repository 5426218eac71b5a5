#!/usr/bin/perl

# NTLM validations per second through the module: winbind pass-through
# (member winbindd -> NETLOGON -> Samba DC) next to local validation
# (kcd_ntlm_user_file), sequential and with N concurrent clients.  Run by
# bench/winbind.sh (root: the DC lives in a network namespace; see
# t/lib/KcdSamba.pm).  Loopback and the fixture's own namespace only.
#
# Every "handshake" is what a browser does on a new connection: connect,
# GET + Type 1 -> 401 + Type 2, GET + Type 3 -> 200 (a static file: no
# kcd_spn, no upstream), close.  Only 200s count; anything else is an error.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use File::Temp qw(tempdir);
use Getopt::Long;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdSamba;

$| = 1;

my %o = (duration => 10, concurrency => 50, workers => 2, threads => 4);
GetOptions(\%o, 'duration=f', 'concurrency=i', 'workers=i', 'threads=i',
    'wb-max-conns=i', 'keep') or die "usage: $0 [--duration S] "
    . "[--concurrency N] [--workers N] [--threads N] [--wb-max-conns N] "
    . "[--keep]\n";

if ($> != 0) {
    print "winbind benchmark skipped: needs root (the DC runs in a network "
        . "namespace)\n";
    exit 0;
}
die "module not built: run make\n" unless KcdTest->has_module;

sub loadavg {
    open(my $f, '<', '/proc/loadavg') or return '?';
    my ($l) = split ' ', scalar <$f>;
    return $l;
}

my $load_before = loadavg();
my $T0 = time;
my $base = tempdir('kcd-bench-wb-XXXXXX', TMPDIR => 1,
    CLEANUP => !$o{keep});
chmod 0711, $base;

my $ad = KcdSamba->start(dir => "$base/ad");
unless ($ad) {
    die "Samba AD fixture failed: $KcdSamba::why\n" if $KcdSamba::failed;
    print "winbind benchmark skipped: no Samba AD: $KcdSamba::why\n";
    exit 0;
}
my $t_ad = time - $T0;

# member smb.conf tuning: "winbind max domain connections" (default 1) is
# how many NETLOGON connections the member's winbindd opens to the DC
if ($o{'wb-max-conns'}) {
    open(my $c, '>>', $ad->member_smb_conf) or die "smb.conf: $!";
    print $c "\twinbind max domain connections = $o{'wb-max-conns'}\n";
    close $c;
    # a restart, not SIGHUP: winbindd 4.17 crashes (SIGSEGV) when this
    # setting changes on reload.  KcdSamba has no public restart; its own
    # helpers keep the new pid recorded, so ->stop still cleans up.
    KcdSamba::_kill_group(delete $ad->{pids}{winbindd});
    $ad->_spawn_winbindd;
    $ad->wait_member_online(20);
}

my $wrapper = "$base/nginx-wrap";
open(my $fh, '>', $wrapper) or die "$wrapper: $!";
print $fh "#!/bin/sh\nexec " . scalar($ad->wrap(KcdTest::nginx_binary()))
    . ' "$@"' . "\n";
close $fh;
chmod 0755, $wrapper;

my $t = KcdTest->new(nginx => $wrapper);
my $pw = $ad->password('alice');
my $nth = nt_hash($pw);

$t->write_file('users', "KCD\\alice:" . unpack('H*', $nth) . "\n");
mkdir $t->testdir . "/www";
mkdir $t->testdir . "/www/$_" for qw(wb file);
$t->write_file("www/$_/ok.txt", "ok\n") for qw(wb file);

my $member = $ad->member_name;
my %conf = (workers => $o{workers}, log_level => 'warn',
    main => "thread_pool default threads=$o{threads};",
    events => 'worker_connections 4096;');
$t->write_config(<<"EOF", %conf);
    access_log off;
    server {
        listen 127.0.0.1:%%PORT_8080%% backlog=1024;
        root %%TESTDIR%%/www;
        kcd_ntlm_domain KCD;
        kcd_ntlm_computer $member;
        keepalive_requests 10;

        location /wb/ {
            kcd_auth ntlm;
            kcd_ntlm_winbind on;
        }

        location /file/ {
            kcd_auth ntlm;
            kcd_ntlm_user_file %%TESTDIR%%/users;
        }

        location = /kcd-status {
            kcd_status;
        }
    }
EOF
$t->run(timeout => 10);

my $port = port(8080);

sub status_counters {
    my $c = KcdTest::Conn->new(port => $port);
    my $b = $c->get('/kcd-status')->{body} // '';
    my %c;
    $c{$1} = $2 while $b =~ /^(kcd_\S+)\s+(\d+)/mg;
    return \%c;
}

# read one HTTP/1.1 response (Content-Length bodies only: all nginx sends
# here); (status, headers text) or () on EOF/timeout
sub read_resp {
    my ($s, $bufref) = @_;
    while (1) {
        my $i = index($$bufref, "\r\n\r\n");
        if ($i >= 0) {
            my $head = substr($$bufref, 0, $i + 2);
            my ($len) = $head =~ /^Content-Length:\s*(\d+)/mi;
            $len //= 0;
            my $need = $i + 4 + $len;
            while (length($$bufref) < $need) {
                my $n = sysread($s, $$bufref, 65536, length $$bufref);
                return () unless $n;
            }
            substr($$bufref, 0, $need, '');
            my ($st) = $head =~ /^HTTP\/1\.\d (\d{3})/;
            return ($st, $head);
        }
        my $n = sysread($s, $$bufref, 65536, length $$bufref);
        return () unless $n;
    }
}

# one complete NTLM logon on a new connection: 1 when it ended in 200
my $T1 = b64(type1());

sub handshake {
    my ($path) = @_;

    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp') or return 0;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    my $buf = '';
    my $req = "GET $path HTTP/1.1\r\nHost: bench\r\nAuthorization: NTLM ";

    syswrite($s, "$req$T1\r\n\r\n");
    my ($st, $head) = read_resp($s, \$buf);
    return 0 unless $st && $st == 401
        && $head =~ /^WWW-Authenticate:\s*NTLM\s+(\S+)/mi;
    my $t3 = type3(type1 => unb64($T1), type2 => unb64($1), user => 'alice',
        domain => 'KCD', nt_hash => $nth, workstation => 'BENCH');

    syswrite($s, $req . b64($t3) . "\r\n\r\n");
    ($st) = read_resp($s, \$buf);
    close $s;
    return ($st && $st == 200) ? 1 : 0;
}

# $n clients, each doing handshakes for $secs seconds; returns
# {ok, err, rate, p50, p99} (latencies in ms)
sub load {
    my ($path, $n, $secs) = @_;

    my @kids;
    my $start = time + 0.3;     # every child starts at the same moment
    for my $i (1 .. $n) {
        my $f = "$base/lat.$i";
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            $SIG{ALRM} = sub { die "timeout\n" };
            sleep($start - time) if $start > time;
            my $end = $start + $secs;
            my ($ok, $err, @lat) = (0, 0);
            while (time < $end) {
                my $t0 = time;
                my $r = eval { alarm 10; my $x = handshake($path); alarm 0;
                    $x } // 0;
                if ($r) { $ok++; push @lat, (time - $t0) * 1000 }
                else { $err++ }
            }
            open(my $o, '>', $f) or POSIX::_exit(1);
            print $o "$ok $err\n", join("\n", @lat), "\n";
            close $o;
            POSIX::_exit(0);
        }
        push @kids, [$pid, $f];
    }

    my ($ok, $err, @lat) = (0, 0);
    for my $k (@kids) {
        waitpid($k->[0], 0);
        open(my $i, '<', $k->[1]) or next;
        my ($a, $b) = split ' ', scalar <$i>;
        $ok += $a;
        $err += $b;
        push @lat, grep { length } map { chomp; $_ } <$i>;
        close $i;
        unlink $k->[1];
    }
    @lat = sort { $a <=> $b } @lat;
    my $pct = sub { @lat ? $lat[int($_[0] * $#lat)] : 0 };
    return { ok => $ok, err => $err, rate => $ok / $secs,
             p50 => $pct->(0.50), p99 => $pct->(0.99) };
}

# CPU time (s) used so far by the processes of the DC, of the member's
# winbindd and of nginx: each is a process group of its own (samba renames
# its processes, so go by group, not by name)
my $HZ = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

sub cpu_groups {
    my %g = (dc => $ad->dc_pid, winbindd => $ad->winbindd_pid,
             nginx => $t->pid);
    my %pg = reverse %g;
    my %cpu = map { $_ => 0 } keys %g;
    opendir(my $dh, '/proc') or return \%cpu;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        open(my $f, '<', "/proc/$p/stat") or next;
        my $st = <$f> // next;
        $st =~ s/^.*\)\s+//s;
        my @x = split ' ', $st;
        my $who = $pg{$x[2]} // next;
        $cpu{$who} += ($x[11] + $x[12]) / $HZ;
    }
    return \%cpu;
}

# sanity: one logon each way works before measuring
for my $p ('/wb/ok.txt', '/file/ok.txt') {
    handshake($p) or die "a single NTLM logon to $p failed; see "
        . $t->testdir . "/error.log (run with --keep)\n";
}
load('/wb/ok.txt', 4, 1);     # warm up: winbindd connections, threads

my $c0 = status_counters();
my @rows;
for my $case (['winbind (pass-through to the DC)', '/wb/ok.txt'],
              ['user file (local NT hash)', '/file/ok.txt'])
{
    for my $n (1, $o{concurrency}) {
        my $c0 = cpu_groups();
        my @t0 = times;
        my $r = load($case->[1], $n, $o{duration});
        my @t1 = times;
        my $c1 = cpu_groups();
        $r->{cpu}{$_} = $c1->{$_} - $c0->{$_} for keys %$c1;
        $r->{cpu}{client} = ($t1[2] + $t1[3]) - ($t0[2] + $t0[3]);
        push @rows, [$case->[0], $n, $r];
        printf STDERR "  %-34s %3d client(s): %7.0f/s  (%d ok, %d errors)\n",
            $case->[0], $n, $r->{rate}, $r->{ok}, $r->{err};
    }
}
my $c1 = status_counters();

my $wb_ok = ($c1->{'kcd_winbind_total{result="ok"}'} // 0)
    - ($c0->{'kcd_winbind_total{result="ok"}'} // 0);
my $wb_client = 0;
$wb_client += $_->[2]{ok} for grep { $_->[0] =~ /^winbind/ } @rows;

my $cpu = `grep -c ^processor /proc/cpuinfo`;
chomp $cpu;
my $model = `grep -m1 '^model name' /proc/cpuinfo`;
$model =~ s/^model name\s*:\s*//;
chomp $model;
my $samba = `/usr/sbin/samba -V 2>/dev/null`;
chomp $samba;

print "\n";
print "| validation | concurrent clients | logons/s | errors | p50 ms "
    . "| p99 ms |\n";
print "|---|---:|---:|---:|---:|---:|\n";
for my $row (@rows) {
    my ($name, $n, $r) = @$row;
    printf "| %s | %d | %.0f | %d | %.1f | %.1f |\n", $name, $n, $r->{rate},
        $r->{err}, $r->{p50}, $r->{p99};
}
print "\nCPU per logon (ms), by process group:\n\n";
print "| validation | concurrent clients | nginx | winbindd (member) "
    . "| samba DC | load client |\n";
print "|---|---:|---:|---:|---:|---:|\n";
for my $row (@rows) {
    my ($name, $n, $r) = @$row;
    my $per = sub { $r->{ok} ? 1000 * $r->{cpu}{$_[0]} / $r->{ok} : 0 };
    printf "| %s | %d | %.2f | %.2f | %.2f | %.2f |\n", $name, $n,
        map { $per->($_) } qw(nginx winbindd dc client);
}
print "\n";
printf "%.0f s per cell; nginx %d worker(s), thread_pool threads=%d; "
    . "winbind max domain connections = %s; %s CPU(s) (%s) shared by client, nginx, winbindd and the DC; %s; "
    . "winbind validations counted by kcd_status: %d (client saw %d "
    . "successful winbind logons); 1-min load average %s at start, %s at "
    . "the end; Samba AD up in %.1f s (%s)\n",
    $o{duration}, $o{workers}, $o{threads}, $o{'wb-max-conns'} // '1 (default)', $cpu, $model, $samba, $wb_ok,
    $wb_client, $load_before, loadavg(), $t_ad, $ad->from_snapshot ? 'snapshot' : 'provisioned';

my $bad = grep { $_->[2]{err} || !$_->[2]{ok} } @rows;
$t->stop;
$ad->stop;
exit($bad || $wb_ok < $wb_client ? 1 : 0);
