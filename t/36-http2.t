#!/usr/bin/perl

# B11: NTLM is connection-based and cannot work over HTTP/2.  A kcd_auth
# request over HTTP/2 gets 401 with the bare NTLM/Negotiate challenges and
# an error log line; credentials are never looked at and nothing is
# forwarded.  The same server over HTTP/1.1 authenticates normally.
# The HTTP/2 client is curl (--http2 over TLS, ALPN h2).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdBackend;

my $t = KcdTest->new->skip_unless_module;

my $CURL = '/usr/bin/curl';
my $v = -x $CURL ? `$CURL -V 2>/dev/null` : '';
plan(skip_all => "curl with HTTP2 support is not available ($CURL -V)")
    unless $v =~ /^Features:.*\bHTTP2\b/mi;

my $b = KcdBackend->start(port => port(9000), dir => $t->testdir);
my $cert = $t->make_cert('proxy');
$t->write_file('users', "KCD\\alice:" . unpack('H*', nt_hash('Password')) . "\n");

$t->write_config(<<"EOF");
    upstream backend {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive 8;
    }

    server {
        listen 127.0.0.1:%%PORT_8443%% ssl http2;
        ssl_certificate $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_channel_binding allow;

        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location / {
            kcd_auth ntlm negotiate basic;
            proxy_pass http://backend;
        }

        location /open/ {
            proxy_pass http://backend;
        }
    }
EOF
$t->run;

# runs curl with a time limit; returns (exit code, stdout, stderr)
sub curl {
    my (@args) = @_;
    my $out = $t->testdir . '/curl.out';
    my $err = $t->testdir . '/curl.err';
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', $out);
        open(STDERR, '>', $err);
        exec($CURL, '-sS', '-k', '--max-time', '5', @args) or POSIX::_exit(127);
    }
    my $deadline = time + 10;
    while (waitpid($pid, WNOHANG) == 0) {
        if (time > $deadline) { kill 'KILL', $pid; waitpid($pid, 0); last }
        sleep 0.02;
    }
    my $rc = $? >> 8;
    return ($rc, $t->read_file('curl.out') // '', $t->read_file('curl.err') // '');
}

# parses the header blocks curl -D - prints; returns the last one as
# {version, status, headers => [[n, v]]}
sub last_head {
    my ($text) = @_;
    my @blocks = grep { /^HTTP\// } split /\r?\n\r?\n/, $text;
    my $h = $blocks[-1] // '';
    my @l = split /\r?\n/, $h;
    my $sl = shift(@l) // '';
    my ($ver, $st) = $sl =~ m{^HTTP/(\S+)\s+(\d+)};
    return { version => $ver // '', status => $st // 0,
             headers => [map { [/^([^:]+):\s*(.*)$/] } @l] };
}

sub hdrs {
    my ($r, $n) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $n } @{$r->{headers}};
}

my $url = 'https://127.0.0.1:' . port(8443);

###########################################################################
# HTTP/2 without credentials

my $mark = $t->log_mark;
my ($rc, $out, $err) = curl('--http2', '-D', '-', '-o', '/dev/null', "$url/app");
is($rc, 0, 'curl --http2 ran') or diag($err);
my $r = last_head($out);
is($r->{version}, '2', 'the connection is HTTP/2');
is($r->{status}, 401, 'HTTP/2: 401');
my @wa = hdrs($r, 'www-authenticate');
is_deeply(\@wa, ['NTLM', 'Negotiate'],
          'HTTP/2: bare NTLM and Negotiate challenges only (no Basic, no token)');
ok($t->wait_for_log(qr/kcd: authentication refused over HTTP\/2/, 3, 'error.log', $mark),
   'error log: "kcd: authentication refused over HTTP/2"');

###########################################################################
# HTTP/2 with a valid NTLM Type 1: not a Type 2, nothing forwarded

$b->clear;
$mark = $t->log_mark;
my $t1 = b64(type1());
($rc, $out, $err) = curl('--http2', '-D', '-', '-o', '/dev/null',
                         '-H', "Authorization: NTLM $t1", "$url/app");
$r = last_head($out);
is($r->{version}, '2', 'Type 1 over HTTP/2: HTTP/2 connection');
is($r->{status}, 401, 'Type 1 over HTTP/2: 401');
@wa = hdrs($r, 'www-authenticate');
is(scalar(grep { /^NTLM\s+\S/ } @wa), 0, 'Type 1 over HTTP/2: no "NTLM <Type 2>" challenge');
is(scalar(grep { /^Negotiate\s+\S/ } @wa), 0, 'Type 1 over HTTP/2: no Negotiate token either');
is_deeply(\@wa, ['NTLM', 'Negotiate'], 'Type 1 over HTTP/2: bare challenges');
ok($t->wait_for_log(qr/kcd: authentication refused over HTTP\/2/, 3, 'error.log', $mark),
   'Type 1 over HTTP/2: refusal logged');

# curl --http2 --ntlm: the first answer is the HTTP/2 401; curl then forces
# HTTP/1.1 for NTLM (as Chromium does) and succeeds there
($rc, $out, $err) = curl('--http2', '--ntlm', '-u', 'KCD\\alice:Password', '-v',
                         '-D', '-', '-o', '/dev/null', "$url/curl-fallback");
my @heads = map { last_head($_) } grep { /^HTTP\// } split /\r?\n\r?\n/, $out;
ok(@heads >= 2 && $heads[0]{version} eq '2' && $heads[0]{status} == 401,
   'curl --http2 --ntlm: first answer is 401 over HTTP/2');
ok(@heads && $heads[-1]{version} eq '1.1' && $heads[-1]{status} == 200,
   'curl --http2 --ntlm: falls back to HTTP/1.1 and authenticates there')
    or diag($out, $err);

# Basic over HTTP/2 (TLS, right password): refused too
($rc, $out, $err) = curl('--http2', '-u', 'KCD\\alice:Password', '--basic',
                         '-D', '-', '-o', '/dev/null', "$url/app-basic");
$r = last_head($out);
is($r->{status}, 401, 'Basic over HTTP/2 with the right password: 401');

is(scalar(grep { $_->{uri} =~ m{^/app} } $b->requests), 0,
   'nothing was forwarded to the backend from HTTP/2 requests');

# a location without kcd_auth keeps working over HTTP/2
($rc, $out, $err) = curl('--http2', '-D', '-', '-o', '/dev/null', "$url/open/x");
$r = last_head($out);
ok($r->{version} eq '2' && $r->{status} == 200,
   'HTTP/2 to a location without kcd_auth: 200 (only kcd_auth refuses)');

my $n = () = $t->error_log =~ /kcd: authentication refused over HTTP\/2/g;
ok($n >= 4, "every HTTP/2 kcd_auth request was logged ($n)");

###########################################################################
# the same server over HTTP/1.1

$b->clear;
($rc, $out, $err) = curl('--http1.1', '--ntlm', '-u', 'KCD\\alice:Password',
                         '-D', '-', '-o', '/dev/null', "$url/app11");
$r = last_head($out);
is($r->{version}, '1.1', 'curl --http1.1: HTTP/1.1');
is($r->{status}, 200, 'curl --http1.1 --ntlm on the same server: 200') or diag($out, $err);
my @q = grep { $_->{uri} eq '/app11' } $b->requests;
is(scalar @q, 1, 'HTTP/1.1: the request was forwarded once');
ok(@q && !defined $q[0]->header('Authorization'),
   'HTTP/1.1: without the client\'s Authorization');

# and our own HTTP/1.1 client, ALPN http/1.1 on the h2 listener
my $c = KcdTest::Conn->new(port => port(8443), ssl => 1, alpn => ['http/1.1']);
my ($r1, $r2) = ntlm_login($c, '/app-perl', user => 'alice', domain => 'KCD',
                           password => 'Password');
ok(defined $r1->{ntlm_type2}, 'HTTP/1.1 (Perl client): Type 2 challenge');
is($r2 && $r2->{status}, 200, 'HTTP/1.1 (Perl client): authenticated, channel bindings checked');

done_testing();
