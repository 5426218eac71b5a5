#!/bin/sh
# NTLM handshakes: the module beside Apache + mod_auth_gssapi + gss-ntlmssp
# (issue 12), same C client, one run.  A benchmark, not a test.
#
#   sh bench/kcd-vs-peer.sh [--seconds 5] [--rounds 3] [--conns 32]
#                           [--follow 0] [--cpu 1] [--peer-procs 4] [--keep]
set -eu
cd "$(dirname "$0")/.."
exec perl bench/kcd-vs-peer.pl "$@"
