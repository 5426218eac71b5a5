/*
 * SPNEGO NegotiationToken codec: RFC 4178 4.2 and [MS-SPNG] 2.2, on
 * OpenSSL's ASN.1 templates (the DER reader and writer are OpenSSL's).
 *
 *   InitialContextToken ::= [APPLICATION 0] IMPLICIT SEQUENCE {
 *       thisMech MechType, innerContextToken NegotiationToken }
 *                                                   -- RFC 2743 3.1
 *   NegotiationToken ::= CHOICE {
 *       negTokenInit [0] NegTokenInit, negTokenResp [1] NegTokenResp }
 *   NegTokenInit ::= SEQUENCE {
 *       mechTypes [0] MechTypeList, reqFlags [1] ContextFlags OPTIONAL,
 *       mechToken [2] OCTET STRING OPTIONAL,
 *       mechListMIC [3] OCTET STRING OPTIONAL }
 *   NegTokenInit2 ::= SEQUENCE {                    -- [MS-SPNG] 2.2.1
 *       mechTypes [0] MechTypeList OPTIONAL,
 *       reqFlags [1] ContextFlags OPTIONAL,
 *       mechToken [2] OCTET STRING OPTIONAL, negHints [3] NegHints OPTIONAL,
 *       mechListMIC [4] OCTET STRING OPTIONAL }
 *   NegHints ::= SEQUENCE {
 *       hintName [0] GeneralString OPTIONAL,
 *       hintAddress [1] OCTET STRING OPTIONAL }
 *   NegTokenResp ::= SEQUENCE {
 *       negState [0] ENUMERATED OPTIONAL, supportedMech [1] MechType OPTIONAL,
 *       responseToken [2] OCTET STRING OPTIONAL,
 *       mechListMIC [3] OCTET STRING OPTIONAL }
 *
 * The module's tags are EXPLICIT.  mechTypes is decoded as ANY so that the
 * exact bytes received are kept for mechListMIC; it is then decoded again
 * as a SEQUENCE OF OBJECT IDENTIFIER.
 */

#include <pthread.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/asn1t.h>
#include <openssl/objects.h>

#include "ngx_http_kcd_spnego.h"


typedef struct {
    ASN1_TYPE          *mech_types;
    ASN1_BIT_STRING    *req_flags;
    ASN1_OCTET_STRING  *mech_token;
    ASN1_OCTET_STRING  *mech_list_mic;
} KCD_NEG_TOKEN_INIT;

typedef struct {
    ASN1_GENERALSTRING *hint_name;
    ASN1_OCTET_STRING  *hint_address;
} KCD_NEG_HINTS;

typedef struct {
    ASN1_TYPE          *mech_types;
    ASN1_BIT_STRING    *req_flags;
    ASN1_OCTET_STRING  *mech_token;
    KCD_NEG_HINTS      *neg_hints;
    ASN1_OCTET_STRING  *mech_list_mic;
} KCD_NEG_TOKEN_INIT2;

typedef struct {
    ASN1_ENUMERATED    *neg_state;
    ASN1_OBJECT        *supported_mech;
    ASN1_OCTET_STRING  *response_token;
    ASN1_OCTET_STRING  *mech_list_mic;
} KCD_NEG_TOKEN_RESP;

typedef struct {
    int                 type;
    union {
        KCD_NEG_TOKEN_INIT  *init;
        KCD_NEG_TOKEN_RESP  *resp;
    } value;
} KCD_NEGOTIATION_TOKEN;

/* the same CHOICE with negTokenInit2 in the [0] alternative */
typedef struct {
    int                 type;
    union {
        KCD_NEG_TOKEN_INIT2 *init2;
        KCD_NEG_TOKEN_RESP  *resp;
    } value;
} KCD_NEGOTIATION_TOKEN2;

typedef struct {
    ASN1_OBJECT            *this_mech;
    KCD_NEGOTIATION_TOKEN  *inner;
} KCD_GSS_INITIAL;

typedef struct {
    ASN1_OBJECT            *this_mech;
    KCD_NEGOTIATION_TOKEN2 *inner;
} KCD_GSS_INITIAL2;

/* thisMech and what follows, for telling SPNEGO from raw Kerberos */
typedef struct {
    ASN1_OBJECT            *this_mech;
} KCD_GSS_MECH_ONLY;


#define KCD_CHOICE_INIT  0
#define KCD_CHOICE_RESP  1


ASN1_SEQUENCE(KCD_NEG_TOKEN_INIT) = {
    ASN1_EXP(KCD_NEG_TOKEN_INIT, mech_types, ASN1_ANY, 0),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_INIT, req_flags, ASN1_BIT_STRING, 1),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_INIT, mech_token, ASN1_OCTET_STRING, 2),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_INIT, mech_list_mic, ASN1_OCTET_STRING, 3)
} ASN1_SEQUENCE_END(KCD_NEG_TOKEN_INIT)

ASN1_SEQUENCE(KCD_NEG_HINTS) = {
    ASN1_EXP_OPT(KCD_NEG_HINTS, hint_name, ASN1_GENERALSTRING, 0),
    ASN1_EXP_OPT(KCD_NEG_HINTS, hint_address, ASN1_OCTET_STRING, 1)
} ASN1_SEQUENCE_END(KCD_NEG_HINTS)

ASN1_SEQUENCE(KCD_NEG_TOKEN_INIT2) = {
    ASN1_EXP_OPT(KCD_NEG_TOKEN_INIT2, mech_types, ASN1_ANY, 0),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_INIT2, req_flags, ASN1_BIT_STRING, 1),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_INIT2, mech_token, ASN1_OCTET_STRING, 2),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_INIT2, neg_hints, KCD_NEG_HINTS, 3),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_INIT2, mech_list_mic, ASN1_OCTET_STRING, 4)
} ASN1_SEQUENCE_END(KCD_NEG_TOKEN_INIT2)

ASN1_SEQUENCE(KCD_NEG_TOKEN_RESP) = {
    ASN1_EXP_OPT(KCD_NEG_TOKEN_RESP, neg_state, ASN1_ENUMERATED, 0),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_RESP, supported_mech, ASN1_OBJECT, 1),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_RESP, response_token, ASN1_OCTET_STRING, 2),
    ASN1_EXP_OPT(KCD_NEG_TOKEN_RESP, mech_list_mic, ASN1_OCTET_STRING, 3)
} ASN1_SEQUENCE_END(KCD_NEG_TOKEN_RESP)

ASN1_CHOICE(KCD_NEGOTIATION_TOKEN) = {
    ASN1_EXP(KCD_NEGOTIATION_TOKEN, value.init, KCD_NEG_TOKEN_INIT, 0),
    ASN1_EXP(KCD_NEGOTIATION_TOKEN, value.resp, KCD_NEG_TOKEN_RESP, 1)
} ASN1_CHOICE_END(KCD_NEGOTIATION_TOKEN)

ASN1_CHOICE(KCD_NEGOTIATION_TOKEN2) = {
    ASN1_EXP(KCD_NEGOTIATION_TOKEN2, value.init2, KCD_NEG_TOKEN_INIT2, 0),
    ASN1_EXP(KCD_NEGOTIATION_TOKEN2, value.resp, KCD_NEG_TOKEN_RESP, 1)
} ASN1_CHOICE_END(KCD_NEGOTIATION_TOKEN2)

ASN1_SEQUENCE(KCD_GSS_INITIAL) = {
    ASN1_SIMPLE(KCD_GSS_INITIAL, this_mech, ASN1_OBJECT),
    ASN1_SIMPLE(KCD_GSS_INITIAL, inner, KCD_NEGOTIATION_TOKEN)
} ASN1_SEQUENCE_END(KCD_GSS_INITIAL)

ASN1_SEQUENCE(KCD_GSS_INITIAL2) = {
    ASN1_SIMPLE(KCD_GSS_INITIAL2, this_mech, ASN1_OBJECT),
    ASN1_SIMPLE(KCD_GSS_INITIAL2, inner, KCD_NEGOTIATION_TOKEN2)
} ASN1_SEQUENCE_END(KCD_GSS_INITIAL2)

/* [APPLICATION 0] IMPLICIT around the two framings */
ASN1_ITEM_TEMPLATE(KCD_GSS_INITIAL_TOKEN) =
    ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_IMPTAG | ASN1_TFLG_APPLICATION, 0,
                          KCD_GSS_INITIAL_TOKEN, KCD_GSS_INITIAL)
ASN1_ITEM_TEMPLATE_END(KCD_GSS_INITIAL_TOKEN)

ASN1_ITEM_TEMPLATE(KCD_GSS_INITIAL2_TOKEN) =
    ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_IMPTAG | ASN1_TFLG_APPLICATION, 0,
                          KCD_GSS_INITIAL2_TOKEN, KCD_GSS_INITIAL2)
ASN1_ITEM_TEMPLATE_END(KCD_GSS_INITIAL2_TOKEN)

/* MechTypeList ::= SEQUENCE OF MechType */
ASN1_ITEM_TEMPLATE(KCD_MECH_TYPE_LIST) =
    ASN1_EX_TEMPLATE_TYPE(ASN1_TFLG_SEQUENCE_OF, 0, KCD_MECH_TYPE_LIST,
                          ASN1_OBJECT)
ASN1_ITEM_TEMPLATE_END(KCD_MECH_TYPE_LIST)

IMPLEMENT_ASN1_FUNCTIONS(KCD_NEG_TOKEN_INIT)
IMPLEMENT_ASN1_FUNCTIONS(KCD_NEG_HINTS)
IMPLEMENT_ASN1_FUNCTIONS(KCD_NEG_TOKEN_INIT2)
IMPLEMENT_ASN1_FUNCTIONS(KCD_NEG_TOKEN_RESP)
IMPLEMENT_ASN1_FUNCTIONS(KCD_NEGOTIATION_TOKEN)
IMPLEMENT_ASN1_FUNCTIONS(KCD_NEGOTIATION_TOKEN2)
IMPLEMENT_ASN1_FUNCTIONS(KCD_GSS_INITIAL)
IMPLEMENT_ASN1_FUNCTIONS(KCD_GSS_INITIAL2)


/* the owner of a decoded token: one of the four shapes */
typedef struct {
    const ASN1_ITEM    *it;
    void               *val;
    STACK_OF(ASN1_OBJECT)  *mechs;
} kcd_spnego_asn1_t;


static const struct {
    kcd_spnego_mech_t   mech;
    const char         *oid;
    const char         *name;
} kcd_spnego_mechs[] = {
    { KCD_SPNEGO_MECH_KRB5, "1.2.840.113554.1.2.2", "krb5" },
    { KCD_SPNEGO_MECH_MS_KRB5, "1.2.840.48018.1.2.2", "ms-krb5" },
    { KCD_SPNEGO_MECH_NTLMSSP, "1.3.6.1.4.1.311.2.2.10", "ntlmssp" },
    { KCD_SPNEGO_MECH_NEGOEX, "1.3.6.1.4.1.311.2.2.30", "negoex" }
};

#define KCD_SPNEGO_OID         "1.3.6.1.5.5.2"
#define KCD_SPNEGO_HINT_NAME   "not_defined_in_RFC4178@please_ignore"

#define KCD_NMECHS  (sizeof(kcd_spnego_mechs) / sizeof(kcd_spnego_mechs[0]))


const char *
kcd_spnego_mech_name(kcd_spnego_mech_t mech)
{
    size_t  i;

    for (i = 0; i < KCD_NMECHS; i++) {
        if (kcd_spnego_mechs[i].mech == mech) {
            return kcd_spnego_mechs[i].name;
        }
    }

    return "unknown";
}


/* the OIDs as OpenSSL objects, made once (OBJ_txt2obj costs ~1 us) */

static ASN1_OBJECT     *kcd_spnego_objs[KCD_NMECHS + 1];
static pthread_once_t   kcd_spnego_once = PTHREAD_ONCE_INIT;


static void
kcd_spnego_objs_init(void)
{
    size_t  i;

    for (i = 0; i < KCD_NMECHS; i++) {
        kcd_spnego_objs[i] = OBJ_txt2obj(kcd_spnego_mechs[i].oid, 1);
    }

    kcd_spnego_objs[KCD_NMECHS] = OBJ_txt2obj(KCD_SPNEGO_OID, 1);
}


static int
kcd_spnego_oid_is(const ASN1_OBJECT *obj, const char *oid)
{
    size_t        i;
    ASN1_OBJECT  *want;

    (void) pthread_once(&kcd_spnego_once, kcd_spnego_objs_init);

    want = kcd_spnego_objs[KCD_NMECHS];

    for (i = 0; i < KCD_NMECHS; i++) {
        if (strcmp(oid, kcd_spnego_mechs[i].oid) == 0) {
            want = kcd_spnego_objs[i];
            break;
        }
    }

    return want != NULL && OBJ_cmp(obj, want) == 0;
}


static kcd_spnego_mech_t
kcd_spnego_mech_of(const ASN1_OBJECT *obj)
{
    size_t  i;

    (void) pthread_once(&kcd_spnego_once, kcd_spnego_objs_init);

    for (i = 0; i < KCD_NMECHS; i++) {
        if (kcd_spnego_objs[i] != NULL
            && OBJ_cmp(obj, kcd_spnego_objs[i]) == 0)
        {
            return kcd_spnego_mechs[i].mech;
        }
    }

    return KCD_SPNEGO_MECH_UNKNOWN;
}


static ASN1_OBJECT *
kcd_spnego_mech_obj(kcd_spnego_mech_t mech)
{
    size_t  i;

    for (i = 0; i < KCD_NMECHS; i++) {
        if (kcd_spnego_mechs[i].mech == mech) {
            return OBJ_txt2obj(kcd_spnego_mechs[i].oid, 1);
        }
    }

    return NULL;
}


static void
kcd_spnego_set(const ASN1_STRING *s, const unsigned char **p, size_t *len)
{
    if (s == NULL) {
        *p = NULL;
        *len = 0;
        return;
    }

    *p = ASN1_STRING_get0_data(s);
    *len = (size_t) ASN1_STRING_length(s);
}


/* decodes d2i-style, requiring that the item spans the whole input */
static void *
kcd_spnego_d2i_all(const ASN1_ITEM *it, const unsigned char *in, size_t len)
{
    void                 *val;
    const unsigned char  *p;

    p = in;

    val = ASN1_item_d2i(NULL, &p, (long) len, it);
    if (val == NULL) {
        return NULL;
    }

    if (p != in + len) {
        ASN1_item_free(val, it);
        return NULL;
    }

    return val;
}


static int
kcd_spnego_mech_types(kcd_spnego_token_t *tok, kcd_spnego_asn1_t *a,
    const ASN1_TYPE *mt)
{
    int                   i, n;
    const unsigned char  *p;

    if (mt == NULL) {
        return KCD_SPNEGO_OK;
    }

    if (mt->type != V_ASN1_SEQUENCE || mt->value.sequence == NULL) {
        return KCD_SPNEGO_ERROR;
    }

    kcd_spnego_set(mt->value.sequence, &tok->mech_types_der,
                   &tok->mech_types_der_len);

    p = tok->mech_types_der;

    a->mechs = kcd_spnego_d2i_all(ASN1_ITEM_rptr(KCD_MECH_TYPE_LIST), p,
                                  tok->mech_types_der_len);
    if (a->mechs == NULL) {
        return KCD_SPNEGO_ERROR;
    }

    n = sk_ASN1_OBJECT_num(a->mechs);
    if (n < 0 || n > KCD_SPNEGO_MAX_MECHS) {
        return KCD_SPNEGO_ERROR;
    }

    for (i = 0; i < n; i++) {
        tok->mech_types[i] = kcd_spnego_mech_of(sk_ASN1_OBJECT_value(a->mechs,
                                                                     i));
    }

    tok->nmech_types = (size_t) n;

    return KCD_SPNEGO_OK;
}


static int
kcd_spnego_fill_init(kcd_spnego_token_t *tok, kcd_spnego_asn1_t *a,
    const KCD_NEG_TOKEN_INIT *init)
{
    tok->kind = KCD_SPNEGO_INIT;
    tok->has_req_flags = (init->req_flags != NULL);
    kcd_spnego_set(init->mech_token, &tok->mech_token, &tok->mech_token_len);
    kcd_spnego_set(init->mech_list_mic, &tok->mech_list_mic,
                   &tok->mech_list_mic_len);

    return kcd_spnego_mech_types(tok, a, init->mech_types);
}


static int
kcd_spnego_fill_init2(kcd_spnego_token_t *tok, kcd_spnego_asn1_t *a,
    const KCD_NEG_TOKEN_INIT2 *init)
{
    tok->kind = KCD_SPNEGO_INIT2;
    tok->has_req_flags = (init->req_flags != NULL);
    kcd_spnego_set(init->mech_token, &tok->mech_token, &tok->mech_token_len);
    kcd_spnego_set(init->mech_list_mic, &tok->mech_list_mic,
                   &tok->mech_list_mic_len);

    if (init->neg_hints != NULL) {
        kcd_spnego_set(init->neg_hints->hint_name, &tok->hint_name,
                       &tok->hint_name_len);
    }

    return kcd_spnego_mech_types(tok, a, init->mech_types);
}


static int
kcd_spnego_fill_resp(kcd_spnego_token_t *tok, const KCD_NEG_TOKEN_RESP *resp)
{
    long  state;

    tok->kind = KCD_SPNEGO_RESP;
    tok->neg_state = KCD_SPNEGO_STATE_ABSENT;

    if (resp->neg_state != NULL) {
        state = ASN1_ENUMERATED_get(resp->neg_state);

        if (state < KCD_SPNEGO_STATE_ACCEPT_COMPLETED
            || state > KCD_SPNEGO_STATE_REQUEST_MIC)
        {
            return KCD_SPNEGO_ERROR;
        }

        tok->neg_state = (int) state;
    }

    if (resp->supported_mech != NULL) {
        tok->has_supported_mech = 1;
        tok->supported_mech = kcd_spnego_mech_of(resp->supported_mech);
    }

    kcd_spnego_set(resp->response_token, &tok->response_token,
                   &tok->response_token_len);
    kcd_spnego_set(resp->mech_list_mic, &tok->mech_list_mic,
                   &tok->mech_list_mic_len);

    return KCD_SPNEGO_OK;
}


kcd_spnego_mech_t
kcd_spnego_this_mech(const unsigned char *in, size_t len)
{
    int                   tag, xclass, rc;
    long                  clen;
    ASN1_OBJECT          *obj;
    kcd_spnego_mech_t     mech;
    const unsigned char  *p;

    /*
     * The framing starts with the single byte 0x60 (RFC 2743 3.1), as
     * kcd_spnego_decode() and MIT expect: the high-tag-number form of
     * the same tag (0x7f 0x00), which ASN1_get_object() reads as
     * [APPLICATION 0] too, is no framed token
     */

    if (in == NULL || len == 0 || len > KCD_SPNEGO_MAX_TOKEN
        || in[0] != 0x60)
    {
        return KCD_SPNEGO_MECH_UNKNOWN;
    }

    p = in;

    /* the inner token of a raw mechanism is no DER: only the header */

    rc = ASN1_get_object(&p, &clen, &tag, &xclass, (long) len);
    if ((rc & 0x80) || !(rc & V_ASN1_CONSTRUCTED) || tag != 0
        || xclass != V_ASN1_APPLICATION)
    {
        return KCD_SPNEGO_MECH_UNKNOWN;
    }

    obj = d2i_ASN1_OBJECT(NULL, &p, (long) (len - (size_t) (p - in)));
    if (obj == NULL) {
        return KCD_SPNEGO_MECH_UNKNOWN;
    }

    mech = kcd_spnego_mech_of(obj);
    ASN1_OBJECT_free(obj);

    return mech;
}


/* is in a framed GSS token ([APPLICATION 0]) whose thisMech is not SPNEGO? */
static int
kcd_spnego_other_mech(const unsigned char *in, size_t len)
{
    int                   tag, xclass, rc;
    long                  clen;
    ASN1_OBJECT          *obj;
    const unsigned char  *p;

    p = in;

    rc = ASN1_get_object(&p, &clen, &tag, &xclass, (long) len);
    if ((rc & 0x80) || tag != 0 || xclass != V_ASN1_APPLICATION) {
        return 0;
    }

    obj = d2i_ASN1_OBJECT(NULL, &p, (long) (len - (size_t) (p - in)));
    if (obj == NULL) {
        return 0;
    }

    rc = !kcd_spnego_oid_is(obj, KCD_SPNEGO_OID);
    ASN1_OBJECT_free(obj);

    return rc;
}


static int
kcd_spnego_decode_as(const ASN1_ITEM *it, const unsigned char *in,
    size_t len, kcd_spnego_token_t *tok, kcd_spnego_asn1_t *a)
{
    int                      init2;
    void                    *val;
    KCD_GSS_INITIAL         *g;
    KCD_GSS_INITIAL2        *g2;
    KCD_NEGOTIATION_TOKEN   *nt;
    KCD_NEGOTIATION_TOKEN2  *nt2;

    val = kcd_spnego_d2i_all(it, in, len);
    if (val == NULL) {
        return KCD_SPNEGO_ERROR;
    }

    a->it = it;
    a->val = val;

    nt = NULL;
    nt2 = NULL;
    init2 = 0;

    if (it == ASN1_ITEM_rptr(KCD_GSS_INITIAL_TOKEN)) {
        g = val;
        if (!kcd_spnego_oid_is(g->this_mech, KCD_SPNEGO_OID)) {
            return KCD_SPNEGO_NOT_SPNEGO;
        }
        nt = g->inner;

    } else if (it == ASN1_ITEM_rptr(KCD_GSS_INITIAL2_TOKEN)) {
        g2 = val;
        if (!kcd_spnego_oid_is(g2->this_mech, KCD_SPNEGO_OID)) {
            return KCD_SPNEGO_NOT_SPNEGO;
        }
        nt2 = g2->inner;
        init2 = 1;

    } else if (it == ASN1_ITEM_rptr(KCD_NEGOTIATION_TOKEN)) {
        nt = val;

    } else {
        nt2 = val;
        init2 = 1;
    }

    if (init2) {
        if (nt2->type == KCD_CHOICE_RESP) {
            return kcd_spnego_fill_resp(tok, nt2->value.resp);
        }

        return kcd_spnego_fill_init2(tok, a, nt2->value.init2);
    }

    if (nt->type == KCD_CHOICE_RESP) {
        return kcd_spnego_fill_resp(tok, nt->value.resp);
    }

    return kcd_spnego_fill_init(tok, a, nt->value.init);
}


static void
kcd_spnego_asn1_free(kcd_spnego_asn1_t *a)
{
    if (a->val != NULL) {
        ASN1_item_free(a->val, a->it);
    }

    if (a->mechs != NULL) {
        sk_ASN1_OBJECT_pop_free(a->mechs, ASN1_OBJECT_free);
    }

    a->val = NULL;
    a->mechs = NULL;
}


int
kcd_spnego_decode(const unsigned char *in, size_t len,
    kcd_spnego_token_t *tok)
{
    int                 rc;
    size_t              i;
    kcd_spnego_asn1_t  *a;

    const ASN1_ITEM    *items[2];

    memset(tok, 0, sizeof(kcd_spnego_token_t));
    tok->neg_state = KCD_SPNEGO_STATE_ABSENT;

    if (in == NULL || len == 0 || len > KCD_SPNEGO_MAX_TOKEN) {
        return KCD_SPNEGO_ERROR;
    }

    /*
     * negTokenInit and negTokenInit2 share the [0] tag and differ in
     * field [3]: try the RFC 4178 shape first, then [MS-SPNG]'s
     */

    if (in[0] == 0x60) {
        items[0] = ASN1_ITEM_rptr(KCD_GSS_INITIAL_TOKEN);
        items[1] = ASN1_ITEM_rptr(KCD_GSS_INITIAL2_TOKEN);

    } else {
        items[0] = ASN1_ITEM_rptr(KCD_NEGOTIATION_TOKEN);
        items[1] = ASN1_ITEM_rptr(KCD_NEGOTIATION_TOKEN2);
    }

    a = OPENSSL_zalloc(sizeof(kcd_spnego_asn1_t));
    if (a == NULL) {
        return KCD_SPNEGO_ERROR;
    }

    rc = KCD_SPNEGO_ERROR;

    for (i = 0; i < 2; i++) {
        rc = kcd_spnego_decode_as(items[i], in, len, tok, a);

        if (rc == KCD_SPNEGO_OK) {
            tok->asn1 = a;
            return KCD_SPNEGO_OK;
        }

        kcd_spnego_asn1_free(a);
        memset(tok, 0, sizeof(kcd_spnego_token_t));
        tok->neg_state = KCD_SPNEGO_STATE_ABSENT;

        if (rc == KCD_SPNEGO_NOT_SPNEGO) {
            break;
        }
    }

    OPENSSL_free(a);

    if (rc != KCD_SPNEGO_NOT_SPNEGO && in[0] == 0x60
        && kcd_spnego_other_mech(in, len))
    {
        /* raw Kerberos: thisMech krb5, then "01 00" and an AP-REQ */
        rc = KCD_SPNEGO_NOT_SPNEGO;
    }

    return rc == KCD_SPNEGO_NOT_SPNEGO ? rc : KCD_SPNEGO_ERROR;
}


void
kcd_spnego_token_free(kcd_spnego_token_t *tok)
{
    if (tok == NULL || tok->asn1 == NULL) {
        return;
    }

    kcd_spnego_asn1_free(tok->asn1);
    OPENSSL_free(tok->asn1);
    tok->asn1 = NULL;
}


void
kcd_spnego_free(unsigned char *p)
{
    OPENSSL_free(p);
}


static STACK_OF(ASN1_OBJECT) *
kcd_spnego_mech_stack(const kcd_spnego_mech_t *mechs, size_t nmechs)
{
    size_t                  i;
    ASN1_OBJECT            *obj;
    STACK_OF(ASN1_OBJECT)  *sk;

    if (mechs == NULL || nmechs == 0 || nmechs > KCD_SPNEGO_MAX_MECHS) {
        return NULL;
    }

    sk = sk_ASN1_OBJECT_new_null();
    if (sk == NULL) {
        return NULL;
    }

    for (i = 0; i < nmechs; i++) {
        obj = kcd_spnego_mech_obj(mechs[i]);

        if (obj == NULL || !sk_ASN1_OBJECT_push(sk, obj)) {
            ASN1_OBJECT_free(obj);
            sk_ASN1_OBJECT_pop_free(sk, ASN1_OBJECT_free);
            return NULL;
        }
    }

    return sk;
}


/* i2d into a fresh buffer */
static int
kcd_spnego_i2d(const void *val, const ASN1_ITEM *it, unsigned char **out,
    size_t *out_len)
{
    int             n;
    unsigned char  *p;

    p = NULL;

    n = ASN1_item_i2d((ASN1_VALUE *) val, &p, it);
    if (n <= 0 || p == NULL) {
        return KCD_SPNEGO_ERROR;
    }

    *out = p;
    *out_len = (size_t) n;

    return KCD_SPNEGO_OK;
}


int
kcd_spnego_encode_mech_list(const kcd_spnego_mech_t *mechs, size_t nmechs,
    unsigned char **out, size_t *out_len)
{
    int                     rc;
    STACK_OF(ASN1_OBJECT)  *sk;

    sk = kcd_spnego_mech_stack(mechs, nmechs);
    if (sk == NULL) {
        return KCD_SPNEGO_ERROR;
    }

    rc = kcd_spnego_i2d(sk, ASN1_ITEM_rptr(KCD_MECH_TYPE_LIST), out, out_len);

    sk_ASN1_OBJECT_pop_free(sk, ASN1_OBJECT_free);

    return rc;
}


/* the MechTypeList as the ANY that the templates carry */
static ASN1_TYPE *
kcd_spnego_mech_any(const kcd_spnego_mech_t *mechs, size_t nmechs)
{
    size_t          len;
    ASN1_TYPE      *t;
    ASN1_STRING    *s;
    unsigned char  *der;

    if (kcd_spnego_encode_mech_list(mechs, nmechs, &der, &len)
        != KCD_SPNEGO_OK)
    {
        return NULL;
    }

    t = ASN1_TYPE_new();
    s = ASN1_STRING_type_new(V_ASN1_SEQUENCE);

    if (t == NULL || s == NULL || !ASN1_STRING_set(s, der, (int) len)) {
        ASN1_TYPE_free(t);
        ASN1_STRING_free(s);
        OPENSSL_free(der);
        return NULL;
    }

    OPENSSL_free(der);
    ASN1_TYPE_set(t, V_ASN1_SEQUENCE, s);

    return t;
}


static ASN1_OCTET_STRING *
kcd_spnego_octets(const unsigned char *data, size_t len, int *err)
{
    ASN1_OCTET_STRING  *s;

    if (data == NULL) {
        return NULL;
    }

    s = ASN1_OCTET_STRING_new();

    if (s == NULL || len > 0x7fffffff
        || !ASN1_OCTET_STRING_set(s, data, (int) len))
    {
        ASN1_OCTET_STRING_free(s);
        *err = 1;
        return NULL;
    }

    return s;
}


static ASN1_OBJECT *
kcd_spnego_oid_obj(void)
{
    return OBJ_txt2obj(KCD_SPNEGO_OID, 1);
}


int
kcd_spnego_encode_init(const kcd_spnego_mech_t *mechs, size_t nmechs,
    const unsigned char *mech_token, size_t mech_token_len,
    unsigned char **out, size_t *out_len)
{
    int                     rc, err;
    KCD_GSS_INITIAL        *g;
    KCD_NEG_TOKEN_INIT     *init;
    KCD_NEGOTIATION_TOKEN  *nt;

    rc = KCD_SPNEGO_ERROR;
    err = 0;

    g = KCD_GSS_INITIAL_new();
    nt = KCD_NEGOTIATION_TOKEN_new();
    init = KCD_NEG_TOKEN_INIT_new();

    if (g == NULL || nt == NULL || init == NULL) {
        goto done;
    }

    nt->type = KCD_CHOICE_INIT;
    nt->value.init = init;
    init = NULL;

    ASN1_OBJECT_free(g->this_mech);
    g->this_mech = kcd_spnego_oid_obj();
    KCD_NEGOTIATION_TOKEN_free(g->inner);
    g->inner = nt;
    nt = NULL;

    ASN1_TYPE_free(g->inner->value.init->mech_types);
    g->inner->value.init->mech_types = kcd_spnego_mech_any(mechs, nmechs);
    g->inner->value.init->mech_token = kcd_spnego_octets(mech_token,
                                                         mech_token_len,
                                                         &err);

    if (g->this_mech == NULL || g->inner->value.init->mech_types == NULL
        || err)
    {
        goto done;
    }

    rc = kcd_spnego_i2d(g, ASN1_ITEM_rptr(KCD_GSS_INITIAL_TOKEN), out,
                        out_len);

done:

    KCD_NEG_TOKEN_INIT_free(init);
    KCD_NEGOTIATION_TOKEN_free(nt);
    KCD_GSS_INITIAL_free(g);

    return rc;
}


int
kcd_spnego_encode_init2(const kcd_spnego_mech_t *mechs, size_t nmechs,
    const unsigned char *mech_token, size_t mech_token_len,
    unsigned char **out, size_t *out_len)
{
    int                      rc, err;
    KCD_NEG_HINTS           *hints;
    KCD_GSS_INITIAL2        *g;
    KCD_NEG_TOKEN_INIT2     *init;
    KCD_NEGOTIATION_TOKEN2  *nt;

    rc = KCD_SPNEGO_ERROR;
    err = 0;

    g = KCD_GSS_INITIAL2_new();
    nt = KCD_NEGOTIATION_TOKEN2_new();
    init = KCD_NEG_TOKEN_INIT2_new();
    hints = KCD_NEG_HINTS_new();

    if (g == NULL || nt == NULL || init == NULL || hints == NULL) {
        goto done;
    }

    hints->hint_name = ASN1_STRING_type_new(V_ASN1_GENERALSTRING);
    if (hints->hint_name == NULL
        || !ASN1_STRING_set(hints->hint_name, KCD_SPNEGO_HINT_NAME, -1))
    {
        goto done;
    }

    init->neg_hints = hints;
    hints = NULL;

    init->mech_types = kcd_spnego_mech_any(mechs, nmechs);
    init->mech_token = kcd_spnego_octets(mech_token, mech_token_len, &err);

    if (init->mech_types == NULL || err) {
        goto done;
    }

    nt->type = KCD_CHOICE_INIT;
    nt->value.init2 = init;
    init = NULL;

    ASN1_OBJECT_free(g->this_mech);
    g->this_mech = kcd_spnego_oid_obj();
    KCD_NEGOTIATION_TOKEN2_free(g->inner);
    g->inner = nt;
    nt = NULL;

    if (g->this_mech == NULL) {
        goto done;
    }

    rc = kcd_spnego_i2d(g, ASN1_ITEM_rptr(KCD_GSS_INITIAL2_TOKEN), out,
                        out_len);

done:

    KCD_NEG_HINTS_free(hints);
    KCD_NEG_TOKEN_INIT2_free(init);
    KCD_NEGOTIATION_TOKEN2_free(nt);
    KCD_GSS_INITIAL2_free(g);

    return rc;
}


int
kcd_spnego_encode_resp(int neg_state, kcd_spnego_mech_t supported_mech,
    const unsigned char *response_token, size_t response_token_len,
    const unsigned char *mech_list_mic, size_t mech_list_mic_len,
    unsigned char **out, size_t *out_len)
{
    int                     rc, err;
    KCD_NEG_TOKEN_RESP     *resp;
    KCD_NEGOTIATION_TOKEN  *nt;

    if (neg_state < KCD_SPNEGO_STATE_ABSENT
        || neg_state > KCD_SPNEGO_STATE_REQUEST_MIC)
    {
        return KCD_SPNEGO_ERROR;
    }

    rc = KCD_SPNEGO_ERROR;
    err = 0;

    nt = KCD_NEGOTIATION_TOKEN_new();
    resp = KCD_NEG_TOKEN_RESP_new();

    if (nt == NULL || resp == NULL) {
        goto done;
    }

    if (neg_state != KCD_SPNEGO_STATE_ABSENT) {
        resp->neg_state = ASN1_ENUMERATED_new();
        if (resp->neg_state == NULL
            || !ASN1_ENUMERATED_set(resp->neg_state, neg_state))
        {
            goto done;
        }
    }

    if (supported_mech != KCD_SPNEGO_MECH_UNKNOWN) {
        resp->supported_mech = kcd_spnego_mech_obj(supported_mech);
        if (resp->supported_mech == NULL) {
            goto done;
        }
    }

    resp->response_token = kcd_spnego_octets(response_token,
                                             response_token_len, &err);
    resp->mech_list_mic = kcd_spnego_octets(mech_list_mic, mech_list_mic_len,
                                            &err);
    if (err) {
        goto done;
    }

    nt->type = KCD_CHOICE_RESP;
    nt->value.resp = resp;
    resp = NULL;

    rc = kcd_spnego_i2d(nt, ASN1_ITEM_rptr(KCD_NEGOTIATION_TOKEN), out,
                        out_len);

done:

    KCD_NEG_TOKEN_RESP_free(resp);
    KCD_NEGOTIATION_TOKEN_free(nt);

    return rc;
}
