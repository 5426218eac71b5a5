package KcdTest;

# Test harness for ngx_http_kcd_module, in the spirit of nginx-tests: each
# test file writes its own nginx.conf into a private temporary directory,
# starts nginx on loopback ports and talks HTTP/1.1 to it with KcdTest::Conn.
# Every process started here is stopped in END, even when the test dies.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use Test::More ();
use Exporter 'import';

our @EXPORT_OK = qw(port repo_root module_path nginx_binary);

my $REPO = abs_path(File::Spec->catdir(dirname(abs_path(__FILE__)), '..', '..'));

my %PORTS;        # symbolic number => port, stable for the whole test file
my %TAKEN;
my @INSTANCES;    # every KcdTest object whose nginx may be running

sub repo_root { return $REPO }

sub module_path {
    return $ENV{KCD_MODULE} if defined $ENV{KCD_MODULE} && length $ENV{KCD_MODULE};
    return "$REPO/build/ngx_http_kcd_module.so";
}

sub nginx_binary {
    return $ENV{KCD_NGINX} if defined $ENV{KCD_NGINX} && length $ENV{KCD_NGINX};
    return '/usr/sbin/nginx';
}

# port(N) or $t->port(N): a free loopback TCP port for the symbolic number N.
sub port {
    my $n = pop;
    croak "port: symbolic number required" unless defined $n;
    return $PORTS{$n} if $PORTS{$n};
    for (1 .. 100) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 1)
            or croak "port: cannot bind 127.0.0.1:0: $!";
        my $p = $s->sockport;
        close $s;
        next if $TAKEN{$p};
        $TAKEN{$p} = 1;
        return $PORTS{$n} = $p;
    }
    croak "port: no free port found";
}

sub new {
    my ($class, %o) = @_;
    my $keep = $ENV{KCD_TEST_KEEP};
    my $dir = tempdir('kcd-test-XXXXXX', TMPDIR => 1, CLEANUP => !$keep);
    chmod 0755, $dir;
    my $self = bless { dir => $dir, nginx => nginx_binary(), %o }, $class;
    Test::More::diag("test dir kept: $dir") if $keep;
    push @INSTANCES, $self;
    return $self;
}

sub testdir { return $_[0]{dir} }

sub has_module { return -f module_path() ? 1 : 0 }

sub skip_unless_module {
    my ($self) = @_;
    return $self if has_module();
    Test::More::plan(skip_all => 'module not built: ' . module_path()
        . " is missing (run 'make' or set KCD_MODULE)");
    exit 0;
}

sub _path {
    my ($self, $name) = @_;
    return $name if File::Spec->file_name_is_absolute($name);
    return "$self->{dir}/$name";
}

sub expand {
    my ($self, $s) = @_;
    $s =~ s/%%PORT_(\w+)%%/port($1)/ge;
    $s =~ s/%%TESTDIR%%/$self->{dir}/g;
    $s =~ s/%%MODULE%%/module_path()/ge;
    $s =~ s/%%REPO%%/$REPO/g;
    return $s;
}

sub write_file {
    my ($self, $name, $content) = @_;
    my $path = $self->_path($name);
    open(my $fh, '>', $path) or croak "write_file $path: $!";
    binmode $fh;
    print $fh $content;
    close $fh or croak "write_file $path: $!";
    return $path;
}

sub write_file_expand {
    my ($self, $name, $content) = @_;
    return $self->write_file($name, $self->expand($content));
}

sub read_file {
    my ($self, $name) = @_;
    my $path = $self->_path($name);
    open(my $fh, '<', $path) or return undef;
    binmode $fh;
    local $/;
    my $c = <$fh>;
    close $fh;
    return defined $c ? $c : '';
}

# write_config($body, %o): the body goes inside http { } after the standard
# lines.  Options:
#   module => 0             never emit load_module
#   workers => N            worker_processes (1)
#   log_level => 'debug'    error_log level (info; KCD_TEST_DEBUG=1 -> debug)
#   main => 'text'          extra main-context directives (thread_pool, ...)
#   events => 'text'        events block content
#   user => 'name' | ''     'user' directive ('root' when running as root,
#                           so workers read test files; '' omits it)
#   raw => 1                $body is the whole nginx.conf (only expanded)
#   name => 'nginx.conf'    file name
sub write_config {
    my ($self, $body, %o) = @_;
    my $name = $o{name} || 'nginx.conf';
    $self->{conf} = $name;

    if ($o{raw}) {
        return $self->write_file_expand($name, $body);
    }

    my $d = $self->{dir};
    my $workers = defined $o{workers} ? $o{workers} : 1;
    my $level = $o{log_level}
        || ($ENV{KCD_TEST_DEBUG} ? 'debug' : 'info');
    my $user = exists $o{user} ? $o{user} : ($> == 0 ? 'root' : '');
    my $load = exists $o{module} ? $o{module} : 1;

    my $c = '';
    $c .= "load_module %%MODULE%%;\n" if $load && has_module();
    $c .= "user $user;\n" if length $user;
    $c .= <<"EOF";
daemon on;
master_process on;
worker_processes $workers;
pid $d/nginx.pid;
lock_file $d/nginx.lock;
error_log $d/error.log $level;
EOF
    $c .= "$o{main}\n" if defined $o{main};
    $c .= "events {\n" . (defined $o{events} ? $o{events} : '') . "\n}\n";
    $c .= <<"EOF";
http {
    access_log $d/access.log;
    client_body_temp_path $d/client_body_temp;
    proxy_temp_path $d/proxy_temp;
    fastcgi_temp_path $d/fastcgi_temp;
    uwsgi_temp_path $d/uwsgi_temp;
    scgi_temp_path $d/scgi_temp;
    default_type text/plain;

$body
}
EOF
    $self->{module_loaded} = ($load && has_module()) ? 1 : 0;
    return $self->write_file_expand($name, $c);
}

sub _conf_ports {
    my ($self) = @_;
    my $c = $self->read_file($self->{conf} || 'nginx.conf') || '';
    my %p;
    while ($c =~ /^\s*listen\s+(?:(?:127\.0\.0\.1|localhost|\*|0\.0\.0\.0):)?(\d+)\b/mg) {
        $p{$1} = 1;
    }
    return sort keys %p;
}

sub _cmd {
    my ($self, @extra) = @_;
    return ($self->{nginx}, '-p', "$self->{dir}/", '-c',
            $self->_path($self->{conf} || 'nginx.conf'), @extra);
}

# Runs a command with stdout+stderr in a file; returns (exit code, output).
sub _run_capture {
    my ($self, @cmd) = @_;
    my $out = "$self->{dir}/.cmd.out";
    my $pid = fork();
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>', $out);
        open(STDERR, '>&', \*STDOUT);
        %ENV = (%ENV, $self->sanitizer_env) if $cmd[0] eq $self->{nginx};
        exec(@cmd) or POSIX::_exit(127);
    }
    my $deadline = time + 30;
    while (waitpid($pid, WNOHANG) == 0) {
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            return (-1, "timeout running @cmd");
        }
        sleep 0.02;
    }
    my $rc = $? >> 8;
    my $o = $self->read_file($out);
    unlink $out;
    return ($rc, $o);
}

# nginx -t: returns (exit code, output).
sub nginx_test {
    my ($self) = @_;
    return $self->_run_capture($self->_cmd('-t'));
}

sub _tail {
    my ($self, $n) = @_;
    my $log = $self->error_log;
    my @l = split /\n/, $log;
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", @l);
}

# run(%o): starts nginx, waits for the pid file and every 'listen' port of
# the config (plus wait_ports => [...]); dies with the error log tail on
# failure.  Returns $self.
sub run {
    my ($self, %o) = @_;
    croak "nginx already running" if $self->{running};
    my $pidfile = "$self->{dir}/nginx.pid";
    unlink $pidfile;

    my ($rc, $out) = $self->_run_capture($self->_cmd());
    if ($rc != 0) {
        croak "nginx failed to start (exit $rc):\n$out\n--- error.log tail:\n"
            . $self->_tail(20);
    }
    $self->{running} = 1;

    my $timeout = $o{timeout} || 5;
    my $deadline = time + $timeout;
    my $pid;
    while (time < $deadline) {
        my $c = $self->read_file($pidfile);
        if (defined $c && $c =~ /^(\d+)\s*$/) { $pid = $1; last }
        sleep 0.02;
    }
    unless ($pid) {
        croak "nginx pid file did not appear in ${timeout}s:\n$out\n"
            . "--- error.log tail:\n" . $self->_tail(20);
    }
    $self->{pid} = $pid;

    my @ports = ($self->_conf_ports, @{$o{wait_ports} || []});
    for my $p (@ports) {
        my $ok = 0;
        while (time < $deadline) {
            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $p, Proto => 'tcp',
                                          Timeout => 1);
            if ($s) { close $s; $ok = 1; last }
            last unless _alive($pid);
            sleep 0.02;
        }
        croak "nginx is not listening on 127.0.0.1:$p:\n--- error.log tail:\n"
            . $self->_tail(20) unless $ok;
    }

    # the master listens before its workers exist: wait for them too
    while (time < $deadline && !$self->worker_pids) {
        sleep 0.02;
    }

    return $self;
}

sub pid { return $_[0]{pid} }

# A zombie answers kill 0 but is gone: a daemonized master is reaped by
# whoever adopted it, maybe late.
sub _alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    if (open(my $fh, '<', "/proc/$pid/stat")) {
        my $st = <$fh>;
        close $fh;
        return 0 if defined $st && $st =~ /\)\s+[ZX]\s/;
    }
    return 1;
}

sub alive { my $pid = pop; return _alive($pid) }

# Sends a signal to the master ('HUP' reloads the configuration).
sub signal {
    my ($self, $sig) = @_;
    croak "nginx not running" unless $self->{pid};
    return kill $sig, $self->{pid};
}

# reload: HUP, then waits until the old workers are gone.
sub reload {
    my ($self, %o) = @_;
    my @old = $self->worker_pids;
    $self->signal('HUP');
    my $deadline = time + ($o{timeout} || 5);
    while (time < $deadline) {
        my %now = map { $_ => 1 } $self->worker_pids;
        last if @old && %now && !grep { $now{$_} } @old;
        sleep 0.05;
    }
    return $self;
}

sub worker_pids {
    my ($self) = @_;
    return () unless $self->{pid};
    my @w;
    opendir(my $dh, '/proc') or return ();
    for my $e (readdir $dh) {
        next unless $e =~ /^\d+$/;
        open(my $fh, '<', "/proc/$e/stat") or next;
        my $st = <$fh>;
        close $fh;
        next unless defined $st && $st =~ /\)\s+\S+\s+(\d+)/;
        push @w, $e if $1 == $self->{pid};
    }
    closedir $dh;
    @w = sort { $a <=> $b } @w;
    return wantarray ? @w : scalar @w;
}

# stop: QUIT (graceful), then TERM, then KILL; waits for the master (and
# its workers) to exit.
sub stop {
    my ($self, %o) = @_;
    return $self unless $self->{running};
    my $pid = $self->{pid};
    unless ($pid) {
        my $c = $self->read_file("$self->{dir}/nginx.pid");
        $pid = $1 if defined $c && $c =~ /^(\d+)/;
    }
    if ($pid) {
        my @workers = $self->worker_pids;
        my @procs = ($pid, @workers);
        for my $step (['QUIT', $o{timeout} || 5], ['TERM', 3], ['KILL', 2]) {
            kill $step->[0], $pid;
            kill $step->[0], @workers if $step->[0] eq 'KILL' && @workers;
            my $deadline = time + $step->[1];
            while (time < $deadline) {
                last unless grep { _alive($_) } @procs;
                sleep 0.02;
            }
            last unless grep { _alive($_) } @procs;
        }
    }
    $self->{running} = 0;
    $self->{pid} = undef;
    return $self;
}

# error_log(since => $mark): the error log, or what was written after
# log_mark() returned $mark.
sub error_log {
    my ($self, %o) = @_;
    my $c = $self->read_file('error.log');
    $c = '' unless defined $c;
    return $o{since} ? substr($c, $o{since} > length $c ? length $c : $o{since}) : $c;
}

sub log_mark {
    my ($self, $file) = @_;
    return -s $self->_path($file || 'error.log') || 0;
}

sub access_log {
    my ($self) = @_;
    my $c = $self->read_file('access.log');
    return defined $c ? $c : '';
}

# wait_for_log(qr/.../, $timeout = 5, $file = 'error.log', $mark = 0):
# the first matching line (after byte offset $mark, see log_mark), or undef
# when none appeared in time.
sub wait_for_log {
    my ($self, $re, $timeout, $file, $mark) = @_;
    $timeout = 5 unless defined $timeout;
    $file ||= 'error.log';
    my $deadline = time + $timeout;
    while (1) {
        my $c = $self->read_file($file);
        $c = substr($c, $mark) if defined $c && $mark && $mark <= length $c;
        if (defined $c) {
            for my $l (split /\n/, $c) {
                return $l if $l =~ $re;
            }
        }
        return undef if time >= $deadline;
        sleep 0.05;
    }
}

# make_cert($name, cn => 'proxy.kcd.test', sig => 'sha256', san => [dns...],
#           days => 2, bits => 2048):
# a self-signed RSA cert in testdir; returns
# { cert => path, key => path, der => DER bytes, cn, sig }.
# An OpenSSL config enabling the legacy provider, for CLIENTS only: python's
# ntlm_auth (requests_ntlm) takes MD4 from hashlib, which OpenSSL 3 keeps in
# that provider.  nginx never loads it.  Returns the path; use it as
# OPENSSL_CONF in the client's environment.

my $LEGACY_CNF = <<'EOF';
openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
legacy = legacy_sect
[default_sect]
activate = 1
[legacy_sect]
activate = 1
EOF

sub openssl_legacy_conf {
    my ($self, $path) = @_;
    $path //= "$self->{dir}/openssl-legacy.cnf";
    open(my $fh, '>', $path) or die "$path: $!";
    print $fh $LEGACY_CNF;
    close $fh;
    return $path;
}

sub make_cert {
    my ($self, $name, %o) = @_;
    my $cn = $o{cn} || 'proxy.kcd.test';
    my $sig = $o{sig} || 'sha256';
    my $bits = $o{bits} || 2048;
    my $days = $o{days} || 2;
    my $crt = "$self->{dir}/$name.crt";
    my $key = "$self->{dir}/$name.key";
    my @san = @{$o{san} || [$cn]};
    my @cmd = ('/usr/bin/openssl', 'req', '-x509', '-newkey', "rsa:$bits",
               '-nodes', '-keyout', $key, '-out', $crt, '-days', $days,
               "-$sig", '-subj', "/CN=$cn",
               '-addext', 'subjectAltName=' . join(',', map { "DNS:$_" } @san));
    my ($rc, $out) = $self->_run_capture(@cmd);
    croak "openssl req failed ($rc): $out" if $rc != 0;
    my $pem = $self->read_file($crt);
    my ($b64) = $pem =~ /-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----/s
        or croak "no PEM certificate in $crt";
    require MIME::Base64;
    my $der = MIME::Base64::decode_base64($b64);
    return { cert => $crt, key => $key, der => $der, cn => $cn, sig => $sig };
}

sub DESTROY { }

# KCD_SANITIZE=1: nginx runs a module built with ASan + UBSan (make asan;
# point KCD_MODULE at it): the runtimes are preloaded (KCD_SANITIZE_PRELOAD,
# default gcc's libasan.so and libubsan.so), reports go to files
# sanitizer-{asan,ubsan}.PID in the test dir, and any report makes the test
# file exit non-zero (see END).  KCD_SANITIZE_REPORTS=dir: reports are
# also copied there.  Returns the environment for nginx.
my $PRELOAD;

sub sanitizer_env {
    my ($self) = @_;
    return () unless $ENV{KCD_SANITIZE};
    unless (defined $PRELOAD) {
        $PRELOAD = $ENV{KCD_SANITIZE_PRELOAD};
        unless (defined $PRELOAD && length $PRELOAD) {
            my @l = map { my $p = `gcc -print-file-name=$_`; chomp $p; $p }
                    qw(libasan.so libubsan.so);
            # next to the module, or in build-asan/ (tests that run a
            # private copy of the module)
            (my $m = module_path()) =~ s{[^/]+$}{nodlclose.so};
            $m = "$REPO/build-asan/nodlclose.so" unless -f $m;
            push @l, $m if -f $m;
            $PRELOAD = join(' ', @l);
        }
    }
    # the sanitizer runtime first, then what the test preloads (faketime)
    my $preload = $PRELOAD;
    $preload .= " $ENV{LD_PRELOAD}"
        if defined $ENV{LD_PRELOAD} && length $ENV{LD_PRELOAD};
    my $d = $self->{dir};
    my $asan = join(':', "log_path=$d/sanitizer-asan", 'detect_leaks=1',
                    'halt_on_error=1', 'detect_stack_use_after_return=0',
                    'allocator_may_return_null=1', 'fast_unwind_on_malloc=0',
                    'malloc_context_size=40',
                    ($ENV{ASAN_OPTIONS} ? $ENV{ASAN_OPTIONS} : ()));
    my $ubsan = join(':', "log_path=$d/sanitizer-ubsan", 'print_stacktrace=1',
                     ($ENV{UBSAN_OPTIONS} ? $ENV{UBSAN_OPTIONS} : ()));
    # a leak report must not change nginx's exit status (the daemonizing
    # parent and nginx -t exit with nginx's own allocations live)
    my $lsan = join(':', "suppressions=$REPO/t/sanitizer/lsan.supp",
                    'exitcode=0',
                    ($ENV{LSAN_OPTIONS} ? $ENV{LSAN_OPTIONS} : ()));
    return (LD_PRELOAD => $preload, ASAN_OPTIONS => $asan,
            UBSAN_OPTIONS => $ubsan, LSAN_OPTIONS => $lsan);
}

# The sanitizer reports written so far: ([file, content], ...).  Every
# ASan error and UBSan report counts; of a LeakSanitizer report only the
# direct leaks whose allocation stack reaches the module (or an unloaded
# object) count: nginx's own exit-time allocations are not the module's,
# and an indirect leak hangs off a direct one (when that one is not the
# module's, it is a library's cache, e.g. OpenSSL's fetched digests).
sub sanitizer_reports {
    my ($self) = @_;
    my @r;
    for my $f (sort glob("$self->{dir}/sanitizer-*")) {
        my $c = $self->read_file($f);
        next unless defined $c && length $c;
        if ($c =~ /ERROR: LeakSanitizer/ && $c !~ /ERROR: AddressSanitizer/) {
            my @keep = grep { /Direct leak of/ && /ngx_http_kcd|\bkcd_|unknown module/ }
                       split /\n\s*\n/, $c;
            next unless @keep;
            $c = join("\n\n", "LeakSanitizer (leaks reaching the module):",
                      @keep) . "\n";
        }
        push @r, [$f, $c];
    }
    return @r;
}

END {
    my $rc = $?;
    for my $t (@INSTANCES) {
        eval { $t->stop } if $t && $t->{running};
    }
    if ($ENV{KCD_SANITIZE}) {
        for my $t (@INSTANCES) {
            for my $r ($t->sanitizer_reports) {
                print STDERR "# sanitizer report $r->[0]:\n$r->[1]\n";
                if (my $dir = $ENV{KCD_SANITIZE_REPORTS}) {
                    (my $base = $r->[0]) =~ s{.*/}{};
                    my $name = $0;
                    $name =~ s{.*/}{};
                    if (open(my $fh, '>', "$dir/$name-$base")) {
                        print $fh $r->[1];
                        close $fh;
                    }
                }
                $rc ||= 1;
            }
        }
    }
    $? = $rc;
}

# So that END runs (and nginx is stopped) when prove or a user interrupts.
for my $s (qw(INT TERM HUP)) {
    $SIG{$s} = sub { die "killed by SIG$s\n" }
        if !defined $SIG{$s} || $SIG{$s} eq '' || $SIG{$s} eq 'DEFAULT';
}

###########################################################################

package KcdTest::Response;

# A parsed HTTP response: {status, reason, version, headers => [[n, v]...],
# body, closed, raw_head, interim => [responses 1xx]}.

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

sub has_header { return defined $_[0]->header($_[1]) ? 1 : 0 }

sub status { return $_[0]{status} }
sub body { return $_[0]{body} }
sub closed { return $_[0]{closed} }

###########################################################################

package KcdTest::Conn;

use Carp qw(croak);
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time);

# KcdTest::Conn->new(port => $p, host => '127.0.0.1', ssl => 0|1,
#                    sni => 'name', timeout => 5, alpn => [...],
#                    local_addr => '127.0.0.2')
# local_addr: bind the client socket, so that one test speaks from several
# client addresses (any 127.0.0.0/8 address works on Linux loopback)
sub new {
    my ($class, %o) = @_;
    croak "Conn: port required" unless $o{port};
    my $host = $o{host} || '127.0.0.1';
    my $timeout = $o{timeout} || 5;
    my $sock;
    if ($o{ssl}) {
        require IO::Socket::SSL;
        $sock = IO::Socket::SSL->new(
            PeerAddr => $host, PeerPort => $o{port}, Timeout => $timeout,
            ($o{local_addr} ? (LocalAddr => $o{local_addr}) : ()),
            SSL_verify_mode => IO::Socket::SSL::SSL_VERIFY_NONE(),
            SSL_hostname => (defined $o{sni} ? $o{sni} : ''),
            ($o{alpn} ? (SSL_alpn_protocols => $o{alpn}) : ()),
            ($o{ssl_opts} ? %{$o{ssl_opts}} : ()),
        ) or croak "TLS connect to $host:$o{port} failed: "
            . IO::Socket::SSL::errstr();
    } else {
        $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $o{port},
                                      Proto => 'tcp', Timeout => $timeout,
                                      ($o{local_addr}
                                       ? (LocalAddr => $o{local_addr}) : ()))
            or croak "connect to $host:$o{port} failed: $!";
    }
    $sock->autoflush(1);
    binmode $sock;
    return bless { sock => $sock, buf => '', timeout => $timeout,
                   ssl => $o{ssl} ? 1 : 0, eof => 0, host => $o{sni} || 'localhost',
                   port => $o{port} }, $class;
}

sub is_tls { return $_[0]{ssl} }
sub socket { return $_[0]{sock} }
sub local_port { return $_[0]{sock}->sockport }

sub tls_cert_der {
    my ($self) = @_;
    croak "not a TLS connection" unless $self->{ssl};
    my $x509 = $self->{sock}->peer_certificate
        or croak "no server certificate on this connection";
    my $pem = Net::SSLeay::PEM_get_string_X509($x509);
    my ($b64) = $pem =~ /-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----/s
        or croak "cannot encode the server certificate";
    require MIME::Base64;
    return MIME::Base64::decode_base64($b64);
}

sub alpn_selected {
    my ($self) = @_;
    return $self->{ssl} ? $self->{sock}->alpn_selected : undef;
}

# send($bytes): writes everything, dies on timeout or error.
sub send {
    my ($self, $data) = @_;
    my $deadline = time + $self->{timeout};
    my $sel = IO::Select->new($self->{sock});
    while (length $data) {
        my $left = $deadline - time;
        croak "send: timeout" if $left <= 0;
        next unless $sel->can_write($left);
        my $n = syswrite($self->{sock}, $data);
        unless (defined $n) {
            next if $!{EAGAIN} || $!{EINTR} || ($self->{ssl} && $IO::Socket::SSL::SSL_ERROR
                && $IO::Socket::SSL::SSL_ERROR == IO::Socket::SSL::SSL_WANT_WRITE());
            croak "send: $!";
        }
        substr($data, 0, $n) = '';
    }
    return 1;
}

# Reads more bytes into the buffer; returns bytes read, 0 on EOF; dies on
# timeout.
sub _fill {
    my ($self, $deadline) = @_;
    return 0 if $self->{eof};
    my $sel = IO::Select->new($self->{sock});
    while (1) {
        my $pending = $self->{ssl} ? $self->{sock}->pending : 0;
        unless ($pending) {
            my $left = $deadline - time;
            croak "timeout waiting for data from server (port $self->{port})"
                if $left <= 0;
            next unless $sel->can_read($left);
        }
        my $n = sysread($self->{sock}, my $chunk, 65536);
        if (!defined $n) {
            next if $!{EAGAIN} || $!{EINTR};
            if ($self->{ssl} && $IO::Socket::SSL::SSL_ERROR
                && $IO::Socket::SSL::SSL_ERROR == IO::Socket::SSL::SSL_WANT_READ()) {
                next;
            }
            # a reset counts as close
            $self->{eof} = 1;
            $self->{reset} = 1;
            return 0;
        }
        if ($n == 0) {
            $self->{eof} = 1;
            return 0;
        }
        $self->{buf} .= $chunk;
        return $n;
    }
}

sub _read_line {
    my ($self, $deadline) = @_;
    while (1) {
        my $i = index($self->{buf}, "\n");
        if ($i >= 0) {
            my $l = substr($self->{buf}, 0, $i + 1, '');
            $l =~ s/\r?\n\z//;
            return $l;
        }
        return undef unless $self->_fill($deadline);
    }
}

sub _read_n {
    my ($self, $n, $deadline) = @_;
    while (length($self->{buf}) < $n) {
        croak "connection closed after " . length($self->{buf})
            . " of $n body bytes" unless $self->_fill($deadline);
    }
    return substr($self->{buf}, 0, $n, '');
}

# read_response(head => 1 for a HEAD request, timeout => s): one response.
sub read_response {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} || $self->{timeout});
    my @interim;
    while (1) {
        my $r = $self->_read_one($deadline, %o);
        if ($r->{status} >= 100 && $r->{status} < 200 && $r->{status} != 101) {
            push @interim, $r;
            next;
        }
        $r->{interim} = \@interim;
        return $r;
    }
}

sub _read_one {
    my ($self, $deadline, %o) = @_;
    my $line = $self->_read_line($deadline);
    croak "connection closed before a response (port $self->{port})"
        unless defined $line;
    my ($ver, $status, $reason) = $line =~ m{^(HTTP/\d\.\d)\s+(\d{3})\s?(.*)$}
        or croak "bad status line: '$line'";
    my @h;
    my $head = "$line\n";
    while (1) {
        my $l = $self->_read_line($deadline);
        croak "connection closed in response headers" unless defined $l;
        $head .= "$l\n";
        last if $l eq '';
        if ($l =~ /^[ \t]/ && @h) {
            $h[-1][1] .= ' ' . ($l =~ s/^\s+//r);
            next;
        }
        my ($n, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or croak "bad header line '$l'";
        push @h, [$n, $v];
    }
    my $r = bless { version => $ver, status => $status + 0, reason => $reason,
                    headers => \@h, body => '', closed => 0,
                    raw_head => $head }, 'KcdTest::Response';

    return $r if $status < 200 && $status != 101;

    my $te = $r->header('Transfer-Encoding');
    my $cl = $r->header('Content-Length');
    if ($o{head} || $status == 204 || $status == 304) {
        # no body
    } elsif (defined $te && $te =~ /chunked/i) {
        $r->{chunked} = 1;
        while (1) {
            my $sz = $self->_read_line($deadline);
            croak "connection closed in chunked body" unless defined $sz;
            $sz =~ s/;.*//;
            $sz =~ s/\s+//g;
            croak "bad chunk size '$sz'" unless $sz =~ /^[0-9a-fA-F]+$/;
            my $n = hex $sz;
            if ($n == 0) {
                while (1) {
                    my $t = $self->_read_line($deadline);
                    croak "connection closed in trailers" unless defined $t;
                    last if $t eq '';
                    push @{$r->{trailers}}, [split /:\s*/, $t, 2];
                }
                last;
            }
            $r->{body} .= $self->_read_n($n, $deadline);
            $self->_read_n(2, $deadline);
        }
    } elsif (defined $cl) {
        croak "bad Content-Length '$cl'" unless $cl =~ /^\d+$/;
        $r->{body} = $self->_read_n($cl, $deadline);
    } else {
        # until close
        1 while $self->_fill($deadline);
        $r->{body} = $self->{buf};
        $self->{buf} = '';
        $r->{closed} = 1;
    }

    my $conn = $r->header('Connection');
    if (!$r->{closed} && ((defined $conn && $conn =~ /\bclose\b/i)
                          || $ver eq 'HTTP/1.0' && !(defined $conn && $conn =~ /keep-alive/i))) {
        # the server said it closes: wait for the FIN so that 'closed' is
        # a fact, not a promise
        $r->{closed} = $self->closed(timeout => $o{close_wait} || 2);
    } elsif (!$r->{closed}) {
        $r->{closed} = $self->{eof} ? 1 : 0;
    }
    return $r;
}

# Builds the request text.  $req: {method, path, headers => [n => v, ...]
# or [[n, v], ...], body, chunked => [chunks], host, version => '1.1',
# close => 1}
sub build_request {
    my ($self, $req) = @_;
    my $method = $req->{method} || 'GET';
    my $path = defined $req->{path} ? $req->{path} : '/';
    my $ver = $req->{version} || '1.1';
    my @h = _pairs($req->{headers});
    my $t = "$method $path HTTP/$ver\r\n";
    $t .= "Host: " . ($req->{host} || $self->{host}) . "\r\n"
        unless grep { lc $_->[0] eq 'host' } @h;
    $t .= "Connection: close\r\n" if $req->{close};
    my $body = '';
    if ($req->{chunked}) {
        $t .= "Transfer-Encoding: chunked\r\n";
        for my $c (@{$req->{chunked}}) {
            next unless length $c;
            $body .= sprintf("%x\r\n", length $c) . $c . "\r\n";
        }
        $body .= "0\r\n\r\n";
    } elsif (defined $req->{body}) {
        $body = $req->{body};
        $t .= "Content-Length: " . length($body) . "\r\n"
            unless grep { lc $_->[0] eq 'content-length' } @h;
    }
    $t .= "$_->[0]: $_->[1]\r\n" for @h;
    return $t . "\r\n" . $body;
}

sub _pairs {
    my ($h) = @_;
    return () unless $h;
    my @in = @$h;
    my @out;
    while (@in) {
        my $x = shift @in;
        if (ref $x eq 'ARRAY') {
            push @out, [@$x];
        } elsif ($x =~ /^([^:]+):\s*(.*)$/ && !@in) {
            push @out, [$1, $2];
        } else {
            push @out, [$x, shift @in];
        }
    }
    return @out;
}

# request($raw_text) or request({method, path, headers, body, ...}):
# sends one request and reads exactly one response.
sub request {
    my ($self, $req, %o) = @_;
    my $text = ref $req ? $self->build_request($req) : $req;
    my $head = ref $req ? (($req->{method} || 'GET') eq 'HEAD')
                        : ($req =~ /^HEAD /);
    $self->send($text);
    return $self->read_response(head => $head, %o);
}

sub get {
    my ($self, $path, %o) = @_;
    return $self->request({%o, method => $o{method} || 'GET', path => $path});
}

sub post {
    my ($self, $path, %o) = @_;
    $o{body} = '' unless defined $o{body} || $o{chunked};
    return $self->request({%o, method => $o{method} || 'POST', path => $path});
}

# closed(timeout => 0.3): true when the peer has closed (EOF or reset)
# within the timeout.  Data that arrives instead is kept for the next read.
sub closed {
    my ($self, %o) = @_;
    return 1 if $self->{eof};
    my $deadline = time + (defined $o{timeout} ? $o{timeout} : 0.3);
    my $sel = IO::Select->new($self->{sock});
    while (1) {
        my $left = $deadline - time;
        $left = 0 if $left < 0;
        my $pending = $self->{ssl} ? $self->{sock}->pending : 0;
        if ($pending || $sel->can_read($left)) {
            my $n = eval { $self->_fill(time + 0.5) };
            return 1 if $self->{eof};
            return 0 if $n;    # data, not a close
        }
        return 0 if time >= $deadline;
    }
}

sub close {
    my ($self) = @_;
    if ($self->{sock}) {
        $self->{sock}->close;
        $self->{eof} = 1;
    }
}

1;
