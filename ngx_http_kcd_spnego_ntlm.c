/*
 * The NTLM legs inside SPNEGO (B5, [MS-SPNG] 3.3.5.1): the CHALLENGE in a
 * negTokenResp, the client's mechListMIC checked with the NTLM signing key
 * ([MS-NLMP] 3.4.4) and the server's final accept-completed token.  Used
 * by the NTLM handshake (ngx_http_ntlm_reauth.c) and by the Negotiate
 * entry point (ngx_http_kcd_negotiate.c); calls neither.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_ntlm_crypto.h"
#include "ngx_http_kcd_spnego.h"


/*
 * The NTLM code's CHALLENGE inside a negTokenResp (accept-incomplete;
 * supportedMech NTLMSSP in the first reply): a WWW-Authenticate of the
 * 401.  pend gets the mechanism list mechListMIC will cover (it has room
 * for ctx->spnego_mech_types_len bytes at pend->mech_types).
 */

ngx_int_t
ngx_http_kcd_spnego_challenge(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    ngx_http_kcd_ntlm_pending_t *pend, u_char *type2, size_t len)
{
    ngx_str_t  value;

    pend->spnego = 1;
    pend->spnego_mic = ctx->spnego_mic_required;
    pend->mech_types_len = ctx->spnego_mech_types_len;
    ngx_memcpy(pend->mech_types, ctx->spnego_mech_types,
               ctx->spnego_mech_types_len);

    if (ngx_http_kcd_spnego_value(r, KCD_SPNEGO_STATE_ACCEPT_INCOMPLETE,
                                  ctx->spnego_select
                                  ? KCD_SPNEGO_MECH_NTLMSSP
                                  : KCD_SPNEGO_MECH_UNKNOWN,
                                  type2, len, NULL, 0, &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_kcd_add_challenge(r, &value);
}


/*
 * After a verified AUTHENTICATE inside SPNEGO: the client's mechListMIC
 * (RFC 4178 5; an NTLM signature, MS-NLMP 3.4.4.2, sequence number 0)
 * over the MechTypeList it sent, then the final negTokenResp
 * accept-completed, with the server's mechListMIC when the client sent
 * one, kept for the response (B5).  session_key: the NTLMv2 session base
 * key.  NGX_OK, NGX_DECLINED with *reason, or NGX_ERROR.
 */

ngx_int_t
ngx_http_kcd_spnego_complete(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    ngx_http_kcd_ntlm_pending_t *pend, const u_char *session_key,
    const char **reason)
{
    u_char                   exported[16], mic[16], *mp;
    uint32_t                 flags;
    ngx_int_t                rc;
    kcd_ntlm_sec_t           sec;
    ngx_http_kcd_request_t  *rq;

    mp = NULL;

    if (ctx->spnego_mic_len == 0 && pend->spnego_mic) {
        *reason = "mechListMIC absent, NTLMSSP was not the client's first "
                  "mechanism";
        return NGX_DECLINED;
    }

    if (ctx->spnego_mic_len) {
        flags = ctx->auth.flags;

        if (pend->type2_len >= 24) {
            flags &= (uint32_t) pend->type2[20]
                     | (uint32_t) pend->type2[21] << 8
                     | (uint32_t) pend->type2[22] << 16
                     | (uint32_t) pend->type2[23] << 24;
        }

        if (kcd_ntlm_exported_session_key(flags, session_key,
                                          ctx->auth.enc_session_key,
                                          ctx->auth.enc_session_key_len,
                                          exported)
            != 0)
        {
            *reason = "no exported session key for mechListMIC";
            return NGX_DECLINED;
        }

        rc = kcd_ntlm_sec_init(&sec, flags, exported);
        kcd_ntlm_wipe(exported, sizeof(exported));

        if (rc != 0) {
            *reason = "mechListMIC without NTLM extended session security";
            return NGX_DECLINED;
        }

        if (kcd_ntlm_sec_verify(&sec, pend->mech_types, pend->mech_types_len,
                                ctx->spnego_mic, ctx->spnego_mic_len)
            != 0)
        {
            kcd_ntlm_sec_free(&sec);
            *reason = "mechListMIC invalid";
            return NGX_DECLINED;
        }

        rc = kcd_ntlm_sec_sign(&sec, pend->mech_types, pend->mech_types_len,
                               mic);
        kcd_ntlm_sec_free(&sec);

        if (rc != 0) {
            return NGX_ERROR;
        }

        mp = mic;
    }

    rq = ngx_http_kcd_request(r, 1);
    if (rq == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_kcd_spnego_value(r, KCD_SPNEGO_STATE_ACCEPT_COMPLETED,
                                     KCD_SPNEGO_MECH_UNKNOWN, NULL, 0, mp,
                                     mp ? 16 : 0, &rq->final_challenge);
}


/* "Negotiate <base64 of a negTokenResp>" in the request pool */

ngx_int_t
ngx_http_kcd_spnego_value(ngx_http_request_t *r, int neg_state,
    kcd_spnego_mech_t mech, const u_char *token, size_t len,
    const u_char *mic, size_t mic_len, ngx_str_t *value)
{
    u_char     *p, *der;
    size_t      der_len;
    ngx_str_t   src, dst;

    if (kcd_spnego_encode_resp(neg_state, mech, token, len, mic, mic_len,
                               &der, &der_len)
        != KCD_SPNEGO_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: SPNEGO negTokenResp encoding failed");
        return NGX_ERROR;
    }

    value->len = sizeof("Negotiate ") - 1 + ngx_base64_encoded_length(der_len);
    value->data = ngx_pnalloc(r->pool, value->len);
    if (value->data == NULL) {
        kcd_spnego_free(der);
        return NGX_ERROR;
    }

    p = ngx_cpymem(value->data, "Negotiate ", sizeof("Negotiate ") - 1);

    src.data = der;
    src.len = der_len;
    dst.data = p;
    ngx_encode_base64(&dst, &src);
    value->len = (p - value->data) + dst.len;

    kcd_spnego_free(der);

    return NGX_OK;
}
