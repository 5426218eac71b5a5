/*
 * Delegation (B7, B8, B10): a service ticket for $kcd_principal to
 * kcd_spn, from kcd_ticket_cache or by S4U2Self + S4U2Proxy in the thread
 * pool, and a fresh "Authorization: Negotiate <token>" on every upstream
 * request.  Nothing is forwarded without a ticket.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"


static ngx_int_t ngx_http_kcd_delegate_done(ngx_http_request_t *r,
    ngx_http_kcd_task_t *t);
static ngx_int_t ngx_http_kcd_delegate_header(ngx_http_request_t *r,
    kcd_gss_buf_t *token);
static ngx_uint_t ngx_http_kcd_own_evidence(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, kcd_gss_buf_t *evidence);
static ngx_int_t ngx_http_kcd_delegate_hit(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, kcd_gss_buf_t *token);
static ngx_int_t ngx_http_kcd_delegate_wait(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx);
static void ngx_http_kcd_delegate_wait_handler(ngx_event_t *ev);


/* poll for another request's KDC exchange of the same ticket */
#define NGX_HTTP_KCD_WAIT_STEP     10
#define NGX_HTTP_KCD_WAIT_MAX      15000


/*
 * B7: a token for the request's identity (ctx->identity) to kcd_spn.
 * Returns NGX_OK (the token is handed to the upstream request), NGX_AGAIN
 * (the KDC is asked, or another request is asking it) or an HTTP status
 * (B8: 502 refused, 503 unreachable; nothing is forwarded without a
 * ticket).
 */

ngx_int_t
ngx_http_kcd_delegate(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx)
{
    char                       err[512];
    u_char                    *p;
    uint64_t                   serial;
    ngx_int_t                  rc;
    ngx_str_t                 *principal;
    kcd_gss_buf_t              cred, token, evidence;
    ngx_http_kcd_task_t       *t;
    ngx_http_kcd_request_t    *rq;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    rq = ngx_http_kcd_request(r, 0);
    if (rq == NULL || rq->identity == NULL || r != r->main) {
        /* subrequests read the identity, they never delegate (B14) */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->identity = rq->identity;
    principal = &ctx->identity->principal;

    if (ngx_http_complex_value(r, klcf->spn, &ctx->spn) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* NUL-terminated for GSSAPI (a variable's value is not) */

    p = ngx_pnalloc(r->pool, ctx->spn.len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, ctx->spn.data, ctx->spn.len);
    p[ctx->spn.len] = '\0';
    ctx->spn.data = p;

    if (ctx->spn.len == 0 || ngx_strlen(p) != ctx->spn.len) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: kcd_spn is empty or invalid for this request: "
                      "nothing is forwarded without a ticket");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rq->spn = ctx->spn;

    if (kmcf->gss == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: no delegation for \"%V\" to \"%V\": Kerberos is "
                      "not set up in this worker (see the start-up error)",
                      principal, &ctx->spn);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * A Kerberos client's own ticket is the evidence for S4U2Proxy (B5):
     * its credential is not shared through the cache keyed by principal,
     * so the cache is for protocol transition (NTLM, Basic) only.
     */

    if (kmcf->cache && !ngx_http_kcd_own_evidence(r, ctx, &evidence)) {
        /*
         * the shared cache says which credential is current; this worker
         * imports each one once and then only makes tokens from it
         */

        serial = kcd_gss_local_serial(kmcf->gss, (char *) principal->data,
                                      (char *) ctx->spn.data);

        rc = ngx_http_kcd_cache_get(kmcf->cache, principal, &ctx->spn,
                                    r->pool, &cred, &serial);

        if (rc == NGX_OK && cred.len == 0) {
            if (kcd_gss_token_local(kmcf->gss, (char *) principal->data,
                                    (char *) ctx->spn.data, klcf->upstream_cb,
                                    &token, err, sizeof(err))
                == KCD_GSS_OK)
            {
                return ngx_http_kcd_delegate_hit(r, ctx, &token);
            }

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "kcd: cached ticket of \"%V\" for \"%V\" not "
                          "usable, asking the KDC: %s", principal,
                          &ctx->spn, err);

            rc = NGX_DECLINED;
        }

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_BUSY) {
            if (ctx->waited < NGX_HTTP_KCD_WAIT_MAX) {
                return ngx_http_kcd_delegate_wait(r, ctx);
            }

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "kcd: waited %Mms for another request's ticket "
                          "of \"%V\" for \"%V\", asking the KDC",
                          ctx->waited, principal, &ctx->spn);
        }

        ctx->fetching = (rc == NGX_DECLINED);

        if (rc == NGX_OK) {
            /* no KDC request: the credential holds the service ticket */

            token.data = NULL;
            token.len = 0;

            if (kcd_gss_token_fast(kmcf->gss, (char *) principal->data,
                                   &cred, serial, (char *) ctx->spn.data,
                                   klcf->upstream_cb, &token, err,
                                   sizeof(err))
                == KCD_GSS_OK)
            {
                ngx_explicit_memzero(cred.data, cred.len);
                return ngx_http_kcd_delegate_hit(r, ctx, &token);
            }

            ngx_explicit_memzero(cred.data, cred.len);
            kcd_gss_free(&token);

            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "kcd: cached ticket of \"%V\" for \"%V\" not "
                          "usable, asking the KDC: %s", principal,
                          &ctx->spn, err);
        }

        ngx_str_set(&rq->cache_status, "MISS");
        ngx_http_kcd_count(r, cache_miss);
    }

    t = ngx_http_kcd_task_alloc(r, NGX_HTTP_KCD_TASK_DELEGATE);
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t->principal = (char *) principal->data;   /* NUL-terminated */
    t->spn = (char *) ctx->spn.data;
    t->upstream_cb = klcf->upstream_cb;

    if (ngx_http_kcd_own_evidence(r, ctx, &evidence)) {
        t->evidence = evidence;
    }

    return ngx_http_kcd_task_post(r, t, ngx_http_kcd_delegate_done);
}


/*
 * The client's own Kerberos ticket, when this request's identity is the
 * Kerberos logon bound to this connection.
 */

static ngx_uint_t
ngx_http_kcd_own_evidence(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    kcd_gss_buf_t *evidence)
{
    ngx_http_kcd_conn_t      *kc;
    ngx_http_kcd_identity_t   bound;

    if (ctx->identity->scheme != NGX_HTTP_KCD_NEGOTIATE) {
        return 0;
    }

    kc = ngx_http_kcd_conn(r, 0);

    if (kc == NULL || kc->evidence.len == 0
        || ngx_http_kcd_conn_identity(kc, &bound) == NULL
        || bound.principal.len != ctx->identity->principal.len
        || ngx_strncmp(bound.principal.data,
                       ctx->identity->principal.data,
                       ctx->identity->principal.len) != 0)
    {
        return 0;
    }

    *evidence = kc->evidence;

    return 1;
}


static ngx_int_t
ngx_http_kcd_delegate_done(ngx_http_request_t *r, ngx_http_kcd_task_t *t)
{
    ngx_int_t                  status;
    ngx_str_t                 *principal;
    const char                *error;
    kcd_gss_buf_t             *cred, *token, evidence;
    ngx_http_kcd_ctx_t        *ctx;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    principal = &ctx->identity->principal;
    status = t->status;
    error = t->error;
    cred = &t->cred;
    token = &t->out_token;

    if (status != KCD_GSS_OK && ctx->fetching && kmcf->cache) {
        /* let the next request try again */
        ngx_http_kcd_cache_cancel(kmcf->cache, principal, &ctx->spn);
        ctx->fetching = 0;
    }

    switch (status) {

    case KCD_GSS_OK:
        break;

    case KCD_GSS_REFUSED:
        ngx_http_kcd_count(r, delegation_refused);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: KDC refused delegation of \"%V\" to \"%V\": %s",
                      principal, &ctx->spn, error);
        return NGX_HTTP_BAD_GATEWAY;

    case KCD_GSS_UNAVAILABLE:
        ngx_http_kcd_count(r, delegation_unavailable);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: no delegation of \"%V\" to \"%V\": KDC "
                      "unreachable: %s", principal, &ctx->spn, error);
        return NGX_HTTP_SERVICE_UNAVAILABLE;

    default:
        ngx_http_kcd_count(r, delegation_refused);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: delegation of \"%V\" to \"%V\" failed: %s",
                      principal, &ctx->spn, error);
        return NGX_HTTP_BAD_GATEWAY;
    }

    if (token->len == 0) {
        if (ctx->fetching && kmcf->cache) {
            ngx_http_kcd_cache_cancel(kmcf->cache, principal,
                                      &ctx->spn);
            ctx->fetching = 0;
        }

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: delegation of \"%V\" to \"%V\" gave no token",
                      principal, &ctx->spn);
        return NGX_HTTP_BAD_GATEWAY;
    }

    ngx_http_kcd_count(r, delegation_ok);

    if (kmcf->cache && cred->len
        && !ngx_http_kcd_own_evidence(r, ctx, &evidence))
    {
        ngx_http_kcd_cache_put(kmcf->cache, principal, &ctx->spn,
                               cred, t->endtime);
        ctx->fetching = 0;
    }

    if (ctx->fetching && kmcf->cache) {
        ngx_http_kcd_cache_cancel(kmcf->cache, principal, &ctx->spn);
        ctx->fetching = 0;
    }

    if (ngx_http_kcd_delegate_header(r, token) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/* a token from a cached ticket: no KDC request */

static ngx_int_t
ngx_http_kcd_delegate_hit(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    kcd_gss_buf_t *token)
{
    ngx_int_t                rc;
    ngx_http_kcd_request_t  *rq;

    rq = ngx_http_kcd_request(r, 0);
    if (rq) {
        ngx_str_set(&rq->cache_status, "HIT");
    }

    ngx_http_kcd_count(r, cache_hit);

    rc = ngx_http_kcd_delegate_header(r, token);
    kcd_gss_free(token);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_delegate_header(ngx_http_request_t *r, kcd_gss_buf_t *token)
{
    u_char     *p;
    ngx_str_t   value, src, dst;

    value.len = sizeof("Negotiate ") - 1
                + ngx_base64_encoded_length(token->len);
    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(value.data, "Negotiate ", sizeof("Negotiate ") - 1);

    src.data = token->data;
    src.len = token->len;
    dst.data = p;

    ngx_encode_base64(&dst, &src);

    value.len = (p - value.data) + dst.len;

    return ngx_http_kcd_upstream_set_token(r, &value);
}


/*
 * Another request (in any worker) is asking the KDC for this very ticket:
 * come back in a moment and take it from the cache, so that a burst of
 * first requests costs one S4U2Self + S4U2Proxy, not one per request.
 */

static ngx_int_t
ngx_http_kcd_delegate_wait(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx)
{
    if (ctx->wait.handler == NULL) {
        ctx->wait.handler = ngx_http_kcd_delegate_wait_handler;
        ctx->wait.data = r;
        ctx->wait.log = r->connection->log;
    }

    ngx_add_timer(&ctx->wait, NGX_HTTP_KCD_WAIT_STEP);
    ctx->waited += NGX_HTTP_KCD_WAIT_STEP;

    ctx->pending = 1;
    r->main->blocked++;

    return NGX_AGAIN;
}


static void
ngx_http_kcd_delegate_wait_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_http_kcd_ctx_t  *ctx;

    r = ev->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);
    if (ctx) {
        ctx->pending = 0;
    }

    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}
