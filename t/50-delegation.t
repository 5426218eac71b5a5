#!/usr/bin/perl

# Delegation end to end (B5, B7, B8): real clients (curl --ntlm, curl
# --basic over TLS, curl --negotiate, python requests_ntlm) through nginx
# to a Kerberos-only Apache (mod_auth_gssapi) that reports who it saw;
# a fresh upstream token for every request; the client's own Authorization
# never forwarded; KDC refusals give 502, an unreachable KDC 503, and
# nothing is forwarded without a ticket.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;
use KcdRealm;
use KcdApache;

my $PY = '/usr/bin/python3';
my $CURL = '/usr/bin/curl';

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;
plan skip_all => "no $CURL" unless -x $CURL;

my $have_py = system("$PY -c 'import requests_ntlm' 2>/dev/null") == 0;

# Bounded: nothing here may hang the suite.
$SIG{ALRM} = sub { die "50-delegation.t: timeout\n" };
# a connection nginx closed shows up as a failed test, not a silent death
$SIG{PIPE} = "IGNORE";
alarm 240;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $be = KcdApache->start(dir => $dir, realm => $realm);
my $rec = KcdBackend->start(port => port(9000), dir => $dir, name => 'rec');

my %PW = (%KcdRealm::PASSWORDS, mallory => 'Mallory-Pass1');

$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));

my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');

# OpenSSL 3 keeps MD4 in the legacy provider; python's ntlm_auth needs it
# (client side only: nginx has its own MD4).
$t->openssl_legacy_conf;

my $krb5_conf = $realm->krb5_conf;
my $rcache = $realm->dir . '/rcache';
my $keytab = $realm->keytab('proxy');
my $aport = $be->port;

$t->write_config(<<"EOF",
    log_format kcd '\$kcd_principal|\$kcd_auth_scheme|\$kcd_user|'
                   '\$kcd_ticket_cache_status|\$status|\$request_uri';

    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

    upstream be {
        server 127.0.0.1:$aport;
        keepalive 8;
    }

    map \$arg_be \$kcd_backend {
        default     backend.kcd.test;
        notallowed  notallowed.kcd.test;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name proxy.kcd.test;

        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        access_log %%TESTDIR%%/kcd.log kcd;

        kcd_auth ntlm negotiate basic;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;

        # at server level: a proxy_set_header in a location would drop
        # the inherited ones (and "Connection: close" would come back)
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host backend.kcd.test;

        location / {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://be;
        }

        location /rec/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /notallowed/ {
            kcd_spn HTTP/notallowed.kcd.test;
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }

        location /var/ {
            kcd_spn HTTP/\$kcd_backend;
            proxy_pass http://be/echo;
        }

        location /authonly/ {
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }
    }
EOF
    main => "env KRB5_CONFIG=$krb5_conf;\nenv KRB5RCACHEDIR=$rcache;\n"
          . "thread_pool default threads=4;");

$t->run;

my $port = port(8080);
my $sport = port(8443);

###############################################################################
# helpers

# curl in the realm's environment (plus %$env): (http code, last response
# headers as text, body).
sub curl {
    my ($env, @args) = @_;
    my $h = "$dir/curl.h";
    my $b = "$dir/curl.b";
    unlink $h, $b;
    my ($rc, $out) = $realm->run({ env => $env || {}, timeout => 20 },
        $CURL, '-s', '-S', '--max-time', '15', '-D', $h, '-o', $b,
        '-w', '%{http_code}', @args);
    my $head = $t->read_file('curl.h') // '';
    # -D gets every response of the exchange (401 then 200): keep the last
    my @blocks = split /\r?\n\r?\n/, $head;
    $head = @blocks ? $blocks[-1] : '';
    my ($code) = $out =~ /(\d{3})\s*$/;
    diag("curl exit $rc: $out") if $rc;
    return ($code // 0, $head, $t->read_file('curl.b') // '', $out);
}

sub hdr {
    my ($head, $name) = @_;
    return $head =~ /^\Q$name\E:\s*([^\r\n]*)/mi ? $1 : undef;
}

sub ntlm_conn {
    my ($user, $path, %o) = @_;
    my $c = KcdTest::Conn->new(port => $port, timeout => 10);
    my ($r1, $r) = ntlm_login($c, $path, user => $user, domain => 'KCD',
                              password => $PW{$user}, %o);
    return ($c, $r1, $r);
}

sub wait_requests {
    my ($b, $n) = @_;
    my $deadline = time + 3;
    my @r;
    while (1) {
        @r = $b->requests;
        return @r if @r >= $n || time > $deadline;
        sleep 0.05;
    }
}

# the access log (nginx writes an empty variable as "-" and escapes "\"
# as "\x5C")
sub kcd_log { return $t->read_file('kcd.log') // '' }

###############################################################################
# B7: real clients, through nginx, seen by the Kerberos-only Apache as the
# user they authenticated as.

my ($code, $head, $body) = curl({}, '--ntlm', '-u', 'KCD\\alice:Alice-Pass1',
    "http://127.0.0.1:$port/echo");
is($code, 200, 'curl --ntlm alice: 200 from the Kerberos backend');
is(hdr($head, 'X-Remote-User'), 'alice@KCD.TEST',
   'curl --ntlm alice: Apache authenticated alice@KCD.TEST (X-Remote-User)');
like($body, qr/^user=alice\@KCD\.TEST method=GET/,
     'curl --ntlm alice: backend CGI saw REMOTE_USER alice@KCD.TEST');

($code, $head, $body) = curl({}, '--basic', '-k', '-u',
    'KCD\\alice:Alice-Pass1', "https://127.0.0.1:$sport/echo");
is($code, 200, 'curl --basic over TLS alice: 200');
is(hdr($head, 'X-Remote-User'), 'alice@KCD.TEST',
   'curl --basic over TLS: backend saw alice@KCD.TEST');
like($body, qr/^user=alice\@KCD\.TEST /, 'curl --basic over TLS: body');

($code) = curl({}, '--basic', '-k', '-u', 'KCD\\alice:wrong',
    "https://127.0.0.1:$sport/echo");
is($code, 401, 'curl --basic with a wrong password: 401, not forwarded');

# B5: a Kerberos client, its own ticket as the S4U2Proxy evidence.
my $ccache = "FILE:$dir/alice.cc";
ok($realm->kinit('alice', $PW{alice}, $ccache), 'kinit alice')
    or diag($realm->last_output);
($code, $head, $body) = curl({ KRB5CCNAME => $ccache }, '--negotiate',
    '-u', ':', '--resolve', "proxy.kcd.test:$port:127.0.0.1",
    "http://proxy.kcd.test:$port/echo");
is($code, 200, 'curl --negotiate (kinit alice): 200');
is(hdr($head, 'X-Remote-User'), 'alice@KCD.TEST',
   'curl --negotiate: backend saw alice@KCD.TEST');
like($body, qr/^user=alice\@KCD\.TEST /, 'curl --negotiate: body');
{
    $rec->clear;
    my ($code, $head, $body, $out) = curl({ KRB5CCNAME => $ccache },
        '--negotiate', '-u', ':', '-v', '--resolve',
        "proxy.kcd.test:$port:127.0.0.1",
        "http://proxy.kcd.test:$port/rec/neg");
    is($code, 200, 'curl --negotiate to the recording backend: 200');
    my ($mine) = $out =~ /^> Authorization: (Negotiate \S+)/mi;
    ok($mine, "curl's own Negotiate token seen in its trace");
    my @req = wait_requests($rec, 1);
    my $up = @req ? $req[-1]->header('Authorization') // '' : '';
    like($up, qr/^Negotiate \S+$/, 'Kerberos client: upstream gets a Negotiate '
         . 'token');
    isnt($up, $mine // '', "Kerberos client: its own token is not the one "
         . 'forwarded (a new one for the backend SPN)');
}

like(kcd_log(),
     qr/^alice\@KCD\.TEST\|negotiate\|alice\@KCD\.TEST\|-\|200\|\/echo$/m,
     'curl --negotiate: access log: principal, scheme negotiate, no cache '
     . 'status (client tickets are not cached)');

SKIP: {
    skip 'no python3 requests_ntlm', 2 unless $have_py;

    $t->write_file('client.py', <<'EOF');
import sys, requests
from requests_ntlm import HttpNtlmAuth
r = requests.get(sys.argv[1], auth=HttpNtlmAuth(sys.argv[2], sys.argv[3]),
                 timeout=10)
print("STATUS=%d" % r.status_code)
print("XRU=%s" % r.headers.get("X-Remote-User", ""))
print("BODY=%s" % r.text.strip())
EOF
    my ($rc, $out) = $realm->run({ timeout => 30,
        env => { OPENSSL_CONF => "$dir/openssl-legacy.cnf" } },
        $PY, "$dir/client.py", "http://127.0.0.1:$port/echo", 'KCD\\alice',
        $PW{alice});
    like($out, qr/^STATUS=200$/m, 'python requests_ntlm alice: 200')
        or diag($out);
    like($out, qr/^XRU=alice\@KCD\.TEST$/m,
         'python requests_ntlm: backend saw alice@KCD.TEST');
}

like(kcd_log(),
     qr/^alice\@KCD\.TEST\|ntlm\|KCD(?:\\|\\x5C)alice\|(?:HIT|MISS)\|200\|
        \/echo$/mx,
     '$kcd_principal alice@KCD.TEST in the access log (NTLM)');
like(kcd_log(),
     qr/^alice\@KCD\.TEST\|basic\|[^|]*alice\|(?:HIT|MISS)\|200\|\/echo$/m,
     '$kcd_principal alice@KCD.TEST in the access log (Basic)');

###############################################################################
# B7: a fresh token for every upstream request.  Apache refuses a replayed
# token, so 5 successes on one keep-alive connection prove freshness; the
# recording backend shows the tokens themselves.

{
    my ($c, $r1, $r) = ntlm_conn('alice', '/echo');
    is($r->{status}, 200, 'keep-alive: NTLM login alice 200');
    my @ok = ($r->{status} == 200 && $r->{body} =~ /^user=alice\@KCD\.TEST/
              ? 1 : 0);
    my %aport = ($r->{body} =~ / port=(\d+)/ ? ($1 => 1) : ());
    for (2 .. 5) {
        my $x = $c->get('/echo');
        push @ok, ($x->{status} == 200
                   && ($x->header('X-Remote-User') // '') eq 'alice@KCD.TEST'
                   && $x->{body} =~ /^user=alice\@KCD\.TEST/) ? 1 : 0;
        $aport{$1}++ if $x->{body} =~ / port=(\d+)/;
    }
    is(join('', @ok), '11111',
       '5 requests on one client connection: all accepted by Apache as '
       . 'alice (Apache refuses replayed tokens)');
    cmp_ok(scalar(keys %aport), '<', 5,
           '... over reused upstream keep-alive connections (Apache ports '
           . join(',', sort keys %aport) . ')');
    $c->close;
}

{
    $rec->clear;
    my ($c, $r1, $r) = ntlm_conn('alice', '/rec/a1');
    is($r->{status}, 200, 'recording backend: NTLM login alice 200');
    $c->get("/rec/a$_") for 2 .. 5;
    my @req = wait_requests($rec, 5);
    is(scalar @req, 5, 'recording backend got the 5 requests');
    my @auth = map { $_->header('Authorization') // '' } @req;
    is(scalar(grep { /^Negotiate [A-Za-z0-9+\/]+=*$/ } @auth), 5,
       'every upstream request carries "Authorization: Negotiate <token>"');
    my %u = map { $_ => 1 } @auth;
    is(scalar keys %u, 5, 'the 5 upstream tokens are all different');
    is(scalar(grep { /^NTLM/i || /TlRMTVNT/ } @auth), 0,
       "the client's NTLM Authorization never reaches the upstream");
    is(scalar(map { $_->headers_all('Authorization') } @req), 5,
       'exactly one Authorization header per upstream request');
    $c->close;
}

{
    $rec->clear;
    my $c = KcdTest::Conn->new(port => $sport, ssl => 1, timeout => 10);
    my $basic = 'Basic ' . b64("KCD\\alice:$PW{alice}");
    my $r = $c->get('/rec/basic', headers => [Authorization => $basic]);
    is($r->{status}, 200, 'Basic over TLS to the recording backend: 200');
    my @req = wait_requests($rec, 1);
    my $a = @req ? $req[-1]->header('Authorization') // '' : '';
    like($a, qr/^Negotiate \S+$/, 'Basic: upstream gets our Negotiate token');
    unlike($a, qr/Basic/i, "the client's Basic credentials never reach "
           . 'the upstream');
    $c->close;
}

###############################################################################
# Authentication only: no kcd_spn, no Authorization upstream at all.

{
    $rec->clear;
    my ($c, $r1, $r) = ntlm_conn('alice', '/authonly/x');
    is($r1->{status}, 401, 'no kcd_spn: still authenticates (401 + Type 2)');
    is($r->{status}, 200, 'no kcd_spn: NTLM login 200');
    is($c->get('/authonly/y')->{status}, 200, 'no kcd_spn: keep-alive 200');
    my @req = wait_requests($rec, 2);
    is(scalar @req, 2, 'no kcd_spn: both requests forwarded');
    is(scalar(grep { defined $_->header('Authorization') } @req), 0,
       'no kcd_spn: the upstream sees no Authorization at all');
    $c->close;
}

###############################################################################
# kcd_spn with a variable.

{
    my ($c, $r1, $r) = ntlm_conn('alice', '/var/');
    is($r->{status}, 200, 'kcd_spn HTTP/$kcd_backend: 200');
    like($r->{body}, qr/^user=alice\@KCD\.TEST/,
         'kcd_spn HTTP/$kcd_backend: Apache saw alice');
    my $mark = $t->log_mark;
    my $x = $c->get('/var/?be=notallowed');
    is($x->{status}, 502,
       'kcd_spn variable evaluated per request: notallowed SPN gives 502');
    ok($t->wait_for_log(qr/"HTTP\/notallowed\.kcd\.test"/, 3, 'error.log',
                        $mark), '... the log names the SPN from the variable');
    $c->close;
}

###############################################################################
# B8: refusals fail closed (502), with a log line.

{
    $rec->clear;
    my $mark = $t->log_mark;
    my ($c, $r1, $r) = ntlm_conn('alice', '/notallowed/x');
    is($r->{status}, 502, 'SPN not in the delegation ACL: 502');
    my $l = $t->wait_for_log(qr/\[error\].*kcd: .*alice\@KCD\.TEST/, 3, 'error.log',
                             $mark) // '';
    like($l, qr/"alice\@KCD\.TEST".*"HTTP\/notallowed\.kcd\.test"/,
         '... log line names principal and SPN');
    like($l, qr/KDC\ refused\ .*(?:not\ allowed\ to\ delegate
                |can't\ fulfill|BADOPTION)/xi,
         '... and the reason');
    note("not allowed: $l");
    is(scalar($rec->requests), 0, '... and nothing was forwarded');
    $c->close;
}

{
    my $mark = $t->log_mark;
    my $n0 = () = $rec->requests;
    my ($c, $r1, $r) = ntlm_conn('bob', '/echo');
    is($r1->{status}, 401, 'bob: NTLM handshake');
    is($r->{status}, 502, 'bob (cannot be delegated): 502');
    my $l = $t->wait_for_log(qr/\[error\].*kcd: .*bob\@KCD\.TEST/, 3, 'error.log',
                             $mark) // '';
    like($l, qr/KDC\ refused\ delegation\ of\ "bob\@KCD\.TEST"
                \ to\ "HTTP\/backend\.kcd\.test":\ \S/x,
         'bob: log line names principal, SPN and reason');
    note("bob: $l");
    $c->close;

    # same through the recording backend: nothing forwarded
    ($c, $r1, $r) = ntlm_conn('bob', '/rec/bob');
    is($r->{status}, 502, 'bob to the recording location: 502');
    is(scalar($rec->requests), $n0, 'bob: nothing forwarded');
    $c->close;
}

{
    $rec->clear;
    my $mark = $t->log_mark;
    my ($c, $r1, $r) = ntlm_conn('mallory', '/rec/mallory');
    is($r1->{status}, 401, 'mallory (in the user file only): NTLM handshake');
    is($r->{status}, 502, 'mallory, unknown to the KDC: 502');
    my $l = $t->wait_for_log(qr/\[error\].*kcd: .*mallory\@KCD\.TEST/, 3, 'error.log',
                             $mark) // '';
    like($l, qr/"mallory\@KCD\.TEST".*"HTTP\/backend\.kcd\.test"/,
         'mallory: log line names principal and SPN');
    like($l, qr/unknown user|not found in Kerberos database/i,
         'mallory: log line says the principal is unknown');
    note("mallory: $l");
    is(scalar($rec->requests), 0, 'mallory: nothing forwarded');
    $c->close;
}

###############################################################################
# B8: KDC unreachable: 503, nothing forwarded; back without a reload.
# carol has never been delegated, so nothing of hers is in the ticket cache.

{
    $rec->clear;
    $realm->stop_kdc;
    my $mark = $t->log_mark;
    my $t0 = time;
    my ($c, $r1, $r) = ntlm_conn('carol', '/rec/carol');
    is($r->{status}, 503, 'KDC stopped: 503 for a user not in the cache');
    note(sprintf('503 after %.2f s', time - $t0));
    my $l = $t->wait_for_log(qr/\[error\].*kcd: .*carol\@KCD\.TEST/, 3, 'error.log',
                             $mark) // '';
    like($l, qr/"carol\@KCD\.TEST".*"HTTP\/backend\.kcd\.test".*unreachable/,
         'KDC stopped: log line with principal, SPN and "unreachable"');
    note("kdc down: $l");
    is(scalar($rec->requests), 0, 'KDC stopped: nothing forwarded');
    $c->close;

    # alice's ticket for the backend is in kcd_ticket_cache: no KDC needed
    ($c, $r1, $r) = ntlm_conn('alice', '/echo');
    is($r->{status}, 200, 'KDC stopped: a user with a cached ticket is '
       . 'still served');
    like($r->{body} // '', qr/^user=alice\@KCD\.TEST/, '... as alice');
    $c->close;

    $realm->start_kdc;
    ($c, $r1, $r) = ntlm_conn('carol', '/echo');
    is($r->{status}, 200, 'KDC started again: 200 without an nginx reload');
    like($r->{body} // '', qr/^user=carol\@KCD\.TEST/,
         '... Apache saw carol');
    $c->close;
}

###############################################################################

unlike($t->error_log, qr/\[(?:alert|emerg|crit)\]|exited on signal/,
       'no alert, crit or crashed worker in the error log');

done_testing();
