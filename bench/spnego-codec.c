/*
 * What NTLM inside SPNEGO adds per handshake on the server, side by side
 * with what an NTLM handshake costs anyway (B5):
 *
 *   spnego   decode the negTokenInit (Windows shape), encode the
 *            negTokenResp around the CHALLENGE, decode the negTokenResp
 *            with the AUTHENTICATE, signing keys + verify the client's
 *            mechListMIC + sign the server's, encode the final negTokenResp
 *   ntlm     NTLMv2 proof and MIC of one AUTHENTICATE (kcd_ntlm_verify_v2,
 *            kcd_ntlm_verify_mic): the work of every NTLM logon
 *
 * Rounds alternate; the median per handshake is printed.
 *   bench/spnego-codec [rounds] [iterations]
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_http_kcd_ntlm.h"
#include "ngx_http_kcd_ntlm_crypto.h"
#include "ngx_http_kcd_spnego.h"


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
cmp(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}


static const kcd_spnego_mech_t  windows[] = {
    KCD_SPNEGO_MECH_NTLMSSP, KCD_SPNEGO_MECH_MS_KRB5,
    KCD_SPNEGO_MECH_KRB5, KCD_SPNEGO_MECH_NEGOEX
};

static unsigned char  type1[40], type2[200], type3[400], key[16];
static unsigned char  *init_tok, *resp_tok;
static size_t          init_len, resp_len;


static void
spnego_once(void)
{
    size_t              len;
    unsigned char      *out, mic[16];
    kcd_ntlm_sec_t      sec;
    kcd_spnego_token_t  tok;

    if (kcd_spnego_decode(init_tok, init_len, &tok) != 0) {
        exit(1);
    }
    kcd_spnego_token_free(&tok);

    kcd_spnego_encode_resp(KCD_SPNEGO_STATE_ACCEPT_INCOMPLETE,
                           KCD_SPNEGO_MECH_NTLMSSP, type2, sizeof(type2),
                           NULL, 0, &out, &len);
    kcd_spnego_free(out);

    if (kcd_spnego_decode(resp_tok, resp_len, &tok) != 0) {
        exit(1);
    }

    kcd_ntlm_sec_init(&sec, 0xe2088215, key);
    (void) kcd_ntlm_sec_verify(&sec, init_tok + 18, 48, tok.mech_list_mic,
                               tok.mech_list_mic_len);
    kcd_ntlm_sec_sign(&sec, init_tok + 18, 48, mic);
    kcd_ntlm_sec_free(&sec);
    kcd_spnego_token_free(&tok);

    kcd_spnego_encode_resp(KCD_SPNEGO_STATE_ACCEPT_COMPLETED,
                           KCD_SPNEGO_MECH_UNKNOWN, NULL, 0, mic, 16, &out,
                           &len);
    kcd_spnego_free(out);
}


static void
ntlm_once(void)
{
    unsigned char  sk[16], nt[16];

    memset(nt, 0x11, 16);
    (void) kcd_ntlm_verify_v2(nt, (const uint8_t *) "a\0l\0i\0c\0e\0", 10,
                              (const uint8_t *) "K\0C\0D\0", 6, type2,
                              type3, 200, sk);
    (void) kcd_ntlm_verify_mic(key, type1, sizeof(type1), type2,
                               sizeof(type2), type3, sizeof(type3),
                               type3 + 72);
}


int
main(int argc, char **argv)
{
    int                rounds, iters, r, i;
    double             t0, *s, *n;
    unsigned char      mic[16];
    kcd_ntlm_sec_t     sec;

    rounds = argc > 1 ? atoi(argv[1]) : 9;
    iters = argc > 2 ? atoi(argv[2]) : 20000;

    memset(type1, 1, sizeof(type1));
    memset(type2, 2, sizeof(type2));
    memset(type3, 3, sizeof(type3));
    memset(key, 5, sizeof(key));
    memcpy(type1, "NTLMSSP\0\1\0\0\0", 12);

    kcd_spnego_encode_init(windows, 4, type1, sizeof(type1), &init_tok,
                           &init_len);
    kcd_ntlm_sec_init(&sec, 0xe2088215, key);
    kcd_ntlm_sec_verify(&sec, init_tok + 18, 48, mic, 16);
    kcd_ntlm_sec_free(&sec);
    kcd_spnego_encode_resp(KCD_SPNEGO_STATE_ABSENT, KCD_SPNEGO_MECH_UNKNOWN,
                           type3, sizeof(type3), mic, 16, &resp_tok,
                           &resp_len);

    s = calloc(rounds, sizeof(double));
    n = calloc(rounds, sizeof(double));

    for (r = 0; r < rounds; r++) {
        t0 = now();
        for (i = 0; i < iters; i++) {
            spnego_once();
        }
        s[r] = (now() - t0) / iters * 1e6;

        t0 = now();
        for (i = 0; i < iters; i++) {
            ntlm_once();
        }
        n[r] = (now() - t0) / iters * 1e6;
    }

    qsort(s, rounds, sizeof(double), cmp);
    qsort(n, rounds, sizeof(double), cmp);

    printf("per handshake, median of %d rounds x %d:\n", rounds, iters);
    printf("  SPNEGO layer (2 decodes, 2 encodes, keys, 2 signatures) "
           "%6.2f us\n", s[rounds / 2]);
    printf("  NTLMv2 proof + MIC (every NTLM logon)                   "
           "%6.2f us\n", n[rounds / 2]);
    printf("  ratio SPNEGO / NTLM                                     "
           "%6.2f\n", s[rounds / 2] / n[rounds / 2]);

    return 0;
}
