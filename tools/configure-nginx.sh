#!/bin/sh
# Configure the nginx source tree in the current directory for building the
# module as a dynamic module binary-compatible with the installed nginx:
# --with-compat plus the configure flags of `nginx -V`.
set -eu
addon=$1
nginx=${2:-/usr/sbin/nginx}

flags=""
if [ -x "$nginx" ]; then
    # keep only the flags that change the module ABI or the paths; the
    # --with-cc-opt/--with-ld-opt values carry quotes, so rebuild them safely
    flags=$("$nginx" -V 2>&1 | sed -n 's/^configure arguments: //p' \
        | tr ' ' '\n' | grep -E '^--(with-compat|with-threads|with-http_ssl_module|with-http_v2_module|with-debug|with-pcre-jit|prefix=|conf-path=|modules-path=|with-http_realip_module|with-http_stub_status_module|with-http_auth_request_module|with-http_dav_module|with-http_slice_module)' \
        | tr '\n' ' ')
fi
case " $flags " in *" --with-compat "*) ;; *) flags="$flags --with-compat" ;; esac
case " $flags " in *" --with-threads "*) ;; *) flags="$flags --with-threads" ;; esac

# shellcheck disable=SC2086
./configure $flags --with-cc-opt='-fPIC -g -O2' --with-ld-opt='-fPIC' \
    --add-dynamic-module="$addon" >configure.log 2>&1 || {
    tail -20 configure.log; exit 1; }
