#!/usr/bin/perl

# End to end against a real Active Directory (issue 4): a Samba DC in a
# network namespace, the member KCDPROXY1 running winbindd (KcdSamba), nginx
# with the module started as a libwbclient client of that member, and an
# Apache + mod_auth_gssapi backend keyed with the domain's HTTP/backend
# keytab.  Real clients (curl, python requests_ntlm) log on with domain
# passwords; the module validates them through winbind (member -> NETLOGON
# -> DC), then gets a ticket by S4U2Self + S4U2Proxy from the DC's KDC.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(time sleep);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdSPNEGO qw(:all);
use KcdSamba;
use KcdApache;

my $PY = '/usr/bin/python3';
my $CURL = '/usr/bin/curl';

plan skip_all => 'module not built' unless KcdTest->has_module;
plan skip_all => 'no curl' unless -x $CURL;
plan skip_all => 'apache: ' . KcdApache->missing if KcdApache->missing;

# bounded: a hung client or DC must not hang the suite
$SIG{ALRM} = sub { die "60-samba-e2e.t: timeout after 150 s\n" };
alarm 150;

my $T0 = time;

# One private directory for the domain, Apache and the nginx wrapper; the
# Apache children (www-data) must be able to traverse it.
my $base = tempdir('kcd-e2e-XXXXXX', TMPDIR => 1,
    CLEANUP => !$ENV{KCD_TEST_KEEP});
chmod 0711, $base;
diag("samba/apache dir kept: $base") if $ENV{KCD_TEST_KEEP};

my $ad = KcdSamba->start(dir => "$base/ad");
unless ($ad) {
    plan skip_all => "no Samba AD: $KcdSamba::why" unless $KcdSamba::failed;
    plan tests => 1;
    fail("Samba AD fixture: $KcdSamba::why");
    exit;
}
chmod 0711, "$base/ad";
my $t_ad = time - $T0;

# nginx must run in the member's mount namespace (/run/samba -> member run
# dir) so that libwbclient in the workers reaches the member's winbindd
my $wrapper = "$base/nginx-wrap";
{
    open(my $fh, '>', $wrapper) or die "$wrapper: $!";
    print $fh "#!/bin/sh\nexec " . scalar($ad->wrap(KcdTest::nginx_binary()))
        . ' "$@"' . "\n";
    close $fh;
    chmod 0755, $wrapper;
}

my $t = KcdTest->new(nginx => $wrapper);

my $be = eval { KcdApache->start(dir => $base, realm => $ad,
    port => port(9000)) };
ok($be, 'apache backend started with the Samba backend keytab')
    or BAIL_OUT("apache: $@");

my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');

my $member = $ad->member_name;
my $realm = $ad->realm;
my $krb5 = $ad->krb5_conf;
my $kt = $ad->proxy_keytab;
my $svc = $ad->proxy_account . '@' . $realm;
my $spn = $ad->backend_spn;
my $apw = $ad->password('alice');
my $bpw = $ad->password('bob');

my $loc = <<"EOF";
            kcd_auth ntlm basic;
            kcd_ntlm_winbind on;
            kcd_realm $realm;
            kcd_spn $spn;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host backend.kcd.test;
            proxy_pass http://apache;
EOF

(my $loc_neg = $loc) =~ s/kcd_auth ntlm basic;/kcd_auth negotiate ntlm;/;

$t->write_config(<<"EOF", main => "env KRB5_CONFIG=$krb5;\nthread_pool default threads=4;");
    kcd_keytab $kt;
    kcd_service_principal $svc;
    kcd_ticket_cache zone=t:1m;

    upstream apache {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_ntlm_domain KCD;
        kcd_ntlm_computer $member;

        location / {
$loc
        }

        location = /kcd-status {
            kcd_status;
        }

        location /cbt/ {
            kcd_channel_binding require;
            rewrite ^/cbt(/.*)\$ \$1 break;
$loc
        }

        # NTLM inside SPNEGO, checked by the DC (B5)
        location /spnego/ {
            kcd_channel_binding require;
            rewrite ^/spnego(/.*)\$ \$1 break;
$loc_neg
        }
    }

    # the same, announcing a computer name that is not the member's
    server {
        listen 127.0.0.1:%%PORT_8081%%;
        kcd_ntlm_domain KCD;
        kcd_ntlm_computer NOTTHEMEMBER;

        location / {
$loc
        }
    }
EOF

eval { $t->run(timeout => 10) };
ok(!$@, 'nginx started as a winbind client of the member') or do {
    diag $@;
    done_testing();
    exit;
};

my $startlog = $t->error_log;
unlike($startlog, qr/winbind pass-through will fail/,
    'start-up check: winbindd and its privileged pipe reachable')
    or diag $startlog;

my ($P80, $P81, $P443) = (port(8080), port(8081), port(8443));

# curl, each call a new client (new connection): (status, headers, body)
sub curl {
    my (@args) = @_;
    my $hf = "$base/curl.h";
    my $bf = "$base/curl.b";
    unlink $hf, $bf;
    my ($rc, $out) = KcdSamba::_run([$CURL, '-s', '-S', '--max-time', '20',
        '-D', $hf, '-o', $bf, '-w', '%{http_code}', @args], timeout => 25);
    my %r = (rc => $rc, status => ($out =~ /(\d{3})\s*\z/ ? $1 : 0),
        out => $out, body => _slurp($bf));
    # headers of the last response only
    my @blocks = split /\r?\n\r?\n/, _slurp($hf);
    my $last = $blocks[-1] // '';
    for my $l (split /\r?\n/, $last) {
        $r{lc $1} = $2 if $l =~ /^([\w-]+):\s*(.*?)\s*$/;
    }
    return \%r;
}

sub _slurp {
    open(my $fh, '<', $_[0]) or return '';
    local $/;
    return scalar <$fh>;
}

# requests the backend has logged so far
sub apache_requests {
    my @l = split /\n/, _slurp("$base/apache/access.log");
    return scalar @l;
}

# Apache writes its access log line after the response: wait until the
# count has stopped moving, so an earlier request's line is not taken for
# a later one
sub settled_requests {
    my $n = apache_requests();
    for (1 .. 20) {
        select undef, undef, undef, 0.15;
        my $m = apache_requests();
        return $m if $m == $n;
        $n = $m;
    }
    return $n;
}

# a counter of kcd_status
sub counter {
    my ($name) = @_;
    my $c = KcdTest::Conn->new(port => port(8080));
    my $body = $c->get('/kcd-status')->{body} // '';
    return $body =~ /^\Q$name\E\s+(\d+)/m ? $1 : undef;
}

my $mark;
my $r;

###########################################################################
# alice: NTLM through winbind, then S4U to the Kerberos backend

$mark = $t->log_mark;
$r = curl('--ntlm', '-u', "KCD\\alice:$apw", "http://127.0.0.1:$P80/echo");
is($r->{status}, 200, 'curl --ntlm KCD\\alice: 200') or diag explain $r;
is($r->{'x-remote-user'}, "alice\@$realm",
    'Apache (mod_auth_gssapi) saw REMOTE_USER=alice@KCD.TEST');
like($r->{body}, qr/^user=alice\@KCD\.TEST method=GET /,
    'backend CGI ran as alice');

# a second logon: the ticket comes from the cache, a fresh token upstream
$r = curl('--ntlm', '-u', "KCD\\alice:$apw", "http://127.0.0.1:$P80/echo");
is($r->{status}, 200, 'alice again (ticket cache, new token): 200');
is($r->{'x-remote-user'}, "alice\@$realm", '... backend saw alice again');

###########################################################################
# bob: valid password, but "sensitive and cannot be delegated"

$mark = $t->log_mark;
my $fwd = settled_requests();
$r = curl('--ntlm', '-u', "KCD\\bob:$bpw", "http://127.0.0.1:$P80/echo");
is($r->{status}, 502, 'bob (sensitive): 502') or diag explain $r;
is(settled_requests(), $fwd, '... nothing forwarded to the backend');
my $line = $t->wait_for_log(qr/KDC refused delegation.*bob/, 3, undef,
    $mark);
ok($line, 'error log: KDC refused delegation of bob')
    or diag $t->error_log(since => $mark);
like($line // '', qr/"bob\@KCD\.TEST".*"HTTP\/backend\.kcd\.test"/,
    '... names the principal and the SPN');

###########################################################################
# wrong password: the DC's NT status in the log

$mark = $t->log_mark;
$r = curl('--ntlm', '-u', "KCD\\alice:Wrong-Pass1!",
    "http://127.0.0.1:$P80/echo");
is($r->{status}, 401, 'wrong password: 401');
$line = $t->wait_for_log(qr/\[info\].*NTLM logon failed.*"alice"/, 3,
    undef, $mark);
like($line // '', qr/domain "KCD".*NT_STATUS_WRONG_PASSWORD/,
    'info log: user, domain and NT_STATUS_WRONG_PASSWORD from the DC')
    or diag $t->error_log(since => $mark);

###########################################################################
# Basic over TLS: plaintext logon through winbind

$r = curl('-k', '--basic', '-u', "KCD\\alice:$apw",
    "https://127.0.0.1:$P443/echo");
is($r->{status}, 200, 'Basic over TLS (winbind plaintext logon): 200')
    or diag explain $r;
is($r->{'x-remote-user'}, "alice\@$realm", '... backend saw alice');

$r = curl('--basic', '-u', "KCD\\alice:$apw", "http://127.0.0.1:$P80/echo");
is($r->{status}, 401, 'Basic without TLS: refused (401), even with the '
    . 'right password');

$mark = $t->log_mark;
$r = curl('-k', '--basic', '-u', "KCD\\alice:Wrong-Pass1!",
    "https://127.0.0.1:$P443/echo");
is($r->{status}, 401, 'Basic with a wrong password: 401');
like($t->wait_for_log(qr/Basic logon failed.*"alice"/, 3, undef, $mark) // '',
    qr/NT_STATUS_WRONG_PASSWORD/, '... log: NT status from the DC');

###########################################################################
# kcd_ntlm_computer that is not the member's account: the DC refuses

$mark = $t->log_mark;
$r = curl('--ntlm', '-u', "KCD\\alice:$apw", "http://127.0.0.1:$P81/echo");
is($r->{status}, 401,
    'kcd_ntlm_computer != member account name: 401 (correct password)');
$line = $t->wait_for_log(qr/NTLM logon failed.*"alice"/, 3, undef, $mark);
like($line // '', qr/: NT_STATUS_LOGON_FAILURE\b/,
    '... the log shows the DC\'s NT status (NT_STATUS_LOGON_FAILURE)')
    or diag $t->error_log(since => $mark);
diag("wrong computer name: " . ($line // '(no line)'));

###########################################################################
# python requests_ntlm over HTTPS, channel binding required: MIC and
# bindings checked with the session key the DC returned

SKIP: {
    skip 'no python3-requests-ntlm', 3
        if system("$PY -c 'import requests_ntlm' 2>/dev/null") != 0;

    my $ossl = "$base/openssl-legacy.cnf";
    $t->openssl_legacy_conf($ossl);

    my $py = <<'EOF';
import sys, warnings
warnings.filterwarnings("ignore")
import requests
from requests_ntlm import HttpNtlmAuth
url, user, pw = sys.argv[1:4]
r = requests.get(url, auth=HttpNtlmAuth(user, pw), verify=False, timeout=20)
print(r.status_code, r.headers.get("X-Remote-User", ""), r.text.strip())
EOF
    my @env = (OPENSSL_CONF => $ossl);
    my $run = sub {
        my ($url, $user, $pw) = @_;
        my ($rc, $out) = KcdSamba::_run([$PY, '-c', $py, $url, $user, $pw],
            timeout => 30, env => { @env });
        $out =~ s/\s+\z//;
        return $out;
    };

    my $out = $run->("https://127.0.0.1:$P443/cbt/echo", "KCD\\alice", $apw);
    like($out, qr/^200 alice\@KCD\.TEST user=alice\@KCD\.TEST /m,
        'requests_ntlm over TLS, kcd_channel_binding require: 200 as alice')
        or diag $out;

    $mark = $t->log_mark;
    $out = $run->("https://127.0.0.1:$P443/cbt/echo", "KCD\\alice",
        'Wrong-Pass1!');
    like($out, qr/^401 /m, 'requests_ntlm wrong password: 401') or diag $out;

    # curl sends no channel bindings: refused where they are required
    $mark = $t->log_mark;
    $r = curl('-k', '--ntlm', '-u', "KCD\\alice:$apw",
        "https://127.0.0.1:$P443/cbt/echo");
    is($r->{status}, 401,
        'curl (no channel bindings) where they are required: 401');
}

###########################################################################
# The MIC is checked with the session key the DC returned: our own client
# (KcdNTLM) over TLS with correct bindings, then with a broken MIC (the DC
# accepts the NT response, only the module's MIC check with the DC's key
# can refuse it) and with bindings of another certificate (refused before
# the DC is asked).

{
    my $tls = sub { KcdTest::Conn->new(port => $P443, ssl => 1) };
    my %who = (user => 'alice', domain => 'KCD', password => $apw,
        workstation => 'KCDCLIENT');

    my ($r1, $r2) = ntlm_login($tls->(), '/cbt/echo', %who);
    is($r2 && $r2->{status}, 200,
        'KcdNTLM over TLS: MIC + bindings, checked with the DC key: 200');
    is($r2 && $r2->header('X-Remote-User'), "alice\@$realm",
        '... backend saw alice');

    $mark = $t->log_mark;
    ($r1, $r2) = ntlm_login($tls->(), '/cbt/echo', %who, corrupt_mic => 1);
    is($r2 && $r2->{status}, 401, 'corrupted MIC (DC accepts the proof): 401');
    ok($t->wait_for_log(qr/NTLM logon failed.*"alice".*MIC invalid/, 3,
        undef, $mark), '... log: MIC invalid')
        or diag $t->error_log(since => $mark);

    # NTLM inside SPNEGO (Windows shape): mechListMIC with the DC's key
    my $info;
    ($r1, $r2, $info) = spnego_ntlm_login($tls->(), '/spnego/echo', %who);
    is($r2 && $r2->{status}, 200,
        'SPNEGO NTLM via winbind, mechListMIC with the DC key: 200');
    is($r2 && $r2->header('X-Remote-User'), "alice\@$realm",
        '... delegated: backend saw alice');
    is(unpack('H*', ($info->{final} && $info->{final}{mic}) // ''),
        unpack('H*', $info->{expected_server_mic}),
        '... final negTokenResp carries the server mechListMIC');

    $mark = $t->log_mark;
    ($r1, $r2) = spnego_ntlm_login($tls->(), '/spnego/echo', %who,
        mic => 'bad');
    is($r2 && $r2->{status}, 401, 'SPNEGO via winbind, wrong mechListMIC: 401');
    ok($t->wait_for_log(qr/NTLM logon failed.*mechListMIC invalid/, 3,
        undef, $mark), '... log: mechListMIC invalid')
        or diag $t->error_log(since => $mark);

    # a UPN: the DC decides (B5 Names)
    ($r1, $r2) = ntlm_login($tls->(), '/cbt/echo', %who,
        user => 'alice@' . lc($realm), domain => '');
    is($r2 && $r2->{status}, 200, 'UPN alice@' . lc($realm)
        . ' via winbind: 200');
    is($r2 && $r2->header('X-Remote-User'), "alice\@$realm",
        '... delegated as alice@' . $realm);

    $mark = $t->log_mark;
    ($r1, $r2) = ntlm_login($tls->(), '/cbt/echo', %who,
        cb => "\x5a" x 16);
    is($r2 && $r2->{status}, 401, 'bindings of another certificate: 401');
    ok($t->wait_for_log(qr/NTLM logon failed.*"alice".*channel binding/, 3,
        undef, $mark), '... log: channel binding')
        or diag $t->error_log(since => $mark);
}

like(counter('kcd_winbind_total{result="ok"}') // 0, qr/^[1-9]/,
    'kcd_status: winbind validations counted (ok)');
like(counter('kcd_winbind_total{result="failed"}') // 0, qr/^[1-9]/,
    'kcd_status: winbind refusals counted (failed)');

###########################################################################
# the DC goes away: 503 with the reason, then recovery without a reload

my $workers = join ',', $t->worker_pids;

$ad->stop_dc;
$mark = $t->log_mark;
my $td = time;
$r = curl('--ntlm', '-u', "KCD\\alice:$apw", "http://127.0.0.1:$P80/echo");
my $took = time - $td;
is($r->{status}, 503, 'DC stopped: new NTLM logon gets 503')
    or diag explain $r;
cmp_ok($took, '<', 15, sprintf('... answered in %.2f s', $took));
# the member's winbindd answers, the DC behind it does not (B21: this is
# "domain controller unreachable"; winbindd down is t/20's case)
$line = $t->wait_for_log(qr/domain controller unreachable/, 3, undef, $mark);
like($line // '', qr/\[error\].*"alice".*cannot be checked: domain controller unreachable: NT_STATUS_/,
    'error log: domain controller unreachable, the NT status, names the user')
    or diag $t->error_log(since => $mark);
diag("DC down: " . ($line // '(no line)'));

$td = time;
$ad->start_dc;
my $t_restart = time - $td;
my $ok = 0;
$td = time;
while (time - $td < 30) {
    $r = curl('--ntlm', '-u', "KCD\\alice:$apw",
        "http://127.0.0.1:$P80/echo");
    if ($r->{status} == 200) {
        $ok = 1;
        last;
    }
    sleep 0.5;
}
ok($ok, sprintf('DC back (member online after %.1f s): 200 again after '
    . '%.1f s', $t_restart, time - $td)) or diag explain $r;
is($r->{'x-remote-user'}, "alice\@$realm", '... backend saw alice');
is(join(',', $t->worker_pids), $workers, '... same workers, no reload');

###########################################################################

my $errors = $t->error_log;
unlike($errors, qr/\[(?:alert|emerg|crit)\]|exited on signal/,
    'no alert/crit/emerg, no crashed worker in the error log');

diag(sprintf('Samba AD up in %.1f s (%s); whole test %.1f s', $t_ad,
    $ad->from_snapshot ? 'snapshot' : 'provisioned', time - $T0));

$t->stop;

###########################################################################
# Workers that cannot open winbindd's privileged pipe (not root, not in
# winbindd_priv): a clear error at start-up, naming the fix.

{
    my $t2 = KcdTest->new(nginx => $wrapper);
    $t2->write_config(<<"EOF", user => 'nobody nogroup');
    server {
        listen 127.0.0.1:%%PORT_8090%%;
        kcd_ntlm_domain KCD;
        kcd_ntlm_computer $member;
        location / { kcd_auth ntlm; kcd_ntlm_winbind on; }
    }
EOF
    eval { $t2->run(timeout => 10) };
    ok(!$@, 'nginx with unprivileged workers started') or diag $@;
    my $l = $t2->wait_for_log(qr/winbind pass-through will fail/, 5);
    ok($l, 'start-up: error line when the privileged pipe cannot be opened')
        or diag $t2->error_log;
    like($l // '', qr/\[emerg\].*winbindd_priv/,
         '... at emerg level, telling to add the worker user to winbindd_priv');
    $t2->stop;
}

$be->stop;
$ad->stop;

done_testing();
