/*
 * Per-connection NTLM state and re-authentication (B2, B3, B4, B12).
 *
 * NTLM authenticates the connection, not the request (MS-NTHT): the
 * CHALLENGE and the identity it yields live in the client connection's
 * pool.  A NEGOTIATE on an authenticated connection always restarts the
 * handshake (KB 942638: Office Communicator re-authenticates with
 * "POST, Content-Length: 0, Authorization: NTLM <Type 1>"; ISA 2006 kept
 * the old context and forwarded the bodyless POST, Exchange answered 500).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_ntlm_crypto.h"


static void ngx_http_kcd_conn_cleanup(void *data);
static ngx_int_t ngx_http_kcd_ntlm_negotiate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_conn_t *kc,
    ngx_uint_t scheme, u_char *msg, size_t len);
static ngx_int_t ngx_http_kcd_ntlm_authenticate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    ngx_http_kcd_conn_t *kc, u_char *msg, size_t len);
static ngx_int_t ngx_http_kcd_ntlm_success(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    ngx_str_t *user, ngx_str_t *domain);
static ngx_int_t ngx_http_kcd_ntlm_failed(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    const char *reason);
static ngx_int_t ngx_http_kcd_cb_expected(ngx_http_request_t *r,
    u_char *hash);
static ngx_int_t ngx_http_kcd_utf8_name(ngx_http_request_t *r,
    const u_char *in, size_t len, ngx_str_t *out);


/* the connection's state is found through its pool cleanup handler */

ngx_http_kcd_conn_t *
ngx_http_kcd_conn(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_connection_t     *c;
    ngx_pool_cleanup_t   *cln;
    ngx_http_kcd_conn_t  *kc;

    c = r->connection;

    for (cln = c->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_kcd_conn_cleanup) {
            return cln->data;
        }
    }

    if (!create) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(c->pool, sizeof(ngx_http_kcd_conn_t));
    if (cln == NULL) {
        return NULL;
    }

    kc = cln->data;
    ngx_memzero(kc, sizeof(ngx_http_kcd_conn_t));
    kc->connection = c;

    cln->handler = ngx_http_kcd_conn_cleanup;

    return kc;
}


static void
ngx_http_kcd_conn_cleanup(void *data)
{
    ngx_http_kcd_conn_t  *kc = data;

    ngx_http_kcd_conn_reset(kc);
}


/* forget everything: identity, pending challenge, Kerberos evidence */

void
ngx_http_kcd_conn_reset(ngx_http_kcd_conn_t *kc)
{
    kcd_gss_free(&kc->evidence);

    kcd_ntlm_wipe(kc->challenge, sizeof(kc->challenge));
    kcd_ntlm_wipe(kc->type1, kc->type1_len);
    kcd_ntlm_wipe(kc->type2, kc->type2_len);

    kc->type1_len = 0;
    kc->type2_len = 0;
    kc->req_num = 0;
    ngx_str_null(&kc->req_user);
    ngx_str_null(&kc->req_principal);
    kc->user_len = 0;
    kc->principal_len = 0;
    kc->auth_scheme = 0;
    kc->scheme = 0;
    kc->scope_srv = NULL;
    kc->scope_user_file = NULL;
    kc->scope_winbind = 0;
    kc->state = NGX_HTTP_KCD_CONN_NONE;
}


void
ngx_http_kcd_conn_set_scope(ngx_http_request_t *r, ngx_http_kcd_conn_t *kc)
{
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    kc->scope_srv = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
    kc->scope_user_file = klcf->user_file;
    kc->scope_winbind = klcf->winbind;
}


/*
 * An identity bound to the connection is good only where it would have
 * been checked the same way: the same server{} (NTLM domain announced)
 * and the same validation backend; Kerberos identities need a location
 * that accepts Negotiate.
 */

ngx_uint_t
ngx_http_kcd_conn_in_scope(ngx_http_request_t *r, ngx_http_kcd_conn_t *kc)
{
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (kc->auth_scheme == NGX_HTTP_KCD_NEGOTIATE) {
        return (klcf->schemes & NGX_HTTP_KCD_NEGOTIATE) ? 1 : 0;
    }

    if (!(klcf->schemes & (NGX_HTTP_KCD_NTLM|NGX_HTTP_KCD_NEGOTIATE))) {
        return 0;
    }

    return kc->scope_srv == ngx_http_get_module_srv_conf(r,
                                                         ngx_http_kcd_module)
           && kc->scope_user_file == (void *) klcf->user_file
           && kc->scope_winbind == klcf->winbind;
}


ngx_int_t
ngx_http_kcd_ntlm_handle(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx, ngx_uint_t scheme, u_char *msg, size_t len)
{
    int                   type;
    ngx_http_kcd_conn_t  *kc;

    kc = ngx_http_kcd_conn(r, 1);
    if (kc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    type = kcd_ntlm_message_type(msg, len);

    switch (type) {

    case 1:
        return ngx_http_kcd_ntlm_negotiate(r, klcf, kc, scheme, msg, len);

    case 3:
        ctx->handshake_scheme = scheme;
        return ngx_http_kcd_ntlm_authenticate(r, klcf, ctx, kc, msg, len);

    default:
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: unexpected NTLM message type %d from client",
                      type);
        ngx_http_kcd_conn_reset(kc);
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }
}


/* Type 1 -> 401 + Type 2; on an authenticated connection this is B4 */

static ngx_int_t
ngx_http_kcd_ntlm_negotiate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_conn_t *kc,
    ngx_uint_t scheme, u_char *msg, size_t len)
{
    int                           rc;
    long                          n;
    u_char                       *p;
    ngx_str_t                     src, dst;
    const char                   *err;
    ngx_table_elt_t              *h;
    kcd_ntlm_negotiate_t          neg;
    ngx_http_kcd_srv_conf_t      *kscf;
    kcd_ntlm_challenge_params_t   params;

    if (kc->state == NGX_HTTP_KCD_CONN_AUTHENTICATED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: re-authentication on an authenticated "
                      "connection: \"%*s\" dropped, handshake restarted, "
                      "request (%V, content length %O) not forwarded",
                      kc->user_len, kc->user, &r->method_name,
                      r->headers_in.content_length_n);
        ngx_http_kcd_count(r, reauth);
    }

    /* B4: the identity goes, whatever the method and body */
    ngx_http_kcd_conn_reset(kc);

    err = "";
    rc = kcd_ntlm_parse_negotiate(msg, len, &neg, &err);

    if (rc == KCD_NTLM_ERROR || len > sizeof(kc->type1)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: malformed NTLM NEGOTIATE: %s",
                      rc == KCD_NTLM_ERROR ? err : "too long");
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    if (rc != KCD_NTLM_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: NTLM NEGOTIATE refused: %s", err);
        ngx_http_kcd_count(r, ntlm_failed);
        return ngx_http_kcd_challenge(r, klcf);
    }

    kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);

    ngx_memzero(&params, sizeof(params));
    params.client_flags = neg.flags;

    if (RAND_bytes(params.challenge, sizeof(params.challenge)) != 1) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: RAND_bytes() failed: no NTLM challenge");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params.timestamp = kcd_ntlm_filetime(ngx_time());
    params.nb_domain = (char *) kscf->ntlm_domain.data;
    params.nb_computer = (char *) kscf->ntlm_computer.data;
    params.dns_domain = kscf->ntlm_dns_domain.len
                        ? (char *) kscf->ntlm_dns_domain.data : NULL;
    params.dns_computer = kscf->ntlm_dns_computer.len
                          ? (char *) kscf->ntlm_dns_computer.data : NULL;

    n = kcd_ntlm_build_challenge(&params, kc->type2, sizeof(kc->type2));

    if (n <= 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: NTLM CHALLENGE does not fit: names too long");
        kcd_ntlm_wipe(params.challenge, sizeof(params.challenge));
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(kc->type1, msg, len);
    kc->type1_len = len;
    kc->type2_len = n;
    ngx_memcpy(kc->challenge, params.challenge, 8);
    kcd_ntlm_wipe(params.challenge, sizeof(params.challenge));

    kc->scheme = scheme;
    kc->state = NGX_HTTP_KCD_CONN_CHALLENGED;

    /* answer under the scheme the client used */

    src.data = kc->type2;
    src.len = kc->type2_len;

    len = (scheme == NGX_HTTP_KCD_NTLM ? sizeof("NTLM ") : sizeof("Negotiate "))
          - 1 + ngx_base64_encoded_length(src.len);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value.data = p;

    if (scheme == NGX_HTTP_KCD_NTLM) {
        p = ngx_cpymem(p, "NTLM ", sizeof("NTLM ") - 1);

    } else {
        p = ngx_cpymem(p, "Negotiate ", sizeof("Negotiate ") - 1);
    }

    dst.data = p;
    ngx_encode_base64(&dst, &src);
    h->value.len = (p - h->value.data) + dst.len;

    r->headers_out.www_authenticate = h;

    ngx_http_kcd_count(r, challenges);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kcd: NTLM CHALLENGE sent");

    /*
     * The body of this request (a Communicator re-auth POST has none, a
     * browser's may have one) is discarded by the 401 response; the
     * connection stays open, or the client could not answer the challenge.
     */

    return NGX_HTTP_UNAUTHORIZED;
}


/* Type 3: verify (MS-NLMP 3.3.2), one use of the challenge */

static ngx_int_t
ngx_http_kcd_ntlm_authenticate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    ngx_http_kcd_conn_t *kc, u_char *msg, size_t len)
{
    int                      rc;
    u_char                   cb[16], key[16], *cbp;
    ngx_int_t                nrc;
    ngx_str_t                user, domain;
    const char              *err;
    ngx_http_kcd_account_t  *acc;

    if (kc->state != NGX_HTTP_KCD_CONN_CHALLENGED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: NTLM AUTHENTICATE without a CHALLENGE on this "
                      "connection");
        ngx_http_kcd_conn_reset(kc);
        ngx_http_kcd_count(r, ntlm_failed);
        return ngx_http_kcd_challenge(r, klcf);
    }

    /* the challenge is used once, whatever happens next */

    ngx_memcpy(ctx->type1, kc->type1, kc->type1_len);
    ctx->type1_len = kc->type1_len;
    ngx_memcpy(ctx->type2, kc->type2, kc->type2_len);
    ctx->type2_len = kc->type2_len;
    ngx_memcpy(ctx->challenge, kc->challenge, 8);

    ngx_http_kcd_conn_reset(kc);

    ctx->type3 = ngx_pnalloc(r->pool, len);
    if (ctx->type3 == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->type3, msg, len);
    ctx->type3_len = len;

    err = "";
    rc = kcd_ntlm_parse_authenticate(ctx->type3, len, &ctx->auth, &err);

    if (rc == KCD_NTLM_ERROR) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: malformed NTLM AUTHENTICATE: %s", err);
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    /* names, for the log and the backends */

    nrc = ngx_http_kcd_utf8_name(r, ctx->auth.user, ctx->auth.user_len,
                                 &user);
    if (nrc == NGX_OK) {
        nrc = ngx_http_kcd_utf8_name(r, ctx->auth.domain,
                                    ctx->auth.domain_len, &domain);
    }

    if (nrc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: NTLM AUTHENTICATE with an invalid or too long "
                      "user or domain name");
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    if (nrc != NGX_OK
        || ngx_http_kcd_utf8_name(r, ctx->auth.workstation,
                                  ctx->auth.workstation_len,
                                  &ctx->ntlm_workstation)
           == NGX_ERROR)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->ntlm_user = user;
    ctx->ntlm_domain = domain;

    if (rc != KCD_NTLM_OK) {
        return ngx_http_kcd_ntlm_failed(r, klcf, ctx, err);
    }

    /* credential-free checks: AV echo, MIC announced, expiry, bindings */

    cbp = NULL;

    if (klcf->channel_binding != KCD_NTLM_CB_OFF && r->connection->ssl) {
        if (ngx_http_kcd_cb_expected(r, cb) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cbp = cb;
    }

    rc = kcd_ntlm_check_authenticate(&ctx->auth, ctx->type2, ctx->type2_len,
                                     cbp, (int) klcf->channel_binding,
                                     kcd_ntlm_filetime(ngx_time()), &err);

    if (rc != KCD_NTLM_OK) {
        return ngx_http_kcd_ntlm_failed(r, klcf, ctx, err);
    }

    if (klcf->user_file) {

        acc = ngx_http_kcd_user_file_find(klcf->user_file, &user, &domain);

        if (acc == NULL) {
            if (klcf->winbind) {
                goto winbind;
            }

            return ngx_http_kcd_ntlm_failed(r, klcf, ctx, "unknown user");
        }

        if (kcd_ntlm_verify_v2(acc->hash, ctx->auth.user,
                               ctx->auth.user_len, ctx->auth.domain,
                               ctx->auth.domain_len, ctx->challenge,
                               ctx->auth.nt, ctx->auth.nt_len, key)
            != 0)
        {
            return ngx_http_kcd_ntlm_failed(r, klcf, ctx, "wrong password");
        }

        rc = ctx->auth.has_mic
             ? kcd_ntlm_verify_mic(key, ctx->type1, ctx->type1_len,
                                   ctx->type2, ctx->type2_len,
                                   ctx->type3, ctx->type3_len, ctx->auth.mic)
             : 0;

        kcd_ntlm_wipe(key, sizeof(key));

        if (rc != 0) {
            return ngx_http_kcd_ntlm_failed(r, klcf, ctx, "MIC invalid");
        }

        /* the spelling of the user file, not the client's */
        return ngx_http_kcd_ntlm_success(r, klcf, ctx, &acc->user,
                                         acc->domain.len ? &acc->domain
                                                         : &domain);
    }

winbind:

    /* pass-through to the domain controller, in the thread pool */

    return ngx_http_kcd_post_task(r, ctx, NGX_HTTP_KCD_TASK_WB_NTLM);
}


ngx_int_t
ngx_http_kcd_ntlm_winbind_done(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    ngx_int_t status, const char *error, const u_char *session_key,
    const char *user, const char *domain)
{
    int  rc;

    if (status == 0) {     /* KCD_WB_OK */

        /* the DC checked the proof; the MIC is ours to check */

        rc = ctx->auth.has_mic
             ? kcd_ntlm_verify_mic(session_key, ctx->type1, ctx->type1_len,
                                   ctx->type2, ctx->type2_len,
                                   ctx->type3, ctx->type3_len, ctx->auth.mic)
             : 0;

        if (rc != 0) {
            ngx_http_kcd_count(r, winbind_failed);
            return ngx_http_kcd_ntlm_failed(r, klcf, ctx, "MIC invalid");
        }

        ngx_http_kcd_count(r, winbind_ok);

        /* the names as the domain controller spells them */

        if (user && user[0] && domain && domain[0]) {
            ngx_str_t  u, d;

            u.data = (u_char *) user;
            u.len = ngx_strlen(user);
            d.data = (u_char *) domain;
            d.len = ngx_strlen(domain);

            return ngx_http_kcd_ntlm_success(r, klcf, ctx, &u, &d);
        }

        return ngx_http_kcd_ntlm_success(r, klcf, ctx, &ctx->ntlm_user,
                                         &ctx->ntlm_domain);
    }

    if (status == -2) {    /* KCD_WB_UNAVAILABLE */
        ngx_http_kcd_count(r, winbind_unavailable);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: NTLM logon of user \"%V\" domain \"%V\" cannot "
                      "be checked: domain controller unreachable: %s",
                      &ctx->ntlm_user, &ctx->ntlm_domain, error);
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_http_kcd_count(r, winbind_failed);

    return ngx_http_kcd_ntlm_failed(r, klcf, ctx, error);
}


static ngx_int_t
ngx_http_kcd_ntlm_success(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx, ngx_str_t *user,
    ngx_str_t *domain)
{
    u_char                   *p;
    ngx_str_t                 id, principal, dom;
    ngx_http_kcd_conn_t      *kc;
    ngx_http_kcd_srv_conf_t  *kscf;

    kc = ngx_http_kcd_conn(r, 1);
    if (kc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dom = *domain;

    if (dom.len == 0) {
        /* clients that send no domain log on to ours */
        kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
        dom = kscf->ntlm_domain;
    }

    if (user->len + 1 + dom.len > sizeof(kc->user)) {
        return ngx_http_kcd_ntlm_failed(r, klcf, ctx, "name too long");
    }

    if (ngx_http_kcd_principal(r, klcf, user, &dom, &principal) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (principal.len > sizeof(kc->principal)) {
        return ngx_http_kcd_ntlm_failed(r, klcf, ctx, "name too long");
    }

    /* B3: bind the identity to the connection */

    p = ngx_cpymem(kc->user, dom.data, dom.len);
    *p++ = '\\';
    p = ngx_cpymem(p, user->data, user->len);
    kc->user_len = p - kc->user;

    ngx_memcpy(kc->principal, principal.data, principal.len);
    kc->principal_len = principal.len;

    kc->auth_scheme = NGX_HTTP_KCD_NTLM;
    kc->state = NGX_HTTP_KCD_CONN_AUTHENTICATED;
    ngx_http_kcd_conn_set_scope(r, kc);

    ngx_http_kcd_count(r, ntlm_ok);

    id.data = kc->user;
    id.len = kc->user_len;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "kcd: NTLM logon of \"%V\"", &id);

    return ngx_http_kcd_authenticated(r, ctx, NGX_HTTP_KCD_NTLM, &id,
                                      &principal);
}


static ngx_int_t
ngx_http_kcd_ntlm_failed(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    const char *reason)
{
    ngx_http_kcd_count(r, ntlm_failed);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "kcd: NTLM logon failed for user \"%V\" domain \"%V\" "
                  "workstation \"%V\": %s", &ctx->ntlm_user,
                  &ctx->ntlm_domain, &ctx->ntlm_workstation, reason);

    return ngx_http_kcd_challenge(r, klcf);
}


/* a UTF-16LE name from the client as UTF-8; NGX_DECLINED when invalid */

static ngx_int_t
ngx_http_kcd_utf8_name(ngx_http_request_t *r, const u_char *in, size_t len,
    ngx_str_t *out)
{
    long  n;

    out->data = ngx_pnalloc(r->pool, NGX_HTTP_KCD_NAME_MAX + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    n = kcd_ntlm_utf16_to_utf8(in, len, (char *) out->data,
                               NGX_HTTP_KCD_NAME_MAX + 1);
    if (n < 0) {
        out->len = 0;
        return NGX_DECLINED;
    }

    out->len = n;

    return NGX_OK;
}


/*
 * tls-server-end-point of the certificate this connection presents
 * (after SNI), as MsvAvChannelBindings (RFC 5929, MS-NLMP 3.1.5.1.2)
 */

static ngx_int_t
ngx_http_kcd_cb_expected(ngx_http_request_t *r, u_char *hash)
{
    int             len;
    X509           *cert;
    u_char         *der, *p;
    ngx_int_t       rc;

    cert = SSL_get_certificate(r->connection->ssl->connection);
    if (cert == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: no server certificate for channel binding");
        return NGX_ERROR;
    }

    len = i2d_X509(cert, NULL);
    if (len <= 0) {
        return NGX_ERROR;
    }

    der = ngx_pnalloc(r->pool, len);
    if (der == NULL) {
        return NGX_ERROR;
    }

    p = der;
    i2d_X509(cert, &p);

    rc = kcd_ntlm_tls_cb_hash(der, len, hash) == 0 ? NGX_OK : NGX_ERROR;

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: channel binding hash of the server certificate "
                      "failed");
    }

    return rc;
}
