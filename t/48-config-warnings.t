#!/usr/bin/perl

# B13, the second half: mistakes nginx -t refuses with file:line (lower-case
# realm, a static kcd_spn that is not service/host[@REALM], an unreadable
# keytab) and the ones it warns about while still succeeding (http2 or
# keepalive_timeout 0 where NTLM is offered, a keytab or user file readable
# by other users, kcd_ntlm_computer longer than 15 characters, Basic on a
# server without a TLS listener).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);

my $t = KcdTest->new->skip_unless_module;
my $dir = $t->testdir;

my $H = unpack('H*', nt_hash('Password'));
$t->write_file('users', "KCD\\alice:$H\n");
chmod 0600, "$dir/users";

# a keytab made offline (no KDC needed for nginx -t)
sub keytab {
    my ($name, $mode) = @_;
    my $kt = "$dir/$name";
    open(my $k, '|-', "ktutil >/dev/null 2>&1") or die "ktutil: $!";
    print $k "addent -password -p HTTP/proxy.kcd.test\@KCD.TEST -k 1 "
        . "-e aes256-cts-hmac-sha1-96\nsecret\nwkt $kt\nquit\n";
    close $k;
    chmod $mode, $kt;
    return $kt;
}

plan skip_all => 'ktutil missing' unless -x '/usr/bin/ktutil';

keytab('proxy.keytab', 0600);
keytab('open.keytab', 0644);

my $n = 0;

# check($what, $body, marker => qr/config line to point at/,
#       like => [qr/.../], ok => 1, warn => qr/warning text/)
sub check {
    my ($what, $body, %o) = @_;
    my $name = sprintf('w%02d.conf', ++$n);
    my $path = $t->write_config($body, name => $name);
    my ($rc, $out) = $t->nginx_test;
    my $line;

    if ($o{marker}) {
        my @lines = split /\n/, $t->read_file($name);
        ($line) = grep { $lines[$_ - 1] =~ $o{marker} } 1 .. @lines;
        ok($line, "$what: marker found in the config");
    }

    if ($o{ok}) {
        is($rc, 0, "$what: nginx -t passes") or diag($out);
        unlike($out, qr/\[emerg\]/, "$what: no emerg message");
        if ($o{warn}) {
            like($out, qr/\[warn\].*$o{warn}/, "$what: warning") or diag($out);
            like($out, qr/\[warn\].*\Q$path\E:$line\b/,
                 "$what: warning names $name:$line") if $line;
        } else {
            unlike($out, qr/\[warn\].*kcd/, "$what: no kcd warning")
                or diag($out);
        }
        return;
    }

    isnt($rc, 0, "$what: nginx -t fails");
    like($out, $_, "$what: message $_") for @{$o{like} || []};
    like($out, qr/\Q$path\E:$line\b/, "$what: names $name:$line")
        or diag($out) if $line;
    unlike($out, qr/test is successful/, "$what: not reported successful");
}

my $srv = 'listen 127.0.0.1:%%PORT_8080%%;';
my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');
my $tls = "listen 127.0.0.1:%%PORT_8443%% ssl;\n"
    . "        ssl_certificate $cert->{cert};\n"
    . "        ssl_certificate_key $cert->{key};";

my $kt = <<"EOF";
    kcd_keytab %%TESTDIR%%/proxy.keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
EOF

check('clean configuration: no warning', <<"EOF", ok => 1);
$kt
    server {
        $srv
        $tls
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_computer PROXY;
        kcd_realm KCD.TEST;
        location / {
            kcd_auth ntlm negotiate basic;
            kcd_spn HTTP/backend.kcd.test;
        }
        location /v/ {
            kcd_auth ntlm;
            kcd_spn HTTP/\$host;
        }
        location /r/ {
            kcd_auth ntlm;
            kcd_spn HTTP/backend.kcd.test\@KCD.TEST;
        }
    }
EOF

# errors

check('lower-case kcd_realm', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_realm kcd.test;
        location / { kcd_auth ntlm; }
    }
EOF
    marker => qr/kcd_realm kcd\.test/,
    like => [qr/\[emerg\].*kcd_realm "kcd\.test".*upper case/]);

check('mixed-case realm in kcd_domain_map', <<"EOF",
    kcd_domain_map KCD Kcd.TEST;
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / { kcd_auth ntlm; }
    }
EOF
    marker => qr/kcd_domain_map KCD/,
    like => [qr/\[emerg\].*kcd_domain_map "Kcd\.TEST".*upper case/]);

check('lower-case realm in kcd_service_principal', <<"EOF",
    kcd_keytab %%TESTDIR%%/proxy.keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@kcd.test;
    server { $srv }
EOF
    marker => qr/kcd_service_principal /,
    like => [qr/\[emerg\].*kcd_service_principal "HTTP\/proxy\.kcd\.test\@kcd\.test".*upper case/]);

for my $spn (['HTTP@backend.kcd.test', qr/GSSAPI form/],
             ['backend.kcd.test', qr/service\/host/],
             ['HTTP/', qr/service\/host/],
             ['/backend.kcd.test', qr/service\/host/],
             ['HTTP/a/b', qr/service\/host/],
             ['HTTP/backend@', qr/service\/host/],
             ['HTTP/backend@KCD@X', qr/service\/host/],
             ['HTTP/backend.kcd.test@kcd.test', qr/realm is upper case/]) {
    check("static kcd_spn $spn->[0]", <<"EOF",
$kt
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth ntlm;
            kcd_spn $spn->[0];
        }
    }
EOF
        marker => qr/kcd_spn \Q$spn->[0]\E;/,
        like => [qr/\[emerg\].*kcd_spn "\Q$spn->[0]\E"/, $spn->[1]]);
}

check('unreadable keytab (a missing file)', <<"EOF",
    kcd_keytab %%TESTDIR%%/none.keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    server { $srv }
EOF
    marker => qr/kcd_keytab /,
    like => [qr/\[emerg\].*none\.keytab" cannot be opened.*No such file/]);

check('keytab without the service principal', <<"EOF",
    kcd_keytab %%TESTDIR%%/proxy.keytab;
    kcd_service_principal HTTP/other.kcd.test\@KCD.TEST;
    server { $srv }
EOF
    marker => qr/kcd_keytab /,
    like => [qr/\[emerg\].*holds no key for "HTTP\/other/]);

# warnings: nginx -t succeeds

check('http2 on a listener of an authenticating server', <<"EOF",
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl http2;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth ntlm;
        }
    }
EOF
    ok => 1, marker => qr/kcd_auth ntlm;/,
    warn => qr/"http2" on "listen 127\.0\.0\.1:\d+".*HTTP\/2/);

check('http2 on a server that does not authenticate', <<"EOF", ok => 1);
    server {
        listen 127.0.0.1:%%PORT_8443%% ssl http2;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / { }
    }
    server {
        listen 127.0.0.1:%%PORT_8444%% ssl;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / { kcd_auth ntlm; }
    }
EOF

check('keepalive_timeout 0 where NTLM is offered', <<"EOF",
    server {
        $srv
        keepalive_timeout 0;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth ntlm;
        }
    }
EOF
    ok => 1, marker => qr/kcd_auth ntlm;/,
    warn => qr/"keepalive_timeout 0" where "kcd_auth"/);

check('keepalive_timeout 0 in a location without kcd_auth', <<"EOF", ok => 1);
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / { kcd_auth ntlm; }
        location /pub/ { keepalive_timeout 0; }
    }
EOF

check('keytab readable by other users', <<"EOF",
    kcd_keytab %%TESTDIR%%/open.keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    server { $srv }
EOF
    ok => 1, marker => qr/kcd_keytab /,
    warn => qr/kcd_keytab ".*open\.keytab" is readable by other users \(mode 0644\)/);

$t->write_file('users-open', "KCD\\alice:$H\n");
chmod 0644, "$dir/users-open";
check('user file readable by other users', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users-open;
        location / { kcd_auth ntlm; }
    }
EOF
    ok => 1, marker => qr/kcd_ntlm_user_file /,
    warn => qr/kcd_ntlm_user_file ".*users-open" is readable by other users/);

check('kcd_ntlm_computer longer than 15 characters', <<"EOF",
    server {
        $srv
        kcd_ntlm_computer PROXY-FRONTEND-01;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / { kcd_auth ntlm; }
    }
EOF
    ok => 1, marker => qr/kcd_ntlm_computer /,
    warn => qr/kcd_ntlm_computer "PROXY-FRONTEND-01" is longer than 15.*"PROXY-FRONTEND-"/);

check('Basic on a server without a TLS listener', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location /n/ {
            kcd_auth ntlm;
        }
        location / {
            kcd_auth ntlm basic;
        }
    }
EOF
    ok => 1, marker => qr/kcd_auth ntlm basic;/,
    warn => qr/"kcd_auth basic" .* without a TLS listener/);

done_testing();
