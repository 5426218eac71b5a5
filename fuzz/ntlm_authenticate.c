/*
 * Fuzz target: AUTHENTICATE (Type 3) through every step the module runs
 * on it, in the module's order (ngx_http_ntlm_reauth.c): parse, names to
 * UTF-8, the credential-free checks against the stored CHALLENGE under
 * each channel-binding policy, NTProofStr with the user's NT hash, MIC.
 * The captured seeds answer kcd_fuzz_type2, so mutations start from
 * messages that pass every check.
 * ngx_http_kcd_ntlm.c: kcd_ntlm_parse_authenticate (and the AV pair
 * parser), kcd_ntlm_check_authenticate, kcd_ntlm_utf16_to_utf8;
 * ngx_http_kcd_ntlm_crypto.c: kcd_ntlm_verify_v2, kcd_ntlm_verify_mic,
 * kcd_ntlm_exported_session_key, kcd_ntlm_sec_init / _verify / _sign.
 */

#include "kcd_fuzz_ntlm.h"


static uint8_t  kcd_fuzz_hash[16];


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* RC4 for KEY_EXCH, as with kcd_ntlm_key_exch on; absent: skipped */
    (void) kcd_ntlm_rc4_init();

    if (kcd_ntlm_nt_hash(KCD_FUZZ_PASSWORD, strlen(KCD_FUZZ_PASSWORD),
                         kcd_fuzz_hash)
        != 0)
    {
        abort();
    }

    return 0;
}


static void
kcd_fuzz_name(const uint8_t *s, size_t len)
{
    long  n;
    char  out[256 + 1];    /* NGX_HTTP_KCD_NAME_MAX + 1, as the module */

    n = kcd_ntlm_utf16_to_utf8(s, len, out, sizeof(out));

    if (n >= 0 && ((size_t) n >= sizeof(out) || out[n] != '\0'
                   || strlen(out) != (size_t) n))
    {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                       rc, policy;
    uint8_t                  *msg, key[16], exported[16], sig[16];
    uint32_t                  flags;
    kcd_ntlm_sec_t            sec;
    const char               *err;
    kcd_ntlm_authenticate_t   auth;

    msg = kcd_fuzz_dup(data, size);

    err = NULL;
    rc = kcd_ntlm_parse_authenticate(msg, size, &auth, &err);

    if (rc != KCD_NTLM_OK && err == NULL) {
        abort();
    }

    if (rc == KCD_NTLM_ERROR) {
        goto done;
    }

    kcd_fuzz_name(auth.user, auth.user_len);
    kcd_fuzz_name(auth.domain, auth.domain_len);
    kcd_fuzz_name(auth.workstation, auth.workstation_len);

    if (rc != KCD_NTLM_OK) {
        goto done;
    }

    /* a parsed message: every pointer lies inside it */
    if (auth.nt < msg || auth.nt + auth.nt_len > msg + size
        || auth.av < auth.blob || auth.av + auth.av_len > msg + size
        || (auth.has_mic && auth.mic != msg + 72))
    {
        abort();
    }

    for (policy = KCD_NTLM_CB_OFF; policy <= KCD_NTLM_CB_REQUIRE; policy++) {
        err = NULL;
        rc = kcd_ntlm_check_authenticate(&auth, kcd_fuzz_type2,
                                         sizeof(kcd_fuzz_type2),
                                         (policy & 1) ? kcd_fuzz_cb : NULL,
                                         policy, KCD_FUZZ_NOW, &err);
        if (rc != KCD_NTLM_OK && err == NULL) {
            abort();
        }
    }

    if (kcd_ntlm_verify_v2(kcd_fuzz_hash, auth.user, auth.user_len,
                           auth.domain, auth.domain_len,
                           kcd_fuzz_type2 + 24, auth.nt, auth.nt_len, key)
        != 0)
    {
        goto done;
    }

    if (auth.has_mic) {
        (void) kcd_ntlm_verify_mic(key, kcd_fuzz_type1,
                                   sizeof(kcd_fuzz_type1), kcd_fuzz_type2,
                                   sizeof(kcd_fuzz_type2), msg, size,
                                   auth.mic);
    }

    /*
     * SPNEGO's mechListMIC (ngx_http_kcd_spnego_ntlm.c): the exported
     * session key from the client's EncryptedRandomSessionKey (RC4 when
     * KEY_EXCH), signing keys, then a signature checked over bytes of
     * the message, as the module does over the client's mechTypes.
     */
    flags = auth.flags | KCD_NTLM_NEGOTIATE_ESS;

    if (kcd_ntlm_exported_session_key(flags, key, auth.enc_session_key,
                                      auth.enc_session_key_len, exported)
        == 0
        && kcd_ntlm_sec_init(&sec, flags, exported) == 0)
    {
        /* a 16-byte signature from the input: its last 16 bytes */
        (void) kcd_ntlm_sec_verify(&sec, msg, size > 64 ? 64 : size,
                                   msg + size - 16, 16);
        if (kcd_ntlm_sec_sign(&sec, msg, size, sig) != 0) {
            abort();
        }
        kcd_ntlm_sec_free(&sec);
    }

done:

    free(msg);

    return 0;
}
