/*
 * Negotiate from clients (B5), as IIS speaks it.  The token is SPNEGO
 * (RFC 4178, [MS-SPNG]), decoded by ngx_http_kcd_spnego.c:
 *
 *  - Kerberos as the client's optimistic mechanism (or raw Kerberos) is
 *    accepted by MIT with kcd_keytab in the thread pool;
 *  - NTLMSSP is completed inside SPNEGO: the NTLM legs travel in
 *    negTokenResp (Type 2 with accept-incomplete and, in the first reply,
 *    supportedMech NTLMSSP), the handshake state stays with the NTLM code
 *    (ngx_http_ntlm_reauth.c), the client's mechListMIC is verified with the
 *    NTLM signing key and the final response carries accept-completed with
 *    the server's mechListMIC;
 *  - NegoEx is never selected: a client that lists it first and NTLMSSP
 *    later is answered with supportedMech NTLMSSP and sends its NEGOTIATE
 *    next (mechListMIC then required, RFC 4178 5);
 *  - anything else gets the location's challenges and an info log line.
 *
 * Raw NTLMSSP under Negotiate is sent to the NTLM handshake by the access
 * handler before this file is reached.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"
#include "ngx_http_kcd_ntlm_crypto.h"
#include "ngx_http_kcd_spnego.h"


static ngx_int_t ngx_http_kcd_kerberos(ngx_http_request_t *r,
    u_char *token, size_t len);
static ngx_int_t ngx_http_kcd_spnego_init(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    kcd_spnego_token_t *tok, u_char *token, size_t len);
static ngx_int_t ngx_http_kcd_spnego_resp(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    kcd_spnego_token_t *tok);
static ngx_int_t ngx_http_kcd_spnego_select(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, kcd_spnego_token_t *tok);
static ngx_int_t ngx_http_kcd_spnego_copy(ngx_http_request_t *r,
    const u_char *data, size_t len, u_char **out, size_t *out_len);
static void ngx_http_kcd_spnego_cleanup(void *data);
static ngx_int_t ngx_http_kcd_negotiate_done(ngx_http_request_t *r,
    ngx_http_kcd_task_t *t);


/*
 * token: the decoded Negotiate token (request pool).  Returns NGX_OK (the
 * request's identity is set), NGX_AGAIN (a thread task is out),
 * NGX_HTTP_KCD_CHALLENGE, 401 with a SPNEGO reply, or an HTTP status.
 */

ngx_int_t
ngx_http_kcd_negotiate(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx, u_char *token, size_t len)
{
    int                   rc;
    ngx_pool_cleanup_t   *cln;
    kcd_spnego_token_t   *tok;

    tok = ngx_pcalloc(r->pool, sizeof(kcd_spnego_token_t));
    if (tok == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = kcd_spnego_decode(token, len, tok);

    if (rc == KCD_SPNEGO_NOT_SPNEGO) {
        /* raw Kerberos: thisMech krb5 */
        return ngx_http_kcd_kerberos(r, token, len);
    }

    if (rc != KCD_SPNEGO_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: Negotiate token refused: neither SPNEGO nor "
                      "Kerberos (malformed DER, %uz bytes)", len);
        ngx_http_kcd_count(r, negotiate_failed);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    cln->handler = ngx_http_kcd_spnego_cleanup;
    cln->data = tok;

    if (tok->kind == KCD_SPNEGO_RESP) {
        return ngx_http_kcd_spnego_resp(r, klcf, ctx, tok);
    }

    return ngx_http_kcd_spnego_init(r, klcf, ctx, tok, token, len);
}


static void
ngx_http_kcd_spnego_cleanup(void *data)
{
    kcd_spnego_token_free(data);
}


/* the list of the client's mechanisms, for log lines */

static u_char *
ngx_http_kcd_spnego_mechs(u_char *buf, size_t size, kcd_spnego_token_t *tok)
{
    u_char  *p, *last;
    size_t   i;

    p = buf;
    last = buf + size - 1;

    for (i = 0; i < tok->nmech_types && p < last; i++) {
        p = ngx_slprintf(p, last, "%s%s", i ? "," : "",
                         kcd_spnego_mech_name(tok->mech_types[i]));
    }

    *p = '\0';

    return buf;
}


/* negTokenInit / negTokenInit2: select the mechanism */

static ngx_int_t
ngx_http_kcd_spnego_init(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    kcd_spnego_token_t *tok, u_char *token, size_t len)
{
    size_t                     i;
    u_char                     mechs[128], *t1;
    ngx_int_t                  rc;
    ngx_uint_t                 ntlm_ok, keytab, has_krb, has_ntlm;
    kcd_spnego_mech_t          first;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    keytab = (kmcf->keytab.len != 0);
    ntlm_ok = (klcf->user_file != NULL || klcf->winbind);

    has_krb = 0;
    has_ntlm = 0;

    for (i = 0; i < tok->nmech_types; i++) {
        if (tok->mech_types[i] == KCD_SPNEGO_MECH_KRB5
            || tok->mech_types[i] == KCD_SPNEGO_MECH_MS_KRB5)
        {
            has_krb = 1;

        } else if (tok->mech_types[i] == KCD_SPNEGO_MECH_NTLMSSP) {
            has_ntlm = 1;
        }
    }

    first = tok->nmech_types ? tok->mech_types[0] : KCD_SPNEGO_MECH_UNKNOWN;

    /* the client's optimistic token, when we can complete its mechanism */

    if ((first == KCD_SPNEGO_MECH_KRB5 || first == KCD_SPNEGO_MECH_MS_KRB5)
        && tok->mech_token && keytab)
    {
        return ngx_http_kcd_kerberos(r, token, len);
    }

    if (first == KCD_SPNEGO_MECH_NTLMSSP && tok->mech_token && ntlm_ok) {

        if (kcd_ntlm_message_type(tok->mech_token, tok->mech_token_len)
            != 1)
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: SPNEGO refused: the NTLMSSP mechToken is "
                          "not an NTLM NEGOTIATE");
            ngx_http_kcd_count(r, ntlm_failed);
            return NGX_HTTP_KCD_CHALLENGE;
        }

        if (ngx_http_kcd_spnego_select(r, ctx, tok) != NGX_OK) {
            return NGX_HTTP_KCD_CHALLENGE;
        }

        ctx->spnego_select = 1;
        ctx->spnego_mic_required = 0;

        if (ngx_http_kcd_spnego_copy(r, tok->mech_token, tok->mech_token_len,
                                     &t1, &i)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_kcd_ntlm_handle(r, klcf, ctx, NGX_HTTP_KCD_NEGOTIATE,
                                        t1, i);
    }

    /*
     * The first mechanism is one we do not complete (NegoEx, or Kerberos
     * without a keytab): NTLMSSP further down the list is selected, the
     * client's NEGOTIATE comes in the next leg; the mechanism list was
     * not the client's first choice, so mechListMIC is required.
     */

    if (has_ntlm && ntlm_ok) {
        rc = ngx_http_kcd_spnego_select(r, ctx, tok);
        return rc == NGX_ERROR ? NGX_HTTP_KCD_CHALLENGE : rc;
    }

    if (has_krb && keytab) {
        return ngx_http_kcd_kerberos(r, token, len);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "kcd: SPNEGO token offers no mechanism this location can "
                  "complete (client's: %s; keytab: %s; NTLM backend: %s)",
                  ngx_http_kcd_spnego_mechs(mechs, sizeof(mechs), tok),
                  keytab ? "yes" : "no", ntlm_ok ? "yes" : "no");
    ngx_http_kcd_count(r, negotiate_failed);

    return NGX_HTTP_KCD_CHALLENGE;
}


/*
 * NTLMSSP selected.  With the optimistic NEGOTIATE in hand (ctx->spnego
 * set here) the NTLM code answers; without it, a pending handshake that
 * waits for the NEGOTIATE is put on the connection and the client is told
 * which mechanism was chosen.
 */

static ngx_int_t
ngx_http_kcd_spnego_select(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    kcd_spnego_token_t *tok)
{
    u_char                       mechs[128];
    ngx_str_t                    value;
    ngx_http_kcd_conn_t         *kc;
    ngx_http_kcd_identity_t      bound;
    ngx_http_kcd_ntlm_pending_t  *pend;

    if (tok->mech_types_der_len > NGX_HTTP_KCD_MECH_TYPES_MAX) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: SPNEGO refused: mechanism list of %uz bytes "
                      "(limit %d)", tok->mech_types_der_len,
                      NGX_HTTP_KCD_MECH_TYPES_MAX);
        ngx_http_kcd_count(r, negotiate_failed);
        return NGX_ERROR;
    }

    if (ngx_http_kcd_spnego_copy(r, tok->mech_types_der,
                                 tok->mech_types_der_len,
                                 &ctx->spnego_mech_types,
                                 &ctx->spnego_mech_types_len)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->spnego = 1;

    if (tok->mech_token && tok->mech_types[0] == KCD_SPNEGO_MECH_NTLMSSP) {
        return NGX_OK;
    }

    kc = ngx_http_kcd_conn(r, 1);
    if (kc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_kcd_conn_identity(kc, &bound)) {
        /* B4 inside SPNEGO: a new handshake drops the identity */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: re-authentication (SPNEGO) on an authenticated "
                      "connection: \"%V\" dropped, request (%V, content "
                      "length %O) not forwarded", &bound.user,
                      &r->method_name, r->headers_in.content_length_n);
        ngx_http_kcd_count(r, reauth);
    }

    ngx_http_kcd_conn_reset(kc);

    pend = ngx_alloc(sizeof(ngx_http_kcd_ntlm_pending_t)
                     + ctx->spnego_mech_types_len, r->connection->log);
    if (pend == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(pend, sizeof(ngx_http_kcd_ntlm_pending_t));

    /* RFC 4178 5: a MIC when the client's first choice was not taken */

    pend->spnego = 1;
    pend->spnego_mic = (tok->mech_types[0] != KCD_SPNEGO_MECH_NTLMSSP);
    pend->mech_types = (u_char *) (pend + 1);
    pend->mech_types_len = ctx->spnego_mech_types_len;
    ngx_memcpy(pend->mech_types, ctx->spnego_mech_types,
               pend->mech_types_len);

    kc->ntlm = pend;
    kc->scheme = NGX_HTTP_KCD_NEGOTIATE;
    kc->state = NGX_HTTP_KCD_CONN_CHALLENGED;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "kcd: SPNEGO: the client's first mechanism cannot be "
                  "completed here (client's: %s): NTLMSSP selected",
                  ngx_http_kcd_spnego_mechs(mechs, sizeof(mechs), tok));

    if (ngx_http_kcd_spnego_value(r, KCD_SPNEGO_STATE_ACCEPT_INCOMPLETE,
                                  KCD_SPNEGO_MECH_NTLMSSP, NULL, 0, NULL, 0,
                                  &value)
        != NGX_OK
        || ngx_http_kcd_add_challenge(r, &value) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_kcd_count(r, challenges);

    return NGX_HTTP_UNAUTHORIZED;
}


/* negTokenResp: the next NTLM leg of a handshake on this connection */

static ngx_int_t
ngx_http_kcd_spnego_resp(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    kcd_spnego_token_t *tok)
{
    int                           type;
    u_char                       *msg;
    size_t                        len;
    ngx_http_kcd_conn_t          *kc;
    ngx_http_kcd_ntlm_pending_t  *pend;

    kc = ngx_http_kcd_conn(r, 0);
    pend = (kc && kc->state == NGX_HTTP_KCD_CONN_CHALLENGED) ? kc->ntlm
                                                              : NULL;

    if (pend == NULL || !pend->spnego) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: SPNEGO negTokenResp without a SPNEGO handshake "
                      "on this connection");
        if (kc) {
            ngx_http_kcd_conn_reset(kc);
        }
        ngx_http_kcd_count(r, negotiate_failed);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    if (tok->neg_state == KCD_SPNEGO_STATE_REJECT
        || tok->response_token == NULL
        || (tok->has_supported_mech
            && tok->supported_mech != KCD_SPNEGO_MECH_NTLMSSP))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: SPNEGO handshake ended by the client (%s)",
                      tok->neg_state == KCD_SPNEGO_STATE_REJECT
                      ? "reject" : tok->response_token == NULL
                      ? "no responseToken" : "another mechanism");
        ngx_http_kcd_conn_reset(kc);
        ngx_http_kcd_count(r, negotiate_failed);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    type = kcd_ntlm_message_type(tok->response_token,
                                 tok->response_token_len);

    if (type != (pend->type2_len ? 3 : 1) && type != 1) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: SPNEGO responseToken is not the expected NTLM "
                      "message (type %d)", type);
        ngx_http_kcd_conn_reset(kc);
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    ctx->spnego = 1;
    ctx->spnego_select = 0;
    ctx->spnego_mic_required = pend->spnego_mic;

    if (ngx_http_kcd_spnego_copy(r, pend->mech_types, pend->mech_types_len,
                                 &ctx->spnego_mech_types,
                                 &ctx->spnego_mech_types_len)
        != NGX_OK
        || ngx_http_kcd_spnego_copy(r, tok->response_token,
                                    tok->response_token_len, &msg, &len)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tok->mech_list_mic
        && ngx_http_kcd_spnego_copy(r, tok->mech_list_mic,
                                    tok->mech_list_mic_len,
                                    &ctx->spnego_mic, &ctx->spnego_mic_len)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_kcd_ntlm_handle(r, klcf, ctx, NGX_HTTP_KCD_NEGOTIATE,
                                    msg, len);
}


static ngx_int_t
ngx_http_kcd_spnego_copy(ngx_http_request_t *r, const u_char *data,
    size_t len, u_char **out, size_t *out_len)
{
    *out = ngx_pnalloc(r->pool, len ? len : 1);
    if (*out == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(*out, data, len);
    *out_len = len;

    return NGX_OK;
}


/* Kerberos, raw or as SPNEGO's optimistic token: MIT in the thread pool */

static ngx_int_t
ngx_http_kcd_kerberos(ngx_http_request_t *r, u_char *token, size_t len)
{
    ngx_http_kcd_conn_t       *kc;
    ngx_http_kcd_task_t       *t;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (kmcf->keytab.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: Kerberos token refused: no kcd_keytab");
        ngx_http_kcd_count(r, negotiate_failed);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    /* a new handshake replaces whatever the connection held: fail closed */

    kc = ngx_http_kcd_conn(r, 1);
    if (kc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (kc->state == NGX_HTTP_KCD_CONN_AUTHENTICATED) {
        ngx_http_kcd_count(r, reauth);
    }

    ngx_http_kcd_conn_reset(kc);

    t = ngx_http_kcd_task_alloc(r, NGX_HTTP_KCD_TASK_GSS_ACCEPT);
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t->token = token;
    t->token_len = len;

    return ngx_http_kcd_task_post(r, t, ngx_http_kcd_negotiate_done);
}


static ngx_int_t
ngx_http_kcd_negotiate_done(ngx_http_request_t *r, ngx_http_kcd_task_t *t)
{
    u_char                   *p;
    ngx_int_t                 rc;
    ngx_str_t                 principal, tok, src, dst;
    ngx_http_kcd_conn_t      *kc;
    ngx_http_kcd_identity_t  *id;
    ngx_http_kcd_srv_conf_t  *kscf;

    if (t->status == KCD_GSS_OK && t->out_principal) {
        principal.data = (u_char *) t->out_principal;
        principal.len = ngx_strlen(t->out_principal);

        if (principal.len > 2 * NGX_HTTP_KCD_NAME_MAX) {
            return ngx_http_kcd_logon_failed(r, NGX_HTTP_KCD_NEGOTIATE,
                                             &principal, NULL, NULL,
                                             "principal too long");
        }

        id = ngx_http_kcd_identity_kerberos(r, NGX_HTTP_KCD_NEGOTIATE,
                                            NGX_HTTP_KCD_BACKEND_KEYTAB,
                                            &principal);
        if (id == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* B20: the groups of the ticket's PAC */

        if (t->want_groups
            && ngx_http_kcd_require_wb_groups(r->pool, &t->wb, &id->groups)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_http_kcd_logon_succeeded(r, id, 1);
        if (rc != NGX_OK) {
            return rc;
        }

        /*
         * the client's own ticket: evidence for S4U2Proxy (B5), about 2 KiB
         * an idle connection keeps, so only in a server{} that delegates
         */

        kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
        kc = ngx_http_kcd_conn(r, 0);

        if (kc && kscf->delegates) {
            kc->evidence = t->out_evidence;
            t->out_evidence.data = NULL;
            t->out_evidence.len = 0;
        }

        return NGX_OK;
    }

    if (t->status == KCD_GSS_CONTINUE && t->out_token.len) {
        tok.len = sizeof("Negotiate ") - 1
                  + ngx_base64_encoded_length(t->out_token.len);
        tok.data = ngx_pnalloc(r->pool, tok.len);
        if (tok.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(tok.data, "Negotiate ", sizeof("Negotiate ") - 1);

        src.data = t->out_token.data;
        src.len = t->out_token.len;
        dst.data = p;
        ngx_encode_base64(&dst, &src);
        tok.len = (p - tok.data) + dst.len;

        if (ngx_http_kcd_add_challenge(r, &tok) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_UNAUTHORIZED;
    }

    if (t->status == KCD_GSS_ERROR) {
        ngx_http_kcd_count(r, negotiate_failed);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: Kerberos logon failed: %s", t->error);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_kcd_logon_failed(r, NGX_HTTP_KCD_NEGOTIATE, NULL, NULL,
                                     NULL, t->error);
}
