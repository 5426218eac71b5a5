/*
 * Basic (B6): only over TLS; checked against the user file (NT hash of the
 * password), winbind (plaintext logon) or, where neither is set, the KDC
 * (AS exchange).  The identity carries the account's canonical name (the
 * user file line, the domain controller's or the KDC's answer), never the
 * client's spelling.  A Basic identity belongs to its request only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"
#include "ngx_http_kcd_ntlm_crypto.h"


static ngx_int_t ngx_http_kcd_basic_file(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx);
static ngx_int_t ngx_http_kcd_basic_done(ngx_http_request_t *r,
    ngx_http_kcd_task_t *t);
static ngx_uint_t ngx_http_kcd_basic_kdc_name(ngx_str_t *user);


/*
 * tok: the credentials after "Basic ", base64.  Returns NGX_OK (the
 * request's identity is set), NGX_AGAIN (a thread task is out),
 * NGX_HTTP_KCD_CHALLENGE or an HTTP status.
 */

ngx_int_t
ngx_http_kcd_basic(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx, ngx_str_t *tok)
{
    u_char                    *p, *colon, *sep;
    ngx_int_t                  rc;
    ngx_str_t                  dec, user, domain, pass, realm, principal;
    ngx_http_kcd_task_t       *t;
    ngx_http_kcd_main_conf_t  *kmcf;

    if (r->connection->ssl == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: Basic credentials refused on a connection "
                      "without TLS");
        return NGX_HTTP_KCD_CHALLENGE;
    }

    if (tok->len == 0 || tok->len > 4096) {
        return NGX_HTTP_KCD_CHALLENGE;
    }

    dec.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(tok->len) + 1);
    if (dec.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_decode_base64(&dec, tok) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: invalid base64 in Basic authorization");
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    colon = ngx_strlchr(dec.data, dec.data + dec.len, ':');

    if (colon == NULL || colon == dec.data
        || ngx_strlchr(dec.data, dec.data + dec.len, '\0'))
    {
        kcd_ntlm_wipe(dec.data, dec.len);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: malformed Basic credentials");
        return NGX_HTTP_KCD_CHALLENGE;
    }

    user.data = dec.data;
    user.len = colon - dec.data;
    pass.data = colon + 1;
    pass.len = dec.data + dec.len - pass.data;

    for (p = user.data; p < user.data + user.len; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            kcd_ntlm_wipe(pass.data, pass.len);
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: control character in Basic user name");
            return NGX_HTTP_KCD_CHALLENGE;
        }
    }

    /* DOMAIN\user */

    ngx_str_null(&domain);

    sep = ngx_strlchr(user.data, user.data + user.len, '\\');
    if (sep) {
        domain.data = user.data;
        domain.len = sep - user.data;
        user.data = sep + 1;
        user.len = colon - user.data;
    }

    if (user.len == 0 || user.len > NGX_HTTP_KCD_NAME_MAX
        || domain.len > NGX_HTTP_KCD_NAME_MAX)
    {
        kcd_ntlm_wipe(pass.data, pass.len);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    ctx->basic_user = user;
    ctx->basic_domain = domain;
    ctx->basic_password = pass;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (klcf->user_file == NULL && !klcf->winbind && kmcf->keytab.len
        && !ngx_http_kcd_basic_kdc_name(&user))
    {
        /* B6, B19: the KDC would see another name than the one counted */
        kcd_ntlm_wipe(pass.data, pass.len);
        return ngx_http_kcd_logon_failed(r, NGX_HTTP_KCD_BASIC, &user,
                                         &domain, NULL,
                                         "user name with a character "
                                         "Kerberos would unescape or split "
                                         "on (\\, /, a second @)");
    }

    /* B19: refused like a wrong password, before any backend is asked */

    if (ngx_http_kcd_lockout_check(r, &user, &domain) != NGX_OK) {
        kcd_ntlm_wipe(pass.data, pass.len);
        return ngx_http_kcd_lockout_answer(r,
                   ngx_http_kcd_logon_failed(r, NGX_HTTP_KCD_BASIC, &user,
                                             &domain, NULL,
                                             "refused by kcd_lockout"));
    }

    if (klcf->user_file) {
        rc = ngx_http_kcd_basic_file(r, klcf, ctx);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    if (klcf->winbind) {
        t = ngx_http_kcd_task_alloc(r, NGX_HTTP_KCD_TASK_WB_PLAIN);
        if (t == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        t->user = ngx_http_kcd_cstr(r->pool, &user);
        t->domain = ngx_http_kcd_cstr(r->pool, &domain);
        t->password = ngx_http_kcd_cstr(r->pool, &pass);

    } else if (kmcf->keytab.len) {
        t = ngx_http_kcd_task_alloc(r, NGX_HTTP_KCD_TASK_GSS_PASSWORD);
        if (t == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /*
         * the principal as typed, in kcd_realm unless it names a realm:
         * the name kcd_lockout counts (B19); the KDC answers with the
         * canonical one
         */
        ngx_str_null(&realm);

        if (ngx_strlchr(user.data, user.data + user.len, '@') == NULL
            && ngx_http_kcd_realm(r, klcf, &realm, &realm) != NGX_OK)
        {
            kcd_ntlm_wipe(pass.data, pass.len);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        principal.len = user.len + 1 + realm.len;
        principal.data = ngx_pnalloc(r->pool, principal.len);
        if (principal.data == NULL) {
            kcd_ntlm_wipe(pass.data, pass.len);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(principal.data, user.data, user.len);

        if (realm.len) {
            *p++ = '@';
            p = ngx_cpymem(p, realm.data, realm.len);
        }

        principal.len = p - principal.data;

        t->principal = ngx_http_kcd_cstr(r->pool, &principal);
        t->password = ngx_http_kcd_cstr(r->pool, &pass);

    } else {
        kcd_ntlm_wipe(pass.data, pass.len);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: Basic logon for \"%V\" cannot be checked: no "
                      "user file, winbind or keytab", &user);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    kcd_ntlm_wipe(pass.data, pass.len);

    if (t->user == NULL && t->principal == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (t->password == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_kcd_task_post(r, t, ngx_http_kcd_basic_done);
}


/*
 * A Basic user name the KDC checks (AS exchange) is sent as it is to
 * krb5_parse_name(), which unescapes "\\", splits components on "/" and
 * the realm on "@": "al\\ice" would be alice to the KDC and another
 * account to kcd_lockout.  1 when the name is the principal it reads as:
 * no backslash, no slash, no NUL, at most one "@" with a name before it
 * and a realm after it; 0 otherwise (the logon is refused, logged).
 */

static ngx_uint_t
ngx_http_kcd_basic_kdc_name(ngx_str_t *user)
{
    u_char      *p, *at;

    at = NULL;

    for (p = user->data; p < user->data + user->len; p++) {

        switch (*p) {

        case '\\':
        case '/':
        case '\0':
            return 0;

        case '@':
            if (at) {
                return 0;
            }

            at = p;
        }
    }

    if (at && (at == user->data || at == user->data + user->len - 1)) {
        return 0;
    }

    return 1;
}


/*
 * The user file: the same work for known and unknown users (an NT hash and
 * a constant-time compare either way), so the answer time does not tell
 * which user names exist.  NGX_DECLINED: not a local account and winbind
 * is on here, the domain decides.
 */

static ngx_int_t
ngx_http_kcd_basic_file(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx)
{
    int                        ok;
    u_char                     hash[16];
    ngx_str_t                  domain, map_domain, luser, ldomain;
    ngx_str_t                 *pass;
    ngx_http_kcd_account_t    *acc;
    ngx_http_kcd_identity_t   *id;
    ngx_http_kcd_srv_conf_t   *kscf;

    static u_char  nobody[16];

    pass = &ctx->basic_password;

    /* UPN and DNS-domain spellings name the same account (B5) */
    ngx_http_kcd_logon_name(r, &ctx->basic_user, &ctx->basic_domain, &luser,
                            &ldomain);

    acc = ngx_http_kcd_user_file_find(klcf->user_file, &luser, &ldomain);

    ok = (kcd_ntlm_nt_hash((char *) pass->data, pass->len, hash) == 0);
    ok = (kcd_ntlm_memcmp_ct(hash, acc ? acc->hash : nobody, 16) == 0) && ok;
    ok = ok && acc != NULL;

    kcd_ntlm_wipe(hash, sizeof(hash));

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kcd: Basic NT hash computed and compared for %s account",
                   acc ? "a known" : "a stand-in");

    if (acc == NULL && klcf->winbind) {
        /* not a local account: the domain decides */
        return NGX_DECLINED;
    }

    kcd_ntlm_wipe(pass->data, pass->len);

    if (!ok) {
        return ngx_http_kcd_logon_failed(r, NGX_HTTP_KCD_BASIC,
                                         &ctx->basic_user,
                                         &ctx->basic_domain, NULL,
                                         acc ? "wrong password"
                                             : "unknown user");
    }

    kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);

    /* lines without a domain log on in the server's own domain */

    domain = acc->domain.len ? acc->domain : kscf->ntlm_domain;
    map_domain = acc->domain;
    ctx->groups = acc->groups;

    id = ngx_http_kcd_identity_create(r, NGX_HTTP_KCD_BASIC,
                                      NGX_HTTP_KCD_BACKEND_FILE, &acc->user,
                                      &domain, &map_domain, 0);
    if (id == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_kcd_logon_succeeded(r, id, 0);
}


static ngx_int_t
ngx_http_kcd_basic_done(ngx_http_request_t *r, ngx_http_kcd_task_t *t)
{
    ngx_str_t                 name, domain, principal;
    ngx_http_kcd_ctx_t       *ctx;
    ngx_http_kcd_identity_t  *id;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    if (t->status == KCD_WB_OK) {     /* == KCD_GSS_OK */

        if (t->kind == NGX_HTTP_KCD_TASK_GSS_PASSWORD) {
            if (t->out_principal == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            principal.data = (u_char *) t->out_principal;
            principal.len = ngx_strlen(t->out_principal);

            id = ngx_http_kcd_identity_kerberos(r, NGX_HTTP_KCD_BASIC,
                                                NGX_HTTP_KCD_BACKEND_KDC,
                                                &principal);

        } else {
            /* the names as the domain controller spells them */
            name.data = (u_char *) t->wb.user;
            name.len = ngx_strlen(t->wb.user);
            domain.data = (u_char *) t->wb.domain;
            domain.len = ngx_strlen(t->wb.domain);

            if (name.len == 0) {
                name = ctx->basic_user;
            }

            if (domain.len == 0) {
                domain = ctx->basic_domain;
            }

            id = ngx_http_kcd_identity_create(r, NGX_HTTP_KCD_BASIC,
                                              NGX_HTTP_KCD_BACKEND_WINBIND,
                                              &name, &domain, &domain, 0);

            if (t->want_groups
                && ngx_http_kcd_require_wb_groups(r->pool, &t->wb,
                                                  &ctx->groups)
                   != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        if (id == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_kcd_logon_succeeded(r, id, 0);
    }

    if ((t->kind == NGX_HTTP_KCD_TASK_WB_PLAIN
         && t->status == KCD_WB_UNAVAILABLE)
        || (t->kind == NGX_HTTP_KCD_TASK_GSS_PASSWORD
            && t->status == KCD_GSS_UNAVAILABLE))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: Basic logon for user \"%V\" domain \"%V\" "
                      "cannot be checked: %s: %s", &ctx->basic_user,
                      &ctx->basic_domain,
                      t->kind == NGX_HTTP_KCD_TASK_WB_PLAIN
                      ? "winbind"
                      : "KDC unreachable",
                      t->kind == NGX_HTTP_KCD_TASK_WB_PLAIN
                      ? t->wb.error : t->error);
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (t->kind == NGX_HTTP_KCD_TASK_GSS_PASSWORD
        && t->status == KCD_GSS_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: Basic logon for user \"%V\" failed: %s",
                      &ctx->basic_user, t->error);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_kcd_logon_failed(r, NGX_HTTP_KCD_BASIC, &ctx->basic_user,
                                     &ctx->basic_domain, NULL,
                                     t->kind == NGX_HTTP_KCD_TASK_WB_PLAIN
                                     ? t->wb.error : t->error);
}
