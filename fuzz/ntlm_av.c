/*
 * Fuzz target: the AV pairs of an NTLMv2 client blob (MS-NLMP 2.2.2.1),
 * which the client controls entirely.  The input is the pair list; the
 * harness wraps it in an otherwise valid AUTHENTICATE (header, names,
 * NTProofStr placeholder, 28-byte blob header) and runs the parser and
 * the echo / timestamp / channel-binding checks against the stored
 * CHALLENGE under each policy.  Seeds: the target info of the CHALLENGE
 * plus the pairs real clients add.
 * ngx_http_kcd_ntlm.c: kcd_ntlm_parse_av (static, reached through
 * kcd_ntlm_parse_authenticate), kcd_ntlm_av_find and the echo loop of
 * kcd_ntlm_check_authenticate.
 */

#include "kcd_fuzz_ntlm.h"


#define KCD_FUZZ_HDR  88


static void
kcd_fuzz_put16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
}


static void
kcd_fuzz_put32(uint8_t *p, size_t v)
{
    kcd_fuzz_put16(p, v);
    kcd_fuzz_put16(p + 2, v >> 16);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       rc, policy;
    size_t                    len, nt_len, pos;
    uint8_t                  *msg;
    const char               *err;
    kcd_ntlm_authenticate_t   auth;

    static const uint8_t      user[] = { 'a', 0, 'l', 0, 'i', 0, 'c', 0,
                                         'e', 0 };
    static const uint8_t      domain[] = { 'K', 0, 'C', 0, 'D', 0 };

    if (size > 0xffff - 16 - 28) {
        return 0;
    }

    nt_len = 16 + 28 + size;
    len = KCD_FUZZ_HDR + sizeof(domain) + sizeof(user) + nt_len;

    /* exactly len bytes: ASan catches a pair read past the message */
    msg = calloc(1, len);
    if (msg == NULL) {
        abort();
    }

    memcpy(msg, "NTLMSSP\0\3\0\0\0", 12);
    kcd_fuzz_put32(msg + 60, 0xa2888205);    /* UNICODE, NTLM, ... */

    pos = KCD_FUZZ_HDR;

    kcd_fuzz_put16(msg + 28, sizeof(domain));
    kcd_fuzz_put32(msg + 32, pos);
    memcpy(msg + pos, domain, sizeof(domain));
    pos += sizeof(domain);

    kcd_fuzz_put16(msg + 36, sizeof(user));
    kcd_fuzz_put32(msg + 40, pos);
    memcpy(msg + pos, user, sizeof(user));
    pos += sizeof(user);

    kcd_fuzz_put16(msg + 20, nt_len);
    kcd_fuzz_put32(msg + 24, pos);
    msg[pos + 16] = 1;                        /* blob version 1.1 */
    msg[pos + 17] = 1;
    memcpy(msg + pos + 16 + 8, kcd_fuzz_type2 + 142, 8);    /* time */

    if (size) {
        memcpy(msg + pos + 16 + 28, data, size);
    }

    err = NULL;
    rc = kcd_ntlm_parse_authenticate(msg, len, &auth, &err);

    if (rc != KCD_NTLM_OK && err == NULL) {
        abort();
    }

    if (rc == KCD_NTLM_OK) {
        if (auth.av != msg + pos + 16 + 28 || auth.av_len > size
            || (auth.cb_hash && (auth.cb_hash < auth.av
                                 || auth.cb_hash + 16 > msg + len))
            || (auth.target_name
                && auth.target_name + auth.target_name_len > msg + len))
        {
            abort();
        }

        for (policy = KCD_NTLM_CB_OFF; policy <= KCD_NTLM_CB_REQUIRE;
             policy++)
        {
            err = NULL;
            rc = kcd_ntlm_check_authenticate(&auth, kcd_fuzz_type2,
                                             sizeof(kcd_fuzz_type2),
                                             (policy & 1) ? kcd_fuzz_cb
                                                          : NULL,
                                             policy, KCD_FUZZ_NOW, &err);
            if (rc != KCD_NTLM_OK && err == NULL) {
                abort();
            }
        }
    }

    free(msg);

    return 0;
}
