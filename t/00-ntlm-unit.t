#!/usr/bin/perl

# The C unit tests of the NTLM codec and crypto (t/unit/ntlm_unit.c): MS-NLMP
# 4.2 and Chromium vectors, malformed input, check_authenticate policies.
# The binary prints TAP itself: this file only makes sure it exists and
# hands over to it, so its plan, results and exit status are ours.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $bin = "$root/build/ntlm_unit";

my @src = map { "$root/$_" } qw(t/unit/ntlm_unit.c ngx_http_kcd_ntlm.c
    ngx_http_kcd_ntlm.h ngx_http_kcd_ntlm_crypto.c ngx_http_kcd_ntlm_crypto.h
    ngx_http_kcd_names.c ngx_http_kcd_names.h);

# build when missing or older than its sources (make's output to stderr:
# stdout is TAP)
if (!-x $bin || grep { -e $_ && (stat $_)[9] > (stat $bin)[9] } @src) {
    my $rc = system("make -C '$root' build/ntlm_unit 1>&2");
    if ($rc != 0 || !-x $bin) {
        print "1..1\nnot ok 1 - make build/ntlm_unit\n";
        exit 1;
    }
}

# bounded in time: the alarm survives exec and kills a hung binary
alarm 120;

exec $bin or do {
    print "1..1\nnot ok 1 - exec $bin: $!\n";
    exit 1;
};
