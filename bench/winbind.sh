#!/bin/sh
# NTLM validations per second in the module: winbind pass-through to a
# Samba AD DC (member winbindd -> NETLOGON -> DC) next to the local user
# file, one client and 50 concurrent clients, every logon a full handshake
# on a new connection.  See docs/benchmarks.md for results.
#
#   sh bench/winbind.sh [--duration 10] [--concurrency 50] [--workers 2]
#                       [--threads 4] [--wb-max-conns N] [--keep]
#
# Needs root (the DC runs in a network namespace; skipped otherwise),
# samba + winbind (tools/deps.sh) and a built module (make).  Loopback and
# the fixture's own namespace only; about 55 s, killed after 150 s.
# Prints markdown tables; exit status 1 when a logon failed.
set -eu
cd "$(dirname "$0")/.."
[ -f build/ngx_http_kcd_module.so ] || make >/dev/null
exec timeout -k 5 150 perl bench/winbind-bench.pl "$@"
