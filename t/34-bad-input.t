#!/usr/bin/perl

# B12. Bad input: invalid base64, wrong signature, wrong message type,
# truncated messages, offsets or lengths out of bounds, oversized tokens,
# a Type 3 without a Type 2: 400 or 401, logged, never a crash, never
# forwarded.  Then ~500 random mutations of valid Type 3 messages (with a
# MIC, which covers every byte): none may be accepted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;
my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);

my $NTH = unpack('H*', nt_hash('Secret1'));
$t->write_file('users', "KCD\\alice:$NTH\n");

$t->write_config(<<'EOF');
    upstream backend {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name localhost;

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_ntlm_computer PROXY;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location / {
            kcd_auth ntlm;
            proxy_pass http://backend;
        }

        location = /kcd-status {
            kcd_status;
        }
    }

    server {
        listen 127.0.0.1:%%PORT_8081%%;
        server_name big;

        # big enough for a 100 KB header: the module sees the token
        large_client_header_buffers 4 256k;

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;

        location / {
            kcd_auth ntlm negotiate;
            proxy_pass http://backend;
        }
    }
EOF
$t->run;

my $master = $t->pid;
# the worker is forked after the listen sockets answer: wait for it
my @w0;
for (1 .. 100) { last if @w0 = $t->worker_pids; select(undef, undef, undef, 0.05) }
die "no nginx worker process" unless @w0;

sub conn { return KcdTest::Conn->new(port => port(shift || 8080)) }

sub type2_of {
    my ($r) = @_;
    for my $v ($r->headers_all('WWW-Authenticate')) {
        return parse_type2(unb64($1)) if $v =~ /^NTLM ([A-Za-z0-9+\/=]+)$/;
    }
    return undef;
}

# a connection with a pending challenge: (conn, type1, type2)
sub challenged {
    my $c = conn();
    my $t1 = type1();
    my $r = $c->get('/chal', headers => [Authorization => 'NTLM ' . b64($t1)]);
    my $t2 = type2_of($r) or die "no Type 2 (status $r->{status})";
    return ($c, $t1, $t2);
}

sub valid3 {
    my ($t1, $t2, %o) = @_;
    return scalar type3(type1 => $t1, type2 => $t2, user => 'alice',
                        domain => 'KCD', nt_hash => $NTH, workstation => 'WS',
                        %o);
}

my $n = 0;

# check(name, response, expected statuses, log regexp, mark)
sub check {
    my ($name, $r, $want, $re, $mark, $uri) = @_;
    $n++;
    my %w = map { $_ => 1 } @$want;
    ok($w{$r->{status}}, "$name: status $r->{status} is one of @$want");
    ok(!$r->has_header('X-Backend-Conn'), "$name: not answered by the backend");
    ok($t->wait_for_log($re, 2, 'error.log', $mark), "$name: log $re") if $re;
}

sub send_auth {
    my ($c, $uri, $value) = @_;
    return $c->get($uri, headers => [Authorization => $value]);
}

###########################################################################

$b->clear;

subtest 'malformed tokens' => sub {
    my $mark = $t->log_mark;
    check('invalid base64', send_auth(conn(), '/b64', 'NTLM !!!not*base64%%'),
          [400], qr/kcd: invalid base64 in NTLM authorization/, $mark);

    $mark = $t->log_mark;
    my $badsig = "NTLMSSX\0" . pack('V', 1) . pack('V', DEFAULT_TYPE1_FLAGS)
        . ("\0" x 20);
    check('wrong signature', send_auth(conn(), '/sig', 'NTLM ' . b64($badsig)),
          [400], qr/kcd: NTLM authorization is not an NTLMSSP message/, $mark);

    $mark = $t->log_mark;
    my $t2 = make_type2(av => [[MsvAvNbDomainName, utf16le('X')]]);
    check('Type 2 from the client', send_auth(conn(), '/t2', 'NTLM ' . b64($t2)),
          [400, 401], qr/kcd: unexpected NTLM message type 2/, $mark);

    # on a connection with a pending challenge, too: the challenge is gone
    my ($c, $t1, $t2s) = challenged();
    my $r = send_auth($c, '/t2b', 'NTLM ' . b64($t2));
    check('Type 2 after a Type 2', $r, [400, 401], undef);
    $c = conn() if $r->{closed} || $c->closed(timeout => 0.1);

    $mark = $t->log_mark;
    my $t7 = "NTLMSSP\0" . pack('V', 7) . ("\0" x 40);
    check('type 7', send_auth(conn(), '/t7', 'NTLM ' . b64($t7)),
          [400], qr/kcd: NTLM authorization is not an NTLMSSP message/, $mark);

    $mark = $t->log_mark;
    check('Type 1 truncated to 10 bytes',
          send_auth(conn(), '/t1short', 'NTLM ' . b64(substr(type1(), 0, 10))),
          [400], qr/kcd: NTLM authorization is not an NTLMSSP message/, $mark);

    $mark = $t->log_mark;
    check('Type 1 truncated to 14 bytes',
          send_auth(conn(), '/t1short14', 'NTLM ' . b64(substr(type1(), 0, 14))),
          [400], qr/kcd: malformed NTLM NEGOTIATE/, $mark);

    $mark = $t->log_mark;
    my $t1oob = type1(domain => 'KCD', workstation => 'WS');
    substr($t1oob, 20, 4) = pack('V', 0xfffffff0);    # domain offset
    check('Type 1 domain offset out of bounds',
          send_auth(conn(), '/t1oob', 'NTLM ' . b64($t1oob)),
          [400], qr/kcd: malformed NTLM NEGOTIATE/, $mark);

    my $t1len = type1(domain => 'KCD', workstation => 'WS');
    substr($t1len, 24, 2) = pack('v', 0xffff);         # workstation length
    check('Type 1 workstation length out of bounds',
          send_auth(conn(), '/t1len', 'NTLM ' . b64($t1len)), [400], undef);

    check('"NTLM" without a token', send_auth(conn(), '/empty', 'NTLM'),
          [401], undef);
    check('NTLM with blanks only', send_auth(conn(), '/blank', 'NTLM    '),
          [401], undef);
    check('NUL bytes', send_auth(conn(), '/nul', 'NTLM ' . b64("\0" x 64)),
          [400], undef);

    # under Negotiate (a location offering it, no keytab)
    $mark = $t->log_mark;
    check('Negotiate, invalid base64',
          send_auth(conn(8081), '/nb64', 'Negotiate @@@@'), [400],
          qr/kcd: invalid base64 in Negotiate authorization/, $mark);
    $mark = $t->log_mark;
    check('Negotiate, neither NTLMSSP nor Kerberos',
          send_auth(conn(8081), '/ngarbage', 'Negotiate ' . b64("\x60\x82garbage" x 5)),
          [400, 401], qr/kcd: /, $mark);
    $mark = $t->log_mark;
    check('Negotiate, NTLMSSP type 7',
          send_auth(conn(8081), '/nt7', 'Negotiate ' . b64("NTLMSSP\0" . pack('V', 7) . ("\0" x 40))),
          [400, 401], qr/kcd: /, $mark);
    check('unknown scheme', send_auth(conn(), '/digest', 'Digest username="alice"'),
          [401], undef);
};

subtest 'Type 3 without a Type 2' => sub {
    my $mark = $t->log_mark;
    my $t2 = make_type2(flags => 0xA2898205,
        av => [[MsvAvNbDomainName, utf16le('KCD')],
               [MsvAvNbComputerName, utf16le('PROXY')],
               [MsvAvTimestamp, filetime_now()]]);
    my $t3 = valid3(type1(), $t2);
    check('Type 3 on a fresh connection',
          send_auth(conn(), '/no2', 'NTLM ' . b64($t3)),
          [401], qr/kcd: NTLM AUTHENTICATE without a CHALLENGE on this connection/,
          $mark);
};

subtest 'truncated Type 3' => sub {
    my ($c, $t1, $t2) = challenged();
    my $full = valid3($t1, $t2);
    for my $len (8, 11, 12, 40, 63, 64, 71, 72, 87, 88, 100,
                 int(length($full) / 2), length($full) - 1) {
        ($c, $t1, $t2) = challenged();
        my $m = substr(valid3($t1, $t2), 0, $len);
        my $mark = $t->log_mark;
        check("Type 3 truncated to $len of " . length($full),
              send_auth($c, "/trunc$len", 'NTLM ' . b64($m)), [400, 401],
              qr/kcd: (malformed NTLM AUTHENTICATE|NTLM authorization is not an NTLMSSP|NTLM logon failed)/,
              $mark);
    }
};

subtest 'Type 3 fields out of bounds, huge lengths' => sub {
    # security buffers: LM 12, NT 20, domain 28, user 36, workstation 44,
    # session key 52 (len u16, maxlen u16, offset u32)
    my %cases = (
        'user offset far beyond'      => sub { substr($_[0], 40, 4) = pack('V', 0xfffffff0) },
        'user offset at end'          => sub { substr($_[0], 40, 4) = pack('V', length $_[0]) },
        'domain length 0xffff'        => sub { substr($_[0], 28, 2) = pack('v', 0xffff) },
        'NT length 0xffff'            => sub { substr($_[0], 20, 2) = pack('v', 0xffff) },
        'NT offset + length wrap'     => sub { substr($_[0], 24, 4) = pack('V', 0xffffffff) },
        'workstation past end by 1'   => sub {
            my ($l, undef, $o) = unpack('vvV', substr($_[0], 44, 8));
            substr($_[0], 44, 2) = pack('v', length($_[0]) - $o + 1);
        },
        'session key length huge'     => sub {
            substr($_[0], 52, 8) = pack('vvV', 0xfff0, 0xfff0, 88) },
        'every length 0xffff'         => sub {
            substr($_[0], 12 + 8 * $_, 4) = pack('vv', 0xffff, 0xffff) for 0 .. 5 },
        'NT response shorter than blob' => sub {
            substr($_[0], 20, 4) = pack('vv', 30, 30) },
        'AV list without EOL, overrunning' => sub {
            my (undef, undef, $o) = unpack('vvV', substr($_[0], 20, 8));
            # the first AV pair's length, inside the blob (after 16 + 28)
            substr($_[0], $o + 16 + 28 + 2, 2) = pack('v', 0xfff0);
        },
        'odd user length'             => sub {
            my ($l) = unpack('v', substr($_[0], 36, 2));
            substr($_[0], 36, 4) = pack('vv', $l - 1, $l - 1);
        },
        'payload overlapping the MIC' => sub { substr($_[0], 40, 4) = pack('V', 72) },
    );
    for my $name (sort keys %cases) {
        my ($c, $t1, $t2) = challenged();
        my $m = valid3($t1, $t2);
        $cases{$name}->($m);
        my $mark = $t->log_mark;
        check($name, send_auth($c, '/oob', 'NTLM ' . b64($m)), [400, 401],
              qr/kcd: (malformed NTLM AUTHENTICATE|NTLM logon failed|NTLM AUTHENTICATE with an invalid)/,
              $mark);
    }

    # names end up in the log and in $kcd_user: no control characters
    for my $f ([user => "alice\n2026/01/01 00:00:00 [emerg] FAKE-USER-LINE"],
               [domain => "KCD\r\nFAKE-DOMAIN-LINE"]) {
        my ($c, $t1, $t2) = challenged();
        my $m = valid3($t1, $t2, $f->[0] => $f->[1]);
        my $mark = $t->log_mark;
        check("newline in the $f->[0] name", send_auth($c, '/ctl', 'NTLM ' . b64($m)),
              [400, 401], qr/kcd: /, $mark);
        unlike($t->error_log(since => $mark), qr/^[^\n]*FAKE-\w+-LINE/m,
               "$f->[0] name with a newline cannot forge a log line");
    }
};

subtest 'oversized tokens' => sub {
    my $huge = 'NTLM ' . ('TlRM' x 25600);    # 100 KB of base64
    my $mark = $t->log_mark;
    my $r = send_auth(conn(), '/huge', $huge);
    check('100 KB token, default header buffers', $r, [400, 494], undef);
    like($t->error_log(since => $mark), qr/client sent too long header line|too large/i,
         'nginx itself refused the header');

    $mark = $t->log_mark;
    $r = send_auth(conn(8081), '/huge', $huge);
    check('100 KB token reaching the module', $r, [400],
          qr/kcd: NTLM token of \d+ bytes refused/, $mark);

    $mark = $t->log_mark;
    $r = send_auth(conn(8081), '/huge', 'Negotiate ' . ('YII' x 34000) . 'A');
    check('100 KB Negotiate token', $r, [400],
          qr/kcd: Negotiate token of \d+ bytes refused/, $mark);

    # just under the module's limit, valid base64, NTLMSSP header, junk
    my $body = "NTLMSSP\0" . pack('V', 3) . ("\xff" x 60000);
    my ($c) = conn(8081);
    my $t1 = type1();
    my $x = send_auth($c, '/big3', 'NTLM ' . b64($t1));
    is($x->{status}, 401, 'challenge on the big server');
    $r = send_auth($c, '/big3', 'NTLM ' . b64($body));
    check('60 KB Type 3 of 0xff', $r, [400, 401], qr/kcd: /, $mark);
};

is(scalar $b->requests, 0, 'nothing at all reached the backend')
    or diag explain [map { "$_->{method} $_->{uri}" } $b->requests];

subtest 'random mutations of a valid Type 3 (MIC covers every byte)' => sub {
    my $seed = $ENV{KCD_SEED} || 20261122;
    srand($seed);
    diag("mutation seed $seed (KCD_SEED=... to change)") if $ENV{TEST_VERBOSE};

    $b->clear;
    my $c = conn();
    my (%status, @accepted, @errors);
    my $count = 500;
    for my $i (1 .. $count) {
        $c = conn() if $c->closed(timeout => 0);
        my $t1 = type1();
        my $r1 = eval { send_auth($c, "/mut/$i", 'NTLM ' . b64($t1)) };
        if (!$r1 || $r1->{closed}) {
            $c = conn();
            $r1 = send_auth($c, "/mut/$i", 'NTLM ' . b64($t1));
        }
        my $t2 = type2_of($r1) or do { push @errors, "$i: no Type 2"; next };
        my $m = valid3($t1, $t2, mic => 1);
        my $orig = $m;

        my $kind = int rand 4;
        if ($kind == 0) {          # flip 1..3 random bits/bytes
            for (1 .. 1 + int rand 3) {
                my $p = int rand length $m;
                substr($m, $p, 1) = chr(ord(substr($m, $p, 1)) ^ (1 + int rand 255));
            }
        } elsif ($kind == 1) {     # a random byte in the header (0..87)
            my $p = 12 + int rand 76;
            substr($m, $p, 1) = chr(ord(substr($m, $p, 1)) ^ (1 + int rand 255));
        } elsif ($kind == 2) {     # truncate or extend
            if (rand() < 0.5) {
                $m = substr($m, 0, 12 + int rand(length($m) - 12));
            } else {
                $m .= join '', map { chr int rand 256 } 1 .. 1 + int rand 16;
            }
        } else {                   # a byte in the payload
            my $p = 88 + int rand(length($m) - 88);
            substr($m, $p, 1) = chr(ord(substr($m, $p, 1)) ^ (1 + int rand 255));
        }
        next if $m eq $orig;

        my $r = eval { send_auth($c, "/mut/$i", 'NTLM ' . b64($m)) };
        unless ($r) {
            push @errors, "$i (kind $kind): $@";
            $c = conn();
            next;
        }
        $status{$r->{status}}++;
        push @accepted, "$i (kind $kind): " . unpack('H*', $m)
            if $r->{status} < 400 || $r->{status} >= 500;
        $c = conn() if $r->{closed};
    }
    note('statuses: ' . join(', ', map { "$_ x$status{$_}" } sort keys %status));
    is_deeply(\@errors, [], 'every mutation got an answer');
    is_deeply(\@accepted, [], 'no mutation accepted, no 5xx');
    ok(!grep({ !/^40[01]$/ } keys %status), 'only 400 and 401');
    is(scalar $b->requests, 0, 'no mutated request reached the backend')
        or diag explain [map { $_->{uri} } $b->requests];

    # and the unmodified message still works
    my ($r1, $r2) = ntlm_login(conn(), '/mut/good', user => 'alice',
                               domain => 'KCD', password => 'Secret1', mic => 1);
    is($r2 && $r2->{status}, 200, 'an unmodified Type 3 is accepted');
    is(scalar $b->requests, 1, 'and forwarded');
};

subtest 'no crash' => sub {
    ok(KcdTest::alive($master), 'master alive');
    is_deeply([$t->worker_pids], \@w0, 'worker pid unchanged');
    my $log = $t->error_log;
    unlike($log, qr/exited on signal|\[alert\]|\[emerg\]|\[crit\]/,
           'no worker crash or alert in the error log');
    my $r = conn()->get('/kcd-status');
    is($r->{status}, 200, 'still serving');
    like($r->{body}, qr/^kcd_bad_requests_total [1-9]\d*$/m,
         'kcd_bad_requests_total counted the bad input');
};

done_testing();
