#!/usr/bin/perl

# The module's files call one another one way down the pipeline (codec ->
# validation -> identity -> delegation -> upstream headers): no circle of
# calls between two or more files.  Functions are found where they are
# defined (return type on its own line, nginx style) and calls by name,
# comments left out.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use KcdTest qw(repo_root);

my $root = repo_root();
my @files = sort glob("$root/ngx_http_*.c");
ok(@files > 10, scalar(@files) . ' source files');

my (%src, %def);
for my $f (@files) {
    open my $fh, '<', $f or die "$f: $!";
    local $/;
    my $s = <$fh>;
    $s =~ s{/\*.*?\*/}{}gs;
    (my $name = $f) =~ s{.*/}{};
    $src{$name} = $s;
    while ($s =~ /^(?:static\s+)?[a-z_0-9 *]+\n(\w+)\(/mg) {
        $def{$1} //= $name;
    }
}

my %edge;
for my $f (keys %src) {
    for my $fn (keys %def) {
        next if $def{$fn} eq $f;
        $edge{$f}{$def{$fn}} = $fn if $src{$f} =~ /\b\Q$fn\E\s*\(/;
    }
}

# depth-first search for a back edge
my (%color, @path, @cycles);
my $dfs;
$dfs = sub {
    my ($u) = @_;
    $color{$u} = 1;
    push @path, $u;
    for my $v (sort keys %{ $edge{$u} || {} }) {
        if (($color{$v} // 0) == 1) {
            my @c = @path[(grep { $path[$_] eq $v } 0 .. $#path)[0] .. $#path];
            push @cycles, join(' -> ', @c, $v)
                . " (calls $edge{$u}{$v})";
        } elsif (!$color{$v}) {
            $dfs->($v);
        }
    }
    $color{$u} = 2;
    pop @path;
};
$dfs->($_) for grep { !$color{$_} } sort keys %src;

is(join("\n", @cycles), '', 'no circle of calls between the module\'s files');

# the module file is the top: nothing calls into it
my @up = grep { $edge{$_}{'ngx_http_kcd_module.c'} } keys %edge;
is(join(', ', sort @up), '', 'no file calls into ngx_http_kcd_module.c');

done_testing();
