#!/bin/sh
# kcd_lockout on the hot path: CPU per logon with and without it, side by
# side in one nginx (bench/lockout.pl).  About 60 s, killed after 200 s.
#
#   sh bench/lockout.sh [--seconds 2] [--rounds 12] [--conns 8] [--users 100]
set -eu
cd "$(dirname "$0")/.."
[ -f build/ngx_http_kcd_module.so ] || make >/dev/null
exec timeout -k 5 200 perl bench/lockout.pl "$@"
