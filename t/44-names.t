#!/usr/bin/perl

# SPEC "NT-hash user file" and B5 "Names": user and domain compare with
# Unicode simple case mapping (German, Cyrillic, Greek), NTOWFv2
# upper-cases the user the same way, and the UPN and DNS-domain spellings
# of a logon reach the same account and the principal alice@KCD.TEST
# (upper-case realm), for NTLM, NTLM inside SPNEGO and Basic.

use strict;
use warnings;
use utf8;

use FindBin;
use lib "$FindBin::Bin/lib";

use Encode qw(encode_utf8);
use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdSPNEGO qw(:all);
use KcdBackend;

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);

$SIG{ALRM} = sub { die "44-names.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 120;

my %PW = ('jürgen' => 'Jü-Pass1', 'дмитрий' => 'Дм-Pass1',
          'αλέξης' => 'Αλ-Pass1', alice => 'Alice-Pass1');

$t->make_cert('proxy', cn => 'mail.kcd.test');
$t->write_file('users', encode_utf8(join '', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));

$t->write_config(<<'EOF');
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        listen 127.0.0.1:%%PORT_8443%% ssl;
        server_name mail.kcd.test;

        ssl_certificate %%TESTDIR%%/proxy.crt;
        ssl_certificate_key %%TESTDIR%%/proxy.key;

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_ntlm_dns_domain kcd.test;
        kcd_realm KCD.TEST;

        add_header X-User $kcd_user always;
        add_header X-Principal $kcd_principal always;

        location / {
            kcd_auth ntlm negotiate basic;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://127.0.0.1:%%PORT_9000%%;
        }
    }
EOF
$t->run;

sub ntlm {
    my ($user, $domain, $pw) = @_;
    my $c = KcdTest::Conn->new(port => port(8080));
    my (undef, $r) = ntlm_login($c, '/n', user => $user, domain => $domain,
                                password => $pw);
    return $r // { status => 0 };
}

sub hdr {
    my ($r, $n) = @_;
    my $v = eval { $r->header($n) };
    return defined $v ? Encode::decode_utf8($v) : undef;
}

# Unicode simple case mapping, lookup and NTOWFv2 alike
for my $case (['JÜRGEN', 'jürgen', 'German'],
              ['ДМИТРИЙ', 'дмитрий', 'Cyrillic'],
              ['ΑΛΈΞΗΣ', 'αλέξης', 'Greek, tonos and final sigma'],
              ['Дмитрий', 'дмитрий', 'Cyrillic, mixed case'])
{
    my ($typed, $file, $what) = @$case;
    my $r = ntlm($typed, 'kcd', $PW{$file});
    is($r->{status}, 200, "NTLM $what: $typed logs on as $file");
    is(hdr($r, 'X-User'), "KCD\\$file", "$what: \$kcd_user has the file's "
       . 'spelling');
    is(hdr($r, 'X-Principal'), "$file\@KCD.TEST", "$what: principal");
}

is(ntlm('JÜRGEN', 'KCD', 'wrong')->{status}, 401,
   'Unicode name with a wrong password: 401');

# UPN and DNS-domain spellings
for my $case (['alice@kcd.test', '', 'UPN, empty domain'],
              ['ALICE@KCD.TEST', '', 'UPN in upper case'],
              ['alice', 'kcd.test', 'DNS domain'],
              ['alice', 'KCD.Test', 'DNS domain, mixed case'],
              ['alice', 'kcd', 'NetBIOS domain, lower case'])
{
    my ($u, $d, $what) = @$case;
    my $r = ntlm($u, $d, $PW{alice});
    is($r->{status}, 200, "NTLM $what ($u / $d): 200");
    is(hdr($r, 'X-User'), 'KCD\\alice', "$what: KCD\\alice");
    is(hdr($r, 'X-Principal'), 'alice@KCD.TEST', "$what: alice\@KCD.TEST");
}

my $mark = $t->log_mark;
is(ntlm('alice', 'OTHER', $PW{alice})->{status}, 401,
   'another domain is not ours: 401');
like($t->error_log(since => $mark), qr/unknown user/, 'log: unknown user');
is(ntlm('alice@other.example', '', $PW{alice})->{status}, 401,
   'a UPN of another domain: 401');

# the same inside SPNEGO
{
    my $c = KcdTest::Conn->new(port => port(8080));
    my (undef, $r) = spnego_ntlm_login($c, '/s', user => 'alice@kcd.test',
        domain => '', password => $PW{alice});
    is($r && $r->{status}, 200, 'SPNEGO NTLM with a UPN: 200');
    is(hdr($r, 'X-Principal'), 'alice@KCD.TEST', 'SPNEGO: alice@KCD.TEST');
}

# Basic (TLS only)
for my $u ('alice@kcd.test', 'kcd.test\\alice', 'KCD\\ALICE', 'Jürgen') {
    my $c = KcdTest::Conn->new(port => port(8443), ssl => 1);
    my $pw = $u eq 'Jürgen' ? $PW{'jürgen'} : $PW{alice};
    my $r = $c->get('/b', headers => [Authorization => 'Basic '
        . b64(encode_utf8("$u:$pw"))]);
    is($r->{status}, 200, "Basic $u: 200");
    my $p = $u eq 'Jürgen' ? 'jürgen@KCD.TEST' : 'alice@KCD.TEST';
    is(hdr($r, 'X-Principal'), $p, "Basic $u: $p");
}

done_testing();
