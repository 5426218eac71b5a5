#!/usr/bin/perl

# The SPNEGO codec (ngx_http_kcd_spnego.c): the C unit tests of
# t/unit/spnego_unit.c, then the codec against a live MIT krb5 SPNEGO
# initiator with the gss-ntlmssp mechanism: its tokens decode, and MIT
# accepts the negTokenResp the codec writes and continues the exchange.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use IPC::Open2 qw(open2);
use Test::More;

use lib dirname(abs_path(__FILE__)) . '/lib';
use KcdNTLM qw(:all);

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $bin = "$root/build/spnego_unit";

my @src = map { "$root/$_" } qw(t/unit/spnego_unit.c ngx_http_kcd_spnego.c
    ngx_http_kcd_spnego.h);

if (!-x $bin || grep { -e $_ && (stat $_)[9] > (stat $bin)[9] } @src) {
    system("make -C '$root' build/spnego_unit 1>&2") == 0 && -x $bin
        or BAIL_OUT('cannot build build/spnego_unit');
}

# the C tests: their TAP lines become subtests of this file
subtest 'C unit tests' => sub {
    my @out = `$bin`;
    my $rc = $? >> 8;
    for (@out) {
        chomp;
        if (/^(not )?ok \d+ - (.*)$/) {
            ok(!defined $1, $2);
        }
    }
    is($rc, 0, 'spnego_unit exit status');
};

sub decode {
    my ($bytes) = @_;
    my %f;
    for (`$bin decode @{[unpack 'H*', $bytes]}`) {
        chomp;
        my ($k, $v) = split / /, $_, 2;
        $f{$k} = $v // '';
    }
    return \%f;
}

sub resp {
    my ($state, $mech, $token, $mic) = @_;
    my @a = ($state, $mech, unpack('H*', $token // ''));
    push @a, unpack('H*', $mic) if defined $mic;
    my $out = `$bin resp @a`;
    $out =~ /^token ([0-9a-f]+)/ or die "resp failed";
    return pack 'H*', $1;
}

# a live MIT initiator: gss-ntlmssp named by GSS_MECH_CONFIG
my $so = '/usr/lib/x86_64-linux-gnu/gssntlmssp/gssntlmssp.so';
my $py = '/usr/bin/python3';
my $have = -e $so && system("$py -c 'import gssapi' 2>/dev/null") == 0;

SKIP: {
    skip 'gss-ntlmssp or python3-gssapi not installed', 12 unless $have;

    my $dir = tempdir(CLEANUP => 1);
    open my $fh, '>', "$dir/mech" or die;
    print $fh "gssntlmssp_v1 1.3.6.1.4.1.311.2.2.10 $so\n";
    close $fh;
    open $fh, '>', "$dir/users" or die;
    print $fh "KCD:alice:Secret1\n";
    close $fh;

    local $ENV{GSS_MECH_CONFIG} = "$dir/mech";
    local $ENV{NTLM_USER_FILE} = "$dir/users";
    local $ENV{KRB5_CONFIG} = '/dev/null';

    my $pid = open2(my $out, my $in, $py,
                    "$root/t/lib/spnego_initiator.py", 'KCD\\alice',
                    'HTTP@server.kcd.test', '0x22');
    local $SIG{ALRM} = sub { kill 'KILL', $pid; die "timeout\n" };
    alarm 20;

    my $l1 = <$out>;
    chomp $l1;
    my $t1 = pack 'H*', $l1;
    my $d = decode($t1);

    is($d->{result}, 'ok', 'MIT initial token decodes');
    is($d->{kind}, 'init', 'negTokenInit');
    like($d->{mechs}, qr/^ntlmssp\b/, 'NTLMSSP listed first');
    my $type1 = pack 'H*', $d->{mech_token};
    is(substr($type1, 0, 12), "NTLMSSP\0\1\0\0\0", 'mechToken is a Type 1');
    my $t1f = parse_type1($type1)->{flags};
    ok($t1f & NTLMSSP_NEGOTIATE_SIGN, sprintf('gss-ntlmssp asks for SIGN'
       . ' (flags 0x%08x)', $t1f));

    # the codec's negTokenResp around a Type 2: MIT must go on with it
    my $type2 = make_type2(
        flags => 0xE28A8235,
        target_name => 'KCD',
        av => [[MsvAvNbDomainName, utf16le('KCD')],
               [MsvAvNbComputerName, utf16le('SERVER')],
               [MsvAvTimestamp, pack('Q<', filetime_now())]]);
    my $r = resp(1, 'ntlmssp', $type2);
    my $rd = decode($r);
    is($rd->{kind}, 'resp', 'the codec\'s negTokenResp decodes again');

    print $in unpack('H*', $r), "\n";
    my $l2 = <$out>;
    chomp $l2;
    unlike($l2, qr/^error/, "MIT accepts the codec's negTokenResp ($l2)")
        or diag $l2;

    my $t2 = decode(pack 'H*', $l2);
    is($t2->{result}, 'ok', 'MIT second token decodes');
    is($t2->{kind}, 'resp', 'negTokenResp');
    my $type3 = pack 'H*', ($t2->{response_token} // '');
    is(substr($type3, 0, 12), "NTLMSSP\0\3\0\0\0",
       'responseToken is a Type 3');
    # MIT 1.20 asks gss-ntlmssp whether a mechListMIC is needed only
    # after the Type 3 is built, so no NTLM MIC and no mechListMIC here
    my $mic = pack 'H*', $t2->{mech_list_mic} // '';
    ok(length($mic) == 0 || length($mic) == 16,
       'mechListMIC absent or a 16-byte NTLM signature');
    is(parse_type3($type3)->{user}, 'alice', 'user alice in the Type 3');

    close $in;
    waitpid $pid, 0;
    alarm 0;
}

done_testing();
