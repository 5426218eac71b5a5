#!/usr/bin/perl

# Kerberos layer (ngx_http_kcd_gss.c) against a real MIT realm with
# constrained delegation (t/lib/KcdRealm.pm) and a Kerberos-protected
# Apache backend (t/lib/KcdApache.pm).  First the fixture is proved with
# MIT's own tools, then the C code through t/unit/gss_test.c.

use strict;
use warnings;

use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use IPC::Open2;
use Time::HiRes qw(time);

use KcdRealm;
use KcdApache;
use KcdRelay;

my $ROOT = "$FindBin::Bin/..";
my $PY = '/usr/bin/python3';

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;
plan skip_all => 'no curl' unless -x '/usr/bin/curl';
plan skip_all => 'no python3-gssapi'
    if system("$PY -c 'import gssapi' 2>/dev/null") != 0;

# Bounded: nothing here may hang the suite.
$SIG{ALRM} = sub { die "10-gss.t: timeout\n" };
alarm 180;

my $dir = tempdir('kcd-gss-XXXXXX', TMPDIR => 1, CLEANUP => 1);

my $t0 = time;
my $realm = KcdRealm->start(dir => $dir);
ok($realm, 'realm started');
my $startup = time - $t0;
# a time, not a test: the machine may be loaded (speed lives in bench/)
diag(sprintf('realm up in %.3f s', $startup));

my $be = KcdApache->start(dir => $dir, realm => $realm);
ok($be, 'apache backend started');

my %env = %{$realm->env};
for (keys %env) {
    if (defined $env{$_}) { $ENV{$_} = $env{$_} } else { delete $ENV{$_} }
}

my $kt = $realm->keytab('proxy');
our $proxy = $realm->proxy_principal;
my $realm_name = $realm->realm;

###############################################################################
# The fixture, checked with MIT tools.

my ($rc, $out) = $realm->run('kinit', '-k', '-t', $kt, 'HTTP/proxy.kcd.test');
is($rc, 0, 'kinit -k proxy keytab') or diag $out;

($rc, $out) = $realm->run('kvno', '-U', 'alice', '-k', $kt, '-P',
    'HTTP/backend.kcd.test');
is($rc, 0, 'kvno S4U2Self+S4U2Proxy alice -> backend') or diag $out;

($rc, $out) = $realm->run('kvno', '-U', 'alice', '-k', $kt, '-P',
    'HTTP/notallowed.kcd.test');
isnt($rc, 0, 'kvno to a SPN outside the ACL fails');
like($out, qr/can't fulfill requested option/, '... KDC says why');

my $mark = $realm->log_mark;
($rc, $out) = $realm->run('kvno', '-U', 'bob', '-k', $kt, '-P',
    'HTTP/backend.kcd.test');
isnt($rc, 0, 'kvno for sensitive bob fails');
is($realm->count_requests(since => $mark,
    match => qr/EVIDENCE_TKT_NOT_FORWARDABLE/), 1,
    '... because his S4U2Self ticket is not forwardable');

ok($realm->kinit('alice', 'Alice-Pass1', "FILE:$dir/alice.cc"),
    'kinit alice');
ok(!$realm->kinit('alice', 'wrong', "FILE:$dir/wrong.cc"),
    'kinit alice with a wrong password fails');

my %h = curl({ KRB5CCNAME => "FILE:$dir/alice.cc" }, '--negotiate', '-u',
    ':', $be->url('/echo'));
is($h{status}, 200, 'curl --negotiate as alice: 200');
is($h{'x-remote-user'}, "alice\@$realm_name", '... X-Remote-User alice');
like($h{body}, qr/^user=alice\@KCD\.TEST method=GET len=0 /,
    '... CGI sees alice');

%h = curl({}, $be->url('/echo'));
is($h{status}, 401, 'no credentials: 401');

###############################################################################
# ngx_http_kcd_gss.c through the driver.

my $bin = "$dir/gss_test";
my @cc = ('cc', '-Wall', '-Wextra', '-Wno-unused-parameter', '-Werror',
    '-O2', split(' ', $ENV{KCD_GSS_CFLAGS} // ''),     # e.g. sanitizers
    "-I$ROOT", '-o', $bin, "$ROOT/t/unit/gss_test.c",
    "$ROOT/ngx_http_kcd_gss.c", "$ROOT/ngx_http_kcd_spnego.c",
    '-lgssapi_krb5', '-lkrb5', '-lk5crypto', '-lcom_err', '-lcrypto',
    '-lpthread');
is(system(@cc), 0, 'gss_test builds with -Wall -Wextra -Werror')
    or BAIL_OUT('gss_test does not build');

# One driver process = one kcd_gss_t for the whole test: recovery after a
# KDC outage must work without re-init.
my $drv = open2(my $from, my $to, $bin, $kt, $proxy, '-');

sub cmd {
    my ($line) = @_;
    print $to "$line\n";
    $to->flush;
    my $r = <$from> // 'EOF err=driver died';
    chomp $r;
    my ($code, $rest) = $r =~ /^(\S+)\s*(.*)$/;
    my ($kv, $err) = $rest =~ /^(.*?)\s*err=(.*)$/ ? ($1, $2) : ($rest, '');
    my %r = (rc => $code, err => $err, line => $r);
    $r{$1} = $2 while $kv =~ /(\w+)=(\S*)/g;
    return \%r;
}

sub kdc {
    my ($m, %a) = @_;
    return $realm->count_requests(since => $m, %a);
}

my $r = cmd('check');
is($r->{rc}, 'OK', 'keytab_load: proxy keytab holds the principal')
    or diag $r->{line};

$out = `$bin $kt HTTP/nokey.kcd.test\@KCD.TEST check`;
like($out, qr/^ERROR .*holds no key for "HTTP\/nokey/,
    'keytab_load: principal not in keytab');
$out = `$bin $dir/nonexistent.keytab $proxy check`;
like($out, qr/^ERROR .*nonexistent.keytab" cannot be opened: No such file/,
     'keytab_load: missing keytab, with the OS error');

# delegate: one AS (proxy TGT, once), S4U2Self + S4U2Proxy per call

$mark = $realm->log_mark;
$r = cmd("delegate alice HTTP/backend.kcd.test $dir/alice.cred");
is($r->{rc}, 'OK', 'delegate alice -> HTTP/backend.kcd.test')
    or diag $r->{line};
cmp_ok($r->{lifetime}, '>', 3600,
    "... endtime in the future ($r->{lifetime} s)");
is(kdc($mark, type => 'AS_REQ'), 1, '... 1 AS request (proxy TGT)');
is(kdc($mark, type => 'TGS_REQ'), 2, '... 2 TGS requests');
is(kdc($mark, type => 'TGS_REQ',
    match => qr/ISSUE.* for HTTP\/proxy\.kcd\.test\@/), 1, '... S4U2Self');
is(kdc($mark, type => 'TGS_REQ',
    match => qr/ISSUE.* for HTTP\/backend\.kcd\.test\@/), 1, '... S4U2Proxy');

$mark = $realm->log_mark;
$r = cmd("delegate alice HTTP/backend.kcd.test $dir/alice2.cred");
is($r->{rc}, 'OK', 'second delegate');
is(kdc($mark, type => 'AS_REQ'), 0, '... proxy TGT reused: no AS');
is(kdc($mark, type => 'TGS_REQ'), 2, '... 2 TGS requests');
note("delegate took $r->{us} us");

# the exported credential holds the service ticket only (MIT exports
# MEMORY: ccaches as JSON with base64 tickets: look inside those too)

my $inspect = 'import sys, re, base64; d = open(sys.argv[1], "rb").read(); '
    . 'b = d + b"".join(base64.b64decode(x) for x in '
    . 're.findall(rb"\\"([A-Za-z0-9+/]{40,}=*)\\"", d)); '
    . 'print(int(b"krbtgt" in b), int(b"proxy.kcd.test" in b), '
    . 'int(b"backend.kcd.test" in b))';
$out = run_out($PY, '-c', $inspect, "$dir/alice.cred");
is($out, "0 0 1\n", 'exported credential: the backend ticket, neither the '
    . 'proxy TGT nor the S4U2Self evidence');

# token: from the exported credential, no KDC

$mark = $realm->log_mark;
$r = cmd("token $dir/alice.cred HTTP/backend.kcd.test 500");
is($r->{rc}, 'OK', 'token from the exported credential') or diag $r->{line};
is(kdc($mark), 0, '... 500 tokens, 0 KDC requests');
SKIP: {
    skip "timing with KCD_GSS_CFLAGS=$ENV{KCD_GSS_CFLAGS}", 1
        if $ENV{KCD_GSS_CFLAGS};
    cmp_ok($r->{us}, '<', 2000, "... $r->{us} us per token");
}
my $token = $r->{token};
my $tok_us = $r->{us};

%h = curl({}, '-H', "Authorization: Negotiate $token", $be->url('/echo'));
is($h{status}, 200, 'backend accepts the token');
is($h{'x-remote-user'}, "alice\@$realm_name",
    '... X-Remote-User alice@KCD.TEST');
like($h{body}, qr/^user=alice\@KCD\.TEST method=GET/, '... CGI sees alice');

%h = curl({}, '-H', "Authorization: Negotiate $token", $be->url('/echo'));
is($h{status}, 401, 'the same token again: 401 (replay)');

$r = cmd("token $dir/alice.cred HTTP/backend.kcd.test");
%h = curl({}, '-H', "Authorization: Negotiate $r->{token}", '--data-binary',
    'hello world', $be->url('/echo'));
like($h{body}, qr/^user=alice\@KCD\.TEST method=POST len=11 /,
    'fresh token, POST with a body');

$mark = $realm->log_mark;
# the module's event-loop path: the AP-REQ built on a long-lived context
$mark = $realm->log_mark;
$r = cmd("fasttoken $dir/alice.cred HTTP/backend.kcd.test 2000");
is($r->{rc}, 'OK', 'fast token from the exported credential') or diag $r->{line};
is(kdc($mark), 0, '... 2000 fast tokens, 0 KDC requests');
diag("fast token: $r->{us} us (thread-pool path above: $tok_us us)");
%h = curl({}, '-H', "Authorization: Negotiate $r->{token}", $be->url('/echo'));
is($h{status}, 200, 'backend accepts the fast token');
like($h{body}, qr/^user=alice\@KCD\.TEST /, '... as alice');
%h = curl({}, '-H', "Authorization: Negotiate $r->{token}", $be->url('/echo'));
is($h{status}, 401, 'the same fast token again: 401 (replay)');
$r = cmd("fasttoken $dir/alice.cred HTTP/notallowed.kcd.test");
isnt($r->{rc}, 'OK', 'fast token for a SPN the credential has no ticket for');

$r = cmd("token $dir/alice.cred HTTP/notallowed.kcd.test");
isnt($r->{rc}, 'OK', 'token for a SPN the credential has no ticket for');
is(kdc($mark), 0, '... and no KDC request for it');

# refusals

$r = cmd('delegate alice HTTP/notallowed.kcd.test');
is($r->{rc}, 'REFUSED', 'SPN outside the ACL: REFUSED');
like($r->{err}, qr/S4U2Proxy for alice to HTTP\/notallowed\.kcd\.test/,
    '... message names user and SPN');
like($r->{err}, qr/not allowed to delegate.*can't fulfill requested option/,
    '... and the reason') or diag $r->{err};

$mark = $realm->log_mark;
$r = cmd('delegate bob HTTP/backend.kcd.test');
is($r->{rc}, 'REFUSED', 'sensitive user bob: REFUSED');
like($r->{err}, qr/bob.*sensitive/, '... message says why') or diag $r->{err};
is(kdc($mark, match => qr/EVIDENCE_TKT_NOT_FORWARDABLE/), 1,
    '... KDC refused the non-forwardable evidence');

$r = cmd('delegate nobody HTTP/backend.kcd.test');
is($r->{rc}, 'REFUSED', 'unknown user: REFUSED');
like($r->{err}, qr/S4U2Self for nobody.*unknown user/, '... message')
    or diag $r->{err};

$r = cmd('delegate carol HTTP/backend.kcd.test');
is($r->{rc}, 'OK', 'carol delegates fine after refusals');

# KDC down and back, same kcd_gss_t

$realm->stop_kdc;

$r = cmd('delegate alice HTTP/backend.kcd.test');
is($r->{rc}, 'UNAVAILABLE', 'KDC down: UNAVAILABLE');
like($r->{err}, qr/KDC unreachable.*Cannot contact any KDC/, '... message')
    or diag $r->{err};

$r = cmd('password alice Alice-Pass1');
is($r->{rc}, 'UNAVAILABLE', 'password with KDC down: UNAVAILABLE');

$r = cmd("token $dir/alice2.cred HTTP/backend.kcd.test");
is($r->{rc}, 'OK', 'cached credential still makes tokens with KDC down');

$realm->start_kdc;

$r = cmd('delegate alice HTTP/backend.kcd.test');
is($r->{rc}, 'OK', 'KDC back: delegate OK without re-init')
    or diag $r->{line};

# password (Basic)

$mark = $realm->log_mark;
$r = cmd('password alice Alice-Pass1');
is($r->{rc}, 'OK', 'password: right');
is($r->{principal}, "alice\@$realm_name", '... principal');
is(kdc($mark, type => 'TGS_REQ', match => qr/alice\@KCD\.TEST for HTTP\/proxy/),
    1, '... verified with a ticket to the proxy itself');

$r = cmd('password alice Wrong-Pass');
is($r->{rc}, 'DENIED', 'password: wrong -> DENIED');
like($r->{err}, qr/wrong password/, '... message');

$r = cmd('password nobody Whatever1');
is($r->{rc}, 'DENIED', 'password: unknown user -> DENIED');

$r = cmd('password HTTP/backend.kcd.test x');
is($r->{rc}, 'DENIED', 'password: service principal names refused');

# accept a client's Negotiate token, then S4U2Proxy with its ticket

sub client_token {
    my ($ccache, $file) = @_;
    my $py = 'import gssapi, sys; '
        . 'n = gssapi.Name(sys.argv[1], gssapi.NameType.kerberos_principal); '
        . 'c = gssapi.SecurityContext(name=n, usage="initiate", '
        . 'mech=gssapi.OID.from_int_seq("1.3.6.1.5.5.2")); '
        . 'open(sys.argv[2], "wb").write(c.step())';
    local $ENV{KRB5CCNAME} = $ccache;
    return system($PY, '-c', $py, $proxy, $file) == 0;
}

ok(client_token("FILE:$dir/alice.cc", "$dir/alice.tok"),
    'python3-gssapi: alice SPNEGO token for the proxy');

$r = cmd("accept $dir/alice.tok $dir/alice.ev");
is($r->{rc}, 'OK', 'accept alice token') or diag $r->{line};
is($r->{principal}, "alice\@$realm_name", '... principal alice@KCD.TEST');
cmp_ok($r->{evidence}, '>', 0, '... with evidence (forwardable ticket)');

$r = cmd("accept $dir/alice.tok");
is($r->{rc}, 'DENIED', 'the same token again: DENIED (replay cache)');

$mark = $realm->log_mark;
$r = cmd("delegate_ev $dir/alice.ev alice HTTP/backend.kcd.test $dir/ev.cred");
is($r->{rc}, 'OK', 'S4U2Proxy with the client ticket') or diag $r->{line};
is(kdc($mark, type => 'TGS_REQ'), 1, '... one TGS request (no S4U2Self)');
is(kdc($mark, match => qr/for HTTP\/backend\.kcd\.test\@/), 1,
    '... for the backend');

$r = cmd("token $dir/ev.cred HTTP/backend.kcd.test");
%h = curl({}, '-H', "Authorization: Negotiate $r->{token}", $be->url('/'));
is($h{'x-remote-user'}, "alice\@$realm_name",
    'backend sees alice through the client ticket path');

$r = cmd("delegate_ev $dir/alice.ev alice HTTP/notallowed.kcd.test");
is($r->{rc}, 'REFUSED', 'S4U2Proxy with evidence to a SPN outside the ACL');

ok($realm->kinit('bob', 'Bob-Pass1', "FILE:$dir/bob.cc"), 'kinit bob');
ok(client_token("FILE:$dir/bob.cc", "$dir/bob.tok"), 'bob token');
$r = cmd("accept $dir/bob.tok");
is($r->{rc}, 'OK', 'accept bob');
is($r->{evidence}, 0, '... no evidence: his ticket is not forwardable');

$r = cmd("delegate_ev $dir/alice.ev carol HTTP/backend.kcd.test");
is($r->{rc}, 'ERROR', "alice's ticket cannot be used as carol's");
like($r->{err}, qr/not for carol/, '... message');

# a keytab with more names (as AD account keytabs have): a ticket for
# another of them is accepted too, without evidence

($rc, $out) = $realm->kadmin(
    "ktadd -k $dir/multi.keytab -norandkey HTTP/proxy.kcd.test",
    "ktadd -k $dir/multi.keytab -norandkey HTTP/notallowed.kcd.test");
is($rc, 0, 'keytab with two principals');
{
    local $proxy = 'HTTP/notallowed.kcd.test@KCD.TEST';
    ok(client_token("FILE:$dir/alice.cc", "$dir/other.tok"),
        'alice token for HTTP/notallowed');
}
$out = `$bin $dir/multi.keytab $proxy accept $dir/other.tok`;
like($out, qr/^OK principal=alice\@KCD\.TEST evidence=0 /,
    'ticket for another keytab principal accepted, without evidence');
$out = `$bin $kt $proxy accept $dir/other.tok`;
like($out, qr/^DENIED /, '... but not with a keytab lacking its key');

open my $fh, '>', "$dir/junk.tok" or die;
print $fh "\x60\x10not a real token at all";
close $fh;
$r = cmd("accept $dir/junk.tok");
is($r->{rc}, 'DENIED', 'garbage token: DENIED');

# concurrency on one kcd_gss_t

$r = cmd('threads alice HTTP/backend.kcd.test 4 25');
is($r->{rc}, 'OK', '4 threads x 25 delegate+token on one kcd_gss_t')
    or diag $r->{line};

$r = cmd('bench alice HTTP/backend.kcd.test 100');
is($r->{ok}, 100, '100 sequential delegations');
SKIP: {
    skip "timing with KCD_GSS_CFLAGS=$ENV{KCD_GSS_CFLAGS}", 1
        if $ENV{KCD_GSS_CFLAGS};
    cmp_ok($r->{us}, '<', 50000, "... $r->{us} us each");
}

close $to;
waitpid($drv, 0);
is($? >> 8, 0, 'driver exits cleanly');

# a fresh process: 4 threads race for the proxy TGT, one AS request

$mark = $realm->log_mark;
$out = `$bin $kt $proxy threads alice HTTP/backend.kcd.test 4 5`;
like($out, qr/^OK ok=20 /, 'fresh kcd_gss_t, 4 threads at once');
is(kdc($mark, type => 'AS_REQ'), 1, '... one AS request for all of them');
is(kdc($mark, type => 'TGS_REQ'), 40, '... 2 TGS per delegation');

# accepting needs no KDC: fresh process (no proxy TGT yet), KDC down

ok(client_token("FILE:$dir/alice.cc", "$dir/alice2.tok"), 'new alice token');
$realm->stop_kdc;
$out = `$bin $kt $proxy accept $dir/alice2.tok`;
like($out, qr/^OK principal=alice\@KCD\.TEST evidence=0 /,
    'accept with the KDC down: OK, without evidence');
$realm->start_kdc;

# the proxy TGT expires: refreshed from the keytab, also after an outage

($rc, $out) = $realm->kadmin('modprinc -maxlife "3 seconds" '
    . 'HTTP/proxy.kcd.test');
like($out, qr/modified/, 'proxy tickets now live 3 s');

$drv = open2($from, $to, $bin, $kt, $proxy, '-');
$r = cmd('delegate alice HTTP/backend.kcd.test');
is($r->{rc}, 'OK', 'short-lived proxy TGT: delegate');
cmp_ok($r->{lifetime}, '<=', 3, "... ticket ends with it ($r->{lifetime} s)");

$realm->stop_kdc;
select(undef, undef, undef, 3.3);
$r = cmd('delegate alice HTTP/backend.kcd.test');
is($r->{rc}, 'UNAVAILABLE', 'TGT expired and KDC down: UNAVAILABLE');

$realm->start_kdc;
$mark = $realm->log_mark;
$r = cmd('delegate alice HTTP/backend.kcd.test');
is($r->{rc}, 'OK', 'KDC back: delegate OK') or diag $r->{line};
# (only the proxy's: MIT's gss_acquire_cred also tries a useless AS for the
# user when a ccache's only ticket ends within 30 s, as these 3 s ones do)
is(kdc($mark, type => 'AS_REQ',
    match => qr/ HTTP\/proxy\.kcd\.test\@\S+ for krbtgt/), 1,
    '... with a new proxy TGT')
    or diag $realm->kdc_requests(since => $mark);

close $to;
waitpid($drv, 0);
$realm->kadmin('modprinc -maxlife "10 hours" HTTP/proxy.kcd.test');

# a slow KDC, through the relay

my $relay = KcdRelay->start(dir => $dir, to_port => $realm->kdc_port);
$realm->set_kdc_address('127.0.0.1', $relay->port);
$relay->set_delay(0.3);

$t0 = time;
$out = `$bin $kt $proxy delegate alice HTTP/backend.kcd.test`;
my $took = time - $t0;
like($out, qr/^OK /, 'delegate through a slow relay: OK');
is($relay->connections, 3, '... AS + 2 TGS, each over TCP via the relay');
cmp_ok($took, '>=', 0.9, sprintf('... and slowed down (%.2f s)', $took));

$relay->set_delay(0);
$relay->stop;
$realm->reset_kdc_address;

$be->stop;
$realm->stop;

done_testing();

###############################################################################

sub run_out {
    open my $p, '-|', @_ or die "$_[0]: $!";
    local $/;
    my $o = <$p> // '';
    close $p;
    return $o;
}

sub curl {
    my ($env, @args) = @_;
    local %ENV = (%ENV, %$env);

    my @cmd = ('curl', '-s', '-i', '--max-time', '10', $be->curl_resolve,
        @args);
    open my $p, '-|', @cmd or die "curl: $!";
    local $/;
    my $resp = <$p> // '';
    close $p;

    # with --negotiate curl shows the 401 first: keep the last response
    my @parts = split /(?=^HTTP\/1\.1 \d+)/m, $resp;
    my $last = $parts[-1] // '';
    my ($head, $body) = split /\r?\n\r?\n/, $last, 2;
    my %h = (body => $body // '');
    ($h{status}) = $head =~ /^HTTP\/\S+ (\d+)/;
    $h{status} //= 0;
    for (split /\r?\n/, $head) {
        $h{lc $1} = $2 if /^([\w-]+):\s*(.*?)\s*$/;
    }
    return %h;
}
