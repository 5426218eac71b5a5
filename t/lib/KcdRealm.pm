package KcdRealm;

# A throw-away MIT Kerberos realm for the tests: a private slapd (LDAP KDB
# backend, the only MIT backend that does S4U2Proxy) and krb5kdc on a
# loopback port (UDP+TCP; clients use TCP), every file under one directory.
# From nothing to a running realm: ~0.2-0.4 s.  No root needed.
#
#   my $realm = KcdRealm->start(dir => $dir)   # undef if tools are missing
#       or plan skip_all => KcdRealm->missing;
#
# Realm KCD.TEST (option realm =>).  Principals:
#   HTTP/proxy.kcd.test     +ok_to_auth_as_delegate, may delegate to
#                           HTTP/backend.kcd.test  (keytab proxy.keytab)
#   HTTP/backend.kcd.test   (backend.keytab)
#   HTTP/notallowed.kcd.test  exists, not in the ACL (notallowed.keytab)
#   alice / Alice-Pass1, carol / Carol-Pass1
#   bob / Bob-Pass1: -allow_forwardable, MIT's "sensitive, cannot be
#       delegated": S4U2Proxy for bob fails (EVIDENCE_TKT_NOT_FORWARDABLE)
#
#   $realm->env              hash ref: KRB5_CONFIG, KRB5_KDC_PROFILE,
#                            KRB5CCNAME (FILE: in dir), KRB5RCACHEDIR;
#                            undef values = delete from %ENV
#   $realm->krb5_conf, ->kdc_port, ->kdc_log, ->dir, ->realm
#   $realm->keytab('proxy'|'backend'|'notallowed')      path
#   $realm->proxy_principal, ->backend_principal        with realm
#   $realm->password('alice')
#   $realm->run([{stdin=>, env=>, timeout=>},] @cmd)    (exit, output)
#   $realm->kinit($user, $password, $ccache)            true on success
#   $realm->kadmin(@queries)                            kadmin.local
#   $realm->set_delegation(@spns)     replace the proxy's
#                                     krbAllowedToDelegateTo (live)
#   my $mark = $realm->log_mark;      then, KDC requests since the mark:
#   $realm->count_requests(type => 'AS_REQ'|'TGS_REQ', match => qr//,
#                          since => $mark)     ->kdc_requests: the lines
#   $realm->stop_kdc; $realm->start_kdc;       the database stays
#   $realm->set_kdc_address($host, $port)      clients go via a relay
#   $realm->reset_kdc_address
#   $realm->stop;                              everything; also at END
#   KcdRealm->free_port                        a free TCP+UDP port

use strict;
use warnings;

use Carp;
use File::Path qw(make_path);
use IO::Socket::IP;
use POSIX qw(:sys_wait_h);
use Socket qw(SOCK_DGRAM SOCK_STREAM);
use Time::HiRes qw(sleep time);

our %LIVE;

my %TOOLS = (
    krb5kdc        => '/usr/sbin/krb5kdc',
    slapd          => '/usr/sbin/slapd',
    slapadd        => '/usr/sbin/slapadd',
    kdb5_ldap_util => '/usr/sbin/kdb5_ldap_util',
    'kadmin.local' => '/usr/sbin/kadmin.local',
    ldapmodify     => '/usr/bin/ldapmodify',
    kinit          => '/usr/bin/kinit',
);

my $KRB_SCHEMA = '/usr/share/doc/krb5-kdc-ldap/kerberos.openldap.ldif.gz';
my $CORE_SCHEMA = '/etc/ldap/schema/core.ldif';

our %PASSWORDS = (
    alice => 'Alice-Pass1',
    bob   => 'Bob-Pass1',
    carol => 'Carol-Pass1',
);

sub missing {
    my @m = grep { !-x $TOOLS{$_} } sort keys %TOOLS;
    push @m, $KRB_SCHEMA unless -r $KRB_SCHEMA;
    push @m, $CORE_SCHEMA unless -r $CORE_SCHEMA;
    push @m, 'back_mdb' unless -e '/usr/lib/ldap/back_mdb.so';
    return @m ? join(', ', @m) : undef;
}

sub free_port {
    my ($class) = @_;

    # A port free for both TCP and UDP: the KDC listens on both.
    for (1 .. 50) {
        my $t = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0,
            Proto => 'tcp', Listen => 1, ReuseAddr => 1) or next;
        my $port = $t->sockport;
        my $u = IO::Socket::IP->new(LocalHost => '127.0.0.1',
            LocalPort => $port, Proto => 'udp') or next;
        return $port;
    }
    croak "no free port";
}

sub start {
    my ($class, %a) = @_;

    return undef if $class->missing;

    my $dir = $a{dir} or croak "dir required";
    my $self = bless {
        dir      => $dir,
        realm    => $a{realm} || 'KCD.TEST',
        suffix   => $a{suffix} || 'dc=kcd,dc=test',
        kdc_port => $a{kdc_port} || $class->free_port,
        ldap_pw  => 'ldap-' . int(rand(1e9)),
        master   => 'master-' . int(rand(1e9)),
        proxy    => $a{proxy} || 'HTTP/proxy.kcd.test',
        backend  => $a{backend} || 'HTTP/backend.kcd.test',
        delegate_to => $a{delegate_to} || ['HTTP/backend.kcd.test'],
        pids     => {},
    }, $class;

    $LIVE{"$self"} = $self;

    my $t0 = time;
    make_path("$dir/ldap/config", "$dir/ldap/db", "$dir/rcache");
    $self->{ldapi} = "$dir/ldap/ldapi";
    (my $esc = $self->{ldapi}) =~ s{([^A-Za-z0-9._-])}
                                   {sprintf('%%%02X', ord $1)}ge;
    $self->{ldap_uri} = "ldapi://$esc";

    $self->_write_conf;
    $self->_slapd_setup;
    $self->_start_slapd;
    $self->_kdb_setup;
    $self->start_kdc;
    $self->{startup} = time - $t0;

    return $self;
}

sub dir { $_[0]{dir} }
sub realm { $_[0]{realm} }
sub kdc_port { $_[0]{kdc_port} }
sub krb5_conf { "$_[0]{dir}/krb5.conf" }
sub kdc_log { "$_[0]{dir}/kdc.log" }
sub keytab { "$_[0]{dir}/$_[1].keytab" }
sub startup_time { $_[0]{startup} }
sub password { $PASSWORDS{$_[1]} }
sub proxy_principal { "$_[0]{proxy}\@$_[0]{realm}" }
sub backend_principal { "$_[0]{backend}\@$_[0]{realm}" }

sub env {
    my ($self) = @_;
    my $d = $self->{dir};

    return {
        KRB5_CONFIG      => "$d/krb5.conf",
        KRB5_KDC_PROFILE => "$d/kdc.conf",
        KRB5CCNAME       => "FILE:$d/ccache",
        KRB5RCACHEDIR    => "$d/rcache",
        KRB5_TRACE       => undef,
        KRB5_KTNAME      => undef,
        KRB5_CLIENT_KTNAME => undef,
    };
}

# Run a command in the realm's environment: (exit status, stdout+stderr).
# Optional hash ref first: { stdin => "...", env => {...} }.

sub run {
    my ($self, @cmd) = @_;
    my $opt = ref $cmd[0] eq 'HASH' ? shift @cmd : {};
    my %env = (%{$self->env}, %{$opt->{env} || {}});

    pipe(my $rd, my $wr) or die "pipe: $!";
    pipe(my $ird, my $iwr) or die "pipe: $!";
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        close $rd;
        close $iwr;
        open STDIN, '<&', $ird or POSIX::_exit(127);
        open STDOUT, '>&', $wr or POSIX::_exit(127);
        open STDERR, '>&', $wr or POSIX::_exit(127);
        for (keys %env) {
            if (defined $env{$_}) { $ENV{$_} = $env{$_} }
            else { delete $ENV{$_} }
        }
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    close $wr;
    close $ird;
    print $iwr $opt->{stdin} if defined $opt->{stdin};
    close $iwr;

    # Bounded: a tool that hangs (KDC never answers) must not hang a test.
    my $out = '';
    my $deadline = time + ($opt->{timeout} || 30);
    my $rin = '';
    vec($rin, fileno($rd), 1) = 1;
    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            kill 'KILL', $pid;
            $out .= "\n[killed: timeout]\n";
            last;
        }
        my $n = select(my $rout = $rin, undef, undef, $left);
        next if $n <= 0;
        my $r = sysread($rd, my $buf, 65536);
        last unless $r;
        $out .= $buf;
    }
    close $rd;
    waitpid($pid, 0);
    return wantarray ? ($? >> 8, $out) : $? >> 8;
}

sub kinit {
    my ($self, $user, $password, $ccache) = @_;

    $password //= $PASSWORDS{$user};
    $ccache //= "FILE:$self->{dir}/ccache";
    my ($rc, $out) = $self->run({ stdin => "$password\n",
        env => { KRB5CCNAME => $ccache } }, $TOOLS{kinit}, $user);
    $self->{last_out} = $out;
    return $rc == 0;
}

sub last_output { $_[0]{last_out} }

# The delegation ACL (krbAllowedToDelegateTo of the proxy): kadmin cannot
# set it, the KDC reads it live from LDAP.

sub set_delegation {
    my ($self, @spns) = @_;
    my $dn = $self->_princ_dn($self->proxy_principal);
    my $ldif = "dn: $dn\nchangetype: modify\nreplace: krbAllowedToDelegateTo\n"
        . join('', map { "krbAllowedToDelegateTo: $_\@$self->{realm}\n" }
               @spns)
        . "-\n";

    $self->_ldapmodify($ldif);
    $self->{delegate_to} = [@spns];
}

sub set_kdc_address {
    my ($self, $host, $port) = @_;
    $self->{client_kdc} = "$host:$port";
    $self->_write_krb5_conf;
}

sub reset_kdc_address {
    my ($self) = @_;
    delete $self->{client_kdc};
    $self->_write_krb5_conf;
}

sub log_mark {
    my ($self) = @_;
    return -s $self->kdc_log || 0;
}

# KDC request lines since a log_mark (default: whole log).

sub kdc_requests {
    my ($self, %a) = @_;
    my @lines;

    open my $fh, '<', $self->kdc_log or return ();
    seek $fh, $a{since} || 0, 0;
    while (<$fh>) {
        next unless /: ((?:AS|TGS)_REQ) /;
        next if $a{type} && $1 ne $a{type};
        next if $a{match} && $_ !~ $a{match};
        push @lines, $_;
    }
    return @lines;
}

sub count_requests {
    my ($self, %a) = @_;
    return scalar(my @l = $self->kdc_requests(%a));
}

sub start_kdc {
    my ($self) = @_;

    return if $self->{pids}{krb5kdc};

    my $pid = $self->_spawn("$self->{dir}/krb5kdc.out",
        $TOOLS{krb5kdc}, '-n', '-r', $self->{realm});
    $self->{pids}{krb5kdc} = $pid;

    # -n: no fork, we own the pid.  Ready when both sockets answer; the
    # KDC binds every listener before it serves any.
    my $deadline = time + 10;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $self->{pids}{krb5kdc};
            croak "krb5kdc exited: " . _slurp("$self->{dir}/krb5kdc.out")
                . _slurp($self->kdc_log);
        }
        my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
            PeerPort => $self->{kdc_port}, Proto => 'tcp');
        return 1 if $s;
        sleep 0.01;
    }
    croak "krb5kdc did not listen on $self->{kdc_port}";
}

sub stop_kdc {
    my ($self) = @_;
    $self->_kill('krb5kdc');
}

sub stop {
    my ($self) = @_;
    $self->_kill('krb5kdc');
    $self->_kill('slapd');
    delete $LIVE{"$self"};
}

END {
    $_->stop for values %LIVE;
}

sub _kill {
    my ($self, $name) = @_;
    my $pid = delete $self->{pids}{$name} or return;

    kill 'TERM', $pid;
    for (1 .. 300) {
        return if waitpid($pid, WNOHANG) != 0;
        sleep 0.01;
    }
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

sub _spawn {
    my ($self, $out, @cmd) = @_;
    my %env = %{$self->env};

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(127);
        open STDERR, '>&', \*STDOUT;
        POSIX::setsid();
        for (keys %env) {
            if (defined $env{$_}) { $ENV{$_} = $env{$_} }
            else { delete $ENV{$_} }
        }
        { no warnings 'exec'; exec { $cmd[0] } @cmd; }
        POSIX::_exit(127);
    }
    return $pid;
}

sub _princ_dn {
    my ($self, $princ) = @_;
    return "krbPrincipalName=$princ,cn=$self->{realm},cn=krb5,$self->{suffix}";
}

sub _ldapmodify {
    my ($self, $ldif) = @_;
    my ($rc, $out) = $self->run({ stdin => $ldif }, $TOOLS{ldapmodify},
        '-x', '-H', $self->{ldap_uri}, '-D', "cn=admin,$self->{suffix}",
        '-w', $self->{ldap_pw});
    croak "ldapmodify: $out" if $rc;
}

sub _write_file {
    my ($path, $content, $mode) = @_;
    # Replace atomically: clients may read krb5.conf at any moment.
    open my $fh, '>', "$path.tmp" or croak "$path.tmp: $!";
    chmod $mode, "$path.tmp" if defined $mode;
    print $fh $content;
    close $fh or croak "$path.tmp: $!";
    rename "$path.tmp", $path or croak "$path: $!";
}

sub _slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    return scalar <$fh>;
}

sub _write_krb5_conf {
    my ($self) = @_;
    my $r = $self->{realm};
    my $kdc = $self->{client_kdc} || "127.0.0.1:$self->{kdc_port}";

    # udp_preference_limit = 1: clients always use TCP, so a TCP relay in
    # front of the KDC sees (and can delay) every request.
    _write_file("$self->{dir}/krb5.conf", <<"EOF");
[libdefaults]
    default_realm = $r
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    forwardable = true
    udp_preference_limit = 1
    ignore_acceptor_hostname = false

[realms]
    $r = {
        kdc = $kdc
    }

[domain_realm]
    .kcd.test = $r
    kcd.test = $r
EOF
}

sub _write_conf {
    my ($self) = @_;
    my $d = $self->{dir};
    my $r = $self->{realm};
    my $p = $self->{kdc_port};
    my $dn = "cn=admin,$self->{suffix}";

    $self->_write_krb5_conf;

    _write_file("$d/kdc.conf", <<"EOF");
[kdcdefaults]
    kdc_listen = 127.0.0.1:$p
    kdc_tcp_listen = 127.0.0.1:$p

[realms]
    $r = {
        database_module = ldapconf
        key_stash_file = $d/master.stash
        max_life = 10h
        max_renewable_life = 1d
        kdc_listen = 127.0.0.1:$p
        kdc_tcp_listen = 127.0.0.1:$p
    }

[dbmodules]
    ldapconf = {
        db_library = kldap
        ldap_kerberos_container_dn = cn=krb5,$self->{suffix}
        ldap_kdc_dn = $dn
        ldap_kadmind_dn = $dn
        ldap_service_password_file = $d/ldap.stash
        ldap_servers = $self->{ldap_uri}
        ldap_conns_per_server = 2
    }

[logging]
    kdc = FILE:$d/kdc.log
    admin_server = FILE:$d/kadmin.log
    default = FILE:$d/krb5lib.log
EOF

    # The format kdb5_ldap_util stashsrvpw writes, without its prompt.
    _write_file("$d/ldap.stash",
        "$dn#{HEX}" . unpack('H*', $self->{ldap_pw}) . "\n", 0600);
}

sub _slapd_setup {
    my ($self) = @_;
    my $d = $self->{dir};
    my $s = $self->{suffix};

    my $krb = `zcat $KRB_SCHEMA`;
    croak "cannot read $KRB_SCHEMA" unless $krb;

    my $config = <<"EOF";
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: $d/ldap/slapd.pid

dn: cn=module{0},cn=config
objectClass: olcModuleList
cn: module{0}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

EOF
    $config .= _slurp($CORE_SCHEMA) . "\n\n" . $krb . "\n\n";
    $config .= <<"EOF";
dn: olcDatabase={-1}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {-1}frontend

dn: olcDatabase={0}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {0}config
olcAccess: {0}to * by * none

dn: olcDatabase={1}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {1}mdb
olcDbDirectory: $d/ldap/db
olcSuffix: $s
olcRootDN: cn=admin,$s
olcRootPW: $self->{ldap_pw}
olcDbIndex: objectClass eq
olcDbIndex: krbPrincipalName eq,pres,sub
olcDbMaxSize: 67108864
olcAccess: {0}to * by * none

EOF
    _write_file("$d/ldap/config.ldif", $config);

    (my $dc = $s) =~ s/^dc=([^,]+).*/$1/;
    _write_file("$d/ldap/base.ldif", <<"EOF");
dn: $s
objectClass: dcObject
objectClass: organization
o: $dc
dc: $dc

EOF

    my ($rc, $out) = $self->run('/usr/sbin/slapadd', '-n0', '-F',
        "$d/ldap/config", '-l', "$d/ldap/config.ldif");
    croak "slapadd -n0: $out" if $rc;
    ($rc, $out) = $self->run('/usr/sbin/slapadd', '-n1', '-F',
        "$d/ldap/config", '-l', "$d/ldap/base.ldif");
    croak "slapadd -n1: $out" if $rc;
}

sub _start_slapd {
    my ($self) = @_;

    # -d 0: stay in the foreground, so the pid is ours to stop.
    $self->{pids}{slapd} = $self->_spawn("$self->{dir}/ldap/slapd.out",
        $TOOLS{slapd}, '-d', '0', '-F', "$self->{dir}/ldap/config",
        '-h', $self->{ldap_uri});

    my $deadline = time + 10;
    while (time < $deadline) {
        if (waitpid($self->{pids}{slapd}, WNOHANG) > 0) {
            delete $self->{pids}{slapd};
            croak "slapd exited: " . _slurp("$self->{dir}/ldap/slapd.out");
        }
        if (-S $self->{ldapi}) {
            my $c = IO::Socket::UNIX->new(Peer => $self->{ldapi});
            return 1 if $c;
        }
        sleep 0.01;
    }
    croak "slapd did not start";
}

sub _kdb_setup {
    my ($self) = @_;
    my $d = $self->{dir};
    my $r = $self->{realm};

    my ($rc, $out) = $self->run($TOOLS{kdb5_ldap_util}, '-D',
        "cn=admin,$self->{suffix}", '-w', $self->{ldap_pw},
        '-H', $self->{ldap_uri}, 'create', '-r', $r, '-s',
        '-P', $self->{master});
    croak "kdb5_ldap_util create: $out" if $rc;

    my $cmds = join("\n",
        "addprinc -randkey +ok_to_auth_as_delegate $self->{proxy}",
        "addprinc -randkey $self->{backend}",
        "addprinc -randkey HTTP/notallowed.kcd.test",
        "addprinc -pw $PASSWORDS{alice} alice",
        # MIT's "sensitive, cannot be delegated": DISALLOW_FORWARDABLE on
        # the user makes its S4U2Self ticket non-forwardable, so the KDC
        # refuses S4U2Proxy for it.
        "addprinc -pw $PASSWORDS{bob} -allow_forwardable bob",
        "addprinc -pw $PASSWORDS{carol} carol",
        "ktadd -k $d/proxy.keytab -norandkey $self->{proxy}",
        "ktadd -k $d/backend.keytab -norandkey $self->{backend}",
        "ktadd -k $d/notallowed.keytab -norandkey HTTP/notallowed.kcd.test",
        '');
    ($rc, $out) = $self->run({ stdin => $cmds }, $TOOLS{'kadmin.local'},
        '-r', $r);
    croak "kadmin.local: $out" if $rc || $out =~ /error|fail/i;
    $self->{kadmin_out} = $out;

    $self->set_delegation(@{$self->{delegate_to}});
}

sub kadmin {
    my ($self, @q) = @_;
    return $self->run({ stdin => join("\n", @q, '') }, $TOOLS{'kadmin.local'},
        '-r', $self->{realm});
}

1;
