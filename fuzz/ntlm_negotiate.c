/*
 * Fuzz target: NEGOTIATE (Type 1) as the module reads it from the
 * Authorization header, then the CHALLENGE built from its flags.
 * ngx_http_kcd_ntlm.c: kcd_ntlm_message_type, kcd_ntlm_parse_negotiate,
 * kcd_ntlm_build_challenge.
 */

#include "kcd_fuzz_ntlm.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                          rc;
    long                         n;
    uint8_t                     *msg, out[1024];
    uint32_t                     granted;
    const char                  *err;
    kcd_ntlm_negotiate_t         neg;
    kcd_ntlm_challenge_params_t  p;

    msg = kcd_fuzz_dup(data, size);

    (void) kcd_ntlm_message_type(msg, size);

    err = NULL;
    rc = kcd_ntlm_parse_negotiate(msg, size, &neg, &err);

    if (rc != KCD_NTLM_OK && err == NULL) {
        abort();    /* every refusal has a reason for the log */
    }

    if (rc == KCD_NTLM_OK) {
        memset(&p, 0, sizeof(p));
        p.client_flags = neg.flags;
        memcpy(p.challenge, "\x01\x23\x45\x67\x89\xab\xcd\xef", 8);
        p.timestamp = KCD_FUZZ_NOW;
        p.nb_domain = "KCD";
        p.nb_computer = "WEB01";
        p.dns_domain = "kcd.test";
        p.dns_computer = "web01.kcd.test";

        p.key_exch = (int) (size & 1);    /* kcd_ntlm_key_exch on or off */

        n = kcd_ntlm_build_challenge(&p, out, sizeof(out));
        if (n < 0 || kcd_ntlm_message_type(out, (size_t) n) != 2) {
            abort();
        }

        /*
         * The flag policy of kcd_ntlm_build_challenge: never SEAL,
         * DATAGRAM, LM_KEY or ANONYMOUS; SIGN only when asked; KEY_EXCH
         * only when asked and configured.
         */
        granted = (uint32_t) out[20] | (uint32_t) out[21] << 8
                  | (uint32_t) out[22] << 16 | (uint32_t) out[23] << 24;

        if ((granted & (KCD_NTLM_NEGOTIATE_SEAL | KCD_NTLM_NEGOTIATE_DATAGRAM
                        | KCD_NTLM_NEGOTIATE_LM_KEY
                        | KCD_NTLM_NEGOTIATE_ANONYMOUS))
            || ((granted & KCD_NTLM_NEGOTIATE_SIGN)
                && !(neg.flags & KCD_NTLM_NEGOTIATE_SIGN))
            || (!!(granted & KCD_NTLM_NEGOTIATE_KEY_EXCH)
                != (p.key_exch
                    && (neg.flags & KCD_NTLM_NEGOTIATE_KEY_EXCH))))
        {
            abort();
        }
    }

    free(msg);

    return 0;
}
