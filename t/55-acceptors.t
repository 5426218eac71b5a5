#!/usr/bin/perl

# B7: the upstream tokens (built by MIT: krb5_mk_req_extended() in a SPNEGO
# NegTokenInit) accepted by three independent Kerberos implementations,
# each behind nginx as the delegation target and each reporting the
# client principal it saw:
#
#   MIT      Apache + mod_auth_gssapi                (t/lib/KcdApache.pm)
#   Heimdal  Samba's acceptor, python3-samba gensec  (t/backends/heimdal_backend.py)
#   Java     OpenJDK JGSS, GSSManager + JAAS keytab  (t/backends/JgssBackend.java)
#
# For each: GET, POST with a body, keep-alive (client and upstream), two
# users interleaved on their own connections.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;
use KcdApache;
use KcdAcceptor;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdApache->missing
    || KcdAcceptor->missing('heimdal') || KcdAcceptor->missing('jgss');
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "55-acceptors.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 240;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");
my $apache = KcdApache->start(dir => $dir, realm => $realm);
my $heimdal = KcdAcceptor->start(kind => 'heimdal', dir => $dir,
                                 realm => $realm);
my $jgss = KcdAcceptor->start(kind => 'jgss', dir => $dir, realm => $realm);

my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));

my $krb5_conf = $realm->krb5_conf;
my $rcache = $realm->dir . '/rcache';
my $keytab = $realm->keytab('proxy');
my ($ap, $hp, $jp) = ($apache->port, $heimdal->port, $jgss->port);

$t->write_config(<<"CONF",
    log_format kcd '\$kcd_principal|\$kcd_ticket_cache_status|\$status|'
                   '\$request_uri';

    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

    upstream mit     { server 127.0.0.1:$ap; keepalive 4; }
    upstream heimdal { server 127.0.0.1:$hp; keepalive 4; }
    upstream jgss    { server 127.0.0.1:$jp; keepalive 4; }

    server {
        listen 127.0.0.1:%%PORT_8080%%;
        server_name proxy.kcd.test;

        access_log %%TESTDIR%%/kcd.log kcd;

        kcd_auth ntlm;
        kcd_ntlm_user_file %%TESTDIR%%/users;
        kcd_ntlm_domain KCD;
        kcd_realm KCD.TEST;
        kcd_spn HTTP/backend.kcd.test;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host backend.kcd.test;

        location /mit/     { proxy_pass http://mit/echo; }
        location /heimdal/ { proxy_pass http://heimdal; }
        location /jgss/    { proxy_pass http://jgss; }
    }
CONF
    main => "env KRB5_CONFIG=$krb5_conf;\nenv KRB5RCACHEDIR=$rcache;\n"
          . "thread_pool default threads=4;");

$t->run;

sub login {
    my ($user, $path) = @_;
    my $c = KcdTest::Conn->new(port => port(8080), timeout => 10);
    my ($r1, $r) = ntlm_login($c, $path, user => $user, domain => 'KCD',
                              password => $PW{$user});
    return ($c, $r);
}

sub why {
    my ($r) = @_;
    return "status $r->{status}: " . ($r->{body} // '')
        . ($r->header('X-Acceptor-Error') // '');
}

my $body = join('', map { chr(32 + ($_ * 7) % 90) } 1 .. 3000);

for my $b (['mit', 'MIT (Apache mod_auth_gssapi)'],
           ['heimdal', 'Heimdal (Samba gensec)'],
           ['jgss', 'Java (OpenJDK JGSS)'])
{
    my ($name, $what) = @$b;
    my $path = "/$name/";
    my %ports;

    my ($ca, $ra) = login('alice', $path);
    my ($cc, $rc) = login('carol', $path);

    for ([alice => $ra], [carol => $rc]) {
        my ($u, $r) = @$_;
        is($r->{status}, 200, "$what: $u logs on, GET: 200") or diag(why($r));
        like($r->{body}, qr/^user=\Q$u\E\@KCD\.TEST method=GET len=0 /,
             "$what: backend saw $u\@KCD.TEST");
        like($r->{body}, qr/ acceptor=\Q$name\E\b/,
             "$what: answered by that acceptor")
            unless $name eq 'mit';
    }

    # two users interleaved, each on its keep-alive connection; every
    # request has its own token (a replay would be refused)

    my @seq = (
        [$ca, alice => 'GET'], [$cc, carol => 'GET'],
        [$ca, alice => 'POST'], [$cc, carol => 'POST'],
        [$cc, carol => 'GET'], [$ca, alice => 'GET'],
        [$ca, alice => 'POST'], [$cc, carol => 'GET'],
    );

    my $i = 0;
    for (@seq) {
        my ($c, $u, $m) = @$_;
        $i++;
        my $r = $m eq 'GET' ? $c->get("$path?n=$i")
                            : $c->post("$path?n=$i", body => $body);
        my $len = $m eq 'GET' ? 0 : length $body;
        is($r->{status}, 200, "$what: #$i $u $m on the same client "
           . 'connection: 200') or diag(why($r));
        like($r->{body}, qr/^user=\Q$u\E\@KCD\.TEST method=$m len=$len /,
             "$what: #$i backend saw $u\@KCD.TEST, $m, $len bytes");
        is($r->header('X-Remote-User'), "$u\@KCD.TEST",
           "$what: #$i X-Remote-User $u\@KCD.TEST");
        $ports{$1}++ if ($r->{body} // '') =~ / port=(\d+)/;
    }

    ok((grep { $_ > 1 } values %ports),
       "$what: an upstream keep-alive connection carried several "
       . 'requests (' . join(',', map { "$_=$ports{$_}" } sort keys %ports)
       . ')');

    ok(!$ca->closed(timeout => 0.1) && !$cc->closed(timeout => 0.1),
       "$what: both client connections still open (keep-alive)");
}

# the Heimdal and Java acceptors refuse what is not a valid token for them:
# they check, they do not just echo

for my $b ([heimdal => $hp], [jgss => $jp]) {
    my ($name, $p) = @$b;
    my $c = KcdTest::Conn->new(port => $p, timeout => 10);
    my $r = $c->get('/', headers => [Authorization => 'Negotiate '
        . 'YIIBBgYGKwYBBQUCoIH7MIH4oA0wCwYJKoZIhvcSAQICooHmBIHj']);
    is($r->{status}, 401, "$name backend alone: a broken token is refused");
}

my @log = split /\n/, $t->read_file('kcd.log') // '';
is(scalar(grep { /\|MISS\|200\|/ } @log), 2,
   'two KDC exchanges in the whole run (alice, carol), then the ticket '
   . 'cache: the thread-pool and the event-loop token paths both accepted');

done_testing();
