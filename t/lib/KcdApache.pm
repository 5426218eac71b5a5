package KcdApache;

# The Kerberos-protected backend: a private apache2 with mod_auth_gssapi
# that accepts tickets for HTTP/backend.kcd.test and says who it saw.
#
#   my $be = KcdApache->start(dir => $dir, realm => $realm) or skip ...;
#   $be->port; $be->url('/echo');     # http://backend.kcd.test:PORT/echo
#   $be->stop;                         # also at END
#
# Every response carries X-Remote-User (empty on 401).  /echo is a CGI
# answering "user=<REMOTE_USER> method=<M> len=<body length>
# port=<client port>" (the port tells keep-alive connections apart); / is a
# static page.  Keep-alive is on; authentication is per request
# (GssapiConnectionBound off), so each request needs its own token and a
# replayed token gets 401.
#
# Options: name => 'apache2' (a second instance in the same test dir),
# connection_bound => 1 (GssapiConnectionBound On: the Kerberos identity
# holds for the connection, as IIS does by default), keytab => path (e.g. a
# keytab with the wrong key for the SPN).

use strict;
use warnings;

use Carp;
use File::Copy qw(copy);
use File::Path qw(make_path);
use IO::Socket::IP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

use KcdRealm ();

our %LIVE;

my $HTTPD = '/usr/sbin/apache2';
my $MODS = '/usr/lib/apache2/modules';

sub missing {
    return "$HTTPD" unless -x $HTTPD;
    return "mod_auth_gssapi" unless -e "$MODS/mod_auth_gssapi.so";
    return undef;
}

sub start {
    my ($class, %a) = @_;

    return undef if $class->missing;

    my $realm = $a{realm} or croak "realm required";
    my $dir = $a{dir} or croak "dir required";
    my $adir = "$dir/" . ($a{name} || 'apache');
    my $port = $a{port} || KcdRealm->free_port;
    my $host = $a{host} || 'backend.kcd.test';

    my $self = bless {
        dir => $adir, port => $port, host => $host, realm => $realm,
    }, $class;

    make_path("$adir/run", "$adir/htdocs", "$adir/cgi-bin", "$adir/rcache");

    # As root the children run as www-data: they must reach the keytab,
    # krb5.conf and the replay cache.  The keytab is a copy of their own.
    my ($uid, $gid) = (getpwnam('www-data'))[2, 3];
    my $root = $> == 0 && defined $uid;

    copy($a{keytab} || $realm->keytab('backend'), "$adir/backend.keytab")
        or croak "copy keytab: $!";
    chmod 0400, "$adir/backend.keytab";

    if ($root) {
        # www-data must traverse down to the keytab and to krb5.conf
        _traversable($adir);
        _traversable($realm->krb5_conf);
        chmod 0755, $adir, "$adir/htdocs", "$adir/cgi-bin";
        chown $uid, $gid, "$adir/backend.keytab", "$adir/rcache";
        chmod 0644, $realm->krb5_conf;
    }
    chmod 0700, "$adir/rcache";

    _write("$adir/htdocs/index.html", "backend ok\n");
    _write("$adir/cgi-bin/echo", <<'EOF');
#!/usr/bin/perl
my $len = 0;
my $want = $ENV{CONTENT_LENGTH} || 0;
while ($len < $want) {
    my $n = read(STDIN, my $buf, $want - $len) or last;
    $len += $n;
}
print "Content-Type: text/plain\r\n\r\n";
print "user=", ($ENV{REMOTE_USER} // ''), " method=$ENV{REQUEST_METHOD}",
    " len=$len port=$ENV{REMOTE_PORT}\n";
EOF
    chmod 0755, "$adir/cgi-bin/echo";

    my $user = $root ? "User www-data\nGroup www-data\n" : '';

    _write("$adir/httpd.conf", <<"EOF");
ServerRoot "$adir"
ServerName $host
Listen 127.0.0.1:$port
PidFile "$adir/run/httpd.pid"
DefaultRuntimeDir "$adir/run"
ErrorLog "$adir/error.log"
LogLevel info auth_gssapi:debug
$user
LoadModule mpm_prefork_module $MODS/mod_mpm_prefork.so
LoadModule authn_core_module $MODS/mod_authn_core.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule authz_user_module $MODS/mod_authz_user.so
LoadModule headers_module $MODS/mod_headers.so
LoadModule alias_module $MODS/mod_alias.so
LoadModule cgi_module $MODS/mod_cgi.so
LoadModule auth_gssapi_module $MODS/mod_auth_gssapi.so

StartServers 2
MinSpareServers 2
MaxSpareServers 8
MaxRequestWorkers 32

KeepAlive On
MaxKeepAliveRequests 1000
KeepAliveTimeout 30
Timeout 30

LogFormat "%h:%{remote}p %u \\"%r\\" %>s" kcd
CustomLog "$adir/access.log" kcd

DocumentRoot "$adir/htdocs"
ScriptAlias /echo "$adir/cgi-bin/echo"

<Directory "$adir/cgi-bin">
    Options +ExecCGI
</Directory>

<Location />
    AuthType GSSAPI
    AuthName "kcd backend"
    GssapiCredStore keytab:$adir/backend.keytab
    GssapiAllowedMech krb5
    GssapiUseSessions Off
    GssapiConnectionBound @{[ $a{connection_bound} ? 'On' : 'Off' ]}
    GssapiBasicAuth Off
    Require valid-user
    Header always set X-Remote-User "expr=%{REMOTE_USER}"
</Location>
EOF

    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$adir/stdout.log";
        open STDERR, '>&', \*STDOUT;
        POSIX::setsid();
        $ENV{KRB5_CONFIG} = $realm->krb5_conf;
        $ENV{KRB5RCACHEDIR} = "$adir/rcache";
        $ENV{KRB5_KTNAME} = "$adir/backend.keytab";
        delete $ENV{$_} for qw(KRB5CCNAME KRB5_TRACE KRB5_CLIENT_KTNAME);
        { no warnings 'exec'; exec $HTTPD, '-f', "$adir/httpd.conf",
            '-DFOREGROUND'; }
        POSIX::_exit(127);
    }

    # -DFOREGROUND: the pid we forked is the Apache parent.
    $self->{pid} = $pid;
    $LIVE{"$self"} = $self;

    my $deadline = time + 10;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pid};
            delete $LIVE{"$self"};
            croak "apache2 exited: " . _slurp("$adir/stdout.log")
                . _slurp("$adir/error.log");
        }
        my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
            PeerPort => $port, Proto => 'tcp');
        return $self if $s;
        sleep 0.02;
    }

    $self->stop;
    croak "apache2 did not listen on $port";
}

sub port { $_[0]{port} }
sub host { $_[0]{host} }
sub error_log { "$_[0]{dir}/error.log" }

sub url {
    my ($self, $path) = @_;
    return "http://$self->{host}:$self->{port}" . ($path // '/');
}

# curl arguments that make the backend's name resolve to loopback.
sub curl_resolve {
    my ($self) = @_;
    return ('--resolve', "$self->{host}:$self->{port}:127.0.0.1");
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;

    # TERM to the parent: it stops its children itself
    kill 'TERM', $pid;
    for (1 .. 500) {
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

# o+x on every ancestor we own (temporary directories are 0700).
sub _traversable {
    my ($path) = @_;
    require Cwd;
    my $p = Cwd::abs_path($path) // $path;

    while ($p =~ s{/[^/]+$}{} && length $p) {
        my @st = stat $p or last;
        next unless $st[4] == $>;
        chmod(($st[2] & 07777) | 0111, $p) unless ($st[2] & 0001);
    }
}

sub _write {
    my ($path, $content) = @_;
    open my $fh, '>', $path or croak "$path: $!";
    print $fh $content;
    close $fh or croak "$path: $!";
}

sub _slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

1;
