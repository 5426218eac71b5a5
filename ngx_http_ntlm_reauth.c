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
#include "ngx_http_kcd_lockout.h"
#include "ngx_http_kcd_ntlm_crypto.h"


static ngx_int_t ngx_http_kcd_ntlm_negotiate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_conn_t *kc,
    ngx_uint_t scheme, u_char *msg, size_t len);
static ngx_int_t ngx_http_kcd_ntlm_authenticate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    ngx_http_kcd_conn_t *kc, u_char *msg, size_t len);
static ngx_int_t ngx_http_kcd_ntlm_winbind_done(ngx_http_request_t *r,
    ngx_http_kcd_task_t *t);
static ngx_int_t ngx_http_kcd_ntlm_success(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, ngx_uint_t backend, ngx_str_t *user,
    ngx_str_t *domain, ngx_str_t *map_domain);
static ngx_int_t ngx_http_kcd_ntlm_failed(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, const char *reason);
static ngx_int_t ngx_http_kcd_cb_expected(ngx_http_request_t *r,
    u_char *hash);
static int ngx_http_kcd_ntlm_verify_mic(ngx_http_kcd_ctx_t *ctx,
    ngx_http_kcd_ntlm_pending_t *pend, const u_char *session_key);
static int ngx_http_kcd_server_challenge(u_char challenge[8]);
static ngx_int_t ngx_http_kcd_utf8_name(ngx_http_request_t *r,
    const u_char *in, size_t len, ngx_str_t *out);


/*
 * msg: a decoded NTLMSSP message (request pool) that came under scheme
 * (NTLM, or Negotiate for raw NTLMSSP).  Returns NGX_OK (the request's
 * identity is set), NGX_AGAIN (winbind is asked), NGX_HTTP_KCD_CHALLENGE,
 * 401 with a CHALLENGE, or 400.
 */

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


/*
 * The 8-byte ServerChallenge of a CHALLENGE (MS-NLMP 2.2.1.2, 3.2.5.1.1):
 * OpenSSL's CSPRNG, drawn 64 challenges at a time.  One RAND_bytes() call
 * costs about 0.9 us (DRBG lock, fork check) whatever its length, as much
 * as one HMAC-MD5 of the logon, so the pool is filled with one call and
 * each challenge is taken out of it once and wiped there.  The pool
 * belongs to the process that filled it (ngx_pid, set by nginx after
 * fork): a worker never serves challenges drawn before its fork.
 * Returns 0, or -1 when RAND_bytes() fails.
 */

#define NGX_HTTP_KCD_CHALLENGE_POOL  64

static int
ngx_http_kcd_server_challenge(u_char challenge[8])
{
    static u_char     pool[NGX_HTTP_KCD_CHALLENGE_POOL * 8];
    static ngx_uint_t left;
    static ngx_pid_t  owner;
    u_char           *p;

    if (left == 0 || owner != ngx_pid) {
        if (RAND_bytes(pool, sizeof(pool)) != 1) {
            kcd_ntlm_wipe(pool, sizeof(pool));
            left = 0;
            return -1;
        }

        left = NGX_HTTP_KCD_CHALLENGE_POOL;
        owner = ngx_pid;
    }

    p = pool + --left * 8;
    ngx_memcpy(challenge, p, 8);
    kcd_ntlm_wipe(p, 8);

    return 0;
}


/* Type 1 -> 401 + Type 2; on an authenticated connection this is B4 */

static ngx_int_t
ngx_http_kcd_ntlm_negotiate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_conn_t *kc,
    ngx_uint_t scheme, u_char *msg, size_t len)
{
    int                           rc;
    long                          n;
    size_t                        mlen;
    u_char                       *p, type2[NGX_HTTP_KCD_TYPE2_MAX];
    ngx_str_t                     src, dst, value;
    const char                   *err;
    ngx_http_kcd_ctx_t           *ctx;
    kcd_ntlm_negotiate_t          neg;
    ngx_http_kcd_identity_t       bound;
    ngx_http_kcd_srv_conf_t      *kscf;
    ngx_http_kcd_ntlm_pending_t  *pend;
    kcd_ntlm_challenge_params_t   params;

    if (ngx_http_kcd_conn_identity(kc, &bound)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: re-authentication on an authenticated "
                      "connection: \"%V\" dropped, handshake restarted, "
                      "request (%V, content length %O) not forwarded",
                      &bound.user, &r->method_name,
                      r->headers_in.content_length_n);
        ngx_http_kcd_count(r, reauth);
    }

    /* B4: the identity goes, whatever the method and body */
    ngx_http_kcd_conn_reset(kc);

    err = "";
    rc = kcd_ntlm_parse_negotiate(msg, len, &neg, &err);

    if (rc == KCD_NTLM_ERROR || len > NGX_HTTP_KCD_TYPE1_MAX) {
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
        return NGX_HTTP_KCD_CHALLENGE;
    }

    kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);

    ngx_memzero(&params, sizeof(params));
    params.client_flags = neg.flags;

    if (ngx_http_kcd_server_challenge(params.challenge) != 0) {
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
    params.key_exch = (kscf->ntlm_key_exch == 1);

    n = kcd_ntlm_build_challenge(&params, type2, sizeof(type2));

    if (n <= 0) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: NTLM CHALLENGE does not fit: names too long");
        kcd_ntlm_wipe(params.challenge, sizeof(params.challenge));
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* what the MIC covers (and mechListMIC in SPNEGO), for this handshake */

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);
    mlen = (ctx && ctx->spnego) ? ctx->spnego_mech_types_len : 0;

    pend = ngx_alloc(sizeof(ngx_http_kcd_ntlm_pending_t) + len + n + mlen,
                     r->connection->log);
    if (pend == NULL) {
        kcd_ntlm_wipe(params.challenge, sizeof(params.challenge));
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(pend, sizeof(ngx_http_kcd_ntlm_pending_t));

    pend->type1 = (u_char *) (pend + 1);
    pend->type1_len = len;
    pend->type2 = pend->type1 + len;
    pend->type2_len = n;
    pend->mech_types = pend->type2 + n;
    ngx_memcpy(pend->type1, msg, len);
    ngx_memcpy(pend->type2, type2, n);
    ngx_memcpy(pend->challenge, params.challenge, 8);
    kcd_ntlm_wipe(params.challenge, sizeof(params.challenge));

    kc->ntlm = pend;
    kc->scheme = scheme;
    kc->state = NGX_HTTP_KCD_CONN_CHALLENGED;

    /* NTLM inside SPNEGO: the CHALLENGE goes in a negTokenResp (B5) */

    if (ctx && ctx->spnego) {
        if (ngx_http_kcd_spnego_challenge(r, ctx, pend, type2, n)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_kcd_count(r, challenges);

        return NGX_HTTP_UNAUTHORIZED;
    }

    /* answer under the scheme the client used */

    src.data = type2;
    src.len = n;

    value.len = (scheme == NGX_HTTP_KCD_NTLM ? sizeof("NTLM ")
                                             : sizeof("Negotiate "))
                - 1 + ngx_base64_encoded_length(src.len);

    value.data = ngx_pnalloc(r->pool, value.len);
    if (value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (scheme == NGX_HTTP_KCD_NTLM) {
        p = ngx_cpymem(value.data, "NTLM ", sizeof("NTLM ") - 1);

    } else {
        p = ngx_cpymem(value.data, "Negotiate ", sizeof("Negotiate ") - 1);
    }

    dst.data = p;
    ngx_encode_base64(&dst, &src);
    value.len = (p - value.data) + dst.len;

    if (ngx_http_kcd_add_challenge(r, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

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
    int                           rc, ok;
    u_char                        cb[16], key[16], *cbp;
    ngx_int_t                     nrc;
    ngx_str_t                     user, domain, map_domain, luser,
                                  ldomain;
    const char                   *err;
    ngx_http_kcd_task_t          *t;
    ngx_http_kcd_account_t       *acc;
    ngx_http_kcd_srv_conf_t      *kscf;
    ngx_http_kcd_ntlm_pending_t  *pend;

    static u_char  nobody[16];

    if (kc->state != NGX_HTTP_KCD_CONN_CHALLENGED || kc->ntlm == NULL
        || kc->ntlm->type2_len == 0)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: NTLM AUTHENTICATE without a CHALLENGE on this "
                      "connection");
        ngx_http_kcd_conn_reset(kc);
        ngx_http_kcd_count(r, ntlm_failed);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    /* the AUTHENTICATE comes the way its CHALLENGE went: SPNEGO or not */

    if (kc->ntlm->spnego != ctx->spnego) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: NTLM AUTHENTICATE %s SPNEGO, its CHALLENGE went "
                      "%s", ctx->spnego ? "inside" : "outside",
                      ctx->spnego ? "outside" : "inside");
        ngx_http_kcd_conn_reset(kc);
        ngx_http_kcd_count(r, ntlm_failed);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    /* the challenge is used once, whatever happens next */

    pend = kc->ntlm;
    kc->ntlm = NULL;
    ngx_http_kcd_conn_reset(kc);

    ctx->ntlm = pend;

    if (ngx_pool_cleanup_add(r->pool, 0) == NULL) {
        ngx_http_kcd_ntlm_pending_free(pend);
        ctx->ntlm = NULL;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->pool->cleanup->handler = (ngx_pool_cleanup_pt)
                                ngx_http_kcd_ntlm_pending_free;
    r->pool->cleanup->data = pend;

    ctx->type3 = msg;
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
        return ngx_http_kcd_ntlm_failed(r, ctx, err);
    }

    /* credential-free checks: AV echo, MIC announced, expiry, bindings */

    cbp = NULL;

    if (klcf->channel_binding != KCD_NTLM_CB_OFF && r->connection->ssl) {
        if (ngx_http_kcd_cb_expected(r, cb) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        cbp = cb;
    }

    rc = kcd_ntlm_check_authenticate(&ctx->auth, pend->type2,
                                     pend->type2_len, cbp,
                                     (int) klcf->channel_binding,
                                     kcd_ntlm_filetime(ngx_time()), &err);

    if (rc != KCD_NTLM_OK) {
        return ngx_http_kcd_ntlm_failed(r, ctx, err);
    }

    /*
     * The policy this logon met (B14): bindings that were checked and
     * matched satisfy "require" anywhere on this connection.
     */

    ctx->cb_met = klcf->channel_binding;

    if (cbp && ctx->auth.cb_hash
        && kcd_ntlm_memcmp_ct(ctx->auth.cb_hash, cbp, 16) == 0)
    {
        ctx->cb_met = KCD_NTLM_CB_REQUIRE;
    }

    /* B19: refused like a wrong password, before any backend is asked */

    if (ngx_http_kcd_lockout_check(r, &user, &domain) != NGX_OK) {
        return ngx_http_kcd_lockout_answer(r,
                   ngx_http_kcd_ntlm_failed(r, ctx, "refused by kcd_lockout"));
    }

    if (klcf->user_file) {

        /* UPN and DNS-domain spellings name the same account (B5) */
        ngx_http_kcd_logon_name(r, &user, &domain, &luser, &ldomain);

        acc = ngx_http_kcd_user_file_find(klcf->user_file, &luser,
                                          &ldomain);

        if (acc == NULL && klcf->winbind) {
            goto winbind;
        }

        /*
         * The same work for known and unknown users (NTOWFv2, the proof
         * and the MIC), so the answer time does not tell which user names
         * exist.
         */

        ok = (kcd_ntlm_verify_v2(acc ? acc->hash : nobody, ctx->auth.user,
                                 ctx->auth.user_len, ctx->auth.domain,
                                 ctx->auth.domain_len, pend->challenge,
                                 ctx->auth.nt, ctx->auth.nt_len, key)
              == 0);

        rc = ngx_http_kcd_ntlm_verify_mic(ctx, pend, key);

        /* inside SPNEGO: mechListMIC, with the same key (B5) */

        nrc = NGX_OK;

        if (pend->spnego && acc && ok && rc == 0) {
            nrc = ngx_http_kcd_spnego_complete(r, ctx, pend, key, &err);
        }

        kcd_ntlm_wipe(key, sizeof(key));

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "kcd: NTLMv2 proof and MIC computed for %s account "
                       "(mic announced: %d)", acc ? "a known" : "a stand-in",
                       ctx->auth.has_mic);

        if (acc == NULL) {
            return ngx_http_kcd_ntlm_failed(r, ctx, "unknown user");
        }

        if (!ok) {
            return ngx_http_kcd_ntlm_failed(r, ctx, "wrong password");
        }

        if (rc != 0) {
            return ngx_http_kcd_ntlm_failed(r, ctx, "MIC invalid");
        }

        if (nrc == NGX_DECLINED) {
            return ngx_http_kcd_ntlm_failed(r, ctx, err);
        }

        if (nrc != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /*
         * The user file's spelling, not the client's; a line without a
         * domain logs on in the server's own domain and its realm is
         * kcd_realm, whatever domain the client named.
         */

        kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
        map_domain = acc->domain;
        ctx->groups = acc->groups;

        return ngx_http_kcd_ntlm_success(r, ctx, NGX_HTTP_KCD_BACKEND_FILE,
                                         &acc->user,
                                         acc->domain.len ? &acc->domain
                                                         : &kscf->ntlm_domain,
                                         &map_domain);
    }

winbind:

    /* pass-through to the domain controller, in the thread pool */

    t = ngx_http_kcd_task_alloc(r, NGX_HTTP_KCD_TASK_WB_NTLM);
    if (t == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t->user = ngx_http_kcd_cstr(r->pool, &ctx->ntlm_user);
    t->domain = ngx_http_kcd_cstr(r->pool, &ctx->ntlm_domain);
    t->workstation = ngx_http_kcd_cstr(r->pool, &ctx->ntlm_workstation);
    ngx_memcpy(t->challenge, pend->challenge, 8);
    t->nt = (u_char *) ctx->auth.nt;
    t->nt_len = ctx->auth.nt_len;
    t->lm = (u_char *) ctx->auth.lm;
    t->lm_len = ctx->auth.lm_len;

    if (t->user == NULL || t->domain == NULL || t->workstation == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_kcd_task_post(r, t, ngx_http_kcd_ntlm_winbind_done);
}


static ngx_int_t
ngx_http_kcd_ntlm_winbind_done(ngx_http_request_t *r, ngx_http_kcd_task_t *t)
{
    int                           rc;
    ngx_int_t                     nrc;
    ngx_str_t                     u, d;
    const char                   *err;
    ngx_http_kcd_ctx_t           *ctx;
    ngx_http_kcd_ntlm_pending_t  *pend;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);
    pend = ctx->ntlm;

    if (t->status == KCD_WB_OK) {

        /* the DC checked the proof; the MIC is ours to check */

        rc = ngx_http_kcd_ntlm_verify_mic(ctx, pend, t->wb.session_key);

        if (rc != 0) {
            ngx_http_kcd_count(r, winbind_failed);
            return ngx_http_kcd_ntlm_failed(r, ctx, "MIC invalid");
        }

        if (pend->spnego) {
            err = "";
            nrc = ngx_http_kcd_spnego_complete(r, ctx, pend,
                                               t->wb.session_key, &err);
            if (nrc == NGX_DECLINED) {
                ngx_http_kcd_count(r, winbind_failed);
                return ngx_http_kcd_ntlm_failed(r, ctx, err);
            }

            if (nrc != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        ngx_http_kcd_count(r, winbind_ok);

        if (t->want_groups
            && ngx_http_kcd_require_wb_groups(r->pool, &t->wb, &ctx->groups)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /* the names as the domain controller spells them */

        u.data = (u_char *) t->wb.user;
        u.len = ngx_strlen(t->wb.user);
        d.data = (u_char *) t->wb.domain;
        d.len = ngx_strlen(t->wb.domain);

        if (u.len == 0 || d.len == 0) {
            u = ctx->ntlm_user;
            d = ctx->ntlm_domain;
        }

        return ngx_http_kcd_ntlm_success(r, ctx,
                                         NGX_HTTP_KCD_BACKEND_WINBIND,
                                         &u, &d, &d);
    }

    if (t->status == KCD_WB_UNAVAILABLE) {
        ngx_http_kcd_count(r, winbind_unavailable);
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: NTLM logon of user \"%V\" domain \"%V\" cannot "
                      "be checked: %s",
                      &ctx->ntlm_user, &ctx->ntlm_domain, t->wb.error);
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    ngx_http_kcd_count(r, winbind_failed);

    return ngx_http_kcd_ntlm_failed(r, ctx, t->wb.error);
}


static ngx_int_t
ngx_http_kcd_ntlm_success(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    ngx_uint_t backend, ngx_str_t *user, ngx_str_t *domain,
    ngx_str_t *map_domain)
{
    ngx_str_t                 dom;
    ngx_http_kcd_identity_t  *id;
    ngx_http_kcd_srv_conf_t  *kscf;

    dom = *domain;

    if (dom.len == 0) {
        /* clients that send no domain log on to ours */
        kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
        dom = kscf->ntlm_domain;
    }

    if (user->len > NGX_HTTP_KCD_NAME_MAX || dom.len > NGX_HTTP_KCD_NAME_MAX)
    {
        return ngx_http_kcd_ntlm_failed(r, ctx, "name too long");
    }

    id = ngx_http_kcd_identity_create(r, NGX_HTTP_KCD_NTLM, backend, user,
                                      &dom, map_domain, ctx->cb_met);
    if (id == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* B3: bind the identity to the connection */

    return ngx_http_kcd_logon_succeeded(r, id, 1);
}


static ngx_int_t
ngx_http_kcd_ntlm_failed(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    const char *reason)
{
    return ngx_http_kcd_logon_failed(r, NGX_HTTP_KCD_NTLM, &ctx->ntlm_user,
                                     &ctx->ntlm_domain,
                                     &ctx->ntlm_workstation, reason);
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


/*
 * The AUTHENTICATE's MIC (MS-NLMP 3.3.2 step 7) under the exported session
 * key: the session base key, or with KEY_EXCH negotiated (flags of our
 * CHALLENGE and of the AUTHENTICATE) the client's random session key
 * decrypted with it.  0, or -1 when the MIC does not verify.
 */

static int
ngx_http_kcd_ntlm_verify_mic(ngx_http_kcd_ctx_t *ctx,
    ngx_http_kcd_ntlm_pending_t *pend, const u_char *session_key)
{
    int       rc;
    u_char    exported[16];
    uint32_t  flags;

    if (!ctx->auth.has_mic) {
        return 0;
    }

    flags = ctx->auth.flags;

    if (pend->type2_len >= 24) {
        flags &= (uint32_t) pend->type2[20]
                 | (uint32_t) pend->type2[21] << 8
                 | (uint32_t) pend->type2[22] << 16
                 | (uint32_t) pend->type2[23] << 24;
    }

    if (kcd_ntlm_exported_session_key(flags, session_key,
                                      ctx->auth.enc_session_key,
                                      ctx->auth.enc_session_key_len, exported)
        != 0)
    {
        return -1;
    }

    rc = kcd_ntlm_verify_mic(exported, pend->type1, pend->type1_len,
                             pend->type2, pend->type2_len, ctx->type3,
                             ctx->type3_len, ctx->auth.mic);

    kcd_ntlm_wipe(exported, sizeof(exported));

    return rc;
}
