#!/bin/sh
# make demo / make demo-stop: see tools/demo.pl
set -eu
cd "$(dirname "$0")/.."
exec perl tools/demo.pl "${1:-start}"
