#!/usr/bin/python3
# A whole GSS-API exchange in one process, MIT krb5 (python3-gssapi) on
# both sides: an initiator and an acceptor pass their tokens to each other
# until both are complete.  Prints each token as a line "i HEX"
# (initiator) or "a HEX" (acceptor), then "complete" or "error TEXT".
# Used by fuzz/capture-spnego-seeds.pl.
#
#   gss-exchange.py spnego|krb5 USER SERVICE@HOST
#
# USER: DOMAIN\user (gss-ntlmssp: NTLM_USER_FILE, GSS_MECH_CONFIG) or a
# Kerberos principal (KRB5CCNAME; the acceptor reads KRB5_KTNAME).
import sys

import gssapi

MECHS = {'spnego': '1.3.6.1.5.5.2', 'krb5': '1.2.840.113554.1.2.2'}


def main():
    mech = gssapi.OID.from_int_seq(MECHS[sys.argv[1]])
    kind = (gssapi.NameType.user if '\\' in sys.argv[2]
            else gssapi.NameType.kerberos_principal)
    user = gssapi.Name(sys.argv[2], kind)
    target = gssapi.Name(sys.argv[3], gssapi.NameType.hostbased_service)
    ic = gssapi.SecurityContext(
        name=target, mech=mech, usage='initiate',
        creds=gssapi.Credentials(name=user, usage='initiate', mechs=[mech]))
    ac = gssapi.SecurityContext(
        creds=gssapi.Credentials(usage='accept', mechs=[mech]),
        usage='accept')
    tok = None
    side = 'i'
    try:
        while not (ic.complete and ac.complete):
            tok = (ic if side == 'i' else ac).step(tok)
            if not tok:
                break
            print(side, tok.hex(), flush=True)
            side = 'a' if side == 'i' else 'i'
        print('complete' if ic.complete and ac.complete else 'error stuck',
              flush=True)
    except gssapi.exceptions.GSSError as e:
        print('error ' + str(e).replace('\n', ' '), flush=True)


main()
