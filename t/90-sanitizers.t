#!/usr/bin/perl
# Sanitizer run (issue 12): the nginx-facing suites again, against the
# module built with AddressSanitizer + UBSan (make asan ->
# build-asan/ngx_http_kcd_module.so), nginx started with the sanitizer
# runtimes preloaded (KCD_SANITIZE=1, t/lib/KcdTest.pm).  A suite fails
# here on any ASan, LeakSanitizer or UBSan report from nginx (written to
# files in its test directory, collected here) and on any of its own
# failures, unless it also fails without the sanitizers (then it is
# rerun plainly to tell, and its own run in prove reports it).  KCD_SANITIZE_SUITES="t/31-ntlm-handshake.t ..." narrows the
# list; the default is every t/3* to t/8* suite.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use Test::More;
use KcdTest qw(port repo_root);

my $repo = repo_root();
my $asan = $ENV{KCD_ASAN_MODULE} || "$repo/build-asan/ngx_http_kcd_module.so";
plan skip_all => "$asan missing (make asan)" unless -f $asan;

my @suites = $ENV{KCD_SANITIZE_SUITES}
    ? split(' ', $ENV{KCD_SANITIZE_SUITES})
    : sort glob("$repo/t/[345678]*.t");

my $reports = tempdir('kcd-sanitizer-XXXXXX', TMPDIR => 1, CLEANUP => 1);

local $ENV{KCD_MODULE} = $asan;
local $ENV{KCD_SANITIZE} = 1;
local $ENV{KCD_SANITIZE_REPORTS} = $reports;

# the harness really runs nginx with ASan: the runtime is mapped in the
# workers and the module is the instrumented one
{
    my $t = KcdTest->new;
    $t->write_config(<<'EOF2');
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        location / { return 200 "ok\n"; }
    }
EOF2
    $t->run;
    my ($w) = $t->worker_pids;
    my $maps = $t->read_file("/proc/$w/maps") // '';
    like($maps, qr/libasan\.so/, 'nginx worker runs with the ASan runtime');
    like($maps, qr/\Q$asan\E/, 'nginx worker loaded the ASan build of the module');
    $t->stop;
    is(scalar($t->sanitizer_reports), 0, 'no report from a plain start/stop');
}

# suites that cannot run under the sanitizers, with the reason
my %not_here = (
    '73-backend-refusal.t' => 'its skewed-clock nginx preloads libfaketime, '
        . 'which hangs at start beside the ASan runtime',
);

for my $s (@suites) {
    (my $name = $s) =~ s{.*/}{};
    if ($not_here{$name} && !$ENV{KCD_SANITIZE_SUITES}) {
        SKIP: { skip "$name: $not_here{$name}", 1 }
        next;
    }
    my $out = `prove -I $repo/t/lib $s 2>&1`;
    my $rc = $? >> 8;
    my @r = glob("$reports/$name-sanitizer-*");

    # a suite that fails without the sanitizers too is its own run's
    # failure (prove reports it there), not this one's
    my $plain = '';
    if ($rc != 0 && !@r) {
        local $ENV{KCD_SANITIZE} = 0;
        local $ENV{KCD_MODULE} = "$repo/build/ngx_http_kcd_module.so";
        system("prove -I $repo/t/lib $s >/dev/null 2>&1");
        $plain = $? ? ' (fails without the sanitizers too)' : '';
    }

    ok(!@r && ($rc == 0 || $plain), "$name under ASan + UBSan$plain")
        or diag("exit $rc\n$out\n", map { "--- $_\n" . slurp($_) } @r);
}

sub slurp {
    open(my $fh, '<', $_[0]) or return '';
    local $/;
    return <$fh>;
}

done_testing();
