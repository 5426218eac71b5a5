/*
 * Fuzz target: the text conversions applied to client bytes.  The input
 * is read both as UTF-16LE (user, domain, workstation names of an
 * AUTHENTICATE) and as UTF-8 (a Basic password, hashed to an NT hash).
 * Properties: a successful conversion round-trips exactly; an output
 * buffer of any size is never overrun (exact-size heap buffers); the
 * UTF-8 output is NUL-terminated and free of control characters.
 * ngx_http_kcd_ntlm.c: kcd_ntlm_utf16_to_utf8, kcd_ntlm_utf8_to_utf16;
 * ngx_http_kcd_ntlm_crypto.c: kcd_ntlm_utf8_next, kcd_ntlm_nt_hash,
 * kcd_ntlm_ntowfv2 (upper-casing of the user name).
 */

#include "kcd_fuzz_ntlm.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long      n, m;
    size_t    i, cap, pos;
    char     *u8;
    uint8_t  *in, *u16, hash[16], ntowf[16];

    in = kcd_fuzz_dup(data, size);

    /* UTF-16LE -> UTF-8 -> UTF-16LE */

    cap = 2 * size + 1;
    u8 = malloc(cap);
    u16 = malloc(size + 1);
    if (u8 == NULL || u16 == NULL) {
        abort();
    }

    n = kcd_ntlm_utf16_to_utf8(in, size, u8, cap);

    if (n >= 0) {
        if ((size_t) n >= cap || u8[n] != '\0' || strlen(u8) != (size_t) n) {
            abort();
        }

        for (i = 0; i < (size_t) n; i++) {
            if ((uint8_t) u8[i] < 0x20 || u8[i] == 0x7f) {
                abort();
            }
        }

        m = kcd_ntlm_utf8_to_utf16(u8, (size_t) n, u16, size + 1);
        if (m != (long) size || memcmp(u16, in, size) != 0) {
            abort();
        }
    }

    free(u8);
    free(u16);

    /* the same into every smaller buffer size up to 64: never overrun */

    for (cap = 1; cap <= 64 && cap <= 2 * size; cap++) {
        u8 = malloc(cap);
        if (u8 == NULL) {
            abort();
        }

        m = kcd_ntlm_utf16_to_utf8(in, size, u8, cap);
        if (m >= (long) cap || (n < 0 && m >= 0)) {
            abort();
        }

        free(u8);
    }

    /* UTF-8 -> UTF-16LE -> UTF-8 */

    cap = 2 * size;
    u16 = malloc(cap ? cap : 1);
    if (u16 == NULL) {
        abort();
    }

    n = kcd_ntlm_utf8_to_utf16((const char *) in, size, u16, cap);

    if (n >= 0) {
        u8 = malloc(size + 1);
        if (u8 == NULL) {
            abort();
        }

        /* controls are valid UTF-8 but refused on the way back */
        m = kcd_ntlm_utf16_to_utf8(u16, (size_t) n, u8, size + 1);
        if (m >= 0 && (m != (long) size || memcmp(u8, in, size) != 0)) {
            abort();
        }

        free(u8);

        /* the decoder agrees with the converter */
        for (pos = 0; pos < size; /* void */) {
            if (kcd_ntlm_utf8_next(in, size, &pos) < 0) {
                abort();
            }
        }
    }

    free(u16);

    /* a Basic password: NT hash; the input as a user name: NTOWFv2 */

    if (kcd_ntlm_nt_hash((const char *) in, size, hash) == 0) {
        (void) kcd_ntlm_ntowfv2(hash, in, size & ~(size_t) 1, in, size,
                                ntowf);
    }

    free(in);

    return 0;
}
