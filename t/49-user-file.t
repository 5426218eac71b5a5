#!/usr/bin/perl

# SPEC "NT-hash user file": a UTF-8 byte-order mark is skipped (the first
# account logs on), the same account twice is an error naming both lines
# (so appending a line to change a password cannot leave the old one in
# force), the NT hash of the empty password is refused, the optional third
# field ":group,group" loads; a reload picks up a changed password.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);

my $t = KcdTest->new->skip_unless_module;
my $dir = $t->testdir;
mkdir "$dir/www";
$t->write_file('www/index.html', "ok\n");

sub h { unpack('H*', nt_hash($_[0])) }

sub conf {
    my ($file) = @_;
    return <<"EOF";
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        kcd_ntlm_domain KCD;
        location / {
            kcd_auth ntlm;
            kcd_ntlm_user_file %%TESTDIR%%/$file;
            root %%TESTDIR%%/www;
        }
    }
EOF
}

sub login {
    my ($user, $pw, $domain) = @_;
    my $c = KcdTest::Conn->new(port => port(8080));
    my (undef, $r) = ntlm_login($c, '/', user => $user,
                                domain => $domain // 'KCD', password => $pw);
    return $r ? $r->{status} : 0;
}

# the same account twice: both lines named, case-insensitively, also
# among accounts without a domain
for my $case (
    ['same line twice', "KCD\\alice:${\ h('Old-1')}\nKCD\\alice:${\ h('New-1')}\n",
     1, 2, 'KCD\\\\alice'],
    ['other case', "# x\nKCD\\alice:${\ h('Old-1')}\nbob:${\ h('B')}\n"
     . "kcd\\ALICE:${\ h('New-1')}\n", 2, 4, 'kcd\\\\ALICE'],
    ['no domain', "bob:${\ h('B')}\nKCD\\bob:${\ h('C')}\nBOB:${\ h('D')}\n",
     1, 3, 'BOB'],
    # Unicode simple case mapping, as Windows compares names
    ['Unicode case', "KCD\\j\xc3\xbcrgen:${\ h('J-1')}\nKCD\\J\xc3\x9cRGEN:${\ h('J-2')}\n",
     1, 2, "KCD\\\\J\xc3\x9cRGEN"],
    # final sigma: upper case of both is the same (as _find compares)
    ['final sigma', "\xce\xb1\xce\xbb\xce\xad\xce\xbe\xce\xb7\xcf\x82:${\ h('A-1')}\n"
     . "\xce\x91\xce\x9b\xce\x88\xce\x9e\xce\x97\xce\xa3:${\ h('A-2')}\n",
     1, 2, "\xce\x91\xce\x9b\xce\x88\xce\x9e\xce\x97\xce\xa3"])
{
    my ($what, $content, $l1, $l2, $shown) = @$case;
    (my $f = "dup-$what") =~ s/\W+/-/g;
    $t->write_file($f, $content);
    my $path = $t->write_config(conf($f), name => "$f.conf");
    my ($rc, $out) = $t->nginx_test;
    isnt($rc, 0, "duplicate account ($what): nginx -t fails");
    like($out, qr/\[emerg\].*\Q$dir\/$f\E:$l1 and \Q$dir\/$f\E:$l2: account "$shown" defined twice/,
         "duplicate account ($what): both lines named") or diag($out);
    like($out, qr/\Q$path\E:\d+/, "duplicate account ($what): nginx.conf line");
}

# a line without domain logs on in the server's own domain: where
# kcd_ntlm_domain is KCD, "alice" and "KCD\alice" are one account twice;
# where it is another domain they are two accounts
$t->write_file('two', "KCD\\alice:${\ h('A-1')}\nalice:${\ h('A-2')}\n");
my $two = $t->write_config(conf('two'), name => 'two.conf');
my ($rc, $out) = $t->nginx_test;
isnt($rc, 0, 'KCD\\alice and alice where the domain is KCD: nginx -t fails');
like($out, qr/\[emerg\].*\Q$dir\/two\E:1 and \Q$dir\/two\E:2: "KCD\\alice" and "alice" are the same account where kcd_ntlm_domain is "KCD".* in \Q$two\E:\d+/,
     '... both lines named, and the kcd_auth that uses them') or diag($out);
(my $other = conf('two')) =~ s/kcd_ntlm_domain KCD;/kcd_ntlm_domain OTHER;/;
$t->write_config($other, name => 'two-other.conf');
($rc, $out) = $t->nginx_test;
is($rc, 0, 'the same file where the domain is OTHER: two accounts')
    or diag($out);

# the NT hash of the empty password, as kcd-ntlm-hash used to write it
$t->write_file('empty', "KCD\\alice:31d6cfe0d16ae931b73c59d7e0c089c0\n");
$t->write_config(conf('empty'), name => 'empty.conf');
($rc, $out) = $t->nginx_test;
isnt($rc, 0, 'empty password hash: nginx -t fails');
like($out, qr/\Q$dir\/empty\E:1: the NT hash of the empty password/,
     'empty password hash: file:line and why');

# groups
$t->write_file('groups', "KCD\\alice:${\ h('A-1')}:Staff, Domain Users ,VPN\n"
    . "bob:${\ h('B-1')}:Sales\n");
$t->write_config(conf('groups'), name => 'groups.conf');
($rc, $out) = $t->nginx_test;
is($rc, 0, 'third field with groups loads') or diag($out);

# BOM: the first account still logs on; then a password change by reload
$t->write_file('users', "\xef\xbb\xbfKCD\\alice:${\ h('Alice-1')}:Staff\n"
    . "KCD\\bob:${\ h('Bob-1')}\n");
$t->write_config(conf('users'));
$t->run;

is(login('alice', 'Alice-1'), 200, 'BOM: the account on the first line logs on');
is(login('bob', 'Bob-1'), 200, 'BOM: the second account logs on');
is(login('alice', 'wrong'), 401, 'wrong password: 401');

# the documented way to change a password: append a line -> refused at
# reload, the running configuration stays
$t->write_file('users', "\xef\xbb\xbfKCD\\alice:${\ h('Alice-1')}\n"
    . "KCD\\bob:${\ h('Bob-1')}\nKCD\\alice:${\ h('Alice-2')}\n");
my $mark = $t->log_mark;
$t->reload;
ok($t->wait_for_log(qr/\[emerg\].*users:1 and .*users:3: account "KCD\\alice" defined twice/,
                    5, undef, $mark),
   'reload with a duplicate: emerg naming both lines');
is(login('alice', 'Alice-1'), 200, '... the old configuration keeps serving');

# replace the line instead: the new password works after reload
$t->write_file('users', "\xef\xbb\xbfKCD\\alice:${\ h('Alice-2')}\n"
    . "KCD\\bob:${\ h('Bob-1')}\n");
$t->reload;
my $ok = 0;
for my $try (1 .. 50) {
    $ok = login('alice', 'Alice-2') == 200 and last;
    select undef, undef, undef, 0.1;
}
ok($ok, 'password changed by reload: the new one logs on');
is(login('alice', 'Alice-1'), 401, '... the old one does not');

done_testing();
