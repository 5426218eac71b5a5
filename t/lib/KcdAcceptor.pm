package KcdAcceptor;

# Independent Kerberos acceptors as HTTP backends (t/backends/), for the
# upstream tokens the module sends (B7, B22):
#
#   heimdal  Samba's acceptor (gensec "spnego"/"krb5", Heimdal as bundled
#            with Samba), python3-samba            t/backends/heimdal_backend.py
#   jgss     OpenJDK's JGSS (GSSManager, JAAS Krb5LoginModule with the
#            keytab), com.sun.net.httpserver       t/backends/JgssBackend.java
#            with tls => 1: HTTPS, channel binding enforced
#   mit-cb   MIT (python3-gssapi) over TLS, channel binding enforced
#                                                  t/backends/mit_cb_backend.py
#
#   my $b = KcdAcceptor->start(kind => 'jgss', dir => $dir, realm => $realm,
#                              [tls => {cert => , key => }]) or skip ...;
#   $b->port; $b->log; $b->stop;        (also at END)
#   KcdAcceptor->missing('jgss')        undef, or what is not installed
#
# Every backend answers 200 "user=<principal> method=<M> len=<n>
# port=<client port> acceptor=<kind>" with X-Remote-User, or 401 with
# X-Acceptor-Error; each request is authenticated on its own (keep-alive
# connections carry many).  Only 127.0.0.1.

use strict;
use warnings;

use Carp;
use File::Path qw(make_path);
use IO::Socket::IP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

use KcdRealm ();

our %LIVE;

my $PY = '/usr/bin/python3';
# Debian's OpenJDK 17 (not whatever "java" is first on PATH)
my ($JDK) = glob('/usr/lib/jvm/java-17-openjdk-*/bin');
my $JAVA = ($JDK // '/nonexistent') . '/java';
my ($HEIMDAL) = glob('/usr/lib/*/samba/libgssapi-samba4.so.0');
my $BACKENDS = do {
    (my $d = __FILE__) =~ s{/lib/[^/]+$}{/backends};
    $d;
};

sub missing {
    my ($class, $kind) = @_;

    if ($kind eq 'heimdal') {
        return "$PY" unless -x $PY;
        return 'python3-samba'
            if system("$PY -c 'import samba.gensec' 2>/dev/null") != 0;
        return 'samba-libs (libgssapi-samba4.so.0)' unless $HEIMDAL;
    } elsif ($kind eq 'jgss') {
        # the single-file launcher compiles: a JDK, not only a JRE
        return 'openjdk-17-jdk-headless'
            unless -x $JAVA && -x ($JDK // '/nonexistent') . '/javac';
    } elsif ($kind eq 'mit-cb') {
        return 'python3-gssapi'
            if system("$PY -c 'import gssapi' 2>/dev/null") != 0;
    }
    return undef;
}

sub start {
    my ($class, %a) = @_;

    my $kind = $a{kind} or croak "kind required";
    my $realm = $a{realm} or croak "realm required";
    my $dir = "$a{dir}/$kind" . ($a{tls} ? '-tls' : '');
    my $port = $a{port} || KcdRealm->free_port;

    return undef if $class->missing($kind);

    make_path($dir, "$dir/rcache");

    my @cmd;
    my %env = (
        KRB5_CONFIG   => $realm->krb5_conf,
        KRB5RCACHEDIR => "$dir/rcache",
    );

    if ($kind eq 'heimdal') {
        @cmd = ($PY, "$BACKENDS/heimdal_backend.py", $port,
                $realm->keytab('backend'), $dir, $HEIMDAL);

    } elsif ($kind eq 'jgss') {
        @cmd = ($JAVA, '-Djava.security.krb5.conf=' . $realm->krb5_conf,
                '-Xshare:auto', '-XX:TieredStopAtLevel=1', '--add-exports',
                'java.security.jgss/sun.security.jgss.krb5.internal=ALL-UNNAMED',
                "$BACKENDS/JgssBackend.java", $port,
                $realm->keytab('backend'), $realm->backend_principal);
        if ($a{tls}) {
            my $p12 = "$dir/backend.p12";
            system('openssl', 'pkcs12', '-export', '-in', $a{tls}{cert},
                   '-inkey', $a{tls}{key}, '-out', $p12, '-passout',
                   'pass:kcd-test', '-name', 'backend') == 0
                or croak "openssl pkcs12 failed";
            push @cmd, $p12, 'kcd-test';
        }

    } elsif ($kind eq 'mit-cb') {
        $a{tls} or croak "mit-cb needs tls";
        @cmd = ($PY, "$BACKENDS/mit_cb_backend.py", $port,
                $realm->keytab('backend'), $a{tls}{cert}, $a{tls}{key});

    } else {
        croak "unknown acceptor $kind";
    }

    my $self = bless { kind => $kind, dir => $dir, port => $port,
                       log => "$dir/backend.log" }, $class;

    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->{log};
        open STDERR, '>&', \*STDOUT;
        POSIX::setsid();
        delete $ENV{$_} for qw(KRB5CCNAME KRB5_TRACE KRB5_KTNAME
                               KRB5_CLIENT_KTNAME);
        $ENV{$_} = $env{$_} for keys %env;
        { no warnings 'exec'; exec @cmd; }
        POSIX::_exit(127);
    }

    $self->{pid} = $pid;
    $LIVE{"$self"} = $self;

    # the JVM compiles the backend first: a few seconds on a busy machine
    my $deadline = time + 60;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pid};
            delete $LIVE{"$self"};
            croak "$kind backend exited: " . _slurp($self->{log});
        }
        my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
            PeerPort => $port, Proto => 'tcp');
        return $self if $s;
        sleep 0.05;
    }

    $self->stop;
    croak "$kind backend did not listen on $port: " . _slurp($self->{log});
}

sub port { $_[0]{port} }
sub kind { $_[0]{kind} }
sub log_file { $_[0]{log} }
sub log_text { _slurp($_[0]{log}) }

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;

    kill 'TERM', -$pid;
    for (1 .. 300) {
        last if waitpid($pid, WNOHANG) != 0;
        sleep 0.01;
    }
    if (kill 0, $pid) {
        kill 'KILL', -$pid;
        waitpid($pid, 0);
    }
    delete $LIVE{"$self"};
}

END {
    $_->stop for values %LIVE;
}

sub _slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

1;
