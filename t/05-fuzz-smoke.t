#!/usr/bin/perl
# Fuzz smoke (issue 12): every harness of fuzz/targets is built with
# clang -fsanitize=fuzzer,address,undefined and run for FUZZ_SECONDS
# (20 s here unless set), starting from its seeds in fuzz/corpus/.  Any
# crash, sanitizer report, leak, timeout or build failure fails the test;
# the crashing input is kept in build/fuzz/crashes/.  Long runs:
# `make fuzz` (docs/fuzzing.md).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use KcdTest qw(repo_root);

my $repo = repo_root();
my $clang = $ENV{FUZZ_CC} || 'clang';
plan skip_all => "$clang not installed (make deps)"
    unless grep { -x "$_/$clang" } split /:/, $ENV{PATH};

local $ENV{FUZZ_SECONDS} = $ENV{FUZZ_SECONDS} || 20;
local $ENV{FUZZ_JOBS} = $ENV{FUZZ_JOBS} || 2;

my @names = split /\n/, `sh $repo/fuzz/fuzz.sh list`;
ok(@names >= 5, 'harnesses listed: ' . join(' ', @names));

my $out = `sh $repo/fuzz/fuzz.sh run 2>&1`;
my $rc = $? >> 8;

for my $n (@names) {
    my ($line) = $out =~ /^(fuzz: \Q$n\E .*)$/m;
    ok(defined $line && $line =~ / ok$/, "fuzz $n: no crash in "
       . "$ENV{FUZZ_SECONDS} s") or diag($line // 'no result line');
    note($line) if defined $line;
    my ($runs) = defined $line ? $line =~ /runs=(\d+)/ : ();
    ok($runs && $runs > 1000, "fuzz $n: executions ran (" . ($runs // 0) . ")");
}
is($rc, 0, 'fuzz.sh exit status') or diag($out);

done_testing();
