/*
 * Fuzz target: a Negotiate token from a client (after base64), the SPNEGO
 * codec ngx_http_kcd_spnego.c (RFC 4178, [MS-SPNG]; OpenSSL's ASN.1
 * templates), driven the way ngx_http_kcd_negotiate.c drives it:
 * kcd_spnego_decode(), then, for a negTokenInit(2) whose first mechanism
 * is NTLMSSP, kcd_ntlm_message_type() and the NEGOTIATE parser on its
 * mechToken, and for a negTokenResp the same (NEGOTIATE or AUTHENTICATE)
 * on its responseToken; kcd_spnego_this_mech() as ngx_http_kcd_gss.c
 * calls it before MIT's acceptor.  The input is decoded as it is and
 * again wrapped in the RFC 2743 3.1 framing with thisMech SPNEGO, so
 * every inner token is tried in both shapes.
 *
 * Checks beyond the sanitizers:
 *
 *  - the return codes and their promises: NOT_SPNEGO only for a framed
 *    token, nothing to release on error;
 *  - the views are consistent with the kind: negTokenInit(2) has no
 *    negState, supportedMech or responseToken, negTokenResp no mechanism
 *    list, mechToken or hint; only negTokenInit2 has a hint; an absent
 *    field is NULL with length 0; the mechanism list is within its limit,
 *    mechanisms past it are UNKNOWN;
 *  - every field is readable over its whole length (each is copied into
 *    an allocation of its exact size), no longer than the input; the
 *    MechTypeList (what mechListMIC covers) is exactly bytes of the input
 *    starting with its SEQUENCE tag; an OCTET STRING or GeneralString
 *    that is not bytes of the input was sent in the constructed (BER)
 *    form;
 *  - round trip: what decodes, written again by the codec's encoders
 *    (negTokenInit, negTokenInit2, negTokenResp: every field they can
 *    carry) and decoded, gives the same fields, and encoding that again
 *    gives the same bytes; the encoders refuse a list with an UNKNOWN
 *    mechanism or none.
 */

#define _GNU_SOURCE                 /* memmem() */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kcd_fuzz_ntlm.h"
#include "ngx_http_kcd_spnego.h"


#define KCD_FUZZ_HINT  "not_defined_in_RFC4178@please_ignore"


static const uint8_t  kcd_fuzz_spnego_oid[] = {
    0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02
};


/* the field readable over its length, in an allocation of that size */

static void
kcd_fuzz_touch(const unsigned char *p, size_t len)
{
    uint8_t  *copy;

    if (p == NULL) {
        if (len != 0) {
            abort();
        }
        return;
    }

    copy = kcd_fuzz_dup(p, len);
    free(copy);
}


static int
kcd_fuzz_in(const uint8_t *in, size_t len, const unsigned char *p,
    size_t plen)
{
    return plen == 0 || (plen <= len && memmem(in, len, p, plen) != NULL);
}


/* an OCTET STRING or GeneralString: bytes of the input, or constructed */

static void
kcd_fuzz_string(const uint8_t *in, size_t len, const unsigned char *p,
    size_t plen, uint8_t constructed_tag)
{
    kcd_fuzz_touch(p, plen);

    if (plen > len) {
        abort();
    }

    if (!kcd_fuzz_in(in, len, p, plen)
        && memchr(in, constructed_tag, len) == NULL)
    {
        abort();
    }
}


static int
kcd_fuzz_same(const unsigned char *a, size_t alen, const unsigned char *b,
    size_t blen)
{
    if ((a == NULL) != (b == NULL) || alen != blen) {
        return 0;
    }

    return alen == 0 || memcmp(a, b, alen) == 0;
}


static void
kcd_fuzz_views(const uint8_t *in, size_t len, const kcd_spnego_token_t *t)
{
    size_t  i;

    if (t->asn1 == NULL || t->nmech_types > KCD_SPNEGO_MAX_MECHS) {
        abort();
    }

    for (i = 0; i < KCD_SPNEGO_MAX_MECHS; i++) {
        if (t->mech_types[i] > KCD_SPNEGO_MECH_NEGOEX
            || (i >= t->nmech_types
                && t->mech_types[i] != KCD_SPNEGO_MECH_UNKNOWN))
        {
            abort();
        }
    }

    if (t->supported_mech > KCD_SPNEGO_MECH_NEGOEX
        || (!t->has_supported_mech
            && t->supported_mech != KCD_SPNEGO_MECH_UNKNOWN))
    {
        abort();
    }

    if (t->neg_state < KCD_SPNEGO_STATE_ABSENT
        || t->neg_state > KCD_SPNEGO_STATE_REQUEST_MIC)
    {
        abort();
    }

    switch (t->kind) {

    case KCD_SPNEGO_INIT:
        if (t->hint_name != NULL || t->hint_name_len != 0) {
            abort();
        }
        /* fall through */

    case KCD_SPNEGO_INIT2:
        if (t->neg_state != KCD_SPNEGO_STATE_ABSENT || t->has_supported_mech
            || t->response_token != NULL || t->response_token_len != 0)
        {
            abort();
        }

        /* negTokenInit's mechTypes is mandatory, negTokenInit2's not */

        if ((t->kind == KCD_SPNEGO_INIT && t->mech_types_der == NULL)
            || (t->nmech_types > 0 && t->mech_types_der == NULL))
        {
            abort();
        }

        break;

    case KCD_SPNEGO_RESP:
        if (t->nmech_types != 0 || t->mech_types_der != NULL
            || t->mech_types_der_len != 0 || t->has_req_flags
            || t->mech_token != NULL || t->mech_token_len != 0
            || t->hint_name != NULL || t->hint_name_len != 0)
        {
            abort();
        }

        break;

    default:
        abort();
    }

    /* the MechTypeList exactly as received: a SEQUENCE, bytes of the input */

    kcd_fuzz_touch(t->mech_types_der, t->mech_types_der_len);

    if (t->mech_types_der != NULL
        && (t->mech_types_der_len < 2 || t->mech_types_der[0] != 0x30
            || !kcd_fuzz_in(in, len, t->mech_types_der,
                            t->mech_types_der_len)))
    {
        abort();
    }

    kcd_fuzz_string(in, len, t->mech_token, t->mech_token_len, 0x24);
    kcd_fuzz_string(in, len, t->response_token, t->response_token_len, 0x24);
    kcd_fuzz_string(in, len, t->mech_list_mic, t->mech_list_mic_len, 0x24);
    kcd_fuzz_string(in, len, t->hint_name, t->hint_name_len, 0x3b);
}


static int
kcd_fuzz_within(const uint8_t *m, size_t len, const uint8_t *p, size_t plen)
{
    return plen == 0 || (p >= m && plen <= len && p - m <= (long) (len - plen));
}


/* the NTLM legs the module takes out of the token (ngx_http_kcd_negotiate.c) */

static void
kcd_fuzz_ntlm(const unsigned char *p, size_t len)
{
    int                       type;
    uint8_t                  *m;
    const char               *err;
    kcd_ntlm_negotiate_t      neg;
    kcd_ntlm_authenticate_t   auth;

    if (p == NULL) {
        return;
    }

    m = kcd_fuzz_dup(p, len);
    type = kcd_ntlm_message_type(m, len);

    if (type == 1) {
        err = NULL;
        if (kcd_ntlm_parse_negotiate(m, len, &neg, &err) != KCD_NTLM_OK
            && err == NULL)
        {
            abort();
        }

    } else if (type == 3) {
        err = NULL;
        if (kcd_ntlm_parse_authenticate(m, len, &auth, &err) != KCD_NTLM_OK) {
            if (err == NULL) {
                abort();
            }

        } else if (!kcd_fuzz_within(m, len, auth.user, auth.user_len)
                   || !kcd_fuzz_within(m, len, auth.domain, auth.domain_len)
                   || !kcd_fuzz_within(m, len, auth.nt, auth.nt_len))
        {
            abort();
        }
    }

    free(m);
}


static void
kcd_fuzz_flow(const kcd_spnego_token_t *t)
{
    if (t->kind == KCD_SPNEGO_RESP) {
        kcd_fuzz_ntlm(t->response_token, t->response_token_len);
        return;
    }

    if (t->nmech_types > 0 && t->mech_types[0] == KCD_SPNEGO_MECH_NTLMSSP) {
        kcd_fuzz_ntlm(t->mech_token, t->mech_token_len);
    }
}


/* decode what an encoder wrote; it must decode, to the same fields */

static void
kcd_fuzz_redecode(const unsigned char *der, size_t der_len,
    const kcd_spnego_token_t *t, kcd_spnego_kind_t kind,
    kcd_spnego_token_t *re)
{
    size_t          i;
    uint8_t        *copy;
    unsigned char  *list;
    size_t          list_len;

    copy = kcd_fuzz_dup(der, der_len);

    if (kcd_spnego_decode(copy, der_len, re) != KCD_SPNEGO_OK
        || re->kind != kind)
    {
        abort();
    }

    kcd_fuzz_views(copy, der_len, re);

    if (kind == KCD_SPNEGO_RESP) {
        if (re->neg_state != t->neg_state
            || re->has_supported_mech
               != (t->supported_mech != KCD_SPNEGO_MECH_UNKNOWN)
            || re->supported_mech != t->supported_mech
            || !kcd_fuzz_same(re->response_token, re->response_token_len,
                              t->response_token, t->response_token_len)
            || !kcd_fuzz_same(re->mech_list_mic, re->mech_list_mic_len,
                              t->mech_list_mic, t->mech_list_mic_len))
        {
            abort();
        }

        free(copy);
        return;
    }

    if (re->nmech_types != t->nmech_types || re->has_req_flags
        || re->mech_list_mic != NULL
        || !kcd_fuzz_same(re->mech_token, re->mech_token_len,
                          t->mech_token, t->mech_token_len))
    {
        abort();
    }

    for (i = 0; i < t->nmech_types; i++) {
        if (re->mech_types[i] != t->mech_types[i]) {
            abort();
        }
    }

    /* the list in the token is the one kcd_spnego_encode_mech_list() writes */

    if (kcd_spnego_encode_mech_list(t->mech_types, t->nmech_types, &list,
                                    &list_len)
        != KCD_SPNEGO_OK
        || !kcd_fuzz_same(re->mech_types_der, re->mech_types_der_len,
                          list, list_len))
    {
        abort();
    }

    kcd_spnego_free(list);

    if (kind == KCD_SPNEGO_INIT2
        && !kcd_fuzz_same(re->hint_name, re->hint_name_len,
                          (const unsigned char *) KCD_FUZZ_HINT,
                          sizeof(KCD_FUZZ_HINT) - 1))
    {
        abort();
    }

    if (kcd_spnego_this_mech(copy, der_len) != KCD_SPNEGO_MECH_UNKNOWN) {
        abort();
    }

    free(copy);
}


typedef int (*kcd_fuzz_init_enc_pt)(const kcd_spnego_mech_t *mechs,
    size_t nmechs, const unsigned char *mech_token, size_t mech_token_len,
    unsigned char **out, size_t *out_len);


static void
kcd_fuzz_round_init(const kcd_spnego_token_t *t, kcd_fuzz_init_enc_pt enc,
    kcd_spnego_kind_t kind)
{
    int                  rc;
    size_t               i, len, len2;
    unsigned char       *out, *out2;
    kcd_spnego_token_t   re;

    rc = KCD_SPNEGO_OK;

    for (i = 0; i < t->nmech_types; i++) {
        if (t->mech_types[i] == KCD_SPNEGO_MECH_UNKNOWN) {
            rc = KCD_SPNEGO_ERROR;
        }
    }

    if (t->nmech_types == 0) {
        rc = KCD_SPNEGO_ERROR;
    }

    out = NULL;

    if (enc(t->mech_types, t->nmech_types, t->mech_token, t->mech_token_len,
            &out, &len)
        != rc)
    {
        abort();
    }

    if (rc != KCD_SPNEGO_OK) {
        if (out != NULL) {
            abort();
        }
        return;
    }

    kcd_fuzz_redecode(out, len, t, kind, &re);

    /* written again from what was decoded: the same bytes */

    if (enc(re.mech_types, re.nmech_types, re.mech_token, re.mech_token_len,
            &out2, &len2)
        != KCD_SPNEGO_OK
        || !kcd_fuzz_same(out, len, out2, len2))
    {
        abort();
    }

    kcd_spnego_free(out2);
    kcd_spnego_token_free(&re);
    kcd_spnego_free(out);
}


static void
kcd_fuzz_round_resp(const kcd_spnego_token_t *t)
{
    size_t               len, len2;
    unsigned char       *out, *out2;
    kcd_spnego_token_t   re, want;

    /* an UNKNOWN supportedMech cannot be written: compare without it */

    want = *t;
    if (want.supported_mech == KCD_SPNEGO_MECH_UNKNOWN) {
        want.has_supported_mech = 0;
    }

    if (kcd_spnego_encode_resp(t->neg_state, t->supported_mech,
                               t->response_token, t->response_token_len,
                               t->mech_list_mic, t->mech_list_mic_len,
                               &out, &len)
        != KCD_SPNEGO_OK)
    {
        abort();
    }

    kcd_fuzz_redecode(out, len, &want, KCD_SPNEGO_RESP, &re);

    if (kcd_spnego_encode_resp(re.neg_state, re.supported_mech,
                               re.response_token, re.response_token_len,
                               re.mech_list_mic, re.mech_list_mic_len,
                               &out2, &len2)
        != KCD_SPNEGO_OK
        || !kcd_fuzz_same(out, len, out2, len2))
    {
        abort();
    }

    kcd_spnego_free(out2);
    kcd_spnego_token_free(&re);
    kcd_spnego_free(out);
}


static void
kcd_fuzz_one(const uint8_t *in, size_t len)
{
    int                 rc;
    kcd_spnego_mech_t   mech;
    kcd_spnego_token_t  t;

    mech = kcd_spnego_this_mech(in, len);

    if (mech > KCD_SPNEGO_MECH_NEGOEX || (len > 0 && in[0] != 0x60
                                          && mech != KCD_SPNEGO_MECH_UNKNOWN))
    {
        abort();
    }

    rc = kcd_spnego_decode(in, len, &t);

    if (rc != KCD_SPNEGO_OK) {
        if ((rc != KCD_SPNEGO_ERROR && rc != KCD_SPNEGO_NOT_SPNEGO)
            || t.asn1 != NULL
            || (rc == KCD_SPNEGO_NOT_SPNEGO && (len == 0 || in[0] != 0x60)))
        {
            abort();
        }

        return;
    }

    /* SPNEGO's thisMech is none of the mechanisms this_mech names */

    if (mech != KCD_SPNEGO_MECH_UNKNOWN) {
        abort();
    }

    kcd_fuzz_views(in, len, &t);
    kcd_fuzz_flow(&t);

    if (t.kind == KCD_SPNEGO_RESP) {
        kcd_fuzz_round_resp(&t);

    } else {
        kcd_fuzz_round_init(&t, kcd_spnego_encode_init, KCD_SPNEGO_INIT);
        kcd_fuzz_round_init(&t, kcd_spnego_encode_init2, KCD_SPNEGO_INIT2);
    }

    kcd_spnego_token_free(&t);

    if (t.asn1 != NULL) {
        abort();
    }
}


/* [APPLICATION 0] { thisMech SPNEGO, data } around the input */

static uint8_t *
kcd_fuzz_frame(const uint8_t *data, size_t size, size_t *out_len)
{
    size_t    body, n, i;
    uint8_t  *p, *out;

    body = sizeof(kcd_fuzz_spnego_oid) + size;

    n = 0;
    for (i = body; i > 0; i >>= 8) {
        n++;
    }

    out = malloc(2 + n + body);
    if (out == NULL) {
        abort();
    }

    p = out;
    *p++ = 0x60;

    if (body < 0x80) {
        *p++ = (uint8_t) body;

    } else {
        *p++ = (uint8_t) (0x80 | n);
        for (i = n; i > 0; i--) {
            *p++ = (uint8_t) (body >> ((i - 1) * 8));
        }
    }

    memcpy(p, kcd_fuzz_spnego_oid, sizeof(kcd_fuzz_spnego_oid));
    p += sizeof(kcd_fuzz_spnego_oid);
    memcpy(p, data, size);
    p += size;

    *out_len = p - out;

    /* an allocation of exactly the framed length */

    p = kcd_fuzz_dup(out, *out_len);
    free(out);

    return p;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t    len;
    uint8_t  *in;

    in = kcd_fuzz_dup(data, size);
    kcd_fuzz_one(in, size);
    free(in);

    if (size > 0 && data[0] != 0x60) {
        in = kcd_fuzz_frame(data, size, &len);
        kcd_fuzz_one(in, len);
        free(in);
    }

    return 0;
}
