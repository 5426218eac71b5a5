#!/usr/bin/perl

# B22: Extended Protection towards the backend.  kcd_upstream_channel_binding
# puts the RFC 5929 tls-server-end-point binding of the given certificate
# into the delegated token's RFC 4121 checksum.  Two backends enforce
# channel binding over the TLS connection nginx opens to them, as IIS with
# Extended Protection "Require" does:
#
#   MIT   gss_accept_sec_context with input_chan_bindings (python3-gssapi),
#         refusing a token without a binding  (t/backends/mit_cb_backend.py)
#   Java  OpenJDK JGSS, GSSContext.setChannelBinding
#                                             (t/backends/JgssBackend.java)
#
# The backend's certificate: 200.  Another certificate: refused.  None
# configured: refused.  (A refusal reaches the client as 502, B15.)  Both token paths (thread pool after the KDC, event
# loop from the ticket cache) carry it.  nginx -t checks the file.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;

use KcdTest qw(port);
use KcdNTLM qw(:all);
use KcdRealm;
use KcdAcceptor;

my $t = KcdTest->new->skip_unless_module;

my $missing = KcdRealm->missing || KcdAcceptor->missing('mit-cb')
    || KcdAcceptor->missing('jgss');
plan skip_all => "missing: $missing" if $missing;

$SIG{ALRM} = sub { die "56-upstream-channel-binding.t: timeout\n" };
$SIG{PIPE} = 'IGNORE';
alarm 240;

my $dir = $t->testdir;
my $realm = KcdRealm->start(dir => "$dir/realm");

# the backends' certificate (both serve the same one) and an unrelated one
my $cert = $t->make_cert('backend', cn => 'backend.kcd.test');
my $other = $t->make_cert('other', cn => 'backend.kcd.test');
# a chain file: the leaf first, as in ssl_certificate
$t->write_file('chain.pem', $t->read_file('backend.crt')
    . $t->read_file('other.crt'));
$t->write_file('not-a-cert.pem', "-----BEGIN CERTIFICATE-----\nnope\n"
    . "-----END CERTIFICATE-----\n");

my $mit = KcdAcceptor->start(kind => 'mit-cb', dir => $dir, realm => $realm,
                             tls => $cert);
my $jgss = KcdAcceptor->start(kind => 'jgss', dir => $dir, realm => $realm,
                              tls => $cert);

my %PW = %KcdRealm::PASSWORDS;

$t->write_file('users', join('', map {
    "KCD\\$_:" . unpack('H*', nt_hash($PW{$_})) . "\n"
} sort keys %PW));

my $krb5_conf = $realm->krb5_conf;
my $rcache = $realm->dir . '/rcache';
my $keytab = $realm->keytab('proxy');
my ($mp, $jp) = ($mit->port, $jgss->port);

my $locations = '';
for my $b ([mit => $mp], [jgss => $jp]) {
    my ($n, $p) = @$b;
    $locations .= <<"LOC";
        location /x/$n/right/ {
            kcd_upstream_channel_binding %%TESTDIR%%/backend.crt;
            proxy_pass https://127.0.0.1:$p;
        }
        location /x/$n/chain/ {
            kcd_upstream_channel_binding %%TESTDIR%%/chain.pem;
            proxy_pass https://127.0.0.1:$p;
        }
        location /x/$n/wrong/ {
            kcd_upstream_channel_binding %%TESTDIR%%/other.crt;
            proxy_pass https://127.0.0.1:$p;
        }
        location /x/$n/none/ {
            # inherits "off" from /x/
            proxy_pass https://127.0.0.1:$p;
        }
        location /x/$n/off/ {
            kcd_upstream_channel_binding off;
            proxy_pass https://127.0.0.1:$p;
        }
LOC
}

my $http = <<"CONF";
    log_format kcd '\$kcd_principal|\$kcd_ticket_cache_status|\$status|'
                   '\$request_uri';

    kcd_keytab $keytab;
    kcd_service_principal HTTP/proxy.kcd.test\@KCD.TEST;
    kcd_ticket_cache zone=tickets:1m;

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

        # inherited by the locations that say nothing else
        kcd_upstream_channel_binding %%TESTDIR%%/backend.crt;

        location /inherit/ {
            proxy_pass https://127.0.0.1:$mp;
        }

        location /x/ {
            kcd_upstream_channel_binding off;

$locations
        }
    }
CONF

my $main = "env KRB5_CONFIG=$krb5_conf;\nenv KRB5RCACHEDIR=$rcache;\n"
    . "thread_pool default threads=4;";

$t->write_config($http, main => $main);
$t->run;

sub why {
    my ($r) = @_;
    return "status $r->{status}: " . ($r->{body} // '')
        . ($r->header('X-Acceptor-Error') // '');
}

my $c = KcdTest::Conn->new(port => port(8080), timeout => 10);

# the first request of the run: a cache miss, the token made in the thread
# pool right after S4U2Self + S4U2Proxy
my ($r1, $r) = ntlm_login($c, '/x/mit/right/', user => 'alice',
                          domain => 'KCD', password => $PW{alice});
is($r->{status}, 200, 'MIT, the backend certificate, first request '
   . '(thread-pool token): 200') or diag(why($r));
like($r->{body}, qr/^user=alice\@KCD\.TEST method=GET .*acceptor=mit-cb/,
     '... MIT saw alice@KCD.TEST with the channel binding checked');

for my $b (['mit', 'MIT (gss_accept_sec_context + input_chan_bindings)'],
           ['jgss', 'Java (JGSS setChannelBinding)'])
{
    my ($n, $what) = @$b;

    for my $loc (qw(right chain)) {
        for my $m (qw(GET POST)) {
            my $r = $m eq 'GET' ? $c->get("/x/$n/$loc/")
                                : $c->post("/x/$n/$loc/", body => 'x' x 100);
            is($r->{status}, 200, "$what: $loc certificate, $m (cached "
               . 'ticket, event-loop token): 200') or diag(why($r));
            like($r->{body}, qr/^user=alice\@KCD\.TEST method=$m /,
                 "$what: $loc certificate, $m: backend saw alice");
        }
    }

    # refused by the backend: the client gets 502 (B15: a 401 it could not
    # answer is not passed on), the connection is closed, the ticket
    # dropped; the backend's log says why it refused

    for my $case (['wrong', "another certificate's binding",
                   $n eq 'mit' ? qr/Incorrect channel bindings/
                               : qr/Channel binding mismatch/],
                  ['none', 'no binding configured (inherited off)',
                   $n eq 'mit' ? qr/token carries no channel binding/
                               : qr/Token missing ChannelBinding/],
                  ['off', 'no binding configured (off)',
                   $n eq 'mit' ? qr/token carries no channel binding/
                               : qr/Token missing ChannelBinding/])
    {
        my ($loc, $why, $reason) = @$case;
        my $be = $n eq 'mit' ? $mit : $jgss;
        my $before = () = $be->log_text =~ /^refused: /mg;
        my $mark = $t->log_mark;

        my $cc = KcdTest::Conn->new(port => port(8080), timeout => 10);
        my (undef, $r) = ntlm_login($cc, "/x/$n/$loc/", user => 'alice',
                                    domain => 'KCD', password => $PW{alice});
        is($r->{status}, 502, "$what: $why: refused by the backend, "
           . 'the client gets 502');
        my @refused = $be->log_text =~ /^refused: (.*)$/mg;
        is(scalar(@refused), $before + 1, "$what: $why: the backend "
           . 'refused one token');
        like($refused[-1] // '', $reason, "$what: $why: backend's reason")
            or diag(join("\n", @refused));
        like($t->wait_for_log(qr/refused the delegated ticket/, 3,
                              'error.log', $mark) // '',
             qr/"alice\@KCD\.TEST" for "HTTP\/backend\.kcd\.test"/,
             "$what: $why: nginx logs the backend's refusal");
    }

    # a new connection for what follows (a 502 closes this one)
    $c = KcdTest::Conn->new(port => port(8080), timeout => 10);
    ntlm_login($c, "/x/$n/right/", user => 'alice', domain => 'KCD',
               password => $PW{alice});
}

$r = $c->get('/inherit/');
is($r->{status}, 200, 'binding set at server level, inherited: 200')
    or diag(why($r));

my @log = split /\n/, $t->read_file('kcd.log') // '';
like($log[1] // '', qr/^alice\@KCD\.TEST\|MISS\|200\|\/x\/mit\/right\/$/,
     'access log: the first delegated request was a cache miss');
ok((grep { /\|HIT\|200\|\/x\/jgss\/right\/$/ } @log),
   'access log: later ones were cache hits');

$t->stop;

###############################################################################
# nginx -t: the certificate file is checked, with file:line

sub conf_check {
    my ($what, $value, $like) = @_;
    (my $name = "cb-$what.conf") =~ tr/ /-/;
    (my $body = $http) =~ s{kcd_upstream_channel_binding %%TESTDIR%%/backend\.crt;\n\n        location /inherit/}
                           {kcd_upstream_channel_binding $value;\n\n        location /inherit/};
    my $path = $t->write_config($body, main => $main, name => $name);
    my ($rc, $out) = $t->nginx_test;
    if (!$like) {
        is($rc, 0, "nginx -t: $what passes") or diag($out);
        return;
    }
    isnt($rc, 0, "nginx -t: $what fails");
    like($out, $like, "nginx -t: $what: message");
    my $v = $t->expand($value);
    my @lines = split /\n/, $t->read_file($name);
    my ($line) = grep {
        $lines[$_ - 1] =~ /kcd_upstream_channel_binding \Q$v\E;/
    } 1 .. @lines;
    ok($line, "nginx -t: $what: the directive is in $name") or return;
    like($out, qr/\Q$path\E:$line\b/, "nginx -t: $what: names $name:$line")
        or diag($out);
}

conf_check('missing file', '%%TESTDIR%%/nonexistent.crt',
           qr/kcd_upstream_channel_binding: cannot read the certificate "[^"]*nonexistent\.crt"/);
conf_check('not a certificate', '%%TESTDIR%%/not-a-cert.pem',
           qr/holds no X\.509 certificate/);
conf_check('a private key', '%%TESTDIR%%/backend.key',
           qr/holds no X\.509 certificate/);
conf_check('off', 'off', undef);
conf_check('a certificate', '%%TESTDIR%%/backend.crt', undef);

done_testing();
