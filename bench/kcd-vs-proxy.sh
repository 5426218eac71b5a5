#!/bin/sh
# Delegation vs plain proxy_pass (issue 3, deliverable 9): a benchmark, not
# a test.  Loopback only, about 1.5 minutes, everything it starts is
# stopped at the end.  See bench/README.md and docs/benchmarks.md.
#
#   sh bench/kcd-vs-proxy.sh [--seconds 4] [--rounds 3] [--conns 8] [--keep]
set -eu
cd "$(dirname "$0")/.."
exec perl bench/kcd-vs-proxy.pl "$@"
