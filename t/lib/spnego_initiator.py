#!/usr/bin/python3
# A SPNEGO initiator from MIT krb5's GSSAPI (python3-gssapi): prints each
# output token as hex on a line, reads the acceptor's next token as hex from
# stdin, ends with a line "complete" or "error <text>".
#
#   spnego_initiator.py USER SERVICE@HOST [flags]
#
# The mechanisms come from the MIT configuration (GSS_MECH_CONFIG names
# gss-ntlmssp in the tests), the NTLM password from NTLM_USER_FILE.
import sys

import gssapi

SPNEGO = gssapi.OID.from_int_seq('1.3.6.1.5.5.2')


def main():
    user = gssapi.Name(sys.argv[1], gssapi.NameType.user)
    target = gssapi.Name(sys.argv[2], gssapi.NameType.hostbased_service)
    flags = None
    if len(sys.argv) > 3:
        flags = int(sys.argv[3], 0)
    creds = gssapi.Credentials(name=user, usage='initiate', mechs=[SPNEGO])
    ctx = gssapi.SecurityContext(name=target, mech=SPNEGO, usage='initiate',
                                 creds=creds, flags=flags)
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
