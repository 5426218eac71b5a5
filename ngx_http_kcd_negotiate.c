/*
 * Negotiate from clients (B5): Kerberos, raw or inside SPNEGO, accepted
 * with kcd_keytab in the thread pool.  Raw NTLMSSP under Negotiate is sent
 * to the NTLM handshake by the access handler before this file is reached.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"


static ngx_int_t ngx_http_kcd_negotiate_done(ngx_http_request_t *r,
    ngx_http_kcd_task_t *t);


/*
 * token: the decoded Negotiate token (request pool).  Returns NGX_AGAIN (a
 * thread task is out), NGX_HTTP_KCD_CHALLENGE or an HTTP status.
 */

ngx_int_t
ngx_http_kcd_negotiate(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx, u_char *token, size_t len)
{
    ngx_http_kcd_conn_t       *kc;
    ngx_http_kcd_task_t       *t;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (kmcf->keytab.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: Kerberos token refused: no kcd_keytab");
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

        /* the client's own ticket: evidence for S4U2Proxy (B5) */

        kc = ngx_http_kcd_conn(r, 0);
        if (kc) {
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
