#!/usr/bin/perl

# B5: a refused Kerberos token from a client is logged with its real cause
# (clock skew, wrong key version, wrong service), never as the replay-cache
# side effect of the module's own second gss_accept_sec_context().  And the
# client is not left with a dead end: the 401 offers the other schemes.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;

my $PY = '/usr/bin/python3';

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing;
plan skip_all => "missing: $missing" if $missing;
plan skip_all => 'no python3-gssapi'
    unless system("$PY -c 'import gssapi' 2>/dev/null") == 0;

$SIG{ALRM} = sub { die "42-negotiate-kerberos-causes.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 120;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");

# nginx's krb5.conf: the realm's, with a one-second clock skew allowance,
# so that a token held back for three seconds is "skewed"
my $conf = do { local (@ARGV, $/) = ($realm->krb5_conf); <> };
$conf =~ s/\[libdefaults\]\n/[libdefaults]\n    clockskew = 1\n/;
my $nginx_krb5 = $t->write_file('nginx-krb5.conf', $conf);
mkdir "$dir/rcache";

$t->write_file('users', "KCD\\alice:"
    . unpack('H*', nt_hash($KcdRealm::PASSWORDS{alice})) . "\n");

my $keytab = $realm->keytab('proxy');
mkdir "$dir/www";
$t->write_file('www/index.html', "ok\n");

$t->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name proxy.kcd.test;

        kcd_auth negotiate ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;

        location / {
            root %%TESTDIR%%/www;
            add_header X-User \$kcd_user always;
        }
    }
EOF
    main => "env KRB5_CONFIG=$nginx_krb5;\nenv KRB5RCACHEDIR=$dir/rcache;\n"
          . "thread_pool default threads=2;");
$t->run;

my $ccache = "FILE:$dir/alice.cc";
ok($realm->kinit('alice', $KcdRealm::PASSWORDS{alice}, $ccache),
   'kinit alice');

# a SPNEGO token from MIT for service@host, base64
sub token {
    my ($service, $mech) = @_;
    $mech //= '1.3.6.1.5.5.2';          # SPNEGO, as Windows and browsers
    local $ENV{KRB5_CONFIG} = $realm->krb5_conf;
    local $ENV{KRB5CCNAME} = $ccache;
    my $out = `$PY -c '
import base64, gssapi, sys
n = gssapi.Name(sys.argv[1], gssapi.NameType.hostbased_service)
c = gssapi.SecurityContext(name=n, usage="initiate",
                           mech=gssapi.OID.from_int_seq(sys.argv[2]))
print(base64.b64encode(c.step()).decode())
' '$service' '$mech' 2>&1`;
    chomp $out;
    return $out =~ /^[A-Za-z0-9+\/=]+$/ ? $out : (diag($out), undef)[1];
}

sub try {
    my ($tok) = @_;
    my $mark = $t->log_mark;
    my $c = KcdTest::Conn->new(port => port(8080));
    my $r = $c->get('/', headers => [Authorization => "Negotiate $tok"]);
    my $line = $t->wait_for_log(qr/client token rejected|Negotiate/, 3,
                                undef, $mark) // '';
    return ($r, $line, $t->error_log(since => $mark));
}

# a good token first: the set-up works
my $good = token('HTTP@proxy.kcd.test');
ok($good, 'client token for HTTP/proxy.kcd.test');
my $c = KcdTest::Conn->new(port => port(8080));
my $r = $c->get('/', headers => [Authorization => "Negotiate $good"]);
is($r->{status}, 200, 'a fresh Kerberos token: 200');
is($r->header('X-User'), 'alice@KCD.TEST', 'as alice@KCD.TEST');

# raw Kerberos (RFC 4121 framing, no SPNEGO) is accepted too (B5)
my $raw = token('HTTP@proxy.kcd.test', '1.2.840.113554.1.2.2');
ok($raw, 'raw Kerberos token');
$c = KcdTest::Conn->new(port => port(8080));
$r = $c->get('/', headers => [Authorization => "Negotiate $raw"]);
is($r->{status}, 200, 'raw Kerberos token: 200');
is($r->header('X-User'), 'alice@KCD.TEST', 'raw Kerberos: as alice@KCD.TEST');

# clock skew: the token is three seconds old, the allowance one second
my $old = token('HTTP@proxy.kcd.test');
sleep 3;
my ($rs, $line, $log) = try($old);
is($rs->{status}, 401, 'skewed token: 401');
like($log, qr/clock skew/i, 'log names the clock skew');
unlike($log, qr/replay/i, 'log does not call it a replay');
ok(grep({ /^NTLM/ } $rs->headers_all('WWW-Authenticate')),
   'the 401 still offers NTLM');

# wrong service: a ticket for the backend, whose key the proxy lacks
my $other = token('HTTP@backend.kcd.test');
($rs, $line, $log) = try($other);
is($rs->{status}, 401, 'ticket for another service: 401');
like($log, qr/wrong service/i, 'log names the wrong service');
unlike($log, qr/replay/i, 'not a replay');

# wrong key version: the KDC's key changes after nginx read the keytab
my ($rc, $out) = $realm->kadmin('cpw -randkey HTTP/proxy.kcd.test');
is($rc, 0, 'proxy key changed in the KDC') or diag $out;
$ccache = "FILE:$dir/alice2.cc";       # no cached ticket with the old key
ok($realm->kinit('alice', $KcdRealm::PASSWORDS{alice}, $ccache),
   'kinit alice again');
my $newkv = token('HTTP@proxy.kcd.test');
($rs, $line, $log) = try($newkv);
is($rs->{status}, 401, 'ticket with a newer kvno: 401');
like($log, qr/key version|kvno/i, 'log names the key version');
unlike($log, qr/replay/i, 'not a replay');

done_testing();
