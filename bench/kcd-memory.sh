#!/bin/sh
# Memory per idle authenticated connection (issue 12): 10k connections
# held by bench/kcd-handshake -i, worker RSS before and after.  A
# benchmark, not a test.
#
#   sh bench/kcd-memory.sh [--conns 10000] [--follow 1] [--keep]
set -eu
cd "$(dirname "$0")/.."
exec perl bench/kcd-memory.pl "$@"
