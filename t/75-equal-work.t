#!/usr/bin/perl

# Issue 7 input 13: user names cannot be enumerated by timing.  A logon for
# an unknown user does the same work as one for a known user with a wrong
# password: NTLM computes NTOWFv2, the proof and the MIC against a stand-in
# key; Basic computes and compares an NT hash.  The debug log shows each
# step for both; bench/enum-timing.pl measures the answer times side by
# side (docs/benchmarks.md).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use MIME::Base64 qw(encode_base64);

use KcdTest qw(port);
use KcdNTLM qw(:all);

my $t = KcdTest->new->skip_unless_module;

$t->write_file('users', "KCD\\alice:" . unpack('H*', nt_hash('Alice-Pass1'))
                        . "\n");
my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');

$t->write_config(<<"EOF", log_level => 'debug');
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_auth ntlm basic;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;

        location / {
            root %%TESTDIR%%;
        }
    }
EOF
$t->run;

for my $case (['alice', 'a known', 'known user, wrong password'],
              ['nobody', 'a stand-in', 'unknown user'])
{
    my $mark = $t->log_mark;
    my $c = KcdTest::Conn->new(port => port(8080));
    my (undef, $r) = ntlm_login($c, '/x', user => $case->[0], domain => 'KCD',
                                password => 'Wrong-Guess9');
    is($r->{status}, 401, "NTLM, $case->[2]: 401");
    like($t->wait_for_log(qr/NTLMv2 proof and MIC computed/, 3, 'error.log',
                          $mark) // '',
         qr/computed for \Q$case->[1]\E account \(mic announced: 1\)/,
         "NTLM, $case->[2]: NTOWFv2, proof and MIC computed");

    $mark = $t->log_mark;
    $c = KcdTest::Conn->new(port => port(8443), ssl => 1);
    $r = $c->get('/x', headers => [Authorization => 'Basic '
        . encode_base64("$case->[0]:Wrong-Guess9", '')]);
    is($r->{status}, 401, "Basic, $case->[2]: 401");
    like($t->wait_for_log(qr/Basic NT hash computed/, 3, 'error.log',
                          $mark) // '',
         qr/computed and compared for \Q$case->[1]\E account/,
         "Basic, $case->[2]: NT hash computed and compared");
}

done_testing();
