#!/usr/bin/python3
# A GSSAPI initiator from MIT krb5 (python3-gssapi): prints each output
# token as hex on a line, reads the acceptor's next token as hex from stdin,
# ends with a line "complete" or "error <text>".
#
#   spnego_initiator.py USER SERVICE@HOST [--flags N] [--mech spnego|ntlmssp]
#                       [--cb HEX]
#
# --mech ntlmssp: raw gss-ntlmssp; default SPNEGO.  --flags: GSS request
# flags (default: the library's, integrity included).  --cb: application
# data of the channel bindings (tls-server-end-point:<hash>).  The
# mechanisms come from the MIT configuration (GSS_MECH_CONFIG names
# gss-ntlmssp in the tests), the NTLM password from NTLM_USER_FILE.
import argparse
import sys

import gssapi
import gssapi.raw

MECHS = {
    'spnego': gssapi.OID.from_int_seq('1.3.6.1.5.5.2'),
    'ntlmssp': gssapi.OID.from_int_seq('1.3.6.1.4.1.311.2.2.10'),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('user')
    ap.add_argument('target')
    ap.add_argument('flags', nargs='?')
    ap.add_argument('--flags', dest='flags2')
    ap.add_argument('--mech', default='spnego')
    ap.add_argument('--cb')
    a = ap.parse_args()
    flags = a.flags2 or a.flags
    mech = MECHS[a.mech]
    user = gssapi.Name(a.user, gssapi.NameType.user)
    target = gssapi.Name(a.target, gssapi.NameType.hostbased_service)
    creds = gssapi.Credentials(name=user, usage='initiate', mechs=[mech])
    cb = None
    if a.cb:
        cb = gssapi.raw.ChannelBindings(application_data=bytes.fromhex(a.cb))
    ctx = gssapi.SecurityContext(name=target, mech=mech, usage='initiate',
                                 creds=creds,
                                 flags=int(flags, 0) if flags else None,
                                 channel_bindings=cb)
    tok = None
    try:
        while True:
            out = ctx.step(tok)
            print(out.hex() if out else '', flush=True)
            if ctx.complete:
                print('complete', flush=True)
                return
            line = sys.stdin.readline().strip()
            if not line:
                print('error no token', flush=True)
                return
            tok = bytes.fromhex(line)
    except gssapi.exceptions.GSSError as e:
        print('error ' + str(e).replace('\n', ' '), flush=True)


main()
