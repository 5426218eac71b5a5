package KcdBackend;

# A recording HTTP/1.1 backend for the tests.  One forked process runs a
# select() loop (keep-alive, many concurrent connections, pipelining) and
# appends one JSON line per request to a log file, written before the
# response is sent: when the client has the response, the line is there.
#
# Answers:
#   /401neg        401, WWW-Authenticate: Negotiate / NTLM / Basic realm="x"
#   /mutual        200, WWW-Authenticate: Negotiate <fake token>,
#                  Persistent-Auth: true
#   /status/NNN    status NNN
#   /close         200 and Connection: close
#   anything else  200
# Every answer carries X-Backend-Conn: <peer port>, X-Backend-Req: <n-th
# request on this connection>, X-Seen-Authorization: <value or "none"> and
# the body "ok <method> <uri> len=<body length>".

use strict;
use warnings;

use Carp qw(croak);
use Digest::SHA qw(sha256_hex);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my @RUNNING;

my $MUTUAL_TOKEN = 'oYGgMIGdoAMKAQChCwYJKoZIgvcSAQICooGIBIGFYIGCBgkqhkiG9xIBAgICAG9zMHGgAwIBBaEDAgEPomUwY6ADAgESolwEWkNvbnRlbnRzIG9mIGEgZmFrZSBtdXR1YWwgYXV0aCB0b2tlbiBmb3IgdGhlIGtjZCB0ZXN0czsgbm8gY2xpZW50IHNob3VsZCBldmVyIHNlZSBpdC4=';

sub mutual_token { return $MUTUAL_TOKEN }

# KcdBackend->start(port => $p, dir => $dir, name => 'backend')
sub start {
    my ($class, %o) = @_;
    croak "KcdBackend: port required" unless $o{port};
    croak "KcdBackend: dir required" unless $o{dir};
    my $name = $o{name} || "backend-$o{port}";
    my $log = "$o{dir}/$name.jsonl";
    open(my $fh, '>', $log) or croak "$log: $!";
    close $fh;

    # Listen before forking: no start-up race.
    my $ls = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                   LocalPort => $o{port}, Proto => 'tcp',
                                   Listen => 128, ReuseAddr => 1)
        or croak "KcdBackend: cannot listen on 127.0.0.1:$o{port}: $!";

    my $pid = fork();
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
        $SIG{PIPE} = 'IGNORE';
        eval { _serve($ls, $log, \%o) };
        print STDERR "KcdBackend: $@" if $@;
        POSIX::_exit(0);    # never run the parent's END blocks
    }
    close $ls;

    my $self = bless { pid => $pid, port => $o{port}, log => $log }, $class;
    push @RUNNING, $self;
    return $self;
}

sub port { return $_[0]{port} }
sub log_file { return $_[0]{log} }
sub pid { return $_[0]{pid} }

# The parsed log: a list of hashes
# {conn, req_on_conn, method, uri, version, headers => [[n, v]...],
#  body_length, body_sha256, body (only when < 4 KiB), time}.
sub requests {
    my ($self) = @_;
    open(my $fh, '<', $self->{log}) or return ();
    my @r;
    my $json = JSON::PP->new->ascii(1);
    while (my $l = <$fh>) {
        chomp $l;
        next unless length $l;
        my $r = eval { $json->decode($l) } or next;
        bless $r, 'KcdBackend::Request';
        push @r, $r;
    }
    close $fh;
    return @r;
}

# Empties the log (handy between two phases of a test).
sub clear {
    my ($self) = @_;
    open(my $fh, '>', $self->{log}) or croak "$self->{log}: $!";
    close $fh;
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid};
    kill 'TERM', $self->{pid};
    my $deadline = time + 3;
    while (time < $deadline) {
        last if waitpid($self->{pid}, WNOHANG) != 0;
        sleep 0.02;
    }
    if (kill 0, $self->{pid}) {
        kill 'KILL', $self->{pid};
        waitpid($self->{pid}, 0);
    }
    $self->{pid} = undef;
    @RUNNING = grep { $_ != $self } @RUNNING;
}

END {
    my $rc = $?;
    $_->stop for @RUNNING;
    $? = $rc;
}

# ---------------------------------------------------------------- server

sub _serve {
    my ($ls, $log, $o) = @_;
    my $sel = IO::Select->new($ls);
    my %c;    # fileno => {sock, buf, port, n}
    my $json = JSON::PP->new->canonical(1)->ascii(1);
    my $parent = getppid();

    while (1) {
        my @ready = $sel->can_read(1);
        # the test process died without stopping us: don't linger
        POSIX::_exit(0) if getppid() != $parent;
        for my $s (@ready) {
            if ($s == $ls) {
                my $ns = $ls->accept or next;
                $ns->blocking(0);
                binmode $ns;
                $sel->add($ns);
                $c{fileno $ns} = { sock => $ns, buf => '', port => $ns->peerport,
                                   n => 0 };
                next;
            }
            my $st = $c{fileno $s};
            my $n = sysread($s, my $chunk, 65536);
            next if !defined $n && ($!{EAGAIN} || $!{EINTR});
            if (!$n) {
                $sel->remove($s);
                delete $c{fileno $s};
                close $s;
                next;
            }
            $st->{buf} .= $chunk;
            my $keep = 1;
            while ($keep) {
                my $req = _parse(\$st->{buf});
                last unless $req;
                if ($req->{error}) {
                    _write($s, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                        . "Connection: close\r\n\r\n");
                    $keep = 0;
                    last;
                }
                $st->{n}++;
                $keep = _handle($s, $st, $req, $log, $json, $o);
            }
            unless ($keep) {
                $sel->remove($s);
                delete $c{fileno $s};
                close $s;
            }
        }
    }
}

# Parses one complete request off the front of $$buf; undef if incomplete.
sub _parse {
    my ($buf) = @_;
    my $e = index($$buf, "\r\n\r\n");
    if ($e < 0) {
        return { error => 'header too large' } if length($$buf) > 65536;
        return undef;
    }
    my $head = substr($$buf, 0, $e);
    my @lines = split /\r\n/, $head;
    my $rl = shift @lines;
    my ($m, $uri, $v) = $rl =~ m{^(\S+) (\S+) HTTP/(\d\.\d)$}
        or return { error => 'bad request line' };
    my @h;
    for my $l (@lines) {
        my ($n, $val) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or return { error => 'bad header' };
        push @h, [$n, $val];
    }
    my %lc;
    for (@h) { push @{$lc{lc $_->[0]}}, $_->[1] }
    my $pos = $e + 4;
    my $body = '';
    if ($lc{'transfer-encoding'} && $lc{'transfer-encoding'}[0] =~ /chunked/i) {
        my $p = $pos;
        while (1) {
            my $le = index($$buf, "\r\n", $p);
            return undef if $le < 0;
            my $sz = substr($$buf, $p, $le - $p);
            $sz =~ s/;.*//;
            return { error => 'bad chunk' } unless $sz =~ /^\s*([0-9a-fA-F]+)\s*$/;
            my $n = hex $1;
            $p = $le + 2;
            if ($n == 0) {
                # trailers until an empty line
                while (1) {
                    my $te = index($$buf, "\r\n", $p);
                    return undef if $te < 0;
                    my $empty = $te == $p;
                    $p = $te + 2;
                    last if $empty;
                }
                last;
            }
            return undef if length($$buf) < $p + $n + 2;
            $body .= substr($$buf, $p, $n);
            $p += $n + 2;
        }
        $pos = $p;
    } elsif ($lc{'content-length'}) {
        my $cl = $lc{'content-length'}[0];
        return { error => 'bad content-length' } unless $cl =~ /^\d+$/;
        return undef if length($$buf) < $pos + $cl;
        $body = substr($$buf, $pos, $cl);
        $pos += $cl;
    }
    substr($$buf, 0, $pos) = '';
    return { method => $m, uri => $uri, version => $v, headers => \@h,
             lc => \%lc, body => $body };
}

sub _write {
    my ($s, $data) = @_;
    my $sel = IO::Select->new($s);
    my $deadline = time + 10;
    while (length $data) {
        return 0 if time > $deadline;
        $sel->can_write(1) or next;
        my $n = syswrite($s, $data);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            return 0;
        }
        substr($data, 0, $n) = '';
    }
    return 1;
}

sub _handle {
    my ($s, $st, $req, $log, $json, $o) = @_;
    my $len = length $req->{body};
    my %rec = (
        conn        => $st->{port},
        req_on_conn => $st->{n},
        method      => $req->{method},
        uri         => $req->{uri},
        version     => $req->{version},
        headers     => $req->{headers},
        body_length => $len,
        body_sha256 => sha256_hex($req->{body}),
        time        => time,
    );
    if ($len < 4096) {
        # keep bytes as they are; JSON::PP escapes non-ASCII as code points
        $rec{body} = $req->{body};
    }
    open(my $fh, '>>', $log) or die "$log: $!";
    print $fh $json->encode(\%rec), "\n";
    close $fh;

    my $auth = $req->{lc}{authorization} ? $req->{lc}{authorization}[0] : 'none';
    my $status = 200;
    my @extra;
    my $close = 0;
    my $uri = $req->{uri};

    if ($uri =~ m{^/401neg(?:[/?]|$)}) {
        $status = 401;
        push @extra, ['WWW-Authenticate', 'Negotiate'],
                     ['WWW-Authenticate', 'NTLM'],
                     ['WWW-Authenticate', 'Basic realm="x"'];
    } elsif ($uri =~ m{^/mutual(?:[/?]|$)}) {
        push @extra, ['WWW-Authenticate', "Negotiate $MUTUAL_TOKEN"],
                     ['Persistent-Auth', 'true'];
    } elsif ($uri =~ m{^/status/(\d{3})}) {
        $status = $1;
    } elsif ($uri =~ m{^/close(?:[/?]|$)}) {
        $close = 1;
    } elsif ($uri =~ m{^/ntlm(?:[/?]|$)}) {
        ($status, my @h) = _ntlm($st, $req, $o);
        push @extra, @h;
    } elsif ($uri =~ m{^/set\?(.*)$}) {
        # /set?status=401&h=Name:value&h=...  (values URL-encoded)
        for my $kv (split /&/, $1) {
            my ($k, $v) = split /=/, $kv, 2;
            $v = '' unless defined $v;
            $v =~ s/\+/ /g;
            $v =~ s/%([0-9a-fA-F]{2})/chr hex $1/ge;
            if ($k eq 'status') {
                $status = $v;
            } elsif ($k eq 'h' && $v =~ /^([^:]+):\s*(.*)$/) {
                push @extra, [$1, $2];
            }
        }
    }

    my $ctype = 'text/plain';
    my $body_override;
    if ($uri =~ m{^/ssi(?:[/?]|$)}) {
        # an SSI page that includes another location of the proxy
        $ctype = 'text/html';
        $body_override = qq{ssi:<!--# include virtual="/ssi-inc" -->\n};
    }

    my $conn_hdr = $req->{lc}{connection} ? $req->{lc}{connection}[0] : '';
    $close = 1 if $conn_hdr =~ /\bclose\b/i;
    $close = 1 if $req->{version} eq '1.0' && $conn_hdr !~ /keep-alive/i;

    my $body = defined $body_override ? $body_override
                                      : "ok $req->{method} $uri len=$len";
    my $nobody = $status == 204 || $status == 304 || $req->{method} eq 'HEAD';
    my $r = "HTTP/1.1 $status " . _reason($status) . "\r\n";
    $r .= "Content-Type: $ctype\r\n";
    $r .= "X-Backend-Conn: $st->{port}\r\n";
    $r .= "X-Backend-Req: $st->{n}\r\n";
    $r .= "X-Seen-Authorization: $auth\r\n";
    $r .= "$_->[0]: $_->[1]\r\n" for @extra;
    $r .= "Connection: close\r\n" if $close;
    $r .= "Content-Length: " . length($body) . "\r\n"
        unless $status == 204 || $status == 304;
    $r .= "\r\n";
    $r .= $body unless $nobody;
    _write($s, $r) or return 0;
    return $close ? 0 : 1;
}

# /ntlm: a reference NTLM server (KcdNTLM::verify_type3) so that the
# client side of the tests can be proven against something.  Accounts:
# start(ntlm_users => {user => password}), default User / Password.
sub _ntlm {
    my ($st, $req, $o) = @_;
    require KcdNTLM;
    my $a = $req->{lc}{authorization} ? $req->{lc}{authorization}[0] : '';
    my ($scheme, $tok) = $a =~ /^(NTLM|Negotiate)\s+(\S+)/i;
    return (401, ['WWW-Authenticate', 'NTLM']) unless $tok;
    my $raw = KcdNTLM::unb64($tok);
    return (400, ['X-NTLM-Result', 'not ntlmssp'])
        if length($raw) < 12 || substr($raw, 0, 8) ne "NTLMSSP\0";
    my $type = unpack('V', substr($raw, 8, 4));
    if ($type == 1) {
        my $ts = KcdNTLM::filetime_now();
        my $t2 = KcdNTLM::make_type2(
            challenge => pack('C8', map { int rand 256 } 1 .. 8),
            flags => 0xA2898205,
            target_name => 'KCD',
            av => [[2, KcdNTLM::utf16le('KCD')], [1, KcdNTLM::utf16le('BACKEND')],
                   [4, KcdNTLM::utf16le('kcd.test')], [7, $ts]]);
        $st->{ntlm} = { t1 => $raw, t2 => $t2 };
        return (401, ['WWW-Authenticate', "$scheme " . KcdNTLM::b64($t2)]);
    }
    if ($type == 3) {
        my $ctx = delete $st->{ntlm};
        return (401, ['X-NTLM-Result', 'no type 2 on this connection'],
                ['WWW-Authenticate', 'NTLM']) unless $ctx;
        my %users = %{$o->{ntlm_users} || { User => 'Password' }};
        my $m = eval { KcdNTLM::parse_type3($raw) };
        return (400, ['X-NTLM-Result', 'bad type 3']) unless $m;
        my ($pw) = map { $users{$_} } grep { lc $_ eq lc $m->{user} } keys %users;
        $pw = "\0no such user" unless defined $pw;
        my ($ok, $why) = KcdNTLM::verify_type3(type1 => $ctx->{t1},
            type2 => $ctx->{t2}, type3 => $raw, password => $pw);
        return $ok ? (200, ['X-NTLM-Result', "ok $m->{domain}\\$m->{user}"])
                   : (401, ['X-NTLM-Result', $why], ['WWW-Authenticate', 'NTLM']);
    }
    return (400, ['X-NTLM-Result', "unexpected type $type"]);
}

sub _reason {
    my ($s) = @_;
    my %r = (200 => 'OK', 204 => 'No Content', 304 => 'Not Modified',
             400 => 'Bad Request', 401 => 'Unauthorized', 403 => 'Forbidden',
             404 => 'Not Found', 500 => 'Internal Server Error',
             502 => 'Bad Gateway', 503 => 'Service Unavailable');
    return $r{$s} || 'Status';
}

package KcdBackend::Request;

# header($name): first value (case-insensitive) or undef;
# headers_all($name): every value in order.
sub header {
    my ($self, $name) = @_;
    for my $h (@{$self->{headers}}) {
        return $h->[1] if lc $h->[0] eq lc $name;
    }
    return undef;
}

sub headers_all {
    my ($self, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name } @{$self->{headers}};
}

1;
