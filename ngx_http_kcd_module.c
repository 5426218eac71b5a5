/*
 * ngx_http_kcd_module: NTLM / Kerberos / Basic at the front door, Kerberos
 * constrained delegation (S4U2Self + S4U2Proxy) to the upstream.
 *
 * This file wires the pieces: directives, configuration and the access
 * phase, which runs the pipeline
 *
 *   validation   ngx_http_ntlm_reauth.c (NTLM handshake, KB 942638),
 *                ngx_http_kcd_negotiate.c, ngx_http_kcd_basic.c, with the
 *                backends ngx_http_kcd_userfile.c / ngx_http_kcd_winbind.c
 *   identity     ngx_http_kcd_identity.c (one identity and its scope)
 *   delegation   ngx_http_kcd_delegate.c, ngx_http_kcd_cache.c
 *   upstream     ngx_http_kcd_upstream.c (the token, upstream connections),
 *                ngx_http_kcd_filter.c (what comes back)
 *
 * with ngx_http_kcd_task.c (thread pool) and ngx_http_kcd_metrics.c
 * (counters, kcd_status) beside them.  Calls go down that list only.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <krb5.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"
#include "ngx_http_kcd_ntlm_crypto.h"
#include "ngx_http_kcd_winbind.h"



static ngx_int_t ngx_http_kcd_access_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_authenticate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx);
static ngx_int_t ngx_http_kcd_challenge(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf);

static void *ngx_http_kcd_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_kcd_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_kcd_create_srv_conf(ngx_conf_t *cf);
static char *ngx_http_kcd_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void *ngx_http_kcd_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_kcd_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_kcd_check_shared_responses(ngx_conf_t *cf,
    ngx_http_kcd_loc_conf_t *conf);
static ngx_int_t ngx_http_kcd_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_kcd_init_process(ngx_cycle_t *cycle);
static void ngx_http_kcd_exit_process(ngx_cycle_t *cycle);

static char *ngx_http_kcd_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_strip_negotiate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_user_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_user_file_ref(ngx_conf_t *cf, ngx_str_t *path,
    ngx_http_kcd_user_file_t **uf);
static char *ngx_http_kcd_keytab(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_spn(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_domain_map(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_basic_realm(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_conf_enum_t  ngx_http_kcd_channel_binding[] = {
    { ngx_string("off"), KCD_NTLM_CB_OFF },
    { ngx_string("allow"), KCD_NTLM_CB_ALLOW },
    { ngx_string("require"), KCD_NTLM_CB_REQUIRE },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_kcd_commands[] = {

    { ngx_string("kcd_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_kcd_auth,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_strip_negotiate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kcd_strip_negotiate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_ntlm_user_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kcd_user_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_ntlm_winbind"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kcd_loc_conf_t, winbind),
      NULL },

    { ngx_string("kcd_ntlm_domain"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_kcd_srv_conf_t, ntlm_domain),
      NULL },

    { ngx_string("kcd_ntlm_computer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_kcd_srv_conf_t, ntlm_computer),
      &ngx_http_kcd_conf_check_computer_p },

    { ngx_string("kcd_ntlm_dns_domain"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_kcd_srv_conf_t, ntlm_dns_domain),
      NULL },

    { ngx_string("kcd_ntlm_key_exch"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_kcd_srv_conf_t, ntlm_key_exch),
      NULL },

    { ngx_string("kcd_channel_binding"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kcd_loc_conf_t, channel_binding),
      &ngx_http_kcd_channel_binding },

    { ngx_string("kcd_basic_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kcd_basic_realm,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_keytab"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_kcd_keytab,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_service_principal"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kcd_main_conf_t, service_principal),
      &ngx_http_kcd_conf_check_principal_p },

    { ngx_string("kcd_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kcd_loc_conf_t, realm),
      &ngx_http_kcd_conf_check_realm_p },

    { ngx_string("kcd_domain_map"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_kcd_domain_map,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_spn"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kcd_spn,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_upstream_channel_binding"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kcd_upstream_cb_conf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kcd_loc_conf_t, upstream_cb),
      NULL },

    { ngx_string("kcd_ticket_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_kcd_cache_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_kcd_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("kcd_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_kcd_status,
      0,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_kcd_module_ctx = {
    ngx_http_kcd_identity_variables,       /* preconfiguration */
    ngx_http_kcd_init,                     /* postconfiguration */

    ngx_http_kcd_create_main_conf,         /* create main configuration */
    ngx_http_kcd_init_main_conf,           /* init main configuration */

    ngx_http_kcd_create_srv_conf,          /* create server configuration */
    ngx_http_kcd_merge_srv_conf,           /* merge server configuration */

    ngx_http_kcd_create_loc_conf,          /* create location configuration */
    ngx_http_kcd_merge_loc_conf            /* merge location configuration */
};


ngx_module_t  ngx_http_kcd_module = {
    NGX_MODULE_V1,
    &ngx_http_kcd_module_ctx,              /* module context */
    ngx_http_kcd_commands,                 /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_kcd_init_module,              /* init module */
    ngx_http_kcd_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_kcd_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * The access phase: authenticate (B1-B6, B14), then delegate (B7).  Each
 * step may wait for the thread pool; the phase is run again when its
 * result is in, and the stage says where to go on.
 */

static ngx_int_t
ngx_http_kcd_access_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_kcd_ctx_t       *ctx;
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (klcf->schemes == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_kcd_ctx_t));
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_kcd_module);
    }

    if (ctx->pending) {
        return NGX_AGAIN;
    }

    if (ctx->done) {
        ctx->done = 0;
        rc = ctx->rc;

    } else if (ctx->stage == NGX_HTTP_KCD_STAGE_AUTH) {
        rc = ngx_http_kcd_authenticate(r, klcf, ctx);

    } else if (ctx->stage == NGX_HTTP_KCD_STAGE_DELEGATE) {
        /* back from waiting for another request's ticket */
        rc = ngx_http_kcd_delegate(r, klcf, ctx);

    } else {
        return ctx->rc;
    }

    for ( ;; ) {

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc == NGX_HTTP_KCD_CHALLENGE) {
            rc = ngx_http_kcd_challenge(r, klcf);
        }

        if (rc != NGX_OK || ctx->stage != NGX_HTTP_KCD_STAGE_AUTH) {
            break;
        }

        /* authenticated: the request's identity is set */

        rc = ngx_http_kcd_require(r);     /* B20, before any delegation */

        if (rc != NGX_OK || klcf->spn == NULL) {
            break;
        }

        ctx->stage = NGX_HTTP_KCD_STAGE_DELEGATE;
        rc = ngx_http_kcd_delegate(r, klcf, ctx);
    }

    ctx->stage = NGX_HTTP_KCD_STAGE_DONE;
    ctx->rc = rc;

    return rc;
}


/*
 * Who is this request?  Its own Authorization header (taken out of the
 * request in the post-read phase, whatever the outcome), else the identity
 * it already has (before an internal redirect), else the connection's (B3)
 * — each only where it holds (B14).
 */

static ngx_int_t
ngx_http_kcd_authenticate(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx)
{
    u_char                   *p, *last;
    size_t                    len;
    ngx_str_t                 scheme, token, src, dst, auth;
    ngx_uint_t                sch;
    const char               *why;
    ngx_http_kcd_conn_t      *kc;
    ngx_http_kcd_request_t   *rq;
    ngx_http_kcd_identity_t  *id;

    /*
     * B11: NTLM authenticates the connection; an HTTP/2 connection
     * multiplexes requests, so the handshake cannot work.  Clients that
     * see a connection-based challenge over HTTP/2 retry over HTTP/1.1
     * (Chromium does); credentials are never looked at.
     */

    if (r->http_version >= NGX_HTTP_VERSION_20) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "kcd: authentication refused over HTTP/2: NTLM and "
                      "Negotiate are bound to the connection; turn http2 "
                      "off on this server");
        ngx_http_kcd_count(r, http2_refused);

        (void) ngx_http_kcd_take_authorization(r, &token);

        if (klcf->schemes & (NGX_HTTP_KCD_NTLM|NGX_HTTP_KCD_NEGOTIATE)) {
            return NGX_HTTP_KCD_CHALLENGE;
        }

        return NGX_HTTP_FORBIDDEN;
    }

    if (r != r->main) {
        /* the access phase does not run for subrequests; fail closed */
        return NGX_HTTP_FORBIDDEN;
    }

    rq = ngx_http_kcd_request(r, 1);
    if (rq == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (ngx_http_kcd_take_authorization(r, &auth)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:

        if (rq->identity) {
            /* this request, authenticated before an internal redirect */
            id = rq->identity;
            why = "";

            if (ngx_http_kcd_identity_holds(r, id, &why)) {
                return NGX_OK;
            }

            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: request of \"%V\" redirected to a location "
                          "where its logon does not hold (%s): challenged",
                          &id->user, why);
            rq->identity = NULL;
            return NGX_HTTP_KCD_CHALLENGE;
        }

        kc = ngx_http_kcd_conn(r, 0);

        if (kc && kc->state == NGX_HTTP_KCD_CONN_AUTHENTICATED) {
            id = ngx_palloc(r->pool, sizeof(ngx_http_kcd_identity_t));
            if (id == NULL || ngx_http_kcd_conn_identity(kc, id) == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            why = "";

            if (!ngx_http_kcd_identity_holds(r, id, &why)) {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "kcd: connection authenticated as \"%V\", "
                              "which does not hold here (%s): challenged "
                              "again", &id->user, why);
                return NGX_HTTP_KCD_CHALLENGE;
            }

            /* B3: the identity belongs to the connection */

            rq->identity = id;

            return NGX_OK;
        }

        return NGX_HTTP_KCD_CHALLENGE;

    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* this request's credentials replace whatever it had */

    rq->identity = NULL;

    p = auth.data;
    last = p + auth.len;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    scheme.data = p;

    while (p < last && *p != ' ' && *p != '\t') {
        p++;
    }

    scheme.len = p - scheme.data;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    /* the header left the request in the post-read phase (B7) */

    token.len = last - p;
    token.data = p;

    if (scheme.len == 4
        && ngx_strncasecmp(scheme.data, (u_char *) "NTLM", 4) == 0)
    {
        sch = NGX_HTTP_KCD_NTLM;

    } else if (scheme.len == 9
               && ngx_strncasecmp(scheme.data, (u_char *) "Negotiate", 9)
                  == 0)
    {
        sch = NGX_HTTP_KCD_NEGOTIATE;

    } else if (scheme.len == 5
               && ngx_strncasecmp(scheme.data, (u_char *) "Basic", 5) == 0)
    {
        sch = NGX_HTTP_KCD_BASIC;

    } else {
        sch = 0;
    }

    if (sch == 0 || !(klcf->schemes & sch)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: authorization scheme \"%V\" is not offered "
                      "here", &scheme);
        return NGX_HTTP_KCD_CHALLENGE;
    }

    if (sch == NGX_HTTP_KCD_BASIC) {
        return ngx_http_kcd_basic(r, klcf, ctx, &token);
    }

    if (token.len == 0) {
        return NGX_HTTP_KCD_CHALLENGE;
    }

    if (token.len > NGX_HTTP_KCD_TOKEN_MAX) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: %V token of %uz bytes refused (limit %uz)",
                      &scheme, token.len, (size_t) NGX_HTTP_KCD_TOKEN_MAX);
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    dst.data = ngx_pnalloc(r->pool, ngx_base64_decoded_length(token.len) + 1);
    if (dst.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    src = token;

    if (ngx_decode_base64(&dst, &src) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: invalid base64 in %V authorization", &scheme);
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    len = dst.len;

    if (kcd_ntlm_message_type(dst.data, len) > 0) {
        /* NTLM, or raw NTLMSSP under Negotiate (SSPI without Kerberos) */

        if (klcf->user_file == NULL && !klcf->winbind) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: NTLMSSP under Negotiate refused: no NTLM "
                          "validation backend in this location");
            return NGX_HTTP_KCD_CHALLENGE;
        }

        return ngx_http_kcd_ntlm_handle(r, klcf, ctx, sch, dst.data, len);
    }

    if (sch == NGX_HTTP_KCD_NTLM) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: NTLM authorization is not an NTLMSSP message");
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    return ngx_http_kcd_negotiate(r, klcf, ctx, dst.data, len);
}

/* B1: one WWW-Authenticate per offered scheme, in configured order */

static ngx_int_t
ngx_http_kcd_challenge(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf)
{
    ngx_str_t   v;
    ngx_uint_t  i, n, strip;

    static ngx_str_t  ntlm = ngx_string("NTLM");
    static ngx_str_t  negotiate = ngx_string("Negotiate");

    strip = ngx_http_kcd_strip(r, klcf);
    n = 0;

    for (i = 0; i < klcf->nschemes; i++) {

        switch (klcf->order[i]) {

        case NGX_HTTP_KCD_NTLM:
            v = ntlm;
            break;

        case NGX_HTTP_KCD_NEGOTIATE:
            if (strip) {
                continue;
            }
            v = negotiate;
            break;

        default: /* NGX_HTTP_KCD_BASIC */
            if (r->connection->ssl == NULL
                || r->http_version >= NGX_HTTP_VERSION_20)
            {
                continue;
            }
            v = klcf->basic_realm;
            break;
        }

        if (ngx_http_kcd_add_challenge(r, &v) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        n++;
    }

    if (n == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: no authentication scheme can be offered on this "
                      "connection (Basic is offered only over TLS)");
        return NGX_HTTP_FORBIDDEN;
    }

    ngx_http_kcd_count(r, challenges);

    return NGX_HTTP_UNAUTHORIZED;
}


static void *
ngx_http_kcd_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_main_conf_t));
    if (kmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     kmcf->keytab = { 0, NULL };
     *     kmcf->service_principal = { 0, NULL };
     *     kmcf->domain_map = NULL;
     *     kmcf->thread_pool_name = { 0, NULL };
     *     kmcf->cache = NULL;
     */

    return kmcf;
}


static char *
ngx_http_kcd_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_kcd_main_conf_t  *kmcf = conf;

    char  err[512];

    if (kmcf->thread_pool_name.len == 0) {
        ngx_str_set(&kmcf->thread_pool_name, "default");
    }

    if (kmcf->keytab.len && kmcf->service_principal.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_keytab\" needs \"kcd_service_principal\" in "
                      "%V:%ui", &kmcf->keytab_file, kmcf->keytab_line);
        return NGX_CONF_ERROR;
    }

    /* B17: the master reads the keys; workers inherit them in memory */

    if (kmcf->keytab.len
        && ngx_http_kcd_keytab_load(cf, kmcf, err, sizeof(err)) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "kcd_keytab: %s in %V:%ui", err,
                      &kmcf->keytab_file, kmcf->keytab_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_kcd_create_srv_conf(ngx_conf_t *cf)
{
    ngx_http_kcd_srv_conf_t  *kscf;

    kscf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_srv_conf_t));
    if (kscf == NULL) {
        return NULL;
    }

    kscf->ntlm_key_exch = NGX_CONF_UNSET;

    return kscf;
}


static char *
ngx_http_kcd_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_kcd_srv_conf_t  *prev = parent;
    ngx_http_kcd_srv_conf_t  *conf = child;

    u_char  *p, *q;
    size_t   len;

    ngx_conf_merge_str_value(conf->ntlm_dns_domain, prev->ntlm_dns_domain,
                             "");
    ngx_conf_merge_value(conf->ntlm_key_exch, prev->ntlm_key_exch, 0);

    /* KEY_EXCH needs RC4: OpenSSL's legacy provider, in a context of ours */

    if (conf->ntlm_key_exch && kcd_ntlm_rc4_init() != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"kcd_ntlm_key_exch on\" needs RC4 from "
                           "OpenSSL's legacy provider, which cannot be "
                           "loaded");
        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_str_value(conf->ntlm_computer, prev->ntlm_computer, "");

    if (conf->ntlm_computer.len == 0) {
        /* the host name, upper-cased, first label */
        p = cf->cycle->hostname.data;
        len = cf->cycle->hostname.len;

        q = ngx_strlchr(p, p + len, '.');
        if (q) {
            len = q - p;
        }

        if (len > 15) {
            len = 15;    /* NetBIOS names */
        }

        conf->ntlm_computer.data = ngx_pnalloc(cf->pool, len ? len : 1);
        if (conf->ntlm_computer.data == NULL) {
            return NGX_CONF_ERROR;
        }

        if (len == 0) {
            conf->ntlm_computer.data[0] = 'K';
            len = 1;

        } else {
            ngx_strlow(conf->ntlm_computer.data, p, len);
        }

        conf->ntlm_computer.len = len;
    }

    for (p = conf->ntlm_computer.data;
         p < conf->ntlm_computer.data + conf->ntlm_computer.len;
         p++)
    {
        *p = ngx_toupper(*p);
    }

    /* standalone servers announce their own name as the domain */
    ngx_conf_merge_str_value(conf->ntlm_domain, prev->ntlm_domain, "");

    if (conf->ntlm_domain.len == 0) {
        conf->ntlm_domain = conf->ntlm_computer;
    }

    if (conf->ntlm_dns_domain.len && conf->ntlm_dns_computer.len == 0) {
        len = conf->ntlm_computer.len + 1 + conf->ntlm_dns_domain.len;

        p = ngx_pnalloc(cf->pool, len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->ntlm_dns_computer.data = p;
        ngx_strlow(p, conf->ntlm_computer.data, conf->ntlm_computer.len);
        p += conf->ntlm_computer.len;
        *p++ = '.';
        ngx_memcpy(p, conf->ntlm_dns_domain.data, conf->ntlm_dns_domain.len);
        conf->ntlm_dns_computer.len = len;
    }

    /* the codec wants NUL-terminated strings */

#define ngx_http_kcd_nul(s)                                                 \
    if ((s).len) {                                                          \
        u_char  *n_ = ngx_pnalloc(cf->pool, (s).len + 1);                    \
        if (n_ == NULL) {                                                   \
            return NGX_CONF_ERROR;                                          \
        }                                                                   \
        ngx_memcpy(n_, (s).data, (s).len);                                  \
        n_[(s).len] = '\0';                                                 \
        (s).data = n_;                                                      \
    }

    ngx_http_kcd_nul(conf->ntlm_domain);
    ngx_http_kcd_nul(conf->ntlm_computer);
    ngx_http_kcd_nul(conf->ntlm_dns_domain);
    ngx_http_kcd_nul(conf->ntlm_dns_computer);

    return NGX_CONF_OK;
}


static void *
ngx_http_kcd_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_loc_conf_t));
    if (klcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     klcf->order = { 0 };
     *     klcf->strip_negotiate = NULL;
     *     klcf->basic_realm = { 0, NULL };
     *     klcf->realm = { 0, NULL };
     */

    klcf->schemes = NGX_CONF_UNSET_UINT;
    klcf->strip_set = NGX_CONF_UNSET;
    klcf->user_file = NGX_CONF_UNSET_PTR;
    klcf->winbind = NGX_CONF_UNSET;
    klcf->channel_binding = NGX_CONF_UNSET_UINT;
    klcf->spn = NGX_CONF_UNSET_PTR;
    klcf->upstream_cb = NGX_CONF_UNSET_PTR;

    return klcf;
}


static char *
ngx_http_kcd_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_kcd_loc_conf_t  *prev = parent;
    ngx_http_kcd_loc_conf_t  *conf = child;

    ngx_http_kcd_srv_conf_t   *kscf;
    ngx_http_core_loc_conf_t  *clcf;
    ngx_http_kcd_main_conf_t  *kmcf;

    if (conf->schemes == NGX_CONF_UNSET_UINT) {
        if (prev->schemes == NGX_CONF_UNSET_UINT) {
            conf->schemes = 0;

        } else {
            conf->schemes = prev->schemes;
            conf->nschemes = prev->nschemes;
            ngx_memcpy(conf->order, prev->order, sizeof(conf->order));
            conf->auth_file = prev->auth_file;
            conf->auth_line = prev->auth_line;
        }
    }

    if (conf->strip_set == NGX_CONF_UNSET) {
        conf->strip_set = prev->strip_set;
        conf->strip_negotiate = prev->strip_negotiate;
    }

    ngx_conf_merge_ptr_value(conf->user_file, prev->user_file, NULL);
    ngx_conf_merge_value(conf->winbind, prev->winbind, 0);
    ngx_conf_merge_uint_value(conf->channel_binding, prev->channel_binding,
                              KCD_NTLM_CB_ALLOW);
    ngx_conf_merge_str_value(conf->basic_realm, prev->basic_realm,
                             "Basic realm=\"kcd\"");
    ngx_conf_merge_str_value(conf->realm, prev->realm, "");
    ngx_conf_merge_ptr_value(conf->upstream_cb, prev->upstream_cb, NULL);

    if (conf->spn == NGX_CONF_UNSET_PTR) {
        conf->spn = (prev->spn == NGX_CONF_UNSET_PTR) ? NULL : prev->spn;
        conf->spn_file = prev->spn_file;
        conf->spn_line = prev->spn_line;
    }

    kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_kcd_module);

    if (conf->winbind) {
        kmcf->use_winbind = 1;
    }

    /* B13: what can't work is refused by nginx -t, with file:line */

    if (conf->schemes & NGX_HTTP_KCD_NTLM
        && conf->user_file == NULL && !conf->winbind)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_auth ntlm\" needs a validation backend: "
                      "\"kcd_ntlm_user_file\" or \"kcd_ntlm_winbind on\" "
                      "in %V:%ui", &conf->auth_file, conf->auth_line);
        return NGX_CONF_ERROR;
    }

    if (conf->schemes & NGX_HTTP_KCD_NEGOTIATE
        && kmcf->keytab.len == 0
        && conf->user_file == NULL && !conf->winbind)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_auth negotiate\" needs \"kcd_keytab\" (for "
                      "Kerberos) or an NTLM backend in %V:%ui",
                      &conf->auth_file, conf->auth_line);
        return NGX_CONF_ERROR;
    }

    if (conf->schemes & NGX_HTTP_KCD_BASIC
        && kmcf->keytab.len == 0
        && conf->user_file == NULL && !conf->winbind)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_auth basic\" needs \"kcd_ntlm_user_file\", "
                      "\"kcd_ntlm_winbind on\" or \"kcd_keytab\" in %V:%ui",
                      &conf->auth_file, conf->auth_line);
        return NGX_CONF_ERROR;
    }

    if (conf->schemes) {
        /* the client's Authorization is taken on arrival in this server */
        kscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_kcd_module);
        kscf->auth_used |= conf->schemes;

        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (clcf->satisfy == NGX_HTTP_SATISFY_ANY && conf->auth_line) {
            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "\"satisfy any\" lets requests through without "
                          "a logon where \"allow\" or another module "
                          "admits them: they are never delegated, and NTLM "
                          "handshakes may not complete (%V:%ui)",
                          &conf->auth_file, conf->auth_line);
        }
    }

    if (conf->schemes && conf->spn) {
        /* a Kerberos client's own ticket is worth keeping here (B5) */
        kscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_kcd_module);
        kscf->delegates = 1;

        /* B7a: the token is in headers_in only while it is sent */
        if (ngx_http_kcd_upstream_wrap_content(cf, conf) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (conf->content_handler == NULL) {
            /* an "if" block runs its location's handler */
            conf->content_handler = prev->content_handler;
        }

        if (conf->content_handler
            && ngx_http_kcd_check_shared_responses(cf, conf) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (conf->spn_here && conf->schemes == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_spn\" without \"kcd_auth\" in the same or an "
                      "enclosing block: nothing would be authenticated to "
                      "delegate (an inherited kcd_spn in a \"kcd_auth off\" "
                      "location is fine) in %V:%ui", &conf->spn_file,
                      conf->spn_line);
        return NGX_CONF_ERROR;
    }

    if (conf->spn
        && (kmcf->keytab.len == 0 || kmcf->service_principal.len == 0))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_spn\" needs \"kcd_keytab\" and "
                      "\"kcd_service_principal\" at the http level in "
                      "%V:%ui", &conf->spn_file, conf->spn_line);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_kcd_conf_check_location(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * A delegating location makes responses for one user.  A cache or a store
 * of them (proxy_cache, fastcgi_cache, uwsgi_cache, scgi_cache, proxy_store
 * and the like) would serve one user's response to another (B10, B14):
 * nginx -t refuses it.  The upstream modules are looked up by name, and
 * their location configuration starts with ngx_http_upstream_conf_t.
 */

static ngx_int_t
ngx_http_kcd_check_shared_responses(ngx_conf_t *cf,
    ngx_http_kcd_loc_conf_t *conf)
{
    ngx_uint_t                 i, j;
    ngx_module_t              *m;
    ngx_http_upstream_conf_t  *ucf;

    static char  *names[] = {
        "ngx_http_proxy_module", "ngx_http_fastcgi_module",
        "ngx_http_uwsgi_module", "ngx_http_scgi_module",
        "ngx_http_grpc_module", NULL
    };

    for (i = 0; cf->cycle->modules[i]; i++) {
        m = cf->cycle->modules[i];

        if (m->type != NGX_HTTP_MODULE || m->name == NULL) {
            continue;
        }

        for (j = 0; names[j]; j++) {
            if (ngx_strcmp(m->name, names[j]) == 0) {
                break;
            }
        }

        if (names[j] == NULL) {
            continue;
        }

        ucf = ((ngx_http_conf_ctx_t *) cf->ctx)->loc_conf[m->ctx_index];

        if (ucf == NULL) {
            continue;
        }

#if (NGX_HTTP_CACHE)
        if (ucf->cache > 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V_cache\" in a location that delegates "
                          "(\"kcd_spn\" in %V:%ui) would serve one user's "
                          "response to another: cache only in locations "
                          "with \"kcd_auth off\"", &ucf->module,
                          &conf->spn_file, conf->spn_line);
            return NGX_ERROR;
        }
#endif

        if (ucf->store > 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"%V_store\" in a location that delegates "
                          "(\"kcd_spn\" in %V:%ui) would serve one user's "
                          "response to another: store only in locations "
                          "with \"kcd_auth off\"", &ucf->module,
                          &conf->spn_file, conf->spn_line);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_init(ngx_conf_t *cf)
{
    krb5_context               kctx;
    char                      *realm;
    ngx_str_t                  name;
    ngx_http_handler_pt       *h;
    ngx_http_core_main_conf_t *cmcf;
    ngx_http_kcd_loc_conf_t   *klcf;
    ngx_http_kcd_main_conf_t  *kmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_kcd_access_handler;

    if (ngx_http_kcd_filter_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_kcd_conf_check_servers(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_kcd_module);

    if (kmcf->keytab.len || kmcf->use_winbind) {
        kmcf->thread_pool = ngx_thread_pool_add(cf, &kmcf->thread_pool_name);
        if (kmcf->thread_pool == NULL) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_kcd_metrics_init(cf, kmcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_kcd_upstream_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_kcd_identity_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    /* B13: kcd_spn at the http level needs kcd_auth there too */

    klcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_kcd_module);

    if (klcf->spn_here && (klcf->schemes == NGX_CONF_UNSET_UINT
                           || klcf->schemes == 0))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_spn\" without \"kcd_auth\" in the same or an "
                      "enclosing block: nothing would be authenticated to "
                      "delegate in %V:%ui", &klcf->spn_file, klcf->spn_line);
        return NGX_ERROR;
    }

    /* kcd_realm defaults to the default realm of krb5.conf */

    if (krb5_init_context(&kctx) == 0) {
        if (krb5_get_default_realm(kctx, &realm) == 0) {
            name.len = ngx_strlen(realm);
            name.data = ngx_pnalloc(cf->pool, name.len);

            if (name.data) {
                ngx_memcpy(name.data, realm, name.len);
                kmcf->default_realm = name;
            }

            krb5_free_default_realm(kctx, realm);
        }

        krb5_free_context(kctx);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_init_process(ngx_cycle_t *cycle)
{
    char                       err[512];
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_kcd_module);

    if (kmcf == NULL) {
        return NGX_OK;
    }

    if (kmcf->keytab.len) {
        if (kcd_gss_init(&kmcf->gss,
                         kcd_gss_keytab_name(kmcf->keytab_mem),
                         (char *) kmcf->service_principal.data,
                         err, sizeof(err))
            != 0)
        {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "kcd: Kerberos set-up failed in this worker: %s",
                          err);
            kmcf->gss = NULL;
        }
    }

    if (kmcf->use_winbind && kcd_wb_check(err, sizeof(err)) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "kcd: winbind pass-through will fail: %s", err);
    }

    return NGX_OK;
}


static void
ngx_http_kcd_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_kcd_module);

    if (kmcf && kmcf->gss) {
        kcd_gss_destroy(kmcf->gss);
        kmcf->gss = NULL;
    }
}


static char *
ngx_http_kcd_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_loc_conf_t *klcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i, s;

    if (klcf->schemes != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    klcf->auth_file = cf->conf_file->file.name;
    klcf->auth_line = cf->conf_file->line;
    klcf->schemes = 0;
    klcf->nschemes = 0;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strcasecmp(value[i].data, (u_char *) "ntlm") == 0) {
            s = NGX_HTTP_KCD_NTLM;

        } else if (ngx_strcasecmp(value[i].data, (u_char *) "negotiate")
                   == 0)
        {
            s = NGX_HTTP_KCD_NEGOTIATE;

        } else if (ngx_strcasecmp(value[i].data, (u_char *) "basic") == 0) {
            s = NGX_HTTP_KCD_BASIC;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown scheme \"%V\" in \"kcd_auth\": use "
                               "\"ntlm\", \"negotiate\", \"basic\" or "
                               "\"off\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (klcf->schemes & s) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "scheme \"%V\" given twice in \"kcd_auth\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        klcf->schemes |= s;
        klcf->order[klcf->nschemes++] = s;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_kcd_strip_negotiate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_loc_conf_t *klcf = conf;

    ngx_str_t                         *value, one;
    ngx_http_compile_complex_value_t   ccv;

    if (klcf->strip_set != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;
    klcf->strip_set = 1;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        klcf->strip_negotiate = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_strcmp(value[1].data, "on") == 0) {
        ngx_str_set(&one, "1");

    } else if (ngx_http_script_variables_count(&value[1]) == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"kcd_strip_negotiate\": "
                           "use \"on\", \"off\" or a variable", &value[1]);
        return NGX_CONF_ERROR;

    } else {
        one = value[1];
    }

    klcf->strip_negotiate = ngx_palloc(cf->pool,
                                       sizeof(ngx_http_complex_value_t));
    if (klcf->strip_negotiate == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &one;
    ccv.complex_value = klcf->strip_negotiate;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_kcd_user_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_loc_conf_t *klcf = conf;

    ngx_str_t  *value;

    if (klcf->user_file != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        klcf->user_file = NULL;
        return NGX_CONF_OK;
    }

    return ngx_http_kcd_user_file_ref(cf, &value[1], &klcf->user_file);
}


/*
 * One loaded object per user file path in a configuration: scope (B14)
 * compares what checked an identity, so two directives naming the same
 * file are the same backend.
 */

static char *
ngx_http_kcd_user_file_ref(ngx_conf_t *cf, ngx_str_t *path,
    ngx_http_kcd_user_file_t **uf)
{
    char                       *rv;
    ngx_str_t                   full;
    ngx_uint_t                  i;
    ngx_http_kcd_user_file_t  **files;
    ngx_http_kcd_main_conf_t   *kmcf;

    kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_kcd_module);

    full = *path;

    if (ngx_conf_full_name(cf->cycle, &full, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (kmcf->user_files.elts == NULL
        && ngx_array_init(&kmcf->user_files, cf->pool, 4,
                          sizeof(ngx_http_kcd_user_file_t *))
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    files = kmcf->user_files.elts;

    for (i = 0; i < kmcf->user_files.nelts; i++) {
        if (files[i]->path.len == full.len
            && ngx_strncmp(files[i]->path.data, full.data, full.len) == 0)
        {
            *uf = files[i];
            return NGX_CONF_OK;
        }
    }

    rv = ngx_http_kcd_user_file_load(cf, path, uf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    files = ngx_array_push(&kmcf->user_files);
    if (files == NULL) {
        return NGX_CONF_ERROR;
    }

    *files = *uf;

    return NGX_CONF_OK;
}


static char *
ngx_http_kcd_keytab(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_main_conf_t *kmcf = conf;

    ngx_str_t  *value;

    if (kmcf->keytab.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    kmcf->keytab = value[1];

    if (ngx_conf_full_name(cf->cycle, &kmcf->keytab, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_kcd_conf_check_file(cf, "kcd_keytab", &kmcf->keytab)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    kmcf->keytab_file = cf->conf_file->file.name;
    kmcf->keytab_line = cf->conf_file->line;
    kmcf->use_gss = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_kcd_spn(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_loc_conf_t *klcf = conf;

    ngx_str_t                         *value;
    ngx_http_compile_complex_value_t   ccv;

    if (klcf->spn != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        klcf->spn = NULL;
        return NGX_CONF_OK;
    }

    if (value[1].len == 0) {
        return "takes an SPN such as HTTP/exchange.corp.example";
    }

    klcf->spn = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (klcf->spn == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = klcf->spn;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (klcf->spn->lengths == NULL
        && ngx_http_kcd_conf_check_spn(cf, &value[1]) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    klcf->spn_file = cf->conf_file->file.name;
    klcf->spn_line = cf->conf_file->line;
    klcf->spn_here = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_kcd_domain_map(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_main_conf_t *kmcf = conf;

    ngx_str_t                  *value;
    ngx_http_kcd_domain_map_t  *m;

    value = cf->args->elts;

    if (kmcf->domain_map == NULL) {
        kmcf->domain_map = ngx_array_create(cf->pool, 4,
                                      sizeof(ngx_http_kcd_domain_map_t));
        if (kmcf->domain_map == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    m = ngx_array_push(kmcf->domain_map);
    if (m == NULL) {
        return NGX_CONF_ERROR;
    }

    m->netbios = value[1];
    m->realm = value[2];

    if (ngx_http_kcd_conf_check_realm(cf, "kcd_domain_map", &m->realm)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_kcd_basic_realm(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_loc_conf_t *klcf = conf;

    u_char     *p, *s;
    size_t      len;
    ngx_str_t  *value;
    ngx_uint_t  i;

    if (klcf->basic_realm.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* quoted-string: escape '"' and '\' */

    len = sizeof("Basic realm=\"\"") - 1 + value[1].len;
    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] == '"' || value[1].data[i] == '\\') {
            len++;
        }

        if (value[1].data[i] < 0x20) {
            return "must not contain control characters";
        }
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    s = p;
    p = ngx_cpymem(p, "Basic realm=\"", sizeof("Basic realm=\"") - 1);

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] == '"' || value[1].data[i] == '\\') {
            *p++ = '\\';
        }
        *p++ = value[1].data[i];
    }

    *p++ = '"';

    klcf->basic_realm.data = s;
    klcf->basic_realm.len = p - s;

    return NGX_CONF_OK;
}


static char *
ngx_http_kcd_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_kcd_status_handler;

    return NGX_CONF_OK;
}
