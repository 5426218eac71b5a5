/*
 * SPNEGO NegotiationToken codec: RFC 4178 and [MS-SPNG] 2.2.
 *
 * No nginx types: the DER is read and written by OpenSSL's ASN.1 templates
 * (ngx_http_kcd_spnego.c), so the codec is unit tested on its own
 * (t/unit/spnego_unit.c) and shared by the client-facing Negotiate handling
 * and the upstream token builder.
 */

#ifndef _NGX_HTTP_KCD_SPNEGO_H_INCLUDED_
#define _NGX_HTTP_KCD_SPNEGO_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


/* the mechanisms the module tells apart; every other OID is UNKNOWN */
typedef enum {
    KCD_SPNEGO_MECH_UNKNOWN = 0,
    KCD_SPNEGO_MECH_KRB5,        /* 1.2.840.113554.1.2.2, RFC 4121 */
    KCD_SPNEGO_MECH_MS_KRB5,     /* 1.2.840.48018.1.2.2, [MS-KILE] */
    KCD_SPNEGO_MECH_NTLMSSP,     /* 1.3.6.1.4.1.311.2.2.10, [MS-NLMP] */
    KCD_SPNEGO_MECH_NEGOEX       /* 1.3.6.1.4.1.311.2.2.30, [MS-NEGOEX] */
} kcd_spnego_mech_t;


/* which NegotiationToken alternative was decoded */
typedef enum {
    KCD_SPNEGO_INIT = 1,         /* negTokenInit [0], RFC 4178 4.2.1 */
    KCD_SPNEGO_INIT2,            /* negTokenInit2 [0], [MS-SPNG] 2.2.1 */
    KCD_SPNEGO_RESP              /* negTokenResp [1], RFC 4178 4.2.2 */
} kcd_spnego_kind_t;


/* negState, RFC 4178 4.2.2; ABSENT when the field is not in the token */
#define KCD_SPNEGO_STATE_ABSENT             -1
#define KCD_SPNEGO_STATE_ACCEPT_COMPLETED    0
#define KCD_SPNEGO_STATE_ACCEPT_INCOMPLETE   1
#define KCD_SPNEGO_STATE_REJECT              2
#define KCD_SPNEGO_STATE_REQUEST_MIC         3


/* return codes */
#define KCD_SPNEGO_OK           0
#define KCD_SPNEGO_ERROR       -1   /* broken DER, bad field, out of memory */
#define KCD_SPNEGO_NOT_SPNEGO  -2   /* a GSS token of another mechanism */

/* limits: a Kerberos ticket with a large PAC stays well below them */
#define KCD_SPNEGO_MAX_TOKEN   (256 * 1024)
#define KCD_SPNEGO_MAX_MECHS   32


/*
 * A decoded token.  Every pointer points into memory owned by the token
 * (released by kcd_spnego_token_free()) and is NULL with length 0 when the
 * field is absent.
 */
typedef struct {
    kcd_spnego_kind_t     kind;

    /* negTokenInit / negTokenInit2 */
    size_t                nmech_types;
    kcd_spnego_mech_t     mech_types[KCD_SPNEGO_MAX_MECHS];

    /*
     * The MechTypeList exactly as received (tag 0x30 included): the bytes
     * mechListMIC covers (RFC 4178 5).
     */
    const unsigned char  *mech_types_der;
    size_t                mech_types_der_len;

    int                   has_req_flags;
    const unsigned char  *mech_token;
    size_t                mech_token_len;

    /* negTokenInit2 negHints.hintName (GeneralString), not NUL-terminated */
    const unsigned char  *hint_name;
    size_t                hint_name_len;

    /* negTokenResp */
    int                   neg_state;
    int                   has_supported_mech;
    kcd_spnego_mech_t     supported_mech;
    const unsigned char  *response_token;
    size_t                response_token_len;

    /* negTokenInit, negTokenInit2 and negTokenResp */
    const unsigned char  *mech_list_mic;
    size_t                mech_list_mic_len;

    void                 *asn1;     /* the OpenSSL structure that owns it */
} kcd_spnego_token_t;


/*
 * kcd_spnego_decode: decode one token of the SPNEGO exchange.
 *
 * in/len: the token as sent (after base64).  Accepted shapes: the initial
 * token (RFC 2743 3.1 framing [APPLICATION 0] with thisMech 1.3.6.1.5.5.2
 * around negTokenInit or [MS-SPNG] negTokenInit2), and an unframed
 * NegotiationToken (negTokenResp, or negTokenInit as some clients send it).
 * The whole input must be one token: trailing bytes are an error.
 *
 * Returns KCD_SPNEGO_OK and fills *tok (release it with
 * kcd_spnego_token_free()); KCD_SPNEGO_NOT_SPNEGO for a framed GSS token
 * of another mechanism (raw Kerberos); KCD_SPNEGO_ERROR for anything else
 * (malformed DER, a field of the wrong type, more than KCD_SPNEGO_MAX_MECHS
 * mechanisms, an input over KCD_SPNEGO_MAX_TOKEN bytes, out of memory).
 * On error *tok holds nothing to release.
 */
int kcd_spnego_decode(const unsigned char *in, size_t len,
    kcd_spnego_token_t *tok);

void kcd_spnego_token_free(kcd_spnego_token_t *tok);


/*
 * kcd_spnego_encode_init: the initial token of an initiator, RFC 4178
 * 4.2.1: framed negTokenInit with mechTypes = mechs (in order, none
 * UNKNOWN) and, when mech_token is not NULL, mechToken.
 *
 * *out is allocated (release with kcd_spnego_free()).  Returns
 * KCD_SPNEGO_OK or KCD_SPNEGO_ERROR (no mechanism, an UNKNOWN one, out of
 * memory).
 */
int kcd_spnego_encode_init(const kcd_spnego_mech_t *mechs, size_t nmechs,
    const unsigned char *mech_token, size_t mech_token_len,
    unsigned char **out, size_t *out_len);

/*
 * kcd_spnego_encode_init2: framed [MS-SPNG] negTokenInit2, as Windows
 * servers send it first: mechTypes, optional mechToken, negHints with
 * hintName "not_defined_in_RFC4178@please_ignore" ([MS-SPNG] 3.2.5.2).
 * Same contract as kcd_spnego_encode_init().
 */
int kcd_spnego_encode_init2(const kcd_spnego_mech_t *mechs, size_t nmechs,
    const unsigned char *mech_token, size_t mech_token_len,
    unsigned char **out, size_t *out_len);

/*
 * kcd_spnego_encode_resp: negTokenResp, RFC 4178 4.2.2.
 *
 * neg_state: KCD_SPNEGO_STATE_* (ABSENT leaves the field out);
 * supported_mech: UNKNOWN leaves the field out; response_token and
 * mech_list_mic: NULL leaves the field out.  Output as for
 * kcd_spnego_encode_init().
 */
int kcd_spnego_encode_resp(int neg_state, kcd_spnego_mech_t supported_mech,
    const unsigned char *response_token, size_t response_token_len,
    const unsigned char *mech_list_mic, size_t mech_list_mic_len,
    unsigned char **out, size_t *out_len);

/*
 * kcd_spnego_encode_mech_list: DER of a MechTypeList (the bytes an
 * initiator's mechListMIC covers).  Output as for kcd_spnego_encode_init().
 */
int kcd_spnego_encode_mech_list(const kcd_spnego_mech_t *mechs,
    size_t nmechs, unsigned char **out, size_t *out_len);

/*
 * kcd_spnego_this_mech: thisMech of an RFC 2743 3.1 framed initial token
 * (KCD_SPNEGO_MECH_KRB5 for raw Kerberos, RFC 4121 4.1); UNKNOWN for
 * SPNEGO, another mechanism, or a token that is not framed.
 */
kcd_spnego_mech_t kcd_spnego_this_mech(const unsigned char *in, size_t len);

/* releases what an encoder returned; NULL is fine */
void kcd_spnego_free(unsigned char *p);

/* "krb5", "ms-krb5", "ntlmssp", "negoex" or "unknown", for log lines */
const char *kcd_spnego_mech_name(kcd_spnego_mech_t mech);


#endif /* _NGX_HTTP_KCD_SPNEGO_H_INCLUDED_ */
