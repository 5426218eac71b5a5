#!/usr/bin/perl

# Benchmark (not a test): memory per idle authenticated connection.
#
#   sh bench/kcd-memory.sh [--conns 10000] [--follow 1] [--walk] [--keep]
#
# One nginx worker with the module (`kcd_auth ntlm`, user file, proxy_pass
# to a static backend nginx), and the same nginx with a location that does
# the same exchanges without NTLM (/base/, see bench/kcd-vs-peer.pl): what
# nginx itself keeps per idle keep-alive connection.  For each, the worker's
# RSS (VmRSS, /proc/PID/status) is read, bench/kcd-handshake -i opens CONNS
# connections, authenticates each (NEGOTIATE, AUTHENTICATE with MIC, FOLLOW
# more requests) and holds them idle; RSS is read again with all of them
# open.  Reported: RSS before / after and (after - before) / CONNS, for
# the module and for nginx alone; their difference is the module's own
# state per connection (issue 12 target: <= 1 KiB).
#
# --walk: with the connections open, gdb walks the worker
# (bench/kcd-memory-walk.py): per idle connection, nginx's c->pool blocks
# and what the module keeps (its c->pool record, the bound identity, a
# pending handshake, a Kerberos evidence), in malloc() chunk sizes; and
# how much of the heap malloc() holds free, i.e. resident but nobody's
# (the rest of the RSS difference).  Needs gdb.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib", "$FindBin::Bin/lib";

use Getopt::Long;
use IPC::Open2;
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBench qw(prepare start_backend write_users servers_conf);

my %o = (conns => 10000, follow => 1);
GetOptions(\%o, 'conns=i', 'follow=i', 'walk', 'keep')
    or die "usage: $0 [--conns N] [--follow K] [--walk] [--keep]\n";

die "--walk needs gdb\n" if $o{walk} && system('gdb --version >/dev/null 2>&1');

$SIG{ALRM} = sub { die "kcd-memory: timeout\n" };
alarm 600;

$ENV{KCD_TEST_KEEP} = 1 if $o{keep};
my $REPO = KcdTest::repo_root();

my $t = KcdTest->new;
my $dir = $t->testdir;
my $client = prepare($t);
my $tb = start_backend($dir);
write_users($t, alice => 'Secret1');
my $nconn = $o{conns} + 2048;
my %po = (workers => 1, log_level => 'warn',
          main => 'worker_rlimit_nofile 20000;',
          events => "worker_connections $nconn;");
$t->write_config(servers_conf($dir, 16), %po);

sub rss_kib {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/status") or die "/proc/$pid/status: $!";
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)\s+kB/ }
    die "no VmRSS for $pid\n";
}

# gdb: "walk: ..." lines, then "heap: SIZE FREE" (bytes)
sub walk {
    my ($pid) = @_;
    my @l = grep { /^(walk|heap): / }
        `gdb -q -p $pid -batch -x $REPO/bench/kcd-memory-walk.py 2>&1`;
    die "gdb could not walk worker $pid\n" unless @l;
    return @l;
}

sub measure {
    my ($path, $port) = @_;
    $t->run;
    my ($w) = $t->worker_pids;

    # warm-up: one handshake, so first-use allocations are not counted
    system("$client -t 127.0.0.1:$port -p ${path}bench.txt "
           . "-a 'KCD\\alice:Secret1' -n 1 -c 1 -d 5 -q >/dev/null") == 0
        or die "warm-up on $path failed\n";
    sleep 0.5;
    my $before = rss_kib($w);
    my @heap0 = $o{walk} ? walk($w) : ();

    my $pid = open2(my $out, my $in, $client, '-t', "127.0.0.1:$port",
                    '-p', "${path}bench.txt", '-a', 'KCD\\alice:Secret1',
                    '-c', $o{conns}, '-k', $o{follow}, '-i', '-d', 400, '-q');
    my $ready = <$out>;
    die "kcd-handshake: no ready line\n" unless defined $ready && $ready =~ /^ready/;
    my ($open) = $ready =~ /connections=(\d+)/;
    my ($err) = $ready =~ /errors=(\d+)/;
    sleep 1;
    my $after = rss_kib($w);
    my $fds = () = glob("/proc/$w/fd/*");
    my @walk = $o{walk} ? walk($w) : ();
    close $in;                  # stdin closed: the client closes all
    my $summary = <$out>;
    waitpid($pid, 0);
    $t->stop;
    return { before => $before, after => $after, open => $open,
             errors => $err, fds => $fds, walk => \@walk, heap0 => \@heap0,
             per_conn => $open ? ($after - $before) * 1024 / $open : 0 };
}

my $m = measure('/auth/', port(8080));
my $b = measure('/base/', port(8081));

print "\n| worker | idle connections | RSS before (KiB) | RSS after (KiB) "
    . "| per connection (bytes) |\n|---|---:|---:|---:|---:|\n";
for my $r (['nginx + module, authenticated (NTLM)', $m],
           ['nginx alone, same exchanges', $b]) {
    printf "| %s | %d | %d | %d | %.0f |\n", $r->[0], $r->[1]{open},
        $r->[1]{before}, $r->[1]{after}, $r->[1]{per_conn};
}
for my $r (['nginx + module', $m], ['nginx alone', $b]) {
    my $x = $r->[1];
    next unless @{ $x->{walk} } && $x->{open};
    my ($h0, $f0) = map { /^heap: (\d+) (\d+)/ ? ($1, $2) : () } @{ $x->{heap0} };
    my ($h1, $f1) = map { /^heap: (\d+) (\d+)/ ? ($1, $2) : () } @{ $x->{walk} };
    print "\n$r->[0], walked by gdb:\n",
        map { s/^walk: /    /r } grep { /^walk: / } @{ $x->{walk} };
    printf "    malloc() heap growth %.0f bytes per connection: in use %.0f, "
        . "free %.0f\n", ($h1 - $h0) / $x->{open},
        (($h1 - $f1) - ($h0 - $f0)) / $x->{open}, ($f1 - $f0) / $x->{open}
        if defined $h0 && defined $h1;
}
printf "\nmodule state per idle authenticated connection: %.0f bytes "
    . "(target <= 1024); connection errors %d / %d\n",
    $m->{per_conn} - $b->{per_conn}, $m->{errors}, $b->{errors};
print "$o{conns} connections, $o{follow} follow-up request(s) each, 1 worker\n";
