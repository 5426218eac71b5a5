#!/usr/bin/perl

# Adversary, wave 3: the packed connection identity (strings deduplicated
# into one block with 16-bit offsets), the NTLM pending block sized to its
# messages, the per-process ServerChallenge pool, the SPNEGO framing tag,
# and the Kerberos evidence kept only in servers that delegate.
#
# The main invariant: what a later request of a keep-alive connection sees
# ($kcd_user, $kcd_user_name, $kcd_user_domain, $kcd_principal,
# $remote_user, $kcd_auth_scheme, kcd_require groups) is exactly what the
# logon request saw, for names built to make the deduplication alias
# (user name inside the domain, the realm, the principal, the groups),
# non-ASCII and long names, and across re-authentication.
#
# Which subtests catch which regression (checked by mutating the code):
# "aliasing names" a wrong offset or length in the packing (e.g. a
# deduplication that matches a prefix); "groups" groups lost in the
# unpacked identity; "Kerberos, then the next request" the client's
# ticket not kept in a server that delegates only in some locations;
# "ServerChallenge" a pool slice served twice or wiped before it is
# copied.  Under KCD_SANITIZE=1 (t/90) LeakSanitizer checks that the 60
# re-authentications of one connection free every block.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use MIME::Base64 qw(encode_base64 decode_base64);
use Encode qw(decode_utf8);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdSPNEGO qw(spnego_ntlm_login spnego_init);
use KcdRealm;
use KcdBackend;
use KcdApache;
use IPC::Open2;

my $t = KcdTest->new->skip_unless_module;

$SIG{ALRM} = sub { die "83-adversary-wave3.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 120;

sub line {
    my ($u, $pw, $g) = @_;
    return "$u:" . unpack('H*', nt_hash($pw)) . (defined $g ? ":$g" : '')
        . "\n";
}

# names made to alias: "K" and "KC" and "CD" are inside the domain "KCD"
# and the realm "KCD.TEST"; "TEST" inside the realm; "kcd" is the domain
# in another case; a group named like the principal; one 64 groups of 250
# bytes (the user file's limits); a non-ASCII name; a 200-byte name.
my $long = 'l' x 200;
my @big = map { sprintf("g%03d", $_) . ('x' x 246) } 1 .. 64;
my %PW = (K => 'K-Pass1', KC => 'KC-Pass1', CD => 'CD-Pass1',
          TEST => 'Test-Pass1', kcd => 'kcd-Pass1', alice => 'Alice-1',
          bob => 'Bob-1', "j\xc3\xbcrgen" => 'Juergen-1', $long => 'Long-1',
          big => 'Big-1', nodom => 'Nodom-1');

$t->write_file('users',
      line('KCD\\K', $PW{K}, 'K,KCD')
    . line('KCD\\KC', $PW{KC}, 'KC@KCD.TEST')
    . line('KCD\\CD', $PW{CD})
    . line('KCD\\TEST', $PW{TEST}, 'TEST,KCD.TEST')
    . line('KCD\\kcd', $PW{kcd}, 'kcd')
    . line('KCD\\alice', $PW{alice}, 'Staff')
    . line('KCD\\bob', $PW{bob}, 'Admins')
    . line("KCD\\j\xc3\xbcrgen", $PW{"j\xc3\xbcrgen"}, "\xc3\x84rzte")
    . line("KCD\\$long", $PW{$long}, $long)
    . line('KCD\\big', $PW{big}, join(',', @big))
    . line('nodom', $PW{nodom}));
$t->write_file('users2', line('KCD\\alice', $PW{alice}, 'Staff'));
$t->write_file('index.html', "ok\n");

my $ID = '"$kcd_user|$kcd_user_name|$kcd_user_domain|$kcd_principal|'
       . '$remote_user|$kcd_auth_scheme"';

$t->write_config(<<"EOF", workers => 2);
    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name a.test;
        root %%TESTDIR%%;

        kcd_auth ntlm negotiate;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        add_header X-Id $ID always;

        location / { }

        location /staff/ {
            kcd_require group=Staff;
            alias %%TESTDIR%%/;
        }

        location /big/ {
            kcd_require group=$big[-1];
            alias %%TESTDIR%%/;
        }

        location /other-file/ {
            kcd_ntlm_user_file %%TESTDIR%%/users2;
            alias %%TESTDIR%%/;
        }

        location /realm2/ {
            kcd_realm OTHER.TEST;
            alias %%TESTDIR%%/;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name b.test;
        root %%TESTDIR%%;

        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        add_header X-Id $ID always;

        location / { }
    }
EOF
$t->run;

my $port = port(8080);

sub conn { KcdTest::Conn->new(port => $port) }

sub id_of { my ($r) = @_; return $r ? $r->header('X-Id') // '' : '' }

sub login {
    my ($c, $path, $user, %o) = @_;
    my ($r1, $r) = ntlm_login($c, $path, user => decode_utf8($user),
        domain => 'KCD', password => $PW{$user},
        headers => [Host => 'a.test'], %o);
    return $r;
}

sub get {
    my ($c, $path, $host) = @_;
    return $c->get($path, headers => [Host => $host // 'a.test']);
}

# ---------------------------------------------------------------- 1
subtest 'aliasing names: the logon and the next requests agree' => sub {
    for my $u ('K', 'KC', 'CD', 'TEST', 'kcd', 'alice',
               "j\xc3\xbcrgen", $long, 'big')
    {
        my $c = conn();
        my $r = login($c, '/', $u);
        is($r && $r->status, 200, "$u: logon 200") or next;
        my $first = id_of($r);
        is($first, "KCD\\$u|$u|KCD|$u\@KCD.TEST|KCD\\$u|ntlm",
           "$u: the logon request's variables");
        for my $n (2 .. 4) {
            is(id_of(get($c, '/')), $first, "$u: request $n, same values");
        }
    }
};

# ---------------------------------------------------------------- 2
subtest 'a user file line without a domain' => sub {
    my $c = conn();
    my ($r1, $r) = ntlm_login($c, '/', user => 'nodom', domain => 'KCD',
        password => $PW{nodom}, headers => [Host => 'a.test']);
    is($r && $r->status, 200, 'nodom: logon') or return;
    my $first = id_of($r);
    ok(length $first, "nodom: variables ($first)");
    is(id_of(get($c, '/')), $first, 'nodom: request 2, same values');
};

# ---------------------------------------------------------------- 3
subtest 'groups of the bound identity (kcd_require) on later requests' => sub {
    my $c = conn();
    my $r = login($c, '/staff/', 'alice');
    is($r && $r->status, 200, 'alice (Staff): /staff/ 200');
    is(get($c, '/staff/')->status, 200, 'alice: /staff/ again, 200');
    is(get($c, '/big/')->status, 403, 'alice: /big/ 403');

    $c = conn();
    $r = login($c, '/big/', 'big');
    is($r && $r->status, 200, 'big (64 groups of 250 bytes): /big/ 200');
    is(get($c, '/big/')->status, 200, 'big: /big/ again, 200');
    is(get($c, '/staff/')->status, 403, 'big: /staff/ 403');

    # a group spelled like the user's principal, a group equal to the
    # domain: deduplicated into the principal, never a group by accident
    $c = conn();
    $r = login($c, '/staff/', 'KC');
    is($r && $r->status, 403, 'KC (group "KC@KCD.TEST"): /staff/ 403');
    is(get($c, '/staff/')->status, 403, 'KC: /staff/ again, 403');
    is(id_of(get($c, '/')), "KCD\\KC|KC|KCD|KC\@KCD.TEST|KCD\\KC|ntlm",
       'KC: still KC after a 403');
};

# ---------------------------------------------------------------- 4
subtest 'B4: re-authentication replaces every variable' => sub {
    my $c = conn();
    my $r = login($c, '/', 'alice');
    is(id_of($r), "KCD\\alice|alice|KCD|alice\@KCD.TEST|KCD\\alice|ntlm",
       'alice');
    $r = login($c, '/', 'K');
    is(id_of($r), "KCD\\K|K|KCD|K\@KCD.TEST|KCD\\K|ntlm", 'then K');
    is(id_of(get($c, '/')), "KCD\\K|K|KCD|K\@KCD.TEST|KCD\\K|ntlm",
       'K on the next request, nothing of alice');
    $r = login($c, '/', $long);
    is(id_of(get($c, '/')),
       "KCD\\$long|$long|KCD|$long\@KCD.TEST|KCD\\$long|ntlm",
       'then the 200-byte name');
    $r = login($c, '/', 'CD');
    is(id_of(get($c, '/')), "KCD\\CD|CD|KCD|CD\@KCD.TEST|KCD\\CD|ntlm",
       'then CD (shorter than what the block held)');

    # a failed re-authentication leaves nothing
    my ($r1, $r2) = ntlm_login($c, '/', user => 'bob', domain => 'KCD',
        password => 'wrong', headers => [Host => 'a.test']);
    is($r2 && $r2->status, 401, 'bob, wrong password: 401');
    my $r3 = get($c, '/');
    is($r3->status, 401, 'after the failed re-auth: 401, not CD')
        or diag(id_of($r3));
    is(id_of($r3), '|||||', 'no variable of CD on the 401')
        if $r3->status == 401;
};

# ---------------------------------------------------------------- 5
subtest 'Type 1 only (re-auth started, not finished): identity gone' => sub {
    my $c = conn();
    login($c, '/', 'alice');
    my $r = $c->get('/', headers => [Host => 'a.test',
        Authorization => 'NTLM ' . encode_base64(type1(), '')]);
    is($r->status, 401, 'Type 1 on an authenticated connection: 401');
    $r = get($c, '/');
    is($r->status, 401, 'next request without credentials: 401');
    unlike(id_of($r), qr/alice/, 'no trace of alice');
};

# ---------------------------------------------------------------- 6
subtest 'scope: other server, other user file, other realm' => sub {
    my $c = conn();
    login($c, '/', 'alice');
    my $r = get($c, '/', 'b.test');
    is($r->status, 401, 'server b on a connection authenticated in a: 401');
    unlike(id_of($r), qr/alice/, 'server b: no alice in the variables');
    is(get($c, '/other-file/')->status, 401,
       'another user file (same account in it): 401');
    is(get($c, '/realm2/')->status, 401, 'another realm mapping: 401');
    is(id_of(get($c, '/')),
       "KCD\\alice|alice|KCD|alice\@KCD.TEST|KCD\\alice|ntlm",
       'back in /: still alice (a challenge does not drop the identity)');
};

# ---------------------------------------------------------------- 7
subtest 'SPNEGO-wrapped NTLM and raw NTLM on one connection' => sub {
    my $c = conn();
    my ($r1, $r, $info) = spnego_ntlm_login($c, '/', user => 'alice',
        domain => 'KCD', password => $PW{alice},
        headers => [Host => 'a.test']);
    is($r && $r->status, 200, 'SPNEGO NTLM alice: 200') or return;
    my $id = id_of($r);
    like($id, qr/^KCD\\alice\|alice\|KCD\|alice\@KCD\.TEST\|KCD\\alice\|/,
         "SPNEGO NTLM alice: variables ($id)");
    is(id_of(get($c, '/')), $id, 'next request: same');

    $r = login($c, '/', 'bob');
    is(id_of($r), "KCD\\bob|bob|KCD|bob\@KCD.TEST|KCD\\bob|ntlm",
       'raw NTLM bob on the same connection');
    is(id_of(get($c, '/')), "KCD\\bob|bob|KCD|bob\@KCD.TEST|KCD\\bob|ntlm",
       'next request: bob');

    # SPNEGO with NTLMSSP further down the list (the pending block of
    # spnego_select, sized to the mechanism list), then bob again by SPNEGO
    ($r1, $r) = spnego_ntlm_login($c, '/', user => 'K', domain => 'KCD',
        password => $PW{K}, mechs => [qw(mskrb5 krb5 ntlmssp)],
        headers => [Host => 'a.test']);
    is($r && $r->status, 200, 'SPNEGO (NTLMSSP third) K: 200');
    like(id_of(get($c, '/')), qr/^KCD\\K\|K\|KCD\|K\@KCD\.TEST\|KCD\\K\|/,
         'next request: K');

    # a handshake begun in SPNEGO cannot be finished raw (no mechListMIC)
    my $t1 = type1(flags => 0xe208b297, domain => 'KCD', workstation => 'W');
    $r1 = $c->get('/', headers => [Host => 'a.test', Authorization =>
        'Negotiate ' . encode_base64(spnego_init(
            mechs => [qw(ntlmssp mskrb5 krb5 negoex)], token => $t1), '')]);
    my ($neg) = map { /^Negotiate\s+(\S+)/ ? $1 : () }
        $r1->headers_all('WWW-Authenticate');
    ok($neg, 'SPNEGO challenge') or return;
    my $p = KcdSPNEGO::parse_spnego(decode_base64($neg));
    my $t3 = type3(type1 => $t1, type2 => parse_type2($p->{token}),
        user => 'bob', domain => 'KCD', password => $PW{bob});
    $r = $c->get('/', headers => [Host => 'a.test',
        Authorization => 'NTLM ' . encode_base64($t3, '')]);
    is($r->status, 401, 'SPNEGO CHALLENGE answered by a raw NTLM Type 3: 401');
    is(get($c, '/')->status, 401, 'and nobody is bound');
};

# ---------------------------------------------------------------- 8
subtest 'ServerChallenge: distinct across workers, reload, connections' => sub {
    my %seen;
    my $dups = 0;
    my $n = 0;
    my $take = sub {
        for (1 .. 40) {
            my $c = conn();
            my $r = $c->get('/', headers => [Host => 'a.test',
                Authorization => 'NTLM ' . encode_base64(type1(), '')]);
            my ($v) = map { /^NTLM\s+(\S+)/ ? $1 : () }
                $r->headers_all('WWW-Authenticate');
            next unless $v;
            my $ch = parse_type2(decode_base64($v))->{challenge};
            $dups++ if $seen{$ch}++;
            $n++;
        }
    };
    $take->();
    $t->reload;
    $take->();
    $t->reload;
    $take->();
    is($n, 120, '120 challenges');
    is($dups, 0, 'no challenge served twice (before and after reloads)');
    ok(!exists $seen{"\0" x 8}, 'no all-zero (wiped) challenge');
};

# ---------------------------------------------------------------- 9
subtest 'many re-authentications on one connection (LSan at exit)' => sub {
    my $c = conn();
    my @who = ('alice', 'K', $long, 'big', "j\xc3\xbcrgen", 'CD');
    my $bad = 0;
    for my $i (0 .. 59) {
        my $u = $who[$i % @who];
        if ($i % 5 == 4) {
            # abandoned handshake: Type 1 only, then a SPNEGO one
            $c->get('/', headers => [Host => 'a.test',
                Authorization => 'NTLM ' . encode_base64(type1(), '')]);
            my ($r1, $r) = spnego_ntlm_login($c, '/', user => decode_utf8($u),
                domain => 'KCD', password => $PW{$u},
                mechs => [$i % 2 ? qw(ntlmssp krb5) : qw(krb5 ntlmssp)],
                headers => [Host => 'a.test']);
            $bad++ unless $r && $r->status == 200;
        } else {
            my $r = login($c, $i % 3 ? '/' : '/staff/', $u);
            $bad++ unless $r && ($r->status == 200 || $r->status == 403);
        }
        my $id = id_of(get($c, '/'));
        $bad++ unless $id =~ /^\Q$u\E\@KCD\.TEST\|/
            || $id =~ /^KCD\\\Q$u\E\|\Q$u\E\|KCD\|\Q$u\E\@KCD\.TEST\|/;
    }
    is($bad, 0, '60 logons (raw, SPNEGO, abandoned) on one connection: '
       . 'every next request shows the last user');
};

# ---------------------------------------------------------------- 10
# (no HUP here: nginx itself stops answering after a reload with
# master_process off, module or not)
subtest 'ServerChallenge with master_process off' => sub {
    my $s = KcdTest->new;
    my $d = $s->testdir;
    $s->write_file('users', line('KCD\\alice', $PW{alice}));
    $s->write_file('index.html', "ok\n");
    $s->write_config(<<"EOF", raw => 1);
load_module %%MODULE%%;
daemon on;
master_process off;
pid $d/nginx.pid;
lock_file $d/nginx.lock;
error_log $d/error.log info;
events { }
http {
    access_log $d/access.log;
    client_body_temp_path $d/client_body_temp;
    server {
        listen 127.0.0.1:%%PORT_8280%%;
        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        root %%TESTDIR%%;
        location / { }
    }
}
EOF
    $s->run(timeout => 2);
    my %seen;
    my ($n, $dups) = (0, 0);
    my $take = sub {
        for (1 .. 70) {
            my $c = KcdTest::Conn->new(port => port(8280));
            my $r = $c->get('/', headers =>
                [Authorization => 'NTLM ' . encode_base64(type1(), '')]);
            my ($v) = map { /^NTLM\s+(\S+)/ ? $1 : () }
                $r->headers_all('WWW-Authenticate');
            next unless $v;
            $dups++ if $seen{parse_type2(decode_base64($v))->{challenge}}++;
            $n++;
        }
    };
    $take->();
    $take->();
    is($n, 140, '140 challenges from the single process');
    is($dups, 0, 'all distinct across the pool refills');
    my $c = KcdTest::Conn->new(port => port(8280));
    my ($r1, $r) = ntlm_login($c, '/', user => 'alice', domain => 'KCD',
                              password => $PW{alice});
    is($r && $r->status, 200, 'a logon after 140 challenges');
    $s->stop;
};

# ---------------------------------------------------------------- Kerberos
#
# A server that delegates in one location only (/deleg/): the Kerberos
# client's ticket stays on the connection (the server "delegates"), and
# whatever logs on next on that connection never delegates with it.

my $PY = '/usr/bin/python3';
my $missing = KcdRealm->missing || KcdApache->missing
    || (system("$PY -c 'import gssapi' 2>/dev/null") == 0 ? ''
        : 'python3-gssapi');

SKIP: {
skip "Kerberos: missing $missing", 4 if $missing;

my $k = KcdTest->new;
my $kdir = $k->testdir;
my $realm = KcdRealm->start(dir => "$kdir/realm");
my $rec = KcdBackend->start(port => port(9100), dir => $kdir, name => 'rec');
my $ap = KcdApache->start(dir => $kdir, realm => $realm);
my $aport = $ap->port;
my %KPW = %KcdRealm::PASSWORDS;

$k->write_file('users', join('', map { line("KCD\\$_", $KPW{$_}) }
                                     sort keys %KPW));
$k->write_file('index.html', "ok\n");
my $keytab = $realm->keytab('proxy');
my $krb5_conf = $realm->krb5_conf;
my $rcache = $realm->dir . '/rcache';

$k->write_config(<<"EOF",
    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;

    server {
        listen 127.0.0.1:%%PORT_8180%%;
        server_name proxy.kcd.test;
        root %%TESTDIR%%;

        kcd_auth negotiate ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        add_header X-Id $ID always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location / { }

        location /deleg/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_set_header Host backend.kcd.test;
            proxy_pass http://127.0.0.1:$aport/echo;
        }

        location /rec/ {
            kcd_spn HTTP/backend.kcd.test;
            proxy_pass http://127.0.0.1:%%PORT_9100%%;
        }
    }
EOF
    main => "env KRB5_CONFIG=$krb5_conf;\nenv KRB5RCACHEDIR=$rcache;\n"
          . "thread_pool default threads=2;");
$k->run;

my $kport = port(8180);
my $ccache = "FILE:$kdir/alice.cc";
$realm->kinit('alice', $KPW{alice}, $ccache) or diag('kinit alice failed');

# alice's first SPNEGO token (an AP-REQ for HTTP/proxy.kcd.test)
my $token = sub {
    local %ENV = %ENV;
    my $env = $realm->env;
    for (keys %$env) {
        if (defined $env->{$_}) { $ENV{$_} = $env->{$_} }
        else { delete $ENV{$_} }
    }
    $ENV{KRB5CCNAME} = $ccache;
    my $pid = open2(my $out, my $in, $PY,
        KcdTest::repo_root() . '/t/lib/spnego_initiator.py',
        'alice', 'HTTP@proxy.kcd.test');
    my $l = <$out> // '';
    chomp $l;
    close $in;
    { local $/; my $rest = <$out>; }
    waitpid($pid, 0);
    return $l =~ /^[0-9a-f]+$/ ? encode_base64(pack('H*', $l), '') : undef;
};

my $kget = sub {
    my ($c, $path, @h) = @_;
    return $c->get($path, headers => [Host => 'proxy.kcd.test', @h]);
};
my $tgs = sub {
    my ($mark) = @_;
    return join '', $realm->kdc_requests(type => 'TGS_REQ', since => $mark);
};

subtest 'Kerberos, then the next request, then /deleg/ with its ticket' => sub {
    my $tok = $token->() or return fail('no Kerberos token');
    my $c = KcdTest::Conn->new(port => $kport);
    my $r = $kget->($c, '/', Authorization => "Negotiate $tok");
    is($r->status, 200, 'Kerberos alice: 200');
    my $id = id_of($r);
    is(id_of($kget->($c, '/')), $id, "request 2: the same ($id)");

    my $mark = $realm->log_mark;
    $rec->clear;
    $r = $kget->($c, '/deleg/');
    is($r->status, 200, "/deleg/ on the same connection: delegated")
        or diag($r->status, " ", $r->body, $k->error_log);
    like($r->body, qr/^user=alice\@KCD\.TEST /, 'the backend saw alice');
    my $kdc = $tgs->($mark);
    unlike($kdc, qr/for HTTP\/proxy\.kcd\.test\@/,
           "no S4U2Self: alice's own ticket stayed on the connection "
           . '(the server delegates in /deleg/)') or diag($kdc);
};

subtest 'Kerberos alice, then NTLM carol: carol is delegated, never alice'
=> sub {
    my $tok = $token->() or return fail('no Kerberos token');
    my $c = KcdTest::Conn->new(port => $kport);
    my $r = $kget->($c, '/', Authorization => "Negotiate $tok");
    is($r->status, 200, 'Kerberos alice: 200');
    my ($r1, $r2) = ntlm_login($c, '/', user => 'carol', domain => 'KCD',
        password => $KPW{carol}, headers => [Host => 'proxy.kcd.test']);
    is(id_of($r2), "KCD\\carol|carol|KCD|carol\@KCD.TEST|KCD\\carol|ntlm",
       'NTLM carol on the same connection');
    my $mark = $realm->log_mark;
    $r = $kget->($c, '/deleg/');
    is($r->status, 200, 'carol: /deleg/ 200');
    like($r->body, qr/^user=carol\@KCD\.TEST /, 'the backend saw carol');
    like($tgs->($mark), qr/for HTTP\/proxy\.kcd\.test\@/,
         "S4U2Self for carol: alice's ticket went with her identity");
    is(id_of($kget->($c, '/')),
       "KCD\\carol|carol|KCD|carol\@KCD.TEST|KCD\\carol|ntlm",
       'next request: carol');
};

subtest 'Kerberos alice, then a failed NTLM re-auth: nothing delegated'
=> sub {
    my $tok = $token->() or return fail('no Kerberos token');
    my $c = KcdTest::Conn->new(port => $kport);
    my $r = $kget->($c, '/', Authorization => "Negotiate $tok");
    is($r->status, 200, 'Kerberos alice: 200');
    my ($r1, $r2) = ntlm_login($c, '/', user => 'carol', domain => 'KCD',
        password => 'wrong', headers => [Host => 'proxy.kcd.test']);
    is($r2 && $r2->status, 401, 'carol, wrong password: 401');
    my $mark = $realm->log_mark;
    $rec->clear;
    $r = $kget->($c, '/rec/z');
    is($r->status, 401, '/rec/ afterwards: 401');
    is($realm->count_requests(since => $mark), 0, 'no KDC request');
    is(scalar($rec->requests), 0, 'nothing reached the backend');
};

subtest 'Kerberos alice, then SPNEGO NTLM carol (NegoEx first)' => sub {
    my $tok = $token->() or return fail('no Kerberos token');
    my $c = KcdTest::Conn->new(port => $kport);
    my $r = $kget->($c, '/', Authorization => "Negotiate $tok");
    is($r->status, 200, 'Kerberos alice: 200');
    my $mark = $k->log_mark;
    my ($r1, $r2) = spnego_ntlm_login($c, '/', user => 'carol',
        domain => 'KCD', password => $KPW{carol},
        mechs => [qw(negoex ntlmssp)],
        headers => [Host => 'proxy.kcd.test']);
    is($r2 && $r2->status, 200, 'SPNEGO NTLM carol: 200');
    like($k->error_log(since => $mark),
         qr/re-authentication \(SPNEGO\) on an authenticated connection: (?x)
            "alice\@KCD\.TEST" \s dropped/,
         'the log names alice as the identity dropped');
    my $kmark = $realm->log_mark;
    $r = $kget->($c, '/deleg/');
    like($r->body, qr/^user=carol\@KCD\.TEST /,
         '/deleg/: the backend saw carol');
    like($tgs->($kmark), qr/for HTTP\/proxy\.kcd\.test\@/,
         "S4U2Self for carol, not alice's ticket");
};

$k->stop;
}

done_testing();
