#!/usr/bin/perl
# Soak smoke (issue 12): bench/soak --smoke, about 40 s: NTLM handshakes,
# Communicator-style re-authentications, delegated requests, client aborts
# mid-handshake, a reload every 4 s, the KDC stopped and restarted once.
# Each of the soak's checks is a test here: no 5xx except 503 during the
# KDC outage, no worker crash, RSS and fds flat after warm-up, KDC requests
# per user within the ticket lifetime, 503 then 200 for a new user across
# the outage.  The 30-minute run: perl bench/soak (docs/benchmarks.md).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use KcdTest qw(repo_root);
use KcdRealm;
use KcdApache;

my $t = KcdTest->new->skip_unless_module;
my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;

my $repo = repo_root();
my $out = `perl $repo/bench/soak --smoke 2>&1`;
my $rc = $? >> 8;

my @checks = $out =~ /^check: (PASS|FAIL) (.*)$/mg;
ok(@checks >= 16, 'soak ran its checks') or diag($out);
while (my ($verdict, $line) = splice(@checks, 0, 2)) {
    my ($name, $detail) = $line =~ /^(.*?)(?: \((.*)\))?$/;
    is($verdict, 'PASS', "soak: $name") or diag($detail // '');
    note($detail) if defined $detail;
}
is($rc, 0, 'soak exit status') or diag($out);
note($_) for grep { /^(soak|totals|rss|fds):/ } split /\n/, $out;

done_testing();
