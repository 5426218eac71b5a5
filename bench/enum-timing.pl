#!/usr/bin/perl

# Can user names be told apart by the answer time?  NTLM Type 3 and Basic
# logons with a wrong password for a known user and for an unknown user,
# interleaved on loopback, N of each; prints the medians and their ratio
# (1.00: no difference).  Issue 7 input 13; docs/benchmarks.md.
#
#   perl bench/enum-timing.pl [N]        (default 500)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use Time::HiRes qw(time);
use MIME::Base64 qw(encode_base64);

use KcdTest qw(port);
use KcdNTLM qw(:all);

my $N = shift // 500;

my $t = KcdTest->new;
die "module not built\n" unless $t->has_module;

$t->write_file('users', join '', map {
    "KCD\\user$_:" . unpack('H*', nt_hash("Pass-$_")) . "\n" } 1 .. 200);
my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');

$t->write_config(<<"EOF", log_level => 'warn');
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
        access_log off;
        keepalive_requests 1000000;

        kcd_auth ntlm basic;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;

        location / {
            root %%TESTDIR%%;
        }
    }
EOF
$t->run;

my $c = KcdTest::Conn->new(port => port(8080));
my $s = KcdTest::Conn->new(port => port(8443), ssl => 1);

sub ntlm_once {
    my ($user) = @_;
    my $t1 = type1();
    my $r1 = $c->get('/x', headers => [Authorization => 'NTLM ' . b64($t1)]);
    my ($tok) = ($r1->header('WWW-Authenticate') // '') =~ /^NTLM (\S+)/
        or die "no Type 2\n";
    my $t3 = type3(type1 => $t1, type2 => parse_type2(unb64($tok)),
                   user => $user, domain => 'KCD', password => 'Wrong-1');
    my $req = $c->build_request({ path => '/x',
        headers => [Authorization => 'NTLM ' . b64($t3)] });
    my $t0 = time;
    $c->send($req);
    my $r = $c->read_response;
    my $dt = time - $t0;
    die "not 401\n" unless $r->{status} == 401;
    return $dt;
}

sub basic_once {
    my ($user) = @_;
    my $req = $s->build_request({ path => '/x', headers => [
        Authorization => 'Basic ' . encode_base64("$user:Wrong-1", '')] });
    my $t0 = time;
    $s->send($req);
    my $r = $s->read_response;
    my $dt = time - $t0;
    die "not 401\n" unless $r->{status} == 401;
    return $dt;
}

sub median { my @s = sort { $a <=> $b } @_; return $s[@s / 2] }

for my $what (['NTLM Type 3', \&ntlm_once], ['Basic', \&basic_once]) {
    my (@known, @unknown);
    $what->[1]->('user1') for 1 .. 50;          # warm up
    for my $i (1 .. $N) {
        push @known, $what->[1]->('user' . (1 + $i % 200));
        push @unknown, $what->[1]->("nobody$i");
    }
    my ($k, $u) = (median(@known), median(@unknown));
    printf "%-12s known %.1f us  unknown %.1f us  unknown/known %.2f  (N=%d)\n",
        $what->[0], $k * 1e6, $u * 1e6, $u / $k, $N;
}

$t->stop;
