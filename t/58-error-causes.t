#!/usr/bin/perl

# B21: error causes classified right.  A malformed SPN (from a variable,
# so nginx -t cannot see it) is not "KDC unreachable" and not 503; a user
# typing a lower-case realm (alice@kcd.test) is a failed logon, not
# "KDC unreachable"; winbindd not running is not "domain controller
# unreachable".  The KDC really unreachable stays 503.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use MIME::Base64 qw(encode_base64);
use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;
use KcdApache;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing;
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "58-error-causes.t: timeout\n" };
$SIG{PIPE} = "IGNORE";
alarm 180;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $be = KcdApache->start(dir => $dir, realm => $realm);

my %PW = %KcdRealm::PASSWORDS;
$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));
chmod 0600, "$dir/users";

my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
my $keytab = $realm->keytab('proxy');
my $krb5_conf = $realm->krb5_conf;
my $aport = $be->port;

$t->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;

    map \$arg_spn \$kcd_backend_spn {
        default   HTTP/backend.kcd.test;
        gss       HTTP\@backend.kcd.test;
        nohost    HTTP/;
        lower     HTTP/backend.kcd.test\@kcd.test;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host backend.kcd.test;

        location / {
            kcd_auth ntlm;
            kcd_ntlm_user_file %%TESTDIR%%/users;
            kcd_spn \$kcd_backend_spn;
            proxy_pass http://127.0.0.1:$aport;
        }

        # NTLM pass-through to a winbindd that is not running
        location /wb/ {
            kcd_auth ntlm;
            kcd_ntlm_winbind on;
            proxy_pass http://127.0.0.1:$aport/;
        }

        # Basic checked by the KDC (AS exchange): no user file, no winbind
        location /basic/ {
            kcd_auth basic;
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://127.0.0.1:$aport/;
        }
    }
EOF
    main => "env KRB5_CONFIG=$krb5_conf;\nthread_pool default threads=2;");

$t->run;

sub ntlm {
    my ($path) = @_;
    my $c = KcdTest::Conn->new(port => port(8080));
    my (undef, $r) = ntlm_login($c, $path, user => 'alice', domain => 'KCD',
                                password => $PW{alice});
    return $r || { status => 0 };
}

my $r = ntlm('/echo');
is($r->{status}, 200, 'well-formed SPN: delegated, 200');

for my $case (['gss', 'HTTP@backend.kcd.test'], ['nohost', 'HTTP/'],
              ['lower', 'HTTP/backend.kcd.test@kcd.test'])
{
    my ($arg, $spn) = @$case;
    my $mark = $t->log_mark;
    $r = ntlm("/echo?spn=$arg");
    is($r->{status}, 502, "SPN \"$spn\": 502, not 503");
    my $line = $t->wait_for_log(qr/kcd: .*"\Q$spn\E"/, 3, undef, $mark) // '';
    like($line, qr/malformed SPN/, "SPN \"$spn\": logged as a malformed SPN");
    unlike($line, qr/unreachable/, "SPN \"$spn\": not \"unreachable\"");
}

sub basic {
    my ($user, $pw) = @_;
    my $c = KcdTest::Conn->new(port => port(8443), ssl => 1);
    return $c->get('/basic/echo', headers => [
        Authorization => 'Basic ' . encode_base64("$user:$pw", '')]);
}

$r = basic('alice', $PW{alice});
is($r->{status}, 200, 'Basic alice (Kerberos AS): 200');

my $mark = $t->log_mark;
$r = basic('alice@kcd.test', $PW{alice});
is($r->{status}, 401, 'Basic alice@kcd.test: 401, not 503');
my $line = $t->wait_for_log(qr/kcd: .*alice\@kcd\.test/i, 3, undef, $mark) // '';
unlike($line, qr/unreachable/, 'Basic alice@kcd.test: not "KDC unreachable"')
    or diag($line);
like($line, qr/\[info\].*Basic logon failed.*no KDC known for this realm/,
     'Basic alice@kcd.test: info, a failed logon, no KDC for the realm');

$mark = $t->log_mark;
$r = basic('alice@NO-SUCH.REALM', $PW{alice});
is($r->{status}, 401, 'Basic alice@NO-SUCH.REALM: 401, not 503');
$line = $t->wait_for_log(qr/kcd: .*NO-SUCH\.REALM/i, 3, undef, $mark) // '';
unlike($line, qr/unreachable/, 'unknown realm: not "KDC unreachable"')
    or diag($line);

# winbindd not running: 503, and the log says so, not "domain controller
# unreachable" (the DC may be fine)
SKIP: {
    skip 'a winbindd is running on this machine', 3
        if -S '/run/samba/winbindd/pipe';
    my $c = KcdTest::Conn->new(port => port(8080));
    $mark = $t->log_mark;
    my (undef, $w) = ntlm_login($c, '/wb/echo', user => 'alice',
                                domain => 'KCD', password => $PW{alice});
    is($w && $w->{status}, 503, 'winbindd not running: 503');
    $line = $t->wait_for_log(qr/kcd: NTLM logon of user "alice"/, 3, undef,
                             $mark) // '';
    like($line, qr/\[error\].*cannot be checked: winbindd not available/,
         'winbindd not running: logged as "winbindd not available"');
    unlike($line, qr/domain controller unreachable/,
           '... not as "domain controller unreachable"');
}

# the KDC really away: 503, "unreachable"
$realm->stop_kdc;
$mark = $t->log_mark;
$r = basic('carol', $PW{carol});
is($r->{status}, 503, 'KDC stopped: Basic 503');
$line = $t->wait_for_log(qr/kcd: .*carol/, 3, undef, $mark) // '';
like($line, qr/unreachable/, 'KDC stopped: logged as unreachable');
$realm->start_kdc;

done_testing();
