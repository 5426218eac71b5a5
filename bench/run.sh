#!/bin/sh
# make bench: every benchmark, side by side measurements, results on stdout.
# Not tests: numbers go into docs/benchmarks.md by hand, with the command.
set -eu
cd "$(dirname "$0")/.."
status=0
for b in bench/kcd-vs-proxy.sh bench/kcd-vs-peer.sh bench/kcd-memory.sh bench/winbind.sh bench/lockout.sh bench/spnego.sh; do
    if [ -x "$b" ] || [ -f "$b" ]; then
        args=
        # the issue 12 comparison: both servers on the same CPU budget
        # (a cpu cgroup each: root only; bench/README.md)
        if [ "$b" = bench/kcd-vs-peer.sh ] && [ "$(id -u)" = 0 ]; then
            args="--cpu-budget 50"
        fi
        echo "== $b $args"
        # shellcheck disable=SC2086
        sh "$b" $args || status=1
    fi
done
exit $status
