package KcdSamba;

# A throw-away Samba Active Directory domain for the tests (root only):
#
#   - a domain controller (samba, server role "active directory domain
#     controller") in a network namespace of its own, reached from the root
#     namespace over a veth pair with private /30 addresses (10.213.x.y, no
#     route anywhere else);
#   - a member server (the "nginx machine"): a private smb.conf, joined with
#     "net ads join", running only winbindd, in the root network namespace.
#     NTLM validation then takes the production path: libwbclient ->
#     member winbindd -> NETLOGON -> DC.
#
#   my $ad = KcdSamba->start(dir => $dir)
#       or plan skip_all => "no Samba AD: $KcdSamba::why";
#   system($ad->wrap('nginx', '-p', ...));   # a libwbclient client of the
#                                            # member winbindd
#   my ($rc, $out) = $ad->wbinfo('-P');
#   $ad->stop_dc; $ad->start_dc;             # same DC database
#   $ad->stop;                               # also done at END
#
# libwbclient always connects to the compiled-in /run/samba/winbindd and the
# member needs to resolve the DC's name (dc1.kcd.test) without DNS, so every
# process that talks to the member runs in a private mount namespace where
# <dir>/member/run is bind-mounted on /run/samba and <dir>/hosts on
# /etc/hosts: ->wrap(@cmd) builds that command line.  Nothing on the
# machine is changed (except creating /run/samba if it does not exist).
#
# Privileged pipe: challenge/response logons need
# <dir>/member/state/winbindd_privileged (root:root 0750 here).  The tests
# run nginx as root, so its workers can open it; in production the worker
# user must be in the group that owns that directory (Debian:
# winbindd_priv).  ->priv_dir names it, e.g. for a test that chgrp's it.
#
# Provisioning (samba-tool domain provision + accounts + keytabs) takes
# ~7-10 s; the provisioned DC directory is kept as a snapshot under
# /var/tmp/kcd-samba-cache-<hash> ($ENV{KCD_SAMBA_CACHE} overrides) and
# copied on later runs.  A snapshot that is incomplete or does not start
# is thrown away and the domain provisioned again.

use strict;
use warnings;

use Carp;
use Digest::SHA qw(sha1_hex);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use POSIX qw(:sys_wait_h setsid);
use Time::HiRes qw(sleep time);

our $why;       # why start returned undef
our $failed;    # true when the tools are there but the fixture broke
our %LIVE;

# bump when the provisioned content changes: it names the snapshot
our $FIXTURE_VERSION = 3;

our $REALM = 'KCD.TEST';
our $DOMAIN = 'KCD';
our $DNS_DOMAIN = 'kcd.test';
our $DC_NAME = 'DC1';
our $ADMIN_PASS = 'Admin-Pass1!kcd';

our %PASSWORDS = (
    alice      => 'Alice-Pass1!',
    bob        => 'Bob-Pass1!',
    kcdproxy   => 'Proxy-Pass1!kcd-svc',
    kcdbackend => 'Backend-Pass1!kcd-svc',
);

my @TOOLS = qw(/usr/sbin/ip /usr/bin/unshare /usr/bin/setsid /usr/sbin/samba
    /usr/bin/samba-tool /usr/sbin/winbindd /usr/bin/net /usr/bin/wbinfo
    /usr/bin/python3);

my $SETUP = '/usr/share/samba/setup/ad-schema';

my $SEQ = 0;

sub _unavailable {
    my @m;

    return "not root" if $> != 0;

    for my $t (@TOOLS) {
        push @m, $t unless -x $t;
    }
    push @m, "$SETUP (package samba-ad-provision)" unless -d $SETUP;
    return "missing: " . join(', ', @m) if @m;

    return "ip netns unavailable"
        if system('/usr/sbin/ip netns list >/dev/null 2>&1') != 0;

    return "unshare -m unavailable"
        if system('/usr/bin/unshare -m --propagation private true '
                  . '>/dev/null 2>&1') != 0;
    return undef;
}

sub start {
    my ($class, %a) = @_;

    $failed = 0;
    $why = _unavailable();
    return undef if defined $why;

    my $dir = $a{dir} or croak "dir required";
    my $n = $SEQ++;
    my $self = bless {
        dir         => $dir,
        member_name => uc($a{member_name} || 'KCDPROXY1'),
        extra_hosts => $a{hosts} || {},
        netns       => "kcd-dc-$$-$n",
        veth_root   => "kcd${$}r$n",
        veth_dc     => "kcd${$}d$n",
        owner       => $$,
        pids        => {},
        times       => {},
    }, $class;

    $LIVE{"$self"} = $self;
    _install_signals();

    my $t0 = time;
    my $ok = eval { $self->_start_all; 1 };
    unless ($ok) {
        $why = "Samba AD fixture failed: $@";
        $failed = 1;
        $self->stop;
        return undef;
    }
    $self->{times}{total} = time - $t0;

    return $self;
}

sub dir { $_[0]{dir} }
sub realm { $REALM }
sub domain { $DOMAIN }
sub dns_domain { $DNS_DOMAIN }
sub dc_ip { $_[0]{dc_ip} }
sub host_ip { $_[0]{host_ip} }
sub dc_name { "dc1.$DNS_DOMAIN" }
sub netns { $_[0]{netns} }
sub member_name { $_[0]{member_name} }
sub password { $PASSWORDS{$_[1]} }
sub admin_password { $ADMIN_PASS }
sub proxy_account { 'kcdproxy' }
sub backend_account { 'kcdbackend' }
sub proxy_spn { "HTTP/proxy.$DNS_DOMAIN" }
sub backend_spn { "HTTP/backend.$DNS_DOMAIN" }
sub krb5_conf { "$_[0]{dir}/krb5.conf" }
sub keytab { "$_[0]{dir}/$_[1].keytab" }       # 'proxy' or 'backend'
sub proxy_keytab { $_[0]->keytab('proxy') }
sub backend_keytab { $_[0]->keytab('backend') }
sub member_smb_conf { "$_[0]{dir}/member/smb.conf" }
sub dc_smb_conf { "$_[0]{dir}/dc/etc/smb.conf" }
sub priv_dir { "$_[0]{dir}/member/state/winbindd_privileged" }
sub socket_dir { "$_[0]{dir}/member/run/winbindd" }
sub hosts_file { "$_[0]{dir}/hosts" }
sub times { $_[0]{times} }              # {provision|restore, dc, join, ...}
sub from_snapshot { $_[0]{from_snapshot} }
sub dc_pid { $_[0]{pids}{dc} }
sub winbindd_pid { $_[0]{pids}{winbindd} }

sub env {
    my ($self) = @_;

    return (KRB5_CONFIG => $self->krb5_conf,
            KRB5CCNAME  => "FILE:$self->{dir}/krb5cc_test");
}

sub cache_dir {
    my $v = `/usr/sbin/samba -V 2>/dev/null` // '';
    chomp $v;
    return $ENV{KCD_SAMBA_CACHE}
        || '/var/tmp/kcd-samba-cache-'
           . substr(sha1_hex("$FIXTURE_VERSION|$v|" . __PACKAGE__), 0, 12);
}

# A command that runs @cmd as a client of the member's winbindd: private
# mount namespace with the member's run dir on /run/samba and the test's
# hosts file on /etc/hosts.  List context: the argv; scalar: a shell line.
sub wrap {
    my ($self, @cmd) = @_;

    my @argv = ('/usr/bin/unshare', '-m', '--propagation', 'private',
        '/bin/sh', '-c',
        'mount --bind "$1" /etc/hosts && mount --bind "$2" /run/samba'
        . ' && shift 2 && exec "$@"',
        'kcd-wrap', $self->hosts_file, "$self->{dir}/member/run", @cmd);

    return @argv if wantarray;
    return join ' ', map { _shq($_) } @argv;
}

# (exit code, output) of a command, killed after $timeout seconds
sub run {
    my ($self, $cmd, %o) = @_;

    return _run($cmd, timeout => $o{timeout} || 30,
        env => { $self->env, %{ $o{env} || {} } });
}

sub wbinfo {
    my ($self, @args) = @_;

    my ($rc, $out) = _run([$self->wrap('/usr/bin/wbinfo', @args)],
        timeout => 30);
    return wantarray ? ($rc, $out) : $out;
}

sub stop_dc {
    my ($self) = @_;

    my $t0 = time;
    _kill_group(delete $self->{pids}{dc});
    $self->{times}{stop_dc} = time - $t0;
}

sub start_dc {
    my ($self, %o) = @_;

    my $t0 = time;
    $self->_spawn_dc;
    $self->wait_member_online($o{timeout} || 30)
        unless defined $o{wait_member} && !$o{wait_member};
    $self->{times}{start_dc} = time - $t0;
    return 1;
}

# wbinfo -P (NETLOGON to the DC) until it works
sub wait_member_online {
    my ($self, $timeout) = @_;

    my $end = time + ($timeout || 30);
    my $out = '';
    while (time < $end) {
        my $rc;
        ($rc, $out) = $self->wbinfo('-P');
        return 1 if $rc == 0;
        sleep 0.2;
    }
    croak "member winbindd not online after ${timeout}s: $out";
}

sub stop {
    my ($self) = @_;

    return if $self->{owner} != $$;
    delete $LIVE{"$self"};

    _kill_group(delete $self->{pids}{winbindd});
    _kill_group(delete $self->{pids}{dc});
    $self->_kill_pidfiles;

    if ($self->{netns_made}) {
        system('/usr/sbin/ip', 'netns', 'del', $self->{netns});
        delete $self->{netns_made};
    }
    # deleting the namespace deletes both ends; be sure anyway
    system("/usr/sbin/ip link del $self->{veth_root} >/dev/null 2>&1");
}

END {
    local $?;
    $_->stop for values %LIVE;
}

sub _install_signals {
    for my $s (qw(INT TERM HUP)) {
        $SIG{$s} = sub { exit 128 } if !$SIG{$s} || $SIG{$s} eq 'DEFAULT';
    }
}

sub _start_all {
    my ($self) = @_;

    my $dir = $self->{dir};
    make_path($dir);
    make_path('/run/samba') unless -d '/run/samba';

    $self->_netns;
    $self->_write_common;

    my $t0 = time;
    my $cache = cache_dir();
    my $restored = $self->_restore($cache);

    unless ($restored) {
        $self->_provision;
        $self->{times}{provision} = time - $t0;
        $self->_save($cache);
    } else {
        $self->{times}{restore} = time - $t0;
    }
    $self->{from_snapshot} = $restored;

    $self->_write_dc_conf;
    $self->_copy_keytabs;

    $t0 = time;
    my $ok = eval { $self->_spawn_dc; 1 };
    if (!$ok && $restored) {
        # a snapshot that does not start is stale: provision afresh
        my $err = $@;
        _kill_group(delete $self->{pids}{dc});
        _drop_cache($cache);
        remove_tree("$dir/dc");
        $self->{from_snapshot} = 0;
        $t0 = time;
        $self->_provision;
        $self->{times}{provision} = time - $t0;
        $self->_save($cache);
        $self->_write_dc_conf;
        $self->_copy_keytabs;
        $t0 = time;
        $self->_spawn_dc;
    } elsif (!$ok) {
        die $@;
    }
    $self->{times}{dc} = time - $t0;

    $t0 = time;
    $self->_join;
    $self->{times}{join} = time - $t0;

    $t0 = time;
    $self->_spawn_winbindd;
    $self->wait_member_online(30);
    $self->{times}{winbindd} = time - $t0;
}

sub _netns {
    my ($self) = @_;

    # one /30 per run inside 10.213.0.0/16, away from addresses in use
    my %used = map { /inet (10\.213\.\d+\.\d+)/ ? ($1 => 1) : () }
        `/usr/sbin/ip -o -4 addr 2>/dev/null`;
    my ($root, $dc);
    for my $i (0 .. 200) {
        my $idx = ($$ * 7 + $SEQ * 131 + $i) % 16384;
        my ($a, $b) = (int($idx / 64), ($idx % 64) * 4);
        ($root, $dc) = ("10.213.$a." . ($b + 1), "10.213.$a." . ($b + 2));
        last unless $used{$root} || $used{$dc};
        ($root, $dc) = ();
    }
    die "no free 10.213.x.y/30\n" unless $root;

    my $ns = $self->{netns};
    _sys('/usr/sbin/ip', 'netns', 'add', $ns);
    $self->{netns_made} = 1;
    _sys('/usr/sbin/ip', 'link', 'add', $self->{veth_root}, 'type', 'veth',
        'peer', 'name', $self->{veth_dc});
    _sys('/usr/sbin/ip', 'link', 'set', $self->{veth_dc}, 'netns', $ns);
    _sys('/usr/sbin/ip', 'addr', 'add', "$root/30", 'dev', $self->{veth_root});
    _sys('/usr/sbin/ip', 'link', 'set', $self->{veth_root}, 'up');
    _sys('/usr/sbin/ip', '-n', $ns, 'addr', 'add', "$dc/30", 'dev',
        $self->{veth_dc});
    _sys('/usr/sbin/ip', '-n', $ns, 'link', 'set', $self->{veth_dc}, 'up');
    _sys('/usr/sbin/ip', '-n', $ns, 'link', 'set', 'lo', 'up');

    @$self{qw(host_ip dc_ip)} = ($root, $dc);
}

sub _write_common {
    my ($self) = @_;

    my $dir = $self->{dir};
    my $dc = $self->{dc_ip};
    my $m = lc $self->{member_name};

    my $hosts = "127.0.0.1\tlocalhost\n"
        . "$dc\tdc1.$DNS_DOMAIN dc1\n"
        . "$self->{host_ip}\t$m.$DNS_DOMAIN $m proxy.$DNS_DOMAIN\n";
    for my $h (sort keys %{ $self->{extra_hosts} }) {
        $hosts .= "$self->{extra_hosts}{$h}\t$h\n";
    }
    _write("$dir/hosts", $hosts);

    # MIT krb5.conf allows no comment after a value
    _write("$dir/krb5.conf", <<"EOF");
[libdefaults]
	default_realm = $REALM
	dns_lookup_kdc = false
	dns_lookup_realm = false
	rdns = false
	dns_canonicalize_hostname = false
	forwardable = true
	udp_preference_limit = 1

[realms]
	$REALM = {
		kdc = $dc:88
		admin_server = $dc
	}

[domain_realm]
	.$DNS_DOMAIN = $REALM
	$DNS_DOMAIN = $REALM
EOF

    my $md = "$dir/member";
    make_path(map { "$md/$_" } qw(private state cache lock log run));
    make_path("$md/run/winbindd", { mode => 0755 });
    chmod 0755, "$md/run", "$md/run/winbindd";

    _write("$md/smb.conf", <<"EOF");
[global]
	netbios name = $self->{member_name}
	workgroup = $DOMAIN
	realm = $REALM
	security = ads
	server role = member server
	password server = dc1.$DNS_DOMAIN
	name resolve order = host
	kerberos method = secrets only
	private dir = $md/private
	state directory = $md/state
	lock directory = $md/lock
	cache directory = $md/cache
	pid directory = $md/run
	ncalrpc dir = $md/run/ncalrpc
	winbindd socket directory = $md/run/winbindd
	log file = $md/log/log.%m
	logging = file
	log level = 1
	interfaces = $self->{host_ip}
	bind interfaces only = yes
	idmap config * : backend = tdb
	idmap config * : range = 100000-199999
	idmap config $DOMAIN : backend = rid
	idmap config $DOMAIN : range = 200000-299999
	winbind enum users = no
	winbind enum groups = no
	winbind scan trusted domains = no
	winbind offline logon = no
	winbind request timeout = 10
	winbind reconnect delay = 2
	ldap timeout = 5
	load printers = no
	printing = bsd
	printcap name = /dev/null
	disable spoolss = yes
EOF
}

sub _write_dc_conf {
    my ($self) = @_;

    my $d = "$self->{dir}/dc";
    make_path("$d/run", "$d/etc");
    _write("$d/etc/smb.conf", <<"EOF");
[global]
	netbios name = $DC_NAME
	workgroup = $DOMAIN
	realm = $REALM
	server role = active directory domain controller
	server services = -dnsupdate -nbt -dns
	interfaces = $self->{dc_ip}
	bind interfaces only = yes
	private dir = $d/private
	state directory = $d/state
	lock directory = $d
	cache directory = $d/cache
	pid directory = $d/run
	binddns dir = $d/bind-dns
	winbindd socket directory = $d/run/winbindd
	ntp signd socket directory = $d/run/ntp_signd
	ncalrpc dir = $d/run/ncalrpc
	log file = $d/log.%m
	logging = file
	log level = 1
	prefork children = 2
	idmap_ldb:use rfc2307 = yes

[sysvol]
	path = $d/state/sysvol
	read only = No

[netlogon]
	path = $d/state/sysvol/$DNS_DOMAIN/scripts
	read only = No
EOF
}

sub _provision {
    my ($self) = @_;

    my $d = "$self->{dir}/dc";
    remove_tree($d);
    make_path($d);
    my $log = "$self->{dir}/provision.log";

    _sys_log($log, '/usr/bin/samba-tool', 'domain', 'provision',
        "--targetdir=$d", "--realm=$REALM", "--domain=$DOMAIN",
        '--server-role=dc', '--dns-backend=NONE', '--use-rfc2307',
        "--adminpass=$ADMIN_PASS", '--host-name=dc1',
        "--option=pid directory=$d/run",
        "--option=winbindd socket directory=$d/run/winbindd",
        "--option=ntp signd socket directory=$d/run/ntp_signd",
        "--option=log file=$d/log.%m");

    # our own smb.conf: provision copies the machine's smb.conf defaults
    $self->_write_dc_conf;

    my @c = ('-s', "$d/etc/smb.conf", '-H', "$d/private/sam.ldb");
    my @st = ('/usr/bin/samba-tool');
    my %p = %PASSWORDS;
    _sys_log($log, @st, qw(domain passwordsettings set --max-pwd-age=0), @c);
    _sys_log($log, @st, qw(user setexpiry Administrator --noexpiry), @c);
    for my $u (qw(alice bob kcdproxy kcdbackend)) {
        _sys_log($log, @st, 'user', 'create', $u, $p{$u}, @c);
        _sys_log($log, @st, 'user', 'setexpiry', $u, '--noexpiry', @c);
    }
    _sys_log($log, @st, qw(user sensitive bob on), @c);
    _sys_log($log, @st, 'spn', 'add', $self->proxy_spn, 'kcdproxy', @c);
    _sys_log($log, @st, 'spn', 'add', $self->backend_spn, 'kcdbackend', @c);
    _sys_log($log, @st, qw(delegation for-any-protocol kcdproxy on), @c);
    _sys_log($log, @st, qw(delegation add-service kcdproxy),
        $self->backend_spn, @c);

    # AES keys only for the service accounts, before the keytab export
    _sys_log($log, '/usr/bin/python3', '-c', <<'EOF', "$d/etc/smb.conf",
import sys, ldb
from samba.samdb import SamDB
from samba.param import LoadParm
from samba.auth import system_session
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=sys.argv[2], session_info=system_session(), lp=lp)
for a in sys.argv[3:]:
    res = db.search(base=db.domain_dn(), attrs=["dn"],
                    expression="(sAMAccountName=%s)" % a)
    m = ldb.Message(res[0].dn)
    m["e"] = ldb.MessageElement("24", ldb.FLAG_MOD_REPLACE,
                                "msDS-SupportedEncryptionTypes")
    db.modify(m)
EOF
        "$d/private/sam.ldb", 'kcdproxy', 'kcdbackend');

    make_path("$d/kcd-keytabs");
    for my $k (['proxy', 'kcdproxy', $self->proxy_spn],
               ['backend', 'kcdbackend', $self->backend_spn])
    {
        my $kt = "$d/kcd-keytabs/$k->[0].keytab";
        for my $princ (@$k[1, 2]) {
            _sys_log($log, @st, 'domain', 'exportkeytab', $kt,
                "--principal=$princ", '-s', "$d/etc/smb.conf");
        }
    }
    _write("$d/kcd-keytabs/READY", "$FIXTURE_VERSION\n");
}

sub _cache_valid {
    my ($cache) = @_;

    my $ready = "$cache/dc/kcd-keytabs/READY";
    return 0 unless -f $ready && _slurp($ready) eq "$FIXTURE_VERSION\n";
    for my $f (qw(private/sam.ldb private/secrets.ldb
                  kcd-keytabs/proxy.keytab kcd-keytabs/backend.keytab))
    {
        return 0 unless -s "$cache/dc/$f";
    }
    return 1;
}

# move a bad snapshot aside before deleting it: a concurrent run copying it
# fails cleanly (and provisions) instead of reading a half-deleted tree
sub _drop_cache {
    my ($cache) = @_;

    my $old = "$cache.old.$$";
    remove_tree($old) if rename($cache, $old);
}

sub _restore {
    my ($self, $cache) = @_;

    my $d = "$self->{dir}/dc";
    return 0 unless _cache_valid($cache);

    remove_tree($d);
    if (system('/bin/cp', '-a', "$cache/dc", $d) != 0) {
        remove_tree($d);
        return 0;
    }
    return 1;
}

sub _save {
    my ($self, $cache) = @_;

    # copy aside, then rename: a concurrent or interrupted run never sees
    # half a snapshot
    return if _cache_valid($cache);     # another run saved one meanwhile
    _drop_cache($cache);

    # leftovers of runs that were killed while saving
    for my $t (glob("$cache.tmp.*"), glob("$cache.old.*")) {
        my ($pid) = $t =~ /\.(\d+)$/ or next;
        remove_tree($t) unless kill 0, $pid;
    }

    my $tmp = "$cache.tmp.$$";
    remove_tree($tmp);
    make_path($tmp, { mode => 0700 });
    chmod 0700, $tmp;     # domain secrets and keytabs
    if (system('/bin/cp', '-a', "$self->{dir}/dc", "$tmp/dc") == 0) {
        rename($tmp, $cache) or remove_tree($tmp);
    } else {
        remove_tree($tmp);
    }
}

sub _copy_keytabs {
    my ($self) = @_;

    for my $k (qw(proxy backend)) {
        _sys('/bin/cp', "$self->{dir}/dc/kcd-keytabs/$k.keytab",
            $self->keytab($k));
        chmod 0644, $self->keytab($k);   # Apache children read it
    }
}

sub _spawn_dc {
    my ($self) = @_;

    my $d = "$self->{dir}/dc";
    make_path("$d/run");

    # its own mount namespace too: the DC's smbd is a libwbclient client of
    # the DC's winbindd through the compiled-in /run/samba/winbindd
    $self->{pids}{dc} = _spawn("$self->{dir}/dc.out",
        '/usr/sbin/ip', 'netns', 'exec', $self->{netns}, '/bin/sh', '-c',
        'mount --bind "$1" /run/samba && exec /usr/sbin/samba -s "$2" -i'
        . ' --no-process-group', 'kcd-dc', "$d/run", "$d/etc/smb.conf");

    # KDC, LDAP, SMB and the RPC endpoint mapper (NETLOGON)
    for my $port (88, 389, 445, 135) {
        _wait_port($self->{dc_ip}, $port, 40, $self->{pids}{dc})
            or die "DC: port $port not listening after 40 s; see "
                 . "$self->{dir}/dc.out and $d/log.*\n";
    }
}

sub _join {
    my ($self) = @_;

    my $out = '';
    for my $try (1 .. 3) {
        my $rc;
        ($rc, $out) = _run([$self->wrap('/usr/bin/net', 'ads', 'join',
                '-s', $self->member_smb_conf,
                '-U', "Administrator\%$ADMIN_PASS",
                '--no-dns-updates', '-S', "dc1.$DNS_DOMAIN")],
            timeout => 60, env => { $self->env });
        _write("$self->{dir}/join.log", $out);
        return if $rc == 0 && $out =~ /Joined/;
        sleep 1;
    }
    die "net ads join failed: $out\n";
}

sub _spawn_winbindd {
    my ($self) = @_;

    $self->{pids}{winbindd} = _spawn("$self->{dir}/winbindd.out",
        $self->wrap('/usr/sbin/winbindd', '-s', $self->member_smb_conf,
            '-F', '--no-process-group'));

    my $pipe = $self->socket_dir . '/pipe';
    my $end = time + 20;
    while (!-S $pipe) {
        die "winbindd did not create $pipe; see $self->{dir}/winbindd.out\n"
            if time > $end || !kill(0, $self->{pids}{winbindd});
        sleep 0.05;
    }
}

# Helpers that samba starts in sessions of their own (winbindd starts
# samba-dcerpcd on demand, which calls setsid): stop them by the pid files
# in our run directories, after checking that the pid still runs with our
# configuration (pids get reused).
sub _kill_pidfiles {
    my ($self) = @_;

    my @pids;
    for my $f (glob("$self->{dir}/member/run/*.pid"),
               glob("$self->{dir}/dc/run/*.pid"))
    {
        my ($pid) = _slurp($f) =~ /^(\d+)/ or next;
        my $cmd = _slurp("/proc/$pid/cmdline");
        push @pids, $pid if index($cmd, "$self->{dir}/") >= 0;
    }
    return unless @pids;

    kill 'TERM', @pids;
    my $end = time + 5;
    while (time < $end && grep { kill 0, $_ } @pids) {
        sleep 0.05;
    }
    kill 'KILL', grep { kill 0, $_ } @pids;
}

# ---- helpers ----

sub _shq {
    my ($s) = @_;
    return $s if $s =~ m{^[A-Za-z0-9_./%=:+,-]+$};
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

sub _write {
    my ($f, $c) = @_;
    open(my $fh, '>', $f) or die "$f: $!\n";
    print $fh $c;
    close $fh or die "$f: $!\n";
}

sub _slurp {
    my ($f) = @_;
    open(my $fh, '<', $f) or return '';
    local $/;
    return scalar <$fh>;
}

sub _sys {
    system(@_) == 0 or die "command failed ($?): @_\n";
}

sub _sys_log {
    my ($log, @cmd) = @_;

    my ($rc, $out) = _run(\@cmd, timeout => 120);
    open(my $fh, '>>', $log) or die "$log: $!\n";
    my $short = join ' ', grep { defined } @cmd[0 .. 4];
    print $fh "\$ $short ...\n$out\n";
    close $fh;
    die "command failed ($rc): $short: see $log\n" if $rc != 0;
}

# fork + setsid: the child leads its own process group, so stopping it
# reaches every process it forks (samba renames its children)
sub _spawn {
    my ($log, @cmd) = @_;

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        setsid();
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>>', $log);
        open(STDERR, '>&', \*STDOUT);
        exec(@cmd) or POSIX::_exit(127);
    }
    return $pid;
}

sub _run {
    my ($cmd, %o) = @_;

    pipe(my $r, my $w) or die "pipe: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        setsid();
        close $r;
        %ENV = (%ENV, %{ $o{env} || {} });
        open(STDIN, '<', '/dev/null');
        open(STDOUT, '>&', $w);
        open(STDERR, '>&', $w);
        exec(@$cmd) or POSIX::_exit(127);
    }
    close $w;

    my $out = '';
    my $end = time + ($o{timeout} || 30);
    my $rin = '';
    vec($rin, fileno($r), 1) = 1;
    while (1) {
        my $left = $end - time;
        if ($left <= 0) {
            kill 'KILL', -$pid;
            $out .= "\n[killed after $o{timeout} s]";
            last;
        }
        my $n = select(my $rout = $rin, undef, undef, $left);
        next if $n <= 0;
        last unless sysread($r, $out, 65536, length $out);
    }
    close $r;
    waitpid($pid, 0);
    my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    return ($rc, $out);
}

sub _wait_port {
    my ($ip, $port, $timeout, $pid) = @_;

    my $end = time + $timeout;
    while (time < $end) {
        return 0 if $pid && waitpid($pid, WNOHANG) == $pid;
        my $s = IO::Socket::INET->new(PeerAddr => $ip, PeerPort => $port,
            Proto => 'tcp', Timeout => 1);
        if ($s) {
            close $s;
            return 1;
        }
        sleep 0.05;
    }
    return 0;
}

sub _kill_group {
    my ($pid) = @_;

    return unless $pid;
    kill 'TERM', -$pid;
    my $end = time + 10;
    while (time < $end) {
        waitpid($pid, WNOHANG);
        return unless kill 0, -$pid;
        sleep 0.05;
    }
    kill 'KILL', -$pid;
    waitpid($pid, 0);
}

1;
