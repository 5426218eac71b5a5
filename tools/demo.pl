#!/usr/bin/perl

# make demo: a throwaway Kerberos domain (MIT KDC + slapd with constrained
# delegation), a Kerberos-only backend (Apache + mod_auth_gssapi, it shows
# REMOTE_USER) and nginx with the module in front, all on 127.0.0.1 under
# one directory.  It keeps running in the background until
# `make demo-stop`.
#
#   perl tools/demo.pl start|stop|status
#
# Ports (all on 127.0.0.1; each falls back to the next free one when taken,
# and README.txt shows the ones in use):
#
#   KCD_DEMO_HTTP_PORT     nginx, plain HTTP       (default 8080)
#   KCD_DEMO_HTTPS_PORT    nginx, TLS              (default 8443)
#   KCD_DEMO_KDC_PORT      MIT KDC, UDP and TCP    (default 8088)
#   KCD_DEMO_BACKEND_PORT  Apache backend          (default 8081)
#   KCD_DEMO_DIR           where everything lives  (default /tmp/kcd-demo)
#
# slapd listens on a Unix socket under KCD_DEMO_DIR, not on a port.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";

use POSIX qw(setsid);
use Time::HiRes qw(sleep time);

my $REPO = "$FindBin::Bin/..";
my $DIR = $ENV{KCD_DEMO_DIR} || '/tmp/kcd-demo';
my $PIDFILE = "$DIR/demo.pid";
my $INFO = "$DIR/README.txt";

my $cmd = shift || 'start';

if ($cmd eq 'stop') {
    stop();
    exit 0;
}

if ($cmd eq 'status') {
    if (running()) {
        print slurp($INFO);
    } else {
        print "the demo is not running: make demo\n";
    }
    exit 0;
}

die "usage: $0 start|stop|status\n" unless $cmd eq 'start';

stop() if running();

system('rm', '-rf', $DIR);
mkdir $DIR or die "mkdir $DIR: $!\n";

die "build/ngx_http_kcd_module.so is missing: run make\n"
    unless -f "$REPO/build/ngx_http_kcd_module.so";

my $pid = fork();
die "fork: $!\n" unless defined $pid;

if ($pid == 0) {
    supervise();
    exit 0;
}

# wait for the supervisor to say it is ready (or why it is not)

my $deadline = time + 90;
while (time < $deadline) {
    last if -e "$DIR/ready" || -e "$DIR/failed";
    if (!kill 0, $pid) {
        last;
    }
    sleep 0.2;
}

if (-e "$DIR/ready") {
    print slurp($INFO);
    exit 0;
}

print STDERR "the demo did not start:\n", (slurp("$DIR/failed") || ''),
    "\nlogs: $DIR\n";
kill 'TERM', $pid;
exit 1;


sub supervise {
    setsid();

    open STDIN, '<', '/dev/null';
    open STDOUT, '>', "$DIR/supervisor.log";
    open STDERR, '>&', \*STDOUT;

    write_file($PIDFILE, "$$\n");

    my $ok = eval { start_all(); 1 };

    if (!$ok) {
        write_file("$DIR/failed", $@ || 'unknown error');
        exit 1;
    }

    my $stop = 0;
    $SIG{TERM} = $SIG{INT} = sub { $stop = 1 };

    write_file("$DIR/ready", "1\n");

    sleep 1 until $stop;

    unlink $PIDFILE;
    exit 0;    # END blocks of the fixtures stop everything
}


sub start_all {
    require KcdTest;
    require KcdRealm;
    require KcdApache;
    require KcdBackend;

    $ENV{KCD_TEST_KEEP} = 1;

    mkdir "$DIR/nginx";
    my $t = KcdTest->new(dir => "$DIR/nginx");
    our $T = $t;

    my $why = KcdRealm->missing;
    die "missing: $why (run make deps)\n" if $why;

    my $kdc_port = free_port($ENV{KCD_DEMO_KDC_PORT} || 8088, 'udp');
    my $realm = KcdRealm->start(dir => "$DIR/realm", kdc_port => $kdc_port)
        or die "the KDC did not start\n";
    our $REALM = $realm;

    my $be = KcdApache->start(dir => "$DIR/backend", realm => $realm,
                              port => free_port($ENV{KCD_DEMO_BACKEND_PORT}
                                                || 8081))
        or die "Apache did not start: " . (KcdApache->missing || '') . "\n";
    our $BE = $be;

    my $users = '';
    for my $u (qw(alice bob carol)) {
        my $pw = $realm->password($u);
        my $line = `printf '%s\\n' '$pw' | '$REPO/build/kcd-ntlm-hash' 'KCD\\$u'`;
        die "kcd-ntlm-hash failed\n" if $?;
        $users .= $line;
    }

    $t->write_file('kcd.users', $users);
    my $cert = $t->make_cert('proxy', cn => 'proxy.kcd.test');

    my $http = free_port($ENV{KCD_DEMO_HTTP_PORT} || 8080);
    my $https = free_port($ENV{KCD_DEMO_HTTPS_PORT} || 8443);
    $https = free_port($https + 1) if $https == $http;
    my $kt = $realm->keytab('proxy');
    my $krb5 = $realm->krb5_conf;
    my $bport = $be->port;
    my $tdir = $t->testdir;

    $t->write_config(<<"EOF", main => "env KRB5_CONFIG=$krb5;\nthread_pool default threads=8;\n");
    log_format kcd '\$remote_addr \$kcd_user [\$kcd_principal] \$kcd_auth_scheme '
                   'cache=\$kcd_ticket_cache_status "\$request" \$status';
    access_log $tdir/access.log kcd;

    kcd_keytab             $kt;
    kcd_service_principal  HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache       zone=kcd_tickets:1m;

    upstream backend {
        server 127.0.0.1:$bport;
        keepalive 16;
    }

    map \$http_user_agent \$kcd_no_negotiate {
        ~*communicator  1;
        default         "";
    }

    server {
        listen 127.0.0.1:$http;
        listen 127.0.0.1:$https ssl;

        ssl_certificate     $cert->{cert};
        ssl_certificate_key $cert->{key};

        kcd_ntlm_domain     KCD;
        kcd_ntlm_computer   PROXY;
        kcd_ntlm_dns_domain kcd.test;

        location / {
            kcd_auth            ntlm negotiate basic;
            kcd_ntlm_user_file  $tdir/kcd.users;
            kcd_realm           KCD.TEST;
            kcd_strip_negotiate \$kcd_no_negotiate;
            kcd_spn             HTTP/backend.kcd.test;

            proxy_pass          http://backend;
            proxy_http_version  1.1;
            proxy_set_header    Connection "";
            proxy_set_header    Host backend.kcd.test;
        }

        location = /kcd-status {
            allow 127.0.0.1;
            deny all;
            kcd_status;
        }
    }
EOF

    $t->run;

    my $env = "KRB5_CONFIG=$krb5 KRB5CCNAME=FILE:$DIR/alice.ccache";

    write_file($INFO, <<"EOF");

ngx_http_kcd_module demo is running (logs and config under $DIR).

  realm KCD.TEST   MIT KDC on 127.0.0.1:@{[ $realm->kdc_port ]} (users alice, bob, carol)
  backend          Apache + mod_auth_gssapi on 127.0.0.1:$bport, Kerberos only
  nginx            http://127.0.0.1:$http/  https://127.0.0.1:$https/

NTLM from the client, Kerberos constrained delegation to the backend:

  curl --ntlm -u 'KCD\\alice:Alice-Pass1' http://127.0.0.1:$http/echo

  -> user=alice\@KCD.TEST ...   (the backend saw alice's Kerberos ticket)

Basic over TLS, Kerberos (after kinit):

  curl -k --basic -u 'alice:Alice-Pass1' https://127.0.0.1:$https/echo
  echo Alice-Pass1 | $env kinit alice && \\
    $env curl --negotiate -u : --resolve proxy.kcd.test:$http:127.0.0.1 http://proxy.kcd.test:$http/echo

Another user, delegated too:

  curl --ntlm -u 'KCD\\carol:Carol-Pass1' http://127.0.0.1:$http/echo

A user the KDC won't delegate (bob is "sensitive, cannot be delegated"):
his logon succeeds, the KDC refuses S4U2Proxy, nothing is forwarded:

  curl -i --ntlm -u 'KCD\\bob:Bob-Pass1' http://127.0.0.1:$http/echo
  -> HTTP/1.1 502 Bad Gateway; error.log: "KDC refused delegation of
     \"bob\@KCD.TEST\" to \"HTTP/backend.kcd.test\" ..."

Counters: curl http://127.0.0.1:$http/kcd-status
Access log (user, principal, scheme, ticket cache): $tdir/access.log
Error log: $tdir/error.log

Stop it with: make demo-stop

EOF
}


# the wanted port, or the next free one (TCP, and UDP too for the KDC)
sub free_port {
    my ($want, $udp) = @_;

    require IO::Socket::INET;

    for my $p ($want, $want + 1 .. $want + 50) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $p, Listen => 1,
                                      ReuseAddr => 1);
        next unless $s;
        close $s;

        if ($udp) {
            my $u = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                          LocalPort => $p, Proto => 'udp');
            next unless $u;
            close $u;
        }

        return $p;
    }

    return $udp ? KcdRealm->free_port : KcdTest::port(9999);
}


sub running {
    my $pid = slurp($PIDFILE);
    return 0 unless $pid && $pid =~ /^(\d+)/;
    return kill(0, $1) ? $1 : 0;
}


sub stop {
    my $pid = running();
    return unless $pid;

    kill 'TERM', $pid;

    my $deadline = time + 20;
    while (time < $deadline && kill 0, $pid) {
        sleep 0.2;
    }

    kill 'KILL', $pid if kill 0, $pid;
    print "demo stopped\n";
}


sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    return scalar <$fh>;
}


sub write_file {
    my ($f, $c) = @_;
    open my $fh, '>', $f or die "$f: $!\n";
    print $fh $c;
    close $fh;
}
