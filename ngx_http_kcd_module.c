/*
 * ngx_http_kcd_module: NTLM / Kerberos / Basic at the front door, Kerberos
 * constrained delegation (S4U2Self + S4U2Proxy) to the upstream.
 *
 * This file wires the pieces: directives, variables, the access-phase
 * handler, the thread-pool plumbing and kcd_status.  The NTLM handshake
 * and re-authentication are in ngx_http_ntlm_reauth.c, delegation in
 * ngx_http_kcd_delegate.c, the header filter in ngx_http_kcd_filter.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <krb5.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_ntlm_crypto.h"
#include "ngx_http_kcd_winbind.h"


struct ngx_http_kcd_task_s {
    ngx_uint_t                 kind;
    ngx_http_request_t        *request;
    kcd_gss_t                 *gss;

    /* inputs, allocated from the request pool before posting */
    char                      *user;
    char                      *domain;
    char                      *workstation;
    char                      *password;
    char                      *principal;
    char                      *spn;
    u_char                     challenge[8];
    u_char                    *nt;
    size_t                     nt_len;
    u_char                    *lm;
    size_t                     lm_len;
    u_char                    *token;
    size_t                     token_len;
    kcd_gss_buf_t              evidence;      /* borrowed, not owned */

    /* outputs, malloc()ed by the libraries where noted */
    int                        status;
    char                       error[512];
    kcd_wb_result_t            wb;
    char                      *out_principal; /* malloc */
    kcd_gss_buf_t              out_evidence;  /* malloc */
    kcd_gss_buf_t              out_token;     /* malloc */
    kcd_gss_buf_t              cred;          /* malloc */
    time_t                     endtime;
};


static ngx_int_t ngx_http_kcd_access_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_basic(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx, ngx_str_t *tok);
static ngx_int_t ngx_http_kcd_negotiate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx, u_char *token,
    size_t len);
static void ngx_http_kcd_thread_handler(void *data, ngx_log_t *log);
static void ngx_http_kcd_thread_event_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_kcd_task_done(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, ngx_http_kcd_task_t *t);
static void ngx_http_kcd_task_free(ngx_http_kcd_task_t *t);
static char *ngx_http_kcd_cstr(ngx_pool_t *pool, ngx_str_t *s);

static ngx_int_t ngx_http_kcd_status_handler(ngx_http_request_t *r);

static ngx_int_t ngx_http_kcd_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_kcd_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);

static void *ngx_http_kcd_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_kcd_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_kcd_create_srv_conf(ngx_conf_t *cf);
static char *ngx_http_kcd_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static void *ngx_http_kcd_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_kcd_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_kcd_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_kcd_init_process(ngx_cycle_t *cycle);
static void ngx_http_kcd_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_kcd_init_counters(ngx_shm_zone_t *shm_zone,
    void *data);

static char *ngx_http_kcd_auth(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_strip_negotiate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_user_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
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
      NULL },

    { ngx_string("kcd_ntlm_dns_domain"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_SRV_CONF_OFFSET,
      offsetof(ngx_http_kcd_srv_conf_t, ntlm_dns_domain),
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
      NULL },

    { ngx_string("kcd_realm"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_kcd_loc_conf_t, realm),
      NULL },

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
    ngx_http_kcd_add_variables,            /* preconfiguration */
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
    NULL,                                  /* init module */
    ngx_http_kcd_init_process,             /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_kcd_exit_process,             /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_HTTP_KCD_VAR_USER       0
#define NGX_HTTP_KCD_VAR_PRINCIPAL  1
#define NGX_HTTP_KCD_VAR_SCHEME     2
#define NGX_HTTP_KCD_VAR_CACHE      3

static ngx_http_variable_t  ngx_http_kcd_vars[] = {

    { ngx_string("kcd_user"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_USER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kcd_principal"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_PRINCIPAL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kcd_auth_scheme"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_SCHEME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kcd_ticket_cache_status"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_CACHE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_kcd_scheme_names[] = {
    ngx_null_string,
    ngx_string("ntlm"),
    ngx_string("negotiate"),
    ngx_null_string,
    ngx_string("basic")
};


/* the default realm of krb5.conf, read once in the master */
static ngx_str_t  ngx_http_kcd_default_realm;


static ngx_int_t
ngx_http_kcd_access_handler(ngx_http_request_t *r)
{
    u_char                   *p, *last, *buf;
    size_t                    len;
    ngx_str_t                 scheme, token;
    ngx_uint_t                sch;
    ngx_table_elt_t          *h;
    ngx_http_kcd_ctx_t       *ctx;
    ngx_http_kcd_conn_t      *kc;
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (klcf->schemes == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_kcd_get_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->pending) {
        return NGX_AGAIN;
    }

    if (ctx->done) {
        return ctx->rc;
    }

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

        if (klcf->schemes & (NGX_HTTP_KCD_NTLM|NGX_HTTP_KCD_NEGOTIATE)) {
            return ngx_http_kcd_challenge(r, klcf);
        }

        return NGX_HTTP_FORBIDDEN;
    }

    kc = ngx_http_kcd_conn(r, 0);
    h = r->headers_in.authorization;

    if (h && kc && kc->injected == h
        && kc->injected_req == r->connection->requests)
    {
        /* our own upstream header, seen again after an internal redirect */
        h = NULL;
    }

    if (h == NULL) {

        if (kc && kc->req_num == r->connection->requests
            && kc->req_user.len)
        {
            /* this request, authenticated before an internal redirect */
            ngx_str_t  user, principal;

            user = kc->req_user;
            principal = kc->req_principal;

            return ngx_http_kcd_authenticated(r, ctx, kc->req_scheme,
                                              &user, &principal);
        }

        if (kc && kc->state == NGX_HTTP_KCD_CONN_AUTHENTICATED
            && !ngx_http_kcd_conn_in_scope(r, kc))
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: connection authenticated as \"%*s\" by "
                          "another server or validation backend: "
                          "challenged again", kc->user_len, kc->user);

            return ngx_http_kcd_challenge(r, klcf);
        }

        if (kc && kc->state == NGX_HTTP_KCD_CONN_AUTHENTICATED) {
            /* B3: the identity belongs to the connection */
            ngx_str_t  user, principal;

            user.data = kc->user;
            user.len = kc->user_len;
            principal.data = kc->principal;
            principal.len = kc->principal_len;

            return ngx_http_kcd_authenticated(r, ctx, kc->auth_scheme,
                                              &user, &principal);
        }

        return ngx_http_kcd_challenge(r, klcf);
    }

    p = h->value.data;
    last = p + h->value.len;

    while (p < last && *p == ' ') {
        p++;
    }

    scheme.data = p;

    while (p < last && *p != ' ') {
        p++;
    }

    scheme.len = p - scheme.data;

    while (p < last && *p == ' ') {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    token.data = p;
    token.len = last - p;

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
        return ngx_http_kcd_challenge(r, klcf);
    }

    if (sch == NGX_HTTP_KCD_BASIC) {
        return ngx_http_kcd_basic(r, klcf, ctx, &token);
    }

    if (token.len == 0) {
        return ngx_http_kcd_challenge(r, klcf);
    }

    if (token.len > NGX_HTTP_KCD_TOKEN_MAX) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: %V token of %uz bytes refused (limit %uz)",
                      &scheme, token.len, (size_t) NGX_HTTP_KCD_TOKEN_MAX);
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    buf = ngx_pnalloc(r->pool, ngx_base64_decoded_length(token.len) + 1);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    {
        ngx_str_t  dst;

        dst.data = buf;

        if (ngx_decode_base64(&dst, &token) != NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: invalid base64 in %V authorization",
                          &scheme);
            ngx_http_kcd_count(r, bad_request);
            return NGX_HTTP_BAD_REQUEST;
        }

        len = dst.len;
    }

    if (kcd_ntlm_message_type(buf, len) > 0) {
        /* NTLM, or raw NTLMSSP under Negotiate (SSPI without Kerberos) */

        if (klcf->user_file == NULL && !klcf->winbind) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: NTLMSSP under Negotiate refused: no NTLM "
                          "validation backend in this location");
            return ngx_http_kcd_challenge(r, klcf);
        }

        return ngx_http_kcd_ntlm_handle(r, klcf, ctx, sch, buf, len);
    }

    if (sch == NGX_HTTP_KCD_NTLM) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: NTLM authorization is not an NTLMSSP message");
        ngx_http_kcd_count(r, bad_request);
        return NGX_HTTP_BAD_REQUEST;
    }

    return ngx_http_kcd_negotiate(r, klcf, ctx, buf, len);
}


ngx_http_kcd_ctx_t *
ngx_http_kcd_get_ctx(ngx_http_request_t *r)
{
    ngx_http_kcd_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_kcd_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_kcd_module);
    }

    return ctx;
}


ngx_int_t
ngx_http_kcd_strip(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf)
{
    ngx_str_t  val;

    if (klcf->strip_negotiate == NULL) {
        return 0;
    }

    if (ngx_http_complex_value(r, klcf->strip_negotiate, &val) != NGX_OK) {
        /* fail safe: a client that can't do Negotiate keeps working */
        return 1;
    }

    if (val.len == 0 || (val.len == 1 && val.data[0] == '0')) {
        return 0;
    }

    return 1;
}


static ngx_int_t
ngx_http_kcd_push_challenge(ngx_http_request_t *r, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value = *value;

    if (r->headers_out.www_authenticate == NULL) {
        r->headers_out.www_authenticate = h;
    }

    return NGX_OK;
}


/* B1: one WWW-Authenticate per offered scheme, in configured order */

ngx_int_t
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

        if (ngx_http_kcd_push_challenge(r, &v) != NGX_OK) {
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


/*
 * user@REALM for delegation: NetBIOS domains through kcd_domain_map, else
 * kcd_realm, else the default realm of krb5.conf.
 */

ngx_int_t
ngx_http_kcd_principal(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_str_t *user, ngx_str_t *domain, ngx_str_t *principal)
{
    u_char                     *p;
    ngx_str_t                  *realm;
    ngx_uint_t                  i;
    ngx_http_kcd_domain_map_t  *map;
    ngx_http_kcd_main_conf_t   *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (ngx_strlchr(user->data, user->data + user->len, '@')) {
        *principal = *user;
        return NGX_OK;
    }

    realm = NULL;

    if (domain && domain->len && kmcf->domain_map) {
        map = kmcf->domain_map->elts;

        for (i = 0; i < kmcf->domain_map->nelts; i++) {
            if (map[i].netbios.len == domain->len
                && ngx_strncasecmp(map[i].netbios.data, domain->data,
                                   domain->len) == 0)
            {
                realm = &map[i].realm;
                break;
            }
        }
    }

    if (realm == NULL && klcf->realm.len) {
        realm = &klcf->realm;
    }

    if (realm == NULL && ngx_http_kcd_default_realm.len) {
        realm = &ngx_http_kcd_default_realm;
    }

    if (realm == NULL) {
        *principal = *user;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, user->len + 1 + realm->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    principal->data = p;
    p = ngx_cpymem(p, user->data, user->len);
    *p++ = '@';
    p = ngx_cpymem(p, realm->data, realm->len);
    principal->len = p - principal->data;

    return NGX_OK;
}


/*
 * Authentication succeeded: the client's credentials never reach the
 * upstream (B7); with kcd_spn the request waits for its delegated token.
 */

ngx_int_t
ngx_http_kcd_authenticated(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    ngx_uint_t scheme, ngx_str_t *user, ngx_str_t *principal)
{
    ngx_http_kcd_conn_t      *kc;
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    ctx->authenticated = 1;
    ctx->auth_scheme = scheme;

    /* NUL-terminated: the principal goes to GSSAPI as a C string */

    ctx->user.data = (u_char *) ngx_http_kcd_cstr(r->pool, user);
    ctx->user.len = user->len;
    ctx->principal.data = (u_char *) ngx_http_kcd_cstr(r->pool, principal);
    ctx->principal.len = principal->len;

    if (ctx->user.data == NULL || ctx->principal.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_strlen(ctx->principal.data) != ctx->principal.len) {
        return NGX_HTTP_BAD_REQUEST;
    }

    kc = ngx_http_kcd_conn(r, 1);
    if (kc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    kc->req_num = r->connection->requests;
    kc->req_scheme = scheme;
    kc->req_user = ctx->user;
    kc->req_principal = ctx->principal;

    if (ngx_http_kcd_hide_authorization(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (klcf->spn) {
        return ngx_http_kcd_delegate(r, klcf, ctx);
    }

    return NGX_OK;
}


/* B6: Basic, only over TLS */

static ngx_int_t
ngx_http_kcd_basic(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx, ngx_str_t *tok)
{
    u_char                    *p, *colon, *sep;
    u_char                     hash[16];
    ngx_str_t                  dec, user, domain, pass, principal;
    ngx_http_kcd_account_t    *acc;
    ngx_http_kcd_main_conf_t  *kmcf;

    if (r->connection->ssl == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: Basic credentials refused on a connection "
                      "without TLS");
        return ngx_http_kcd_challenge(r, klcf);
    }

    if (tok->len == 0 || tok->len > 4096) {
        return ngx_http_kcd_challenge(r, klcf);
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
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: malformed Basic credentials");
        return ngx_http_kcd_challenge(r, klcf);
    }

    user.data = dec.data;
    user.len = colon - dec.data;
    pass.data = colon + 1;
    pass.len = dec.data + dec.len - pass.data;

    for (p = user.data; p < user.data + user.len; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: control character in Basic user name");
            return ngx_http_kcd_challenge(r, klcf);
        }
    }

    /* DOMAIN\user */

    domain.len = 0;
    domain.data = NULL;

    sep = ngx_strlchr(user.data, user.data + user.len, '\\');
    if (sep) {
        domain.data = user.data;
        domain.len = sep - user.data;
        user.data = sep + 1;
        user.len = (dec.data + (colon - dec.data)) - user.data;
    }

    if (user.len == 0 || user.len > NGX_HTTP_KCD_NAME_MAX
        || domain.len > NGX_HTTP_KCD_NAME_MAX)
    {
        return ngx_http_kcd_challenge(r, klcf);
    }

    ctx->basic_user = user;
    ctx->basic_domain = domain;
    ctx->basic_password = pass;

    if (klcf->user_file) {

        acc = ngx_http_kcd_user_file_find(klcf->user_file, &user, &domain);

        if (acc
            && kcd_ntlm_nt_hash((char *) pass.data, pass.len, hash) == 0
            && kcd_ntlm_memcmp_ct(hash, acc->hash, 16) == 0)
        {
            kcd_ntlm_wipe(hash, sizeof(hash));
            kcd_ntlm_wipe(pass.data, pass.len);
            ngx_http_kcd_count(r, basic_ok);

            if (ngx_http_kcd_principal(r, klcf, &user, &domain, &principal)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* $kcd_user: the name as the client typed it */
            user.data = dec.data;
            user.len = colon - dec.data;

            return ngx_http_kcd_authenticated(r, ctx, NGX_HTTP_KCD_BASIC,
                                              &user, &principal);
        }

        kcd_ntlm_wipe(hash, sizeof(hash));

        if (!klcf->winbind) {
            kcd_ntlm_wipe(pass.data, pass.len);
            ngx_http_kcd_count(r, basic_failed);
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: Basic logon failed for user \"%V\" domain "
                          "\"%V\": %s", &user, &domain,
                          acc ? "wrong password" : "unknown user");
            return ngx_http_kcd_challenge(r, klcf);
        }
    }

    if (klcf->winbind) {
        return ngx_http_kcd_post_task(r, ctx, NGX_HTTP_KCD_TASK_WB_PLAIN);
    }

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (kmcf->keytab.len) {
        return ngx_http_kcd_post_task(r, ctx, NGX_HTTP_KCD_TASK_GSS_PASSWORD);
    }

    kcd_ntlm_wipe(pass.data, pass.len);

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "kcd: Basic logon for \"%V\" cannot be checked: no user "
                  "file, winbind or keytab", &user);

    return ngx_http_kcd_challenge(r, klcf);
}


/* B5: Kerberos (SPNEGO) from the client, checked in the thread pool */

static ngx_int_t
ngx_http_kcd_negotiate(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_http_kcd_ctx_t *ctx, u_char *token, size_t len)
{
    ngx_http_kcd_conn_t       *kc;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (kmcf->keytab.len == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: Kerberos token refused: no kcd_keytab");
        return ngx_http_kcd_challenge(r, klcf);
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

    ctx->type3 = token;
    ctx->type3_len = len;

    return ngx_http_kcd_post_task(r, ctx, NGX_HTTP_KCD_TASK_GSS_ACCEPT);
}


static char *
ngx_http_kcd_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return p;
}


/* B9: everything that can wait on the network goes to the thread pool */

ngx_int_t
ngx_http_kcd_post_task(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    ngx_uint_t kind)
{
    ngx_thread_task_t         *task;
    ngx_http_kcd_task_t       *t;
    ngx_http_kcd_conn_t       *kc;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (kmcf->thread_pool == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: no thread pool");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_kcd_task_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t = task->ctx;
    t->kind = kind;
    t->request = r;
    t->gss = kmcf->gss;

    switch (kind) {

    case NGX_HTTP_KCD_TASK_WB_NTLM:
        t->user = ngx_http_kcd_cstr(r->pool, &ctx->ntlm_user);
        t->domain = ngx_http_kcd_cstr(r->pool, &ctx->ntlm_domain);
        t->workstation = ngx_http_kcd_cstr(r->pool, &ctx->ntlm_workstation);
        ngx_memcpy(t->challenge, ctx->challenge, 8);
        t->nt = (u_char *) ctx->auth.nt;
        t->nt_len = ctx->auth.nt_len;
        t->lm = (u_char *) ctx->auth.lm;
        t->lm_len = ctx->auth.lm_len;
        break;

    case NGX_HTTP_KCD_TASK_WB_PLAIN:
        t->user = ngx_http_kcd_cstr(r->pool, &ctx->basic_user);
        t->domain = ngx_http_kcd_cstr(r->pool, &ctx->basic_domain);
        t->password = ngx_http_kcd_cstr(r->pool, &ctx->basic_password);
        kcd_ntlm_wipe(ctx->basic_password.data, ctx->basic_password.len);
        break;

    case NGX_HTTP_KCD_TASK_GSS_PASSWORD:
        {
        ngx_str_t                 principal;
        ngx_http_kcd_loc_conf_t  *klcf;

        klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

        if (ngx_http_kcd_principal(r, klcf, &ctx->basic_user,
                                   &ctx->basic_domain, &principal)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        t->principal = ngx_http_kcd_cstr(r->pool, &principal);
        t->user = ngx_http_kcd_cstr(r->pool, &ctx->basic_user);
        t->password = ngx_http_kcd_cstr(r->pool, &ctx->basic_password);
        kcd_ntlm_wipe(ctx->basic_password.data, ctx->basic_password.len);
        }
        break;

    case NGX_HTTP_KCD_TASK_GSS_ACCEPT:
        t->token = ctx->type3;
        t->token_len = ctx->type3_len;
        break;

    case NGX_HTTP_KCD_TASK_DELEGATE:
        t->principal = ngx_http_kcd_cstr(r->pool, &ctx->principal);
        t->spn = ngx_http_kcd_cstr(r->pool, &ctx->spn);

        kc = ngx_http_kcd_conn(r, 0);
        if (kc && ctx->auth_scheme == NGX_HTTP_KCD_NEGOTIATE) {
            t->evidence = kc->evidence;
        }
        break;
    }

    if ((kind != NGX_HTTP_KCD_TASK_GSS_ACCEPT
         && kind != NGX_HTTP_KCD_TASK_WB_NTLM && t->user == NULL
         && t->principal == NULL)
        || ((kind == NGX_HTTP_KCD_TASK_WB_PLAIN
             || kind == NGX_HTTP_KCD_TASK_GSS_PASSWORD)
            && t->password == NULL))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    task->handler = ngx_http_kcd_thread_handler;
    task->event.handler = ngx_http_kcd_thread_event_handler;
    task->event.data = task;

    if (ngx_thread_task_post(kmcf->thread_pool, task) != NGX_OK) {
        ngx_http_kcd_task_free(t);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->pending = 1;
    ctx->task = t;

    r->main->blocked++;
    r->aio = 1;

    return NGX_AGAIN;
}


/* runs in a thread of the pool: no nginx memory pools, no logging */

static void
ngx_http_kcd_thread_handler(void *data, ngx_log_t *log)
{
    ngx_http_kcd_task_t  *t = data;

    t->error[0] = '\0';

    switch (t->kind) {

    case NGX_HTTP_KCD_TASK_WB_NTLM:
        t->status = kcd_wb_auth_ntlm(t->user, t->domain, t->workstation,
                                     t->challenge, t->nt, t->nt_len,
                                     t->lm, t->lm_len, &t->wb);
        break;

    case NGX_HTTP_KCD_TASK_WB_PLAIN:
        t->status = kcd_wb_auth_plain(t->user, t->domain, t->password,
                                      &t->wb);
        kcd_ntlm_wipe(t->password, ngx_strlen(t->password));
        break;

    case NGX_HTTP_KCD_TASK_GSS_PASSWORD:
        if (t->gss == NULL) {
            t->status = KCD_GSS_ERROR;
            ngx_cpystrn((u_char *) t->error,
                        (u_char *) "Kerberos is not initialized in this "
                        "worker", sizeof(t->error));
            break;
        }

        t->status = kcd_gss_password(t->gss, t->principal, t->password,
                                     &t->out_principal, t->error,
                                     sizeof(t->error));
        kcd_ntlm_wipe(t->password, ngx_strlen(t->password));
        break;

    case NGX_HTTP_KCD_TASK_GSS_ACCEPT:
        if (t->gss == NULL) {
            t->status = KCD_GSS_ERROR;
            ngx_cpystrn((u_char *) t->error,
                        (u_char *) "Kerberos is not initialized in this "
                        "worker", sizeof(t->error));
            break;
        }

        t->status = kcd_gss_accept(t->gss, t->token, t->token_len,
                                   &t->out_principal, &t->out_evidence,
                                   &t->out_token, t->error,
                                   sizeof(t->error));
        break;

    case NGX_HTTP_KCD_TASK_DELEGATE:
        if (t->gss == NULL) {
            t->status = KCD_GSS_ERROR;
            ngx_cpystrn((u_char *) t->error,
                        (u_char *) "Kerberos is not initialized in this "
                        "worker", sizeof(t->error));
            break;
        }

        t->status = kcd_gss_delegate(t->gss, t->principal, t->spn,
                                     t->evidence.len ? &t->evidence : NULL,
                                     &t->cred, &t->endtime, t->error,
                                     sizeof(t->error));

        if (t->status == KCD_GSS_OK) {
            t->status = kcd_gss_token(t->gss, &t->cred, t->spn,
                                      &t->out_token, t->error,
                                      sizeof(t->error));
        }

        break;
    }
}


static void
ngx_http_kcd_task_free(ngx_http_kcd_task_t *t)
{
    if (t->out_principal) {
        free(t->out_principal);
        t->out_principal = NULL;
    }

    kcd_gss_free(&t->out_evidence);
    kcd_gss_free(&t->out_token);
    kcd_gss_free(&t->cred);

    kcd_ntlm_wipe(t->wb.session_key, sizeof(t->wb.session_key));
}


static void
ngx_http_kcd_thread_event_handler(ngx_event_t *ev)
{
    ngx_int_t             rc;
    ngx_connection_t     *c;
    ngx_thread_task_t    *task;
    ngx_http_request_t   *r;
    ngx_http_kcd_ctx_t   *ctx;
    ngx_http_kcd_task_t  *t;

    task = ev->data;
    t = task->ctx;
    r = t->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;
    r->aio = 0;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    if (ctx == NULL || c->error || r->done) {
        ngx_http_kcd_task_free(t);
        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
        return;
    }

    ctx->pending = 0;
    ctx->task = NULL;

    rc = ngx_http_kcd_task_done(r, ctx, t);

    ngx_http_kcd_task_free(t);

    if (rc != NGX_AGAIN) {
        ctx->done = 1;
        ctx->rc = rc;
    }

    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


/* back in the event loop: turn the result of a task into a response */

static ngx_int_t
ngx_http_kcd_task_done(ngx_http_request_t *r, ngx_http_kcd_ctx_t *ctx,
    ngx_http_kcd_task_t *t)
{
    ngx_str_t                 user, domain, principal, tok;
    ngx_http_kcd_conn_t      *kc;
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    switch (t->kind) {

    case NGX_HTTP_KCD_TASK_WB_NTLM:
        return ngx_http_kcd_ntlm_winbind_done(r, klcf, ctx, t->status,
                                              t->wb.error,
                                              t->wb.session_key,
                                              t->wb.user, t->wb.domain);

    case NGX_HTTP_KCD_TASK_WB_PLAIN:
    case NGX_HTTP_KCD_TASK_GSS_PASSWORD:

        if (t->status == KCD_WB_OK) {     /* == KCD_GSS_OK */
            ngx_http_kcd_count(r, basic_ok);

            user = ctx->basic_user;
            domain = ctx->basic_domain;

            if (t->kind == NGX_HTTP_KCD_TASK_GSS_PASSWORD
                && t->out_principal)
            {
                principal.data = (u_char *) t->out_principal;
                principal.len = ngx_strlen(t->out_principal);

            } else if (ngx_http_kcd_principal(r, klcf, &user, &domain,
                                              &principal)
                       != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return ngx_http_kcd_authenticated(r, ctx, NGX_HTTP_KCD_BASIC,
                                              &user, &principal);
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
                          ? "domain controller unreachable"
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

        ngx_http_kcd_count(r, basic_failed);
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: Basic logon failed for user \"%V\" domain "
                      "\"%V\": %s", &ctx->basic_user, &ctx->basic_domain,
                      t->kind == NGX_HTTP_KCD_TASK_WB_PLAIN
                      ? t->wb.error : t->error);

        return ngx_http_kcd_challenge(r, klcf);

    case NGX_HTTP_KCD_TASK_GSS_ACCEPT:

        if (t->status == KCD_GSS_OK && t->out_principal) {
            kc = ngx_http_kcd_conn(r, 1);
            if (kc == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            principal.data = (u_char *) t->out_principal;
            principal.len = ngx_strlen(t->out_principal);

            if (principal.len >= sizeof(kc->principal)) {
                ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                              "kcd: Kerberos principal too long");
                return ngx_http_kcd_challenge(r, klcf);
            }

            ngx_memcpy(kc->principal, principal.data, principal.len);
            kc->principal_len = principal.len;
            ngx_memcpy(kc->user, principal.data, principal.len);
            kc->user_len = principal.len;
            kc->auth_scheme = NGX_HTTP_KCD_NEGOTIATE;
            kc->state = NGX_HTTP_KCD_CONN_AUTHENTICATED;
            ngx_http_kcd_conn_set_scope(r, kc);

            /* the client's own ticket: evidence for S4U2Proxy (B5) */
            kc->evidence = t->out_evidence;
            t->out_evidence.data = NULL;
            t->out_evidence.len = 0;

            ngx_http_kcd_count(r, negotiate_ok);

            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "kcd: Kerberos logon of \"%V\"", &principal);

            return ngx_http_kcd_authenticated(r, ctx,
                                              NGX_HTTP_KCD_NEGOTIATE,
                                              &principal, &principal);
        }

        if (t->status == KCD_GSS_CONTINUE && t->out_token.len) {
            u_char  *p;

            tok.len = sizeof("Negotiate ") - 1
                      + ngx_base64_encoded_length(t->out_token.len);
            tok.data = ngx_pnalloc(r->pool, tok.len);
            if (tok.data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            p = ngx_cpymem(tok.data, "Negotiate ", sizeof("Negotiate ") - 1);

            {
                ngx_str_t  src, dst;

                src.data = t->out_token.data;
                src.len = t->out_token.len;
                dst.data = p;
                ngx_encode_base64(&dst, &src);
                tok.len = (p - tok.data) + dst.len;
            }

            if (ngx_http_kcd_push_challenge(r, &tok) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            return NGX_HTTP_UNAUTHORIZED;
        }

        ngx_http_kcd_count(r, negotiate_failed);

        if (t->status == KCD_GSS_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "kcd: Kerberos logon failed: %s", t->error);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: Kerberos logon failed: %s", t->error);

        return ngx_http_kcd_challenge(r, klcf);

    case NGX_HTTP_KCD_TASK_DELEGATE:
        return ngx_http_kcd_delegate_done(r, ctx, t->status, t->error,
                                          &t->cred, t->endtime,
                                          &t->out_token);
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


ngx_http_kcd_counters_t *
ngx_http_kcd_counters(ngx_http_request_t *r)
{
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    return kmcf ? kmcf->counters : NULL;
}


static ngx_int_t
ngx_http_kcd_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t             s;
    ngx_uint_t            scheme;
    ngx_http_kcd_ctx_t   *ctx;
    ngx_http_kcd_conn_t  *kc;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_kcd_module);
    ngx_str_null(&s);

    if (ctx && ctx->authenticated) {

        switch (data) {
        case NGX_HTTP_KCD_VAR_USER:
            s = ctx->user;
            break;
        case NGX_HTTP_KCD_VAR_PRINCIPAL:
            s = ctx->principal;
            break;
        case NGX_HTTP_KCD_VAR_SCHEME:
            s = ngx_http_kcd_scheme_names[ctx->auth_scheme];
            break;
        default:
            s = ctx->cache_status;
        }

    } else if (data != NGX_HTTP_KCD_VAR_CACHE) {

        /* after an internal redirect into a location without kcd_auth */

        kc = ngx_http_kcd_conn(r, 0);

        if (kc && kc->state == NGX_HTTP_KCD_CONN_AUTHENTICATED) {
            scheme = kc->auth_scheme;

            switch (data) {
            case NGX_HTTP_KCD_VAR_USER:
                s.data = kc->user;
                s.len = kc->user_len;
                break;
            case NGX_HTTP_KCD_VAR_PRINCIPAL:
                s.data = kc->principal;
                s.len = kc->principal_len;
                break;
            default:
                s = ngx_http_kcd_scheme_names[scheme];
            }
        }
    }

    if (s.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_kcd_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* kcd_status: Prometheus text exposition format */

static ngx_int_t
ngx_http_kcd_status_handler(ngx_http_request_t *r)
{
    size_t                     size;
    ngx_int_t                  rc;
    ngx_buf_t                 *b;
    ngx_uint_t                 i;
    ngx_chain_t                out;
    ngx_atomic_t              *val;
    ngx_http_kcd_main_conf_t  *kmcf;

    static const char  *names[] = {
        "kcd_challenges_total",
        "kcd_ntlm_logons_total{result=\"ok\"}",
        "kcd_ntlm_logons_total{result=\"failed\"}",
        "kcd_negotiate_logons_total{result=\"ok\"}",
        "kcd_negotiate_logons_total{result=\"failed\"}",
        "kcd_basic_logons_total{result=\"ok\"}",
        "kcd_basic_logons_total{result=\"failed\"}",
        "kcd_reauthentications_total",
        "kcd_bad_requests_total",
        "kcd_http2_refused_total",
        "kcd_delegations_total{result=\"ok\"}",
        "kcd_delegations_total{result=\"refused\"}",
        "kcd_delegations_total{result=\"unavailable\"}",
        "kcd_ticket_cache_total{result=\"hit\"}",
        "kcd_ticket_cache_total{result=\"miss\"}",
        "kcd_winbind_total{result=\"ok\"}",
        "kcd_winbind_total{result=\"failed\"}",
        "kcd_winbind_total{result=\"unavailable\"}"
    };

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (kmcf->counters == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    size = 0;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size += ngx_strlen(names[i]) + 1 + NGX_ATOMIC_T_LEN + 1;
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    val = (ngx_atomic_t *) kmcf->counters;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        b->last = ngx_sprintf(b->last, "%s %uA\n", names[i], val[i]);
    }

    ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static char *
ngx_http_kcd_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_kcd_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_kcd_init_counters(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t           *shpool;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = shm_zone->data;

    if (data) {
        /* reload: counters survive */
        kmcf->counters = ((ngx_http_kcd_main_conf_t *) data)->counters;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        kmcf->counters = shpool->data;
        return NGX_OK;
    }

    kmcf->counters = ngx_slab_calloc(shpool, sizeof(ngx_http_kcd_counters_t));
    if (kmcf->counters == NULL) {
        return NGX_ERROR;
    }

    shpool->data = kmcf->counters;

    return NGX_OK;
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

    if (kmcf->keytab.len
        && kcd_gss_check_keytab((char *) kmcf->keytab.data,
                                (char *) kmcf->service_principal.data,
                                err, sizeof(err))
           != 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "kcd_keytab \"%V\": %s in %V:%ui", &kmcf->keytab, err,
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

    return klcf;
}


static char *
ngx_http_kcd_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_kcd_loc_conf_t  *prev = parent;
    ngx_http_kcd_loc_conf_t  *conf = child;

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

    if (conf->spn
        && (kmcf->keytab.len == 0 || kmcf->service_principal.len == 0))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_spn\" needs \"kcd_keytab\" and "
                      "\"kcd_service_principal\" at the http level in "
                      "%V:%ui", &conf->spn_file, conf->spn_line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_kcd_init(ngx_conf_t *cf)
{
    krb5_context               kctx;
    char                      *realm;
    ngx_str_t                  name;
    ngx_http_handler_pt       *h;
    ngx_http_core_main_conf_t *cmcf;
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

    kmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_kcd_module);

    if (kmcf->keytab.len || kmcf->use_winbind) {
        kmcf->thread_pool = ngx_thread_pool_add(cf, &kmcf->thread_pool_name);
        if (kmcf->thread_pool == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_str_set(&name, "kcd_status");

    kmcf->counters_zone = ngx_shared_memory_add(cf, &name, 64 * 1024,
                                                &ngx_http_kcd_module);
    if (kmcf->counters_zone == NULL) {
        return NGX_ERROR;
    }

    kmcf->counters_zone->init = ngx_http_kcd_init_counters;
    kmcf->counters_zone->data = kmcf;

    /* kcd_realm defaults to the default realm of krb5.conf */

    if (ngx_http_kcd_default_realm.len == 0
        && krb5_init_context(&kctx) == 0)
    {
        if (krb5_get_default_realm(kctx, &realm) == 0) {
            name.len = ngx_strlen(realm);
            name.data = ngx_pnalloc(cf->cycle->pool, name.len);

            if (name.data) {
                ngx_memcpy(name.data, realm, name.len);
                ngx_http_kcd_default_realm = name;
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
        if (kcd_gss_init(&kmcf->gss, (char *) kmcf->keytab.data,
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

    return ngx_http_kcd_user_file_load(cf, &value[1], &klcf->user_file);
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

    if (access((char *) kmcf->keytab.data, R_OK) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "kcd_keytab \"%V\" is not readable",
                           &kmcf->keytab);
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

    klcf->spn_file = cf->conf_file->file.name;
    klcf->spn_line = cf->conf_file->line;

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
