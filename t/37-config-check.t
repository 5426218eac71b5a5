#!/usr/bin/perl

# B13: nginx -t refuses what cannot work, with a clear message and the
# file:line of the directive at fault; a valid configuration (user file
# with comments, blank lines, trailing comments, CRLF) passes.

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

my $n = 0;

# check($what, $body, marker => qr/line to point at/, like => [qr/.../...],
#       ok => 1): writes <n>.conf, runs nginx -t and checks the exit code,
# the message and that it names <n>.conf and the line of the marker.
sub check {
    my ($what, $body, %o) = @_;
    my $name = sprintf('c%02d.conf', ++$n);
    my $path = $t->write_config($body, name => $name);
    my ($rc, $out) = $t->nginx_test;

    if ($o{ok}) {
        is($rc, 0, "$what: nginx -t passes") or diag($out);
        unlike($out, qr/\[emerg\]/, "$what: no emerg message");
        return;
    }

    isnt($rc, 0, "$what: nginx -t fails");
    like($out, $_, "$what: message $_") for @{$o{like} || []};
    if ($o{marker}) {
        my @lines = split /\n/, $t->read_file($name);
        my ($line) = grep { $lines[$_ - 1] =~ $o{marker} } 1 .. @lines;
        ok($line, "$what: marker found in the config") or return;
        like($out, qr/\Q$path\E:$line\b/, "$what: names $name:$line")
            or diag($out);
    }
    unlike($out, qr/test is successful/, "$what: not reported successful");
}

my $srv = 'listen 127.0.0.1:%%PORT_8080%%;';

check('valid config', <<"EOF", ok => 1);
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        location / {
            kcd_auth ntlm negotiate basic;
            kcd_strip_negotiate on;
            kcd_channel_binding require;
        }
        location /o/ {
            kcd_auth off;
        }
    }
EOF

check('unknown scheme', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth ntlm kerberos;
        }
    }
EOF
    marker => qr/kcd_auth ntlm kerberos/,
    like => [qr/unknown scheme "kerberos"/]);

check('kcd_auth ntlm without a backend', <<"EOF",
    server {
        $srv
        location / {
            kcd_auth ntlm;
        }
    }
EOF
    marker => qr/kcd_auth ntlm;/,
    like => [qr/kcd_ntlm_user_file/, qr/kcd_ntlm_winbind/]);

check('kcd_auth ntlm at server level without a backend', <<"EOF",
    server {
        $srv
        kcd_auth ntlm negotiate;

        location / {
        }
        location /x/ {
            kcd_strip_negotiate on;
        }
    }
EOF
    marker => qr/kcd_auth ntlm negotiate;/,
    like => [qr/kcd_ntlm_user_file/, qr/kcd_ntlm_winbind/]);

check('kcd_auth basic without a backend', <<"EOF",
    server {
        $srv
        location / {
            kcd_auth basic;
        }
    }
EOF
    marker => qr/kcd_auth basic;/,
    like => [qr/kcd_auth basic/, qr/kcd_ntlm_user_file|kcd_keytab/]);

check('kcd_spn without kcd_keytab / kcd_service_principal', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth ntlm;
            kcd_spn HTTP/backend.kcd.test;
        }
    }
EOF
    marker => qr/kcd_spn HTTP/,
    like => [qr/kcd_keytab/, qr/kcd_service_principal/]);

check('unreadable keytab (missing file)', <<"EOF",
    kcd_keytab %%TESTDIR%%/no-such.keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    server {
        $srv
    }
EOF
    marker => qr/kcd_keytab /,
    like => [qr/no-such\.keytab/, qr/not readable|cannot|No such file/i]);

check('unreadable user file (missing file)', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/no-such-users;
        location / {
            kcd_auth ntlm;
        }
    }
EOF
    marker => qr/kcd_ntlm_user_file /,
    like => [qr/no-such-users/, qr/cannot be opened|No such file/i]);

mkdir "$dir/users-dir";
check('unreadable user file (a directory)', <<"EOF",
    server {
        $srv
        location / {
            kcd_ntlm_user_file %%TESTDIR%%/users-dir;
            kcd_auth ntlm;
        }
    }
EOF
    marker => qr/kcd_ntlm_user_file /,
    like => [qr/users-dir/, qr/cannot be (?:read|opened)|directory/i]);

# malformed lines: the message names the user file and its line, and the
# nginx.conf line of kcd_ntlm_user_file
my %bad = (
    '31 hex digits'     => "KCD\\alice:" . substr($H, 0, 31),
    '33 hex digits'     => "KCD\\alice:${H}0",
    'non-hex digit'     => "KCD\\alice:" . substr($H, 0, 31) . 'g',
    'missing colon'     => "KCD\\alice$H",
    'empty domain'      => "\\alice:$H",
    'empty user'        => "KCD\\:$H",
    'no user at all'    => ":$H",
    'empty password'    => "KCD\\alice:31d6cfe0d16ae931b73c59d7e0c089c0",
    'empty password, upper case'
                        => "KCD\\alice:31D6CFE0D16AE931B73C59D7E0C089C0",
    'empty group name'  => "KCD\\alice:$H:Staff,,Admins",
    'group list, trailing comma' => "KCD\\alice:$H:Staff,",
    'text after the hash' => "KCD\\alice:${H}x:Staff",
);
my %why = (
    'empty password' => qr/NT hash of the empty password/,
    'empty password, upper case' => qr/NT hash of the empty password/,
    'empty group name' => qr/empty group name/,
    'group list, trailing comma' => qr/empty group name/,
);
for my $k (sort keys %bad) {
    (my $f = "users-" . $k) =~ s/\W+/-/g;
    # the bad line is line 4, after good lines, a comment and a blank line
    $t->write_file($f, "# accounts\nbob:$H\n\n$bad{$k}\nKCD\\carol:$H\n");
    check("user file: $k", <<"EOF",
    server {
        $srv
        location / {
            kcd_auth ntlm;
            kcd_ntlm_user_file %%TESTDIR%%/$f;
        }
    }
EOF
        marker => qr/kcd_ntlm_user_file /,
        like => [qr/\Q$dir\/$f\E:4: /, $why{$k} || ()]);
}

check('duplicate kcd_auth', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth ntlm;
            kcd_auth negotiate;
        }
    }
EOF
    marker => qr/kcd_auth negotiate;/,
    like => [qr/"kcd_auth" directive is duplicate/]);

check('kcd_strip_negotiate maybe', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth ntlm;
            kcd_strip_negotiate maybe;
        }
    }
EOF
    marker => qr/kcd_strip_negotiate maybe/,
    like => [qr/"maybe"/, qr/kcd_strip_negotiate/]);

check('kcd_channel_binding sometimes', <<"EOF",
    server {
        $srv
        kcd_ntlm_user_file %%TESTDIR%%/users;
        location / {
            kcd_auth ntlm;
            kcd_channel_binding sometimes;
        }
    }
EOF
    marker => qr/kcd_channel_binding sometimes/,
    like => [qr/invalid value "sometimes"/]);

check('kcd_ticket_cache without a size', <<"EOF",
    kcd_ticket_cache zone=x;
    server {
        $srv
    }
EOF
    marker => qr/kcd_ticket_cache zone=x;/,
    like => [qr/zone=x/, qr/size/]);

check('kcd_ticket_cache too small', <<"EOF",
    kcd_ticket_cache zone=x:1k;
    server {
        $srv
    }
EOF
    marker => qr/kcd_ticket_cache zone=x:1k/,
    like => [qr/too small/]);

check('kcd_ticket_cache with a bad margin', <<"EOF",
    kcd_ticket_cache zone=x:1m margin=soon;
    server {
        $srv
    }
EOF
    marker => qr/kcd_ticket_cache zone=x:1m/,
    like => [qr/margin/]);

# comments, blank lines, trailing comments, CRLF, white space: fine, and
# the accounts on those lines are really loaded (checked by logging on)
$t->write_file('users-ok',
    "# local accounts\n"
    . "\n"
    . "   \n"
    . "KCD\\alice:$H   # alice, trailing comment\n"
    . "\t# indented comment\n"
    . "bob:" . unpack('H*', nt_hash('Bob pass')) . "\r\n"
    . "KCD\\carol:" . uc(unpack('H*', nt_hash('Carol'))) . "\t#tab comment\n"
    . "# last line without newline");
check('user file with comments, blank lines, CRLF, upper-case hex', <<"EOF", ok => 1);
    server {
        $srv
        location / {
            kcd_auth ntlm;
            kcd_ntlm_user_file %%TESTDIR%%/users-ok;
        }
    }
EOF

$t->write_config(<<"EOF");
    server {
        $srv
        kcd_ntlm_domain KCD;
        location / {
            kcd_auth ntlm;
            kcd_ntlm_user_file %%TESTDIR%%/users-ok;
            root %%TESTDIR%%/www;
        }
    }
EOF
mkdir "$dir/www";
$t->write_file('www/page', "page\n");
$t->run;
for my $u (['alice', 'KCD', 'Password'], ['bob', 'ANY', 'Bob pass'],
           ['carol', 'KCD', 'Carol']) {
    my $c = KcdTest::Conn->new(port => port(8080));
    my ($r1, $r2) = ntlm_login($c, '/page', user => $u->[0], domain => $u->[1],
                               password => $u->[2]);
    is($r2 && $r2->{status}, 200, "account on a commented / CRLF line works: $u->[0]");
}

done_testing();
