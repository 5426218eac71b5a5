#!/bin/sh
# What NTLM inside SPNEGO adds per handshake, next to the NTLMv2 checks of
# every NTLM logon (bench/spnego-codec.c); about 10 s.
set -eu
cd "$(dirname "$0")/.."
mkdir -p build
cc -O2 -Wall -Wextra -Wno-unused-parameter -Werror -I. -o build/spnego-codec \
    bench/spnego-codec.c ngx_http_kcd_spnego.c ngx_http_kcd_ntlm.c \
    ngx_http_kcd_ntlm_crypto.c ngx_http_kcd_names.c -lcrypto -lpthread
build/spnego-codec "$@"
