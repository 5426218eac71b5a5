package KcdBench;

# What the NTLM handshake benchmarks (kcd-vs-peer, kcd-memory) set up
# alike: a copy of the module and the load client in the test directory,
# the static backend, the user file, and nginx's two servers — /auth/ with
# the module, /base/ where nginx alone does the same exchanges.

use strict;
use warnings;

use KcdTest;
use KcdNTLM qw(:all);

use Exporter 'import';
our @EXPORT_OK = qw(prepare start_backend write_users servers_conf);

# prepare($t): the module copied to the test directory (KCD_MODULE) and
# bench/kcd-handshake built there; returns the client's path
sub prepare {
    my ($t) = @_;
    my $dir = $t->testdir;
    system('cp', KcdTest::module_path(), "$dir/kcd_module.so") == 0
        or die "cannot copy the module\n";
    $ENV{KCD_MODULE} = "$dir/kcd_module.so";
    my $client = "$dir/kcd-handshake";
    system('make', '-s', '-C', KcdTest::repo_root(), "BUILD=$dir", $client)
        == 0 or die "cannot build kcd-handshake\n";
    return $client;
}

# start_backend($dir): nginx without the module on %%PORT_9000%%, a
# 44-byte bench.txt; returns its KcdTest
sub start_backend {
    my ($dir) = @_;
    mkdir "$dir/backend";
    my $tb = KcdTest->new(dir => "$dir/backend");
    mkdir "$dir/backend/html";
    $tb->write_file('html/bench.txt', "backend ok\n" x 4);
    $tb->write_config(<<'CONF', module => 0, workers => 1, log_level => 'warn');
    access_log off;
    server {
        listen 127.0.0.1:%%PORT_9000%% backlog=4096;
        keepalive_requests 1000000;
        location / { root %%TESTDIR%%/html; }
    }
CONF
    $tb->run;
    return $tb;
}

# write_users($t, name => password, ...): the user file "users", KCD\name
sub write_users {
    my ($t, %users) = @_;
    $t->write_file('users', join('', map {
        "KCD\\$_:" . unpack('H*', nt_hash($users{$_})) . "\n"
    } sort keys %users));
}

# servers_conf($dir, $upstream_keepalive): the http{} body of nginx: the
# backend upstream, /auth/ (kcd_auth ntlm, the user file) on %%PORT_8080%%
# and /base/ on %%PORT_8081%%: a fixed 401 CHALLENGE for a NEGOTIATE,
# anything else proxied — what nginx spends without the module
sub servers_conf {
    my ($dir, $keepalive) = @_;
    my $fixed_t2 = b64(make_type2(av => [[2, utf16le('KCD')],
                                         [1, utf16le('WEB01')],
                                         [7, "\0" x 8]]));
    return <<"CONF";
    access_log off;
    upstream be {
        server 127.0.0.1:%%PORT_9000%%;
        keepalive $keepalive;
    }
    server {
        listen 127.0.0.1:%%PORT_8080%% backlog=4096;
        keepalive_requests 1000000;
        keepalive_timeout 600s;
        kcd_ntlm_domain KCD;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /auth/ {
            kcd_auth ntlm;
            kcd_ntlm_user_file $dir/users;
            proxy_pass http://be/;
        }
    }
    # nginx alone: a server without kcd_auth (the module takes NTLM
    # Authorization headers into custody in servers that use it)
    server {
        listen 127.0.0.1:%%PORT_8081%% backlog=4096;
        keepalive_requests 1000000;
        keepalive_timeout 600s;
        proxy_http_version 1.1;
        proxy_set_header Connection "";

        location /base/ {
            add_header WWW-Authenticate "NTLM $fixed_t2" always;
            if (\$http_authorization ~ "^NTLM TlRMTVNTUAABAAAA") {
                return 401;
            }
            proxy_pass http://be/;
        }
    }
CONF
}

1;
