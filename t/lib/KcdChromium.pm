package KcdChromium;

# Chromium (Debian package "chromium") headless for the client suites,
# driven by t/clients/node/chromium-cdp.js over the DevTools protocol:
# credentials given with Fetch.continueWithAuth.

use strict;
use warnings;

use JSON::PP;

my $BIN = '/usr/bin/chromium';
my $version;

sub binary {
    return (-x $BIN && -x '/usr/bin/node') ? $BIN : undef;
}

sub version {
    return $version // 'unknown';
}

# run(dir =>, get =>, post =>, follow =>, user =>, password =>, body =>)
# -> { get, post, follow, auth, version, error }
sub run {
    my (%o) = @_;
    my $root = KcdTest::repo_root();
    my $cfg = "$o{dir}.json";
    open my $fh, '>', $cfg or die "$cfg: $!";
    print $fh encode_json({ chromium => $BIN, %o });
    close $fh;
    my $out = `node --experimental-websocket --no-warnings '$root/t/clients/node/chromium-cdp.js' '$cfg' 2>&1`;
    my $line = (grep { /^\{/ } split /\n/, $out)[-1] // '{}';
    my $r = eval { decode_json($line) } || { error => $out };
    $version = $1 if ($r->{version} // '') =~ m{/(\d+)};
    return $r;
}

1;
