#!/bin/sh
# Install, from Debian 12 packages only, everything the module needs to build,
# test, demo and benchmark. Idempotent: does nothing when all is installed.
set -eu

PKGS="
build-essential pkg-config debhelper dpkg-dev
nginx-core nginx-dev libpcre2-dev libssl-dev zlib1g-dev
libkrb5-dev krb5-user krb5-kdc krb5-admin-server krb5-kdc-ldap
slapd ldap-utils
libwbclient-dev samba winbind libnss-winbind smbclient
samba-dev libtalloc-dev
samba-ad-dc samba-ad-provision samba-dsdb-modules
apache2 libapache2-mod-auth-gssapi
curl openssl wrk iproute2 procps psmisc faketime
perl libio-socket-ssl-perl libauthen-ntlm-perl libtest-harness-perl
python3 python3-requests python3-requests-ntlm python3-ntlm-auth python3-gssapi
python3-samba openjdk-17-jdk-headless
libconvert-asn1-perl gss-ntlmssp chromium
clang libclang-rt-14-dev

"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

# Node for the npm NTLM client of t/41 (any nodejs that brings npm will do)
if ! command -v npm >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi

# the npm packages of the client suites, pinned by package-lock.json
npm_clients() {
    d="$(dirname "$0")/../t/clients/node"
    if [ -f "$d/package-lock.json" ] && [ ! -d "$d/node_modules/httpntlm" ] \
       && command -v npm >/dev/null 2>&1
    then
        (cd "$d" && npm ci --no-audit --no-fund) \
            || echo "deps: npm ci failed: the Node client will be skipped"
    fi
}

if [ -z "$missing" ]; then
    echo "deps: all packages present"
    npm_clients
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# services installed here must not start on the machine: the tests start
# their own private instances
printf '#!/bin/sh\nexit 101\n' > /tmp/kcd-policy-rc.d
$SUDO install -m 0755 /tmp/kcd-policy-rc.d /usr/sbin/policy-rc.d.kcd
if [ ! -e /usr/sbin/policy-rc.d ]; then
    $SUDO cp /usr/sbin/policy-rc.d.kcd /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -q || true

# gss-ntlmssp ships /etc/gss/mech.d/mech.ntlmssp.conf, which would put NTLM
# into every MIT SPNEGO of the machine: keep it out (renamed, not *.conf);
# the tests load the mechanism through GSS_MECH_CONFIG
case " $missing " in
*" gss-ntlmssp "*)
    $SUDO dpkg-divert --local --rename \
        --divert /etc/gss/mech.d/mech.ntlmssp.conf.kcd-off \
        --add /etc/gss/mech.d/mech.ntlmssp.conf
    ;;
esac

$SUDO apt-get install -y -q --no-install-recommends $missing
npm_clients
