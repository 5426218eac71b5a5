#!/usr/bin/perl

# ngx_http_kcd_winbind.c against a real Active Directory: a Samba DC in a
# network namespace and a joined member running winbindd (KcdSamba).  The
# driver t/unit/wb_test.c plays the NTLM client (computes NTLMv2 from the
# password) and calls kcd_wb_auth_ntlm / kcd_wb_auth_plain / kcd_wb_check
# through libwbclient -> member winbindd -> NETLOGON -> DC.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use Test::More;
use Time::HiRes qw(time);

use KcdSamba;

plan skip_all => 'Samba AD tests need root (network namespaces)' if $> != 0;

my $repo = "$FindBin::Bin/..";
my $dir = tempdir('kcd-samba-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0711, $dir;    # the "nobody" checks below run a binary from here

my $t0 = time;
my $ad = KcdSamba->start(dir => "$dir/ad");
unless ($ad) {
    plan skip_all => "no Samba AD: $KcdSamba::why" unless $KcdSamba::failed;
    plan tests => 1;
    fail("Samba AD fixture: $KcdSamba::why");
    exit;
}
my $startup = time - $t0;

my $wb = "$dir/wb_test";
my @cc = ('cc', qw(-Wall -Wextra -Wno-unused-parameter -Werror),
    "-I$repo", '-I/usr/include/samba-4.0', '-o', $wb,
    "$repo/t/unit/wb_test.c", "$repo/ngx_http_kcd_winbind.c",
    qw(-lwbclient -lcrypto -lpthread));
my ($rc, $out) = KcdSamba::_run(\@cc, timeout => 120);
is($rc, 0, 'wb_test builds with -Wall -Wextra -Werror') or diag $out;
chmod 0755, $wb;

# run the driver as a client of the member's winbindd
sub wb {
    my ($rc, $out) = KcdSamba::_run([$ad->wrap($wb, @_)], timeout => 60);
    $out =~ s/\s+\z//;
    return ($rc, $out);
}

my $member = $ad->member_name;

($rc, $out) = wb('check');
is($out, 'OK check', 'kcd_wb_check: winbindd and privileged pipe reachable');

($rc, $out) = wb('ntlm', 'alice', 'KCD', $ad->password('alice'));
is($rc, 0, 'alice NTLMv2: OK');
like($out, qr/^OK user=alice domain=KCD dns_domain=kcd\.test key=match$/,
    'alice: names from the DC and session key = HMAC-MD5(NTOWFv2, proof)')
    or diag $out;

($rc, $out) = wb('ntlm', 'alice', '', $ad->password('alice'), $member, 'KCD');
like($out, qr/^OK user=alice domain=KCD /, 'alice with an empty domain: OK');

($rc, $out) = wb('ntlm', 'alice', 'KCD', 'Wrong-Pass1!');
is($rc, 1, 'wrong password: DENIED');
is($out, 'DENIED NT_STATUS_WRONG_PASSWORD', 'wrong password: NT status text');

($rc, $out) = wb('ntlm', 'nosuchuser', 'KCD', 'x');
is($out, 'DENIED NT_STATUS_NO_SUCH_USER', 'unknown user: DENIED');

# The DC checks MsvAvNbComputerName against the machine account of the
# member that forwards the logon (and MsvAvNbDomainName against its
# domain): a response computed for another server is refused.
($rc, $out) = wb('ntlm', 'alice', 'KCD', $ad->password('alice'),
    'OTHERSERVER');
is($out, 'DENIED NT_STATUS_LOGON_FAILURE',
    'AV NbComputerName != member name: the DC refuses the response');

($rc, $out) = wb('ntlm', 'alice', 'KCD', $ad->password('alice'), $member,
    'OTHERDOM');
is($out, 'DENIED NT_STATUS_LOGON_FAILURE',
    'AV NbDomainName != domain: the DC refuses the response');

($rc, $out) = wb('ntlm', 'alice', 'KCD', $ad->password('alice'), lc $member);
like($out, qr/^OK /, 'AV NbComputerName compared case-insensitively');

($rc, $out) = wb('ntlm', 'bob', 'KCD', $ad->password('bob'));
like($out, qr/^OK user=bob .* key=match$/,
    'bob (sensitive, not delegable): NTLM logon still OK');

($rc, $out) = wb('plain', 'alice', 'KCD', $ad->password('alice'));
like($out, qr/^OK user=alice domain=KCD /, 'plaintext alice: OK');

($rc, $out) = wb('plain', 'alice', 'KCD', 'Wrong-Pass1!');
is($out, 'DENIED NT_STATUS_WRONG_PASSWORD', 'plaintext wrong password');

# Kerberos side of the same domain: S4U2Self + S4U2Proxy with the exported
# proxy keytab; bob is "sensitive and cannot be delegated"
{
    my @kt = ('-k', $ad->proxy_keytab);
    ($rc, $out) = $ad->run(['kinit', '-k', '-t', $ad->proxy_keytab,
        $ad->proxy_account]);
    is($rc, 0, 'kinit -k kcdproxy') or diag $out;

    ($rc, $out) = $ad->run(['kvno', '-U', 'alice', @kt, '-P',
        $ad->backend_spn]);
    is($rc, 0, 'S4U2Self + S4U2Proxy for alice to HTTP/backend') or diag $out;
    like($out, qr/HTTP\/backend\.kcd\.test\@KCD\.TEST: kvno = \d+/,
        'alice: backend ticket obtained');

    ($rc, $out) = $ad->run(['kvno', '-U', 'bob', @kt, '-P',
        $ad->backend_spn]);
    isnt($rc, 0, 'bob (sensitive): constrained delegation refused');
    like($out, qr/can't fulfill|constrained delegation failed/i,
        'bob: KDC error names the delegation');

    ($rc, $out) = $ad->run(['klist', '-k', '-e', $ad->backend_keytab]);
    like($out, qr/HTTP\/backend\.kcd\.test\@KCD\.TEST \(aes256/,
        'backend keytab holds AES keys for HTTP/backend.kcd.test');
}

# A worker without access to the privileged pipe (not in winbindd_priv)
{
    my @nobody = ('/usr/bin/setpriv', '--reuid=nobody', '--regid=nogroup',
        '--clear-groups', $wb);

    ($rc, $out) = KcdSamba::_run([$ad->wrap(@nobody, 'check')],
        timeout => 30);
    like($out, qr/^FAIL .*privileged pipe.*winbindd_priv/,
        'kcd_wb_check as nobody: tells the admin about winbindd_priv')
        or diag $out;

    ($rc, $out) = KcdSamba::_run([$ad->wrap(@nobody, 'ntlm', 'alice',
        'KCD', $ad->password('alice'))], timeout => 30);
    like($out, qr/^UNAVAILABLE /, 'NTLM as nobody: UNAVAILABLE, not DENIED')
        or diag $out;
}

# No winbindd socket at all (an empty /run/samba)
{
    mkdir "$dir/empty-run";
    ($rc, $out) = KcdSamba::_run(['/usr/bin/unshare', '-m', '--propagation',
        'private', '/bin/sh', '-c',
        'mount --bind "$1" /run/samba && shift && exec "$@"', 'x',
        "$dir/empty-run", $wb, 'check'], timeout => 30);
    like($out, qr/^FAIL winbindd does not answer .*\/run\/samba\/winbindd/,
        'kcd_wb_check without winbindd: says winbindd is not answering')
        or diag $out;

    ($rc, $out) = KcdSamba::_run(['/usr/bin/unshare', '-m', '--propagation',
        'private', '/bin/sh', '-c',
        'mount --bind "$1" /run/samba && shift && exec "$@"', 'x',
        "$dir/empty-run", $wb, 'ntlm', 'alice', 'KCD', 'x'], timeout => 30);
    # B21: the cause is winbindd, not the domain controller
    like($out, qr/^UNAVAILABLE winbindd not available \(not running, or no access to its privileged pipe\): winbind: WBC_ERR_WINBIND_NOT_AVAILABLE/,
        'NTLM without winbindd: UNAVAILABLE, "winbindd not available"');
}

# throughput: sequential validations, each checked (status and key)
($rc, $out) = wb('loop', 200, 'alice', 'KCD', $ad->password('alice'),
    $member);
like($out, qr/^OK 200 validations/, '200 sequential NTLMv2 validations')
    or diag $out;
my ($rate) = $out =~ /: (\d+)\/s/;

# the thread pool: one libwbclient context per thread, all answers right
($rc, $out) = wb('threads', 4, 50, 'alice', 'KCD', $ad->password('alice'),
    $member);
like($out, qr/^OK 200 validations in 4 threads/,
    '4 threads x 50 validations, every session key right') or diag $out;
my ($trate) = $out =~ /: (\d+)\/s/;

# DC down: prompt 503-class answer, then recovery on restart
$ad->stop_dc;
{
    my $t = time;
    ($rc, $out) = wb('ntlm', 'alice', 'KCD', $ad->password('alice'));
    my $took = time - $t;
    is($rc, 2, 'DC stopped: UNAVAILABLE') or diag $out;
    like($out, qr/^UNAVAILABLE domain controller unreachable: NT_STATUS_/,
        'DC stopped: "domain controller unreachable" and the NT status');
    cmp_ok($took, '<', 15, sprintf('DC stopped: answer in %.2f s', $took));

    ($rc, $out) = wb('plain', 'alice', 'KCD', $ad->password('alice'));
    is($rc, 2, 'DC stopped: plaintext UNAVAILABLE too') or diag $out;

    ($rc, $out) = wb('check');
    is($out, 'OK check', 'kcd_wb_check does not need the DC');
}

{
    my $t = time;
    $ad->start_dc(wait_member => 0);
    my $ok = 0;
    while (time - $t < 60) {
        ($rc, $out) = wb('ntlm', 'alice', 'KCD', $ad->password('alice'));
        if ($rc == 0) {
            $ok = 1;
            last;
        }
        select(undef, undef, undef, 0.25);
    }
    ok($ok, sprintf('DC restarted: alice OK again after %.1f s', time - $t))
        or diag $out;
}

my $tm = $ad->times;
diag(sprintf('Samba AD up in %.2f s (%s: %.2f s, DC start %.2f s, '
    . 'join %.2f s, winbindd %.2f s); %s validations/s sequential, %s/s '
    . 'with 4 threads; DC stop %.2f s',
    $startup, $ad->from_snapshot ? 'snapshot restore' : 'provision',
    $tm->{restore} // $tm->{provision}, $tm->{dc}, $tm->{join},
    $tm->{winbindd}, $rate // '?', $trate // '?', $tm->{stop_dc} // 0));

$ad->stop;

done_testing();
