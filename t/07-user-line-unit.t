#!/usr/bin/perl

# The user file's line parser (ngx_http_kcd_userline.c) without nginx:
# fields, comments, blanks, CR, the groups field, and every malformed form
# with its reason.  The same function loads the file in nginx (t/49) and is
# the entry point for a fuzz harness.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IPC::Open2 qw(open2);
use Test::More;

use KcdTest;

my $ROOT = KcdTest::repo_root();
my $dir = tempdir(CLEANUP => 1);
my $bin = "$dir/userline_unit";

# with ASan + UBSan where the compiler has them, else plain
my @cc = ('cc', '-Wall', '-Wextra', '-Werror', '-g', '-O1', "-I$ROOT",
          '-o', $bin, "$ROOT/t/unit/userline_unit.c",
          "$ROOT/ngx_http_kcd_userline.c");
my $built = system(@cc, '-fsanitize=address,undefined',
                   '-fno-sanitize-recover=undefined') == 0
            || system(@cc) == 0;
ok($built, 'userline_unit builds with -Wall -Wextra -Werror')
    or BAIL_OUT('userline_unit does not build');

my $H = 'a4f49c406510bdcab6824ee7c30fd852';
my $E = '31d6cfe0d16ae931b73c59d7e0c089c0';

my @cases = (
    ["KCD\\alice:$H", "OK domain=KCD user=alice hash=$H groups="],
    ["bob:\U$H", "OK domain= user=bob hash=$H groups="],
    ["  KCD\\alice:$H   # comment\r", "OK domain=KCD user=alice hash=$H groups="],
    ["KCD\\alice:$H:Staff", "OK domain=KCD user=alice hash=$H groups=Staff"],
    ["KCD\\alice:$H: Domain Users , VPN\t", "OK domain=KCD user=alice hash=$H groups=Domain Users|VPN"],
    ["KCD\\alice:$H:Staff # trailing", "OK domain=KCD user=alice hash=$H groups=Staff"],
    ["j\xc3\xbcrgen:$H", "OK domain= user=j\xc3\xbcrgen hash=$H groups="],
    ["", 'EMPTY'],
    ["   \t\r", 'EMPTY'],
    ["# KCD\\alice:$H", 'EMPTY'],
    ["\t# indented", 'EMPTY'],
    ["KCD\\alice$H", qr/^ERROR expected/],
    ["KCD\\alice:" . substr($H, 1), qr/^ERROR the NT hash must be 32 hex/],
    ["KCD\\alice:${H}0", qr/^ERROR the NT hash must be 32 hex/],
    ["KCD\\alice:" . substr($H, 1) . 'g', qr/^ERROR the NT hash must be 32 hex/],
    ["KCD\\alice:$E", qr/^ERROR the NT hash of the empty password/],
    ["\\alice:$H", qr/^ERROR empty user or domain/],
    ["KCD\\:$H", qr/^ERROR empty user or domain/],
    [":$H", qr/^ERROR empty user or domain/],
    ["A\\B\\c:$H", "OK domain=A user=B\\c hash=$H groups="],
    ["a\x01b:$H", qr/^ERROR a control character/],
    [('u' x 257) . ":$H", qr/^ERROR user or domain name longer/],
    [('u' x 256) . ":$H", qr/^OK /],
    ["KCD\\alice:$H:", "OK domain=KCD user=alice hash=$H groups="],
    ["KCD\\alice:$H: \t", "OK domain=KCD user=alice hash=$H groups="],
    ["KCD\\alice:$H:a,,b", qr/^ERROR empty group name/],
    ["KCD\\alice:$H:a, ,b", qr/^ERROR empty group name/],
    ["KCD\\alice:$H:a,", qr/^ERROR empty group name/],
    ["KCD\\alice:$H:a:b", qr/^ERROR ':' in a group name/],
    ["KCD\\alice:$H:" . join(',', 1 .. 65), qr/^ERROR more than 64 groups/],
    ["KCD\\alice:$H:" . join(',', 1 .. 64), qr/^OK /],
    ["KCD\\alice:$H:" . ('g' x 257), qr/^ERROR group name longer/],
);

my $pid = open2(my $out, my $in, $bin);
binmode $in;
binmode $out;
print $in "$_->[0]\n" for @cases;
close $in;
my @got = <$out>;
waitpid $pid, 0;
is($? >> 8, 0, 'userline_unit exits 0 (no sanitizer report)');
chomp @got;

for my $i (0 .. $#cases) {
    my ($line, $want) = @{$cases[$i]};
    (my $shown = substr($line, 0, 60)) =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    if (ref $want) {
        like($got[$i] // '', $want, "'$shown'");
    } else {
        is($got[$i] // '', $want, "'$shown'");
    }
}

done_testing();
