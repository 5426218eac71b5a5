#!/usr/bin/perl

# tools/kcd-ntlm-hash: writes "[DOMAIN\]user:<NT hash>" lines of the
# kcd_ntlm_user_file from a password read on stdin.

use strict;
use warnings;

use Cwd qw(abs_path);
use Encode qw(encode);
use File::Basename qw(dirname);
use File::Temp qw(tempfile);
use IPC::Open3 qw(open3);
use Symbol qw(gensym);
use Test::More;

use lib dirname(abs_path(__FILE__)) . '/lib';
use KcdNTLM qw(nt_hash);

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');
my $bin = "$root/build/kcd-ntlm-hash";

my @src = map { "$root/$_" } qw(tools/kcd-ntlm-hash.c
    ngx_http_kcd_ntlm_crypto.c ngx_http_kcd_ntlm_crypto.h);

if (!-x $bin || grep { -e $_ && (stat $_)[9] > (stat $bin)[9] } @src) {
    system("make -C '$root' build/kcd-ntlm-hash 1>&2") == 0 && -x $bin
        or BAIL_OUT('cannot build build/kcd-ntlm-hash');
}

# run the tool with $stdin on its standard input, at most 10 seconds
sub run {
    my ($stdin, @args) = @_;

    my $err = gensym;
    my $pid = open3(my $in, my $out, $err, $bin, @args);

    my ($o, $e) = ('', '');
    local $SIG{ALRM} = sub { kill 'KILL', $pid; die "timeout\n" };
    local $SIG{PIPE} = 'IGNORE';
    alarm 10;
    binmode $in;
    print $in $stdin;
    close $in;
    { local $/; $o = <$out> // ''; $e = <$err> // ''; }
    waitpid $pid, 0;
    alarm 0;

    return ($o, $e, $? >> 8);
}

my $h = 'a4f49c406510bdcab6824ee7c30fd852';   # MS-NLMP 4.2.1, "Password"

my ($o, $e, $rc);

($o, $e, $rc) = run("Password\n", 'User');
is($o, "User:$h\n", 'user without domain, MS-NLMP 4.2.1 NT hash');
is($rc, 0, 'exit status 0');

($o, $e, $rc) = run("Password\n", 'KCD\\alice');
is($o, "KCD\\alice:$h\n", 'DOMAIN\\user');

# raw bytes: only the final newline goes; CR, blanks and backslashes stay
($o, $e, $rc) = run("Password\r\n", 'bob');
is($o, "bob:" . unpack('H*', nt_hash("Password\r")) . "\n",
   'CR before the newline is part of the password');
($o, $e, $rc) = run(" a\\b \n", 'bob');
is($o, "bob:" . unpack('H*', nt_hash(" a\\b ")) . "\n",
   'blanks and backslashes are part of the password');

($o, $e, $rc) = run('Password', 'bob');
is($o, "bob:$h\n", 'password without a final newline');

($o, $e, $rc) = run("Password\nsomething else\n", 'bob');
is($o, "bob:$h\n", 'only the first line is the password');

for my $empty ("\n", '') {
    ($o, $e, $rc) = run($empty, 'bob');
    is($o, '', 'empty password: nothing printed');
    is($rc, 1, 'empty password: exit 1');
    like($e, qr/empty password refused/, 'empty password: message');
}

($o, $e, $rc) = run("password\n", 'bob');
isnt($o, "bob:$h\n", 'the password is case-sensitive');

# a non-ASCII password, checked against openssl's MD4 (legacy provider)
SKIP: {
    my $pw = "P\x{e4}ssw\x{f6}rd \x{20ac}\x{1d11e}";
    my ($tf, $tn) = tempfile(UNLINK => 1);
    binmode $tf;
    print $tf encode('UTF-16LE', $pw);
    close $tf;
    my $cmd = 'openssl dgst -provider legacy -provider default -md4 -r';
    my $ref = `$cmd < '$tn' 2>/dev/null`;
    skip 'openssl cannot compute MD4 here', 1
        unless $? == 0 && $ref =~ /^([0-9a-f]{32})/;
    $ref = $1;
    ($o, $e, $rc) = run(encode('UTF-8', $pw) . "\n", 'KCD\\j');
    is($o, "KCD\\j:$ref\n", 'non-ASCII password: MD4 of its UTF-16LE');
}

($o, $e, $rc) = run("\xff\xfe\n", 'bob');
is($rc, 1, 'invalid UTF-8 password: exit 1');
is($o, '', 'invalid UTF-8 password: nothing printed');

($o, $e, $rc) = run("x\n", 'a', 'b');
is($rc, 2, 'two arguments: exit 2');

($o, $e, $rc) = run("x\n");
is($rc, 2, 'no argument: exit 2');
like($e, qr/usage: kcd-ntlm-hash/, 'no argument: usage on stderr');
is($o, '', 'no argument: nothing on stdout');

for my $bad ('a:b', 'KCD\\', '\\user', 'A\\B\\c', "us\ner", '-h', '') {
    ($o, $e, $rc) = run("x\n", $bad);
    (my $shown = $bad) =~ s/\n/\\n/g;
    is($rc, 2, "bad user name '$shown': exit 2");
}

# on a terminal: two prompts, echo off, both entries must match
sub run_tty {
    my ($name, @lines) = @_;
    my $py = <<'PY';
import os, pty, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], [sys.argv[1], sys.argv[2]])
out = b''
for line in sys.argv[3:]:
    while not out.endswith(b': '):
        b = os.read(fd, 1024)
        if not b:
            break
        out += b
    out += b'<sent>'
    os.write(fd, line.encode() + b'\n')
while True:
    try:
        b = os.read(fd, 1024)
    except OSError:
        break
    if not b:
        break
    out += b
_, st = os.waitpid(pid, 0)
sys.stdout.write(out.decode('utf-8', 'replace'))
sys.exit(os.waitstatus_to_exitcode(st))
PY
    open(my $fh, '-|', 'timeout', '10', '/usr/bin/python3', '-c', $py, $bin,
         $name, @lines) or die "python3: $!";
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    return ($out, $? >> 8);
}

my ($tty, $trc) = run_tty('KCD\\alice', 'Pass word', 'Pass word');
is($trc, 0, 'terminal: exit 0');
like($tty, qr/^Password: <sent>\r?\nAgain: <sent>/, 'terminal: prompts twice');
unlike($tty, qr/Pass word/, 'terminal: the password is not echoed');
like($tty, qr/KCD\\alice:\Q${\ unpack('H*', nt_hash('Pass word'))}\E/,
     'terminal: the line for the typed password');

($tty, $trc) = run_tty('bob', 'one', 'two');
is($trc, 1, 'terminal, entries differ: exit 1');
like($tty, qr/do not match/, 'terminal, entries differ: message');
unlike($tty, qr/bob:/, 'terminal, entries differ: no line');

($tty, $trc) = run_tty('bob', '');
is($trc, 1, 'terminal, empty password: exit 1');
like($tty, qr/empty password refused/, 'terminal, empty: message');

done_testing();
