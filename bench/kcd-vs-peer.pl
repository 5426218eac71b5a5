#!/usr/bin/perl

# Benchmark (not a test): complete NTLM handshakes per second and server
# CPU per handshake, the module beside the open-source peer (Apache httpd +
# mod_auth_gssapi + gss-ntlmssp), driven by the same C client in one run.
#
#   sh bench/kcd-vs-peer.sh [--seconds 5] [--rounds 3] [--conns 32]
#                           [--follow 0] [--cpu 1] [--peer-procs 4]
#                           [--cpu-budget P] [--keep]
#
# Set-up, one temporary directory, loopback only:
#   - backend: nginx without the module, a 44-byte static file;
#   - the module: nginx, 1 worker, `kcd_auth ntlm` + user file, proxy_pass
#     to the backend (location /auth/), and /base/: the same two HTTP
#     exchanges and one proxied request done by nginx alone (a NEGOTIATE
#     gets a fixed 401 CHALLENGE from `return 401`, anything else is
#     proxied): what nginx spends without the module;
#   - the peer: Apache httpd (mpm_event, --peer-procs processes x 64
#     threads) with
#     mod_auth_gssapi, GssapiAllowedMech ntlmssp (gss-ntlmssp, users from
#     NTLM_USER_FILE), raw NTLM, GssapiConnectionBound On, mod_proxy_http
#     to the same backend;
#   - both servers pinned to the same CPU (--cpu, default 1), the client
#     and the backend to the other one; with --cpu-budget P each server
#     gets P % of that CPU from a cpu cgroup of its own (see below).
#
# Load: bench/kcd-handshake.c (built here): CONNS connections, each does
# connect, NEGOTIATE, AUTHENTICATE (NTLMv2 with MIC), FOLLOW more GETs,
# close.  Server CPU per handshake: utime + stime of the server's parent
# and children (/proc/PID/stat) over the run, divided by the handshakes.
# Rounds alternate module / peer / base; medians are reported.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib", "$FindBin::Bin/lib";

use File::Path qw(make_path);
use Getopt::Long;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBench qw(prepare start_backend write_users servers_conf);

my %o = (seconds => 5, rounds => 3, conns => 32, follow => 0, cpu => 1,
         'peer-procs' => 4, 'cpu-budget' => 0);
GetOptions(\%o, 'seconds=f', 'rounds=i', 'conns=i', 'follow=i', 'cpu=i',
           'peer-procs=i', 'keep', 'cpu-budget=i')
    or die "usage: $0 [--seconds N] [--rounds N] [--conns N] [--follow K] "
         . "[--cpu N] [--peer-procs N] [--cpu-budget P] [--keep]\n";

$SIG{ALRM} = sub { die "kcd-vs-peer: timeout\n" };
alarm 60 + $o{rounds} * 3 * ($o{seconds} + 5);

my $HTTPD = '/usr/sbin/apache2';
my $MODS = '/usr/lib/apache2/modules';
for my $need (['module', KcdTest::module_path()], ['apache2', $HTTPD],
              ['mod_auth_gssapi', "$MODS/mod_auth_gssapi.so"],
              ['gss-ntlmssp',
               '/usr/lib/x86_64-linux-gnu/gssntlmssp/gssntlmssp.so'],
              ['gcc', '/usr/bin/gcc'], ['taskset', '/usr/bin/taskset']) {
    die "missing $need->[0]: $need->[1] (make deps)\n" unless -e $need->[1];
}

$ENV{KCD_TEST_KEEP} = 1 if $o{keep};
my $REPO = KcdTest::repo_root();
my $ncpu = (`nproc` + 0) || 1;
my $scpu = $o{cpu} % $ncpu;
my $ccpu = $ncpu > 1 ? ($scpu + 1) % $ncpu : 0;

my $t = KcdTest->new;
my $dir = $t->testdir;
my $client = prepare($t);

my %users = (alice => 'Secret1', carol => 'Secret3');

# backend
my $tb = start_backend($dir);

# the module, and nginx alone
write_users($t, %users);
$t->write_config(servers_conf($dir, 64), workers => 1, log_level => 'warn');
$t->run;

# the peer
my $adir = "$dir/peer";
make_path("$adir/run", "$adir/htdocs");
my $aport = port(8090);
my $bport = port(9000);
my $root = $> == 0;
open(my $uf, '>', "$adir/ntlm_users") or die "$adir/ntlm_users: $!";
print $uf "KCD:$_:$users{$_}\n" for sort keys %users;
close $uf;
chmod 0644, "$adir/ntlm_users";
if ($root) {
    # www-data reads the user file: every ancestor traversable
    my $p = $adir;
    chmod 0755, $adir;
    while ($p =~ s{/[^/]+$}{} && length $p) {
        my @st = stat $p or last;
        chmod(($st[2] & 07777) | 0111, $p) if $st[4] == 0;
    }
    my ($uid, $gid) = (getpwnam('www-data'))[2, 3];
    chown $uid, $gid, "$adir/run" if defined $uid;
}
my $user = $root ? "User www-data\nGroup www-data\n" : '';
open(my $ac, '>', "$adir/httpd.conf") or die "$adir/httpd.conf: $!";
print $ac <<"EOF";
ServerRoot "$adir"
ServerName peer.kcd.test
Listen 127.0.0.1:$aport
PidFile "$adir/run/httpd.pid"
DefaultRuntimeDir "$adir/run"
ErrorLog "$adir/error.log"
LogLevel warn
$user
LoadModule mpm_event_module $MODS/mod_mpm_event.so
LoadModule authn_core_module $MODS/mod_authn_core.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule authz_user_module $MODS/mod_authz_user.so
LoadModule proxy_module $MODS/mod_proxy.so
LoadModule proxy_http_module $MODS/mod_proxy_http.so
LoadModule auth_gssapi_module $MODS/mod_auth_gssapi.so

StartServers $o{'peer-procs'}
ServerLimit $o{'peer-procs'}
ThreadLimit 64
ThreadsPerChild 64
MaxRequestWorkers @{[ 64 * $o{'peer-procs'} ]}
MinSpareThreads 1
MaxSpareThreads 64
MaxConnectionsPerChild 0
ListenBacklog 4096

KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 30
Timeout 30
DocumentRoot "$adir/htdocs"

<Location /auth/>
    AuthType GSSAPI
    AuthName "peer"
    GssapiAllowedMech ntlmssp
    GssapiConnectionBound On
    GssapiSSLonly Off
    GssapiBasicAuth Off
    GssapiUseSessions Off
    Require valid-user
    ProxyPass "http://127.0.0.1:$bport/"
</Location>
EOF
close $ac;

my $apid = fork // die "fork: $!";
if ($apid == 0) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>>', "$adir/stdout.log";
    open STDERR, '>&', \*STDOUT;
    POSIX::setsid();
    $ENV{NTLM_USER_FILE} = "$adir/ntlm_users";
    $ENV{NETBIOS_DOMAIN_NAME} = 'KCD';
    $ENV{NETBIOS_COMPUTER_NAME} = 'PEER';
    { no warnings 'exec'; exec $HTTPD, '-f', "$adir/httpd.conf", '-DFOREGROUND'; }
    POSIX::_exit(127);
}
END {
    if ($apid) {
        kill 'TERM', $apid;
        for (1 .. 300) { last if waitpid($apid, WNOHANG) != 0; sleep 0.01 }
        kill 'KILL', -$apid if kill 0, $apid;
    }
}
for (1 .. 250) {
    last if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$aport");
    die "apache2 exited:\n" . `cat $adir/stdout.log $adir/error.log`
        if waitpid($apid, WNOHANG) == $apid;
    sleep 0.02;
}

# pin: servers on one CPU, client and backend on the other
sub pin {
    my ($cpu, @pids) = @_;
    system("taskset -a -p -c $cpu $_ >/dev/null") for @pids;
}
sub children {
    my ($ppid) = @_;
    my @c;
    for my $p (map { m{/proc/(\d+)$} ? $1 : () } glob('/proc/[0-9]*')) {
        open(my $fh, '<', "/proc/$p/stat") or next;
        my $st = <$fh> // next;
        $st =~ s/^.*\)\s+//;
        push @c, $p if (split ' ', $st)[1] == $ppid;
    }
    return @c;
}
pin($scpu, $t->pid, $t->worker_pids, $apid, children($apid));
pin($ccpu, $tb->pid, $tb->worker_pids);

# --cpu-budget P: each server gets the same CPU time, P % of its core, from
# a cpu cgroup of its own (CFS bandwidth: quota P ms per 100 ms).  The
# server's own CPU is then the limit for both, not the client's core, and
# the rates compare what each does with the same CPU.  Processes forked
# later (Apache's children) inherit their parent's cgroup.
my @cgroups;
sub cpu_budget {
    my ($name, @pids) = @_;
    my ($v1, $v2) = ('/sys/fs/cgroup/cpu', '/sys/fs/cgroup');
    my ($dir, %f);
    if (-f "$v1/cpu.cfs_quota_us" || -f "$v1/tasks") {
        $dir = "$v1/kcd-bench-$$-$name";
        %f = ("cpu.cfs_period_us" => 100000,
              "cpu.cfs_quota_us" => 1000 * $o{'cpu-budget'});
    } elsif (-f "$v2/cgroup.controllers"
             && `cat $v2/cgroup.controllers` =~ /\bcpu\b/) {
        $dir = "$v2/kcd-bench-$$-$name";
        %f = ("cpu.max" => 1000 * $o{'cpu-budget'} . " 100000");
    } else {
        die "kcd-vs-peer: --cpu-budget needs a cpu cgroup (v1 cpu "
            . "controller or cgroup v2 with cpu enabled) and root\n";
    }
    mkdir $dir or die "kcd-vs-peer: mkdir $dir: $!\n";
    push @cgroups, $dir;
    for my $k (sort keys %f) {
        open(my $fh, '>', "$dir/$k") or die "$dir/$k: $!\n";
        print $fh "$f{$k}\n";
        close $fh or die "$dir/$k: $!\n";
    }
    for my $pid (@pids) {
        open(my $fh, '>', "$dir/cgroup.procs") or die "$dir/cgroup.procs: $!\n";
        print $fh "$pid\n";
        close $fh or die "kcd-vs-peer: moving $pid into $dir: $!\n";
    }
}
END {
    # back to the parent cgroup (the servers are still being stopped),
    # then the empty cgroup can go
    for my $dir (@cgroups) {
        (my $parent = $dir) =~ s{/[^/]+$}{};
        for (1 .. 20) {
            open(my $in, '<', "$dir/cgroup.procs") or last;
            my @p = grep { /^\d+$/ } map { chomp; $_ } <$in>;
            close $in;
            for my $pid (@p) {
                open(my $out, '>', "$parent/cgroup.procs") or next;
                print $out "$pid\n";
                close $out;
            }
            last if rmdir $dir;
            sleep 0.05;
        }
    }
}
if ($o{'cpu-budget'}) {
    die "kcd-vs-peer: --cpu-budget is a percentage of one core (1-100)\n"
        if $o{'cpu-budget'} < 1 || $o{'cpu-budget'} > 100;
    cpu_budget('nginx', $t->pid, $t->worker_pids);
    cpu_budget('apache', $apid, children($apid));
}

sub run_client {
    my ($port, $path, @extra) = @_;
    my @cmd = ('taskset', '-c', $ccpu, $client, '-t', "127.0.0.1:$port",
               '-p', "${path}bench.txt", '-H', 'bench.kcd.test', '-q',
               (map { ('-a', "KCD\\$_:$users{$_}") } sort keys %users),
               @extra);
    my $out = `@{[ join ' ', map { "'$_'" } @cmd ]} 2>&1`;
    my %r = $out =~ /(\w+)=([\d.]+)/g;
    die "kcd-handshake: $out" unless defined $r{hs_per_sec};
    $r{out} = $out;
    return \%r;
}

# sanity: one handshake each
for my $s (['module', port(8080), '/auth/'], ['peer', $aport, '/auth/'],
           ['base', port(8081), '/base/']) {
    my $r = run_client($s->[1], $s->[2], '-n', 1, '-c', 1, '-d', 5);
    die "$s->[0]: no handshake: $r->{out}\n"
        . `tail -5 $adir/error.log` unless $r->{handshakes} >= 1 && !$r->{errors};
}

print STDERR "kcd-vs-peer: $o{rounds} rounds x $o{seconds} s, $o{conns} "
    . "connections, $o{follow} follow-up(s), servers on CPU $scpu"
    . ($o{'cpu-budget'} ? " with $o{'cpu-budget'} % of it each" : '')
    . ", client and backend on CPU $ccpu\n";
my %res;
for my $round (1 .. $o{rounds}) {
    for my $s (['module', port(8080), '/auth/', $t->pid],
               ['peer', $aport, '/auth/', $apid],
               ['base', port(8081), '/base/', $t->pid]) {
        my $r = run_client($s->[1], $s->[2], '-c', $o{conns}, '-d',
                           $o{seconds}, '-k', $o{follow}, '-w', $s->[3]);
        push @{$res{$s->[0]}}, $r;
        printf STDERR "  round %d %-6s %8.1f hs/s  p50 %6.2f ms  p99 %6.2f ms"
            . "  %7.1f us server CPU/hs  errors %d\n", $round, $s->[0],
            $r->{hs_per_sec}, $r->{lat_p50}, $r->{lat_p99},
            $r->{server_us_per_hs}, $r->{errors};
    }
}

sub median {
    my @s = sort { $a <=> $b } @_;
    return $s[$#s / 2] if @s % 2;
    return ($s[@s / 2 - 1] + $s[@s / 2]) / 2;
}

my %m;
for my $s (qw(module peer base)) {
    for my $k (qw(hs_per_sec lat_p50 lat_p90 lat_p99 server_us_per_hs
                  client_us_per_hs errors)) {
        $m{$s}{$k} = median(map { $_->{$k} // 0 } @{$res{$s}});
    }
}

print "\n| server | handshakes/s | latency p50 / p90 / p99 (ms) "
    . "| server CPU per handshake (us) | server CPU used (% of a core) "
    . "| client CPU per handshake (us) | errors |\n"
    . "|---|---:|---:|---:|---:|---:|---:|\n";
for my $s (['module', 'nginx + module (`kcd_auth ntlm`, user file)'],
           ['peer', 'Apache + mod_auth_gssapi + gss-ntlmssp'],
           ['base', 'nginx alone, same exchanges (no NTLM)']) {
    my $x = $m{$s->[0]};
    printf "| %s | %.0f | %.2f / %.2f / %.2f | %.1f | %.0f | %.1f | %d |\n",
        $s->[1], $x->{hs_per_sec}, $x->{lat_p50}, $x->{lat_p90},
        $x->{lat_p99}, $x->{server_us_per_hs},
        $x->{hs_per_sec} * $x->{server_us_per_hs} / 1e4,
        $x->{client_us_per_hs}, $x->{errors};
}
printf "\nmodule / peer handshakes/s: %.1fx (target >= 10x); module server "
    . "CPU per handshake %.1f us (target <= 60 us), %.2fx nginx alone\n",
    $m{peer}{hs_per_sec} ? $m{module}{hs_per_sec} / $m{peer}{hs_per_sec} : 0,
    $m{module}{server_us_per_hs},
    $m{base}{server_us_per_hs}
        ? $m{module}{server_us_per_hs} / $m{base}{server_us_per_hs} : 0;
print "medians of $o{rounds} rounds x $o{seconds} s, $o{conns} connections, "
    . "$o{follow} follow-up request(s) per handshake"
    . ($o{'cpu-budget'} ? ", each server limited to $o{'cpu-budget'} % of "
       . "CPU $scpu" : '') . "\n";
