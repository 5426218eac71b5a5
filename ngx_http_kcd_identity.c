/*
 * One identity with its scope (B3, B14).
 *
 * A logon produces one ngx_http_kcd_identity_t: who (user, domain,
 * canonical principal, scheme) and under which checks (server, validation
 * backend, realm mapping, channel-binding policy met).  It is kept in two
 * places only:
 *
 *  - the request record (r->pool cleanup): the identity of this request.
 *    It survives internal redirects, which clear the module contexts; a
 *    subrequest shares the pool and so reads the main request's record.
 *  - the connection (c->pool cleanup), for NTLM and Kerberos (B3): reused
 *    by a later request only where ngx_http_kcd_identity_holds() says the
 *    same checks would have accepted it.  Idle keep-alive connections hold
 *    it for as long as they stay open, so it is packed: one malloc()ed
 *    block, each spelling stored once (ngx_http_kcd_bound_identity_t).
 *    The connection keeps nothing else of a completed handshake but a
 *    Kerberos client's own ticket (for S4U2Proxy).
 *
 * The access handler, the variables and delegation consult nothing else.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"
#include "ngx_http_kcd_names.h"
#include "ngx_http_kcd_ntlm_crypto.h"


static void ngx_http_kcd_request_cleanup(void *data);
static void ngx_http_kcd_conn_cleanup(void *data);
static ngx_http_kcd_bound_identity_t *ngx_http_kcd_identity_bind(
    ngx_http_request_t *r, ngx_http_kcd_identity_t *id);
static ngx_int_t ngx_http_kcd_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_kcd_remote_user(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#define NGX_HTTP_KCD_VAR_USER         0
#define NGX_HTTP_KCD_VAR_PRINCIPAL    1
#define NGX_HTTP_KCD_VAR_SCHEME       2
#define NGX_HTTP_KCD_VAR_CACHE        3
#define NGX_HTTP_KCD_VAR_USER_NAME    4
#define NGX_HTTP_KCD_VAR_USER_DOMAIN  5


static ngx_http_variable_t  ngx_http_kcd_vars[] = {

    { ngx_string("kcd_user"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_USER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kcd_principal"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_PRINCIPAL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kcd_auth_scheme"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_SCHEME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kcd_ticket_cache_status"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_CACHE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kcd_user_name"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_USER_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("kcd_user_domain"), NULL, ngx_http_kcd_variable,
      NGX_HTTP_KCD_VAR_USER_DOMAIN, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_kcd_scheme_names[] = {
    ngx_null_string,
    ngx_string("ntlm"),
    ngx_string("negotiate"),
    ngx_null_string,
    ngx_string("basic")
};


/* for the log */
static char  *ngx_http_kcd_scheme_labels[] = {
    "", "NTLM", "Kerberos", "", "Basic"
};


static ngx_http_get_variable_pt  ngx_http_kcd_original_remote_user;


/*
 * The strings of an identity, in the order they are packed for the
 * connection: the principal first (it stays NUL-terminated there), then
 * the ones most likely to be found inside it or inside user.
 */
static size_t  ngx_http_kcd_identity_strings[NGX_HTTP_KCD_IDENTITY_STRINGS] = {
    offsetof(ngx_http_kcd_identity_t, principal),
    offsetof(ngx_http_kcd_identity_t, user),
    offsetof(ngx_http_kcd_identity_t, name),
    offsetof(ngx_http_kcd_identity_t, domain),
    offsetof(ngx_http_kcd_identity_t, map_domain),
    offsetof(ngx_http_kcd_identity_t, realm),
    offsetof(ngx_http_kcd_identity_t, groups)
};

#define ngx_http_kcd_identity_str(id, i)                                    \
    ((ngx_str_t *) ((u_char *) (id) + ngx_http_kcd_identity_strings[i]))


/*
 * A new identity in r->pool.  name, domain: the canonical spelling (from
 * the user file line or the domain controller, never the client's);
 * map_domain: the domain the realm mapping starts from (empty for user file
 * lines without a domain: they log on in the server's own domain and get
 * kcd_realm, never a realm the client's domain field would choose);
 * cb_met: the strongest kcd_channel_binding policy this logon satisfied.
 * NULL on allocation failure or a name with a NUL byte.
 */

ngx_http_kcd_identity_t *
ngx_http_kcd_identity_create(ngx_http_request_t *r, ngx_uint_t scheme,
    ngx_uint_t backend, ngx_str_t *name, ngx_str_t *domain,
    ngx_str_t *map_domain, ngx_uint_t cb_met)
{
    u_char                   *p;
    size_t                    len;
    ngx_str_t                 realm;
    ngx_http_kcd_identity_t  *id;
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (ngx_strlchr(name->data, name->data + name->len, '\0')
        || ngx_strlchr(domain->data, domain->data + domain->len, '\0'))
    {
        return NULL;
    }

    if (ngx_http_kcd_realm(r, klcf, map_domain, &realm) != NGX_OK) {
        return NULL;
    }

    len = sizeof(ngx_http_kcd_identity_t)
          + domain->len + 1 + name->len           /* user */
          + name->len + 1 + realm.len + 1         /* principal */
          + map_domain->len + realm.len;

    id = ngx_pcalloc(r->pool, len);
    if (id == NULL) {
        return NULL;
    }

    p = (u_char *) (id + 1);

    id->scheme = scheme;
    id->backend = backend;
    id->user_file = (backend == NGX_HTTP_KCD_BACKEND_FILE) ? klcf->user_file
                                                           : NULL;
    id->server = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
    id->channel_binding = cb_met;
    id->lockout = ngx_http_kcd_lockout_scope(r);

    /* $kcd_user: DOMAIN\user for NTLM, user for Basic */

    id->user.data = p;

    if (scheme == NGX_HTTP_KCD_NTLM && domain->len) {
        p = ngx_cpymem(p, domain->data, domain->len);
        *p++ = '\\';
    }

    id->name.data = p;
    id->name.len = name->len;
    p = ngx_cpymem(p, name->data, name->len);
    id->user.len = p - id->user.data;

    id->domain.data = (domain->len && scheme == NGX_HTTP_KCD_NTLM)
                      ? id->user.data : NULL;
    id->domain.len = domain->len;

    if (id->domain.data == NULL && domain->len) {
        id->domain.data = p;
        p = ngx_cpymem(p, domain->data, domain->len);
    }

    id->principal.data = p;
    p = ngx_cpymem(p, name->data, name->len);

    if (realm.len) {
        *p++ = '@';
        p = ngx_cpymem(p, realm.data, realm.len);
    }

    id->principal.len = p - id->principal.data;
    *p++ = '\0';

    id->map_domain.data = p;
    id->map_domain.len = map_domain->len;
    p = ngx_cpymem(p, map_domain->data, map_domain->len);

    id->realm.data = p;
    id->realm.len = realm.len;
    ngx_memcpy(p, realm.data, realm.len);

    return id;
}


/*
 * An identity from a Kerberos principal "user@REALM" (a client's ticket,
 * or the KDC's answer to a Basic AS exchange): the realm is the ticket's,
 * no mapping applies.
 */

ngx_http_kcd_identity_t *
ngx_http_kcd_identity_kerberos(ngx_http_request_t *r, ngx_uint_t scheme,
    ngx_uint_t backend, ngx_str_t *principal)
{
    u_char                   *p, *at;
    ngx_http_kcd_identity_t  *id;

    if (principal->len == 0
        || ngx_strlchr(principal->data, principal->data + principal->len,
                       '\0'))
    {
        return NULL;
    }

    id = ngx_pcalloc(r->pool, sizeof(ngx_http_kcd_identity_t)
                              + principal->len + 1);
    if (id == NULL) {
        return NULL;
    }

    p = (u_char *) (id + 1);
    ngx_memcpy(p, principal->data, principal->len);
    p[principal->len] = '\0';

    id->scheme = scheme;
    id->backend = backend;
    id->server = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
    id->channel_binding = KCD_NTLM_CB_REQUIRE;   /* NTLM only */
    id->lockout = ngx_http_kcd_lockout_scope(r);

    id->principal.data = p;
    id->principal.len = principal->len;

    /*
     * name and domain are the principal's two parts; $kcd_user is the
     * principal for Kerberos clients, the name for Basic
     */

    id->user = id->principal;
    id->name = id->principal;

    at = ngx_strlchr(p, p + principal->len, '@');

    if (at) {
        id->name.len = at - p;
        id->domain.data = at + 1;
        id->domain.len = p + principal->len - (at + 1);
    }

    if (scheme == NGX_HTTP_KCD_BASIC) {
        id->user = id->name;
    }

    return id;
}


/*
 * B14: does the identity hold for request r in its location, i.e. would the
 * same checks have accepted it here?  Same server{}, a location that
 * accepts its scheme, the same validation backend (the same loaded user
 * file: two directives naming one path share it), the same realm mapping,
 * and a kcd_channel_binding policy no stricter than the one it met.
 * Returns 1, or 0 with a reason for the log in *why.
 */

ngx_uint_t
ngx_http_kcd_identity_holds(ngx_http_request_t *r,
    ngx_http_kcd_identity_t *id, const char **why)
{
    void                      *lockout;
    ngx_str_t                  realm;
    ngx_http_kcd_loc_conf_t   *klcf;
    ngx_http_kcd_main_conf_t  *kmcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (id->server != ngx_http_get_module_srv_conf(r, ngx_http_kcd_module)) {
        *why = "authenticated in another server";
        return 0;
    }

    switch (id->scheme) {

    case NGX_HTTP_KCD_NTLM:
        /* raw NTLMSSP under Negotiate is NTLM too (B5) */
        if (!(klcf->schemes & (NGX_HTTP_KCD_NTLM|NGX_HTTP_KCD_NEGOTIATE))) {
            *why = "NTLM is not accepted here";
            return 0;
        }
        break;

    default:
        if (!(klcf->schemes & id->scheme)) {
            *why = "its scheme is not accepted here";
            return 0;
        }
    }

    switch (id->backend) {

    case NGX_HTTP_KCD_BACKEND_FILE:
        if (klcf->user_file != id->user_file) {
            *why = "checked by another user file";
            return 0;
        }
        break;

    case NGX_HTTP_KCD_BACKEND_WINBIND:
        if (!klcf->winbind) {
            *why = "checked by winbind, which is off here";
            return 0;
        }
        break;

    case NGX_HTTP_KCD_BACKEND_KEYTAB:
        kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);
        if (kmcf->keytab.len == 0) {
            *why = "no keytab";
            return 0;
        }
        break;

    default: /* NGX_HTTP_KCD_BACKEND_KDC: Basic where no NTLM backend is */
        if (klcf->user_file || klcf->winbind) {
            *why = "checked by the KDC, a user file or winbind checks here";
            return 0;
        }
    }

    if (id->backend != NGX_HTTP_KCD_BACKEND_KEYTAB
        && id->backend != NGX_HTTP_KCD_BACKEND_KDC)
    {
        if (ngx_http_kcd_realm(r, klcf, &id->map_domain, &realm) != NGX_OK) {
            *why = "no memory";
            return 0;
        }

        if (realm.len != id->realm.len
            || ngx_strncmp(realm.data, id->realm.data, realm.len) != 0)
        {
            *why = "mapped to another realm";
            return 0;
        }
    }

    if (id->scheme == NGX_HTTP_KCD_NTLM
        && klcf->channel_binding > id->channel_binding)
    {
        *why = "channel binding policy stricter than the one it met";
        return 0;
    }

    lockout = ngx_http_kcd_lockout_scope(r);

    if (lockout && lockout != id->lockout) {
        /* B19: a logon that was not counted here does not open it */
        *why = "checked without this location's kcd_lockout";
        return 0;
    }

    return 1;
}


/*
 * A logon succeeded: the identity becomes the request's (and, with bind,
 * the connection's: NTLM and Kerberos, B3), one info line (B21), a counter.
 */

ngx_int_t
ngx_http_kcd_logon_succeeded(ngx_http_request_t *r,
    ngx_http_kcd_identity_t *id, ngx_uint_t bind)
{
    ngx_http_kcd_ctx_t      *ctx;
    ngx_http_kcd_conn_t     *kc;
    ngx_http_kcd_request_t  *rq;

    rq = ngx_http_kcd_request(r, 1);
    if (rq == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* B20: the groups the backend named go with the identity */

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    if (ctx && ctx->groups.len) {
        id->groups = ctx->groups;
    }

    /* B19: a familiar address of the account from now on */

    ngx_http_kcd_lockout_success(r, &id->principal);

    rq->identity = id;

    if (bind) {
        kc = ngx_http_kcd_conn(r, 1);
        if (kc == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_http_kcd_conn_reset(kc);

        kc->identity = ngx_http_kcd_identity_bind(r, id);
        if (kc->identity == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        kc->state = NGX_HTTP_KCD_CONN_AUTHENTICATED;
    }

    switch (id->scheme) {
    case NGX_HTTP_KCD_NTLM:
        ngx_http_kcd_count(r, ntlm_ok);
        break;
    case NGX_HTTP_KCD_NEGOTIATE:
        ngx_http_kcd_count(r, negotiate_ok);
        break;
    default:
        ngx_http_kcd_count(r, basic_ok);
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "kcd: %s logon of \"%V\" as \"%V\"",
                  ngx_http_kcd_scheme_labels[id->scheme], &id->user,
                  &id->principal);

    return NGX_OK;
}


/*
 * Every refused logon goes through here (B2, B21): one info line with
 * user, domain, client address (in the log context) and the reason, a
 * counter; the caller answers with the location's challenges.
 */

ngx_int_t
ngx_http_kcd_logon_failed(ngx_http_request_t *r, ngx_uint_t scheme,
    ngx_str_t *user, ngx_str_t *domain, ngx_str_t *workstation,
    const char *reason)
{
    static ngx_str_t  empty = ngx_null_string;

    /* B19: wrong passwords and unknown users count towards lockout */

    ngx_http_kcd_lockout_logon_failed(r, scheme, user, domain, reason);

    switch (scheme) {
    case NGX_HTTP_KCD_NTLM:
        ngx_http_kcd_count(r, ntlm_failed);
        break;
    case NGX_HTTP_KCD_NEGOTIATE:
        ngx_http_kcd_count(r, negotiate_failed);
        break;
    default:
        ngx_http_kcd_count(r, basic_failed);
    }

    if (workstation) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: %s logon failed for user \"%V\" domain \"%V\" "
                      "workstation \"%V\": %s",
                      ngx_http_kcd_scheme_labels[scheme],
                      user ? user : &empty, domain ? domain : &empty,
                      workstation, reason);

    } else {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: %s logon failed for user \"%V\" domain \"%V\": "
                      "%s", ngx_http_kcd_scheme_labels[scheme],
                      user ? user : &empty, domain ? domain : &empty,
                      reason);
    }

    return NGX_HTTP_KCD_CHALLENGE;
}


/*
 * The connection's copy of an identity: one malloc()ed block (freed by
 * ngx_http_kcd_conn_reset()), packed first in r->pool: each string is
 * looked for in the bytes already stored and appended only if it is not
 * there.  NULL on allocation failure.
 */

static ngx_http_kcd_bound_identity_t *
ngx_http_kcd_identity_bind(ngx_http_request_t *r, ngx_http_kcd_identity_t *id)
{
    u_char                         *data, *p, *found;
    size_t                          len;
    ngx_str_t                      *s;
    ngx_uint_t                      i;
    ngx_http_kcd_bound_identity_t   b;

    len = 1;

    for (i = 0; i < NGX_HTTP_KCD_IDENTITY_STRINGS; i++) {
        len += ngx_http_kcd_identity_str(id, i)->len;
    }

    data = ngx_pnalloc(r->pool, len);
    if (data == NULL) {
        return NULL;
    }

    ngx_memzero(&b, sizeof(ngx_http_kcd_bound_identity_t));

    p = data;

    for (i = 0; i < NGX_HTTP_KCD_IDENTITY_STRINGS; i++) {
        s = ngx_http_kcd_identity_str(id, i);

        found = (s->len && p > data) ? memmem(data, p - data, s->data, s->len)
                                     : NULL;

        if (found == NULL) {
            found = p;
            p = ngx_cpymem(p, s->data, s->len);

            if (i == 0) {
                *p++ = '\0';
            }
        }

        /* names are at most NGX_HTTP_KCD_NAME_MAX, groups a few KiB */

        if (p - data > 0xffff) {
            return NULL;
        }

        b.str[i][0] = (uint16_t) (found - data);
        b.str[i][1] = (uint16_t) s->len;
    }

    b.server = id->server;
    b.user_file = id->user_file;
    b.lockout = id->lockout;
    b.scheme = (u_char) id->scheme;
    b.backend = (u_char) id->backend;
    b.channel_binding = (u_char) id->channel_binding;

    len = p - data;

    p = ngx_alloc(sizeof(ngx_http_kcd_bound_identity_t) + len,
                  r->connection->log);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(ngx_cpymem(p, &b, sizeof(ngx_http_kcd_bound_identity_t)),
               data, len);

    return (ngx_http_kcd_bound_identity_t *) p;
}


/*
 * The identity bound to the connection (B3), unpacked into *id: its
 * strings point into the connection's block and stay valid until
 * ngx_http_kcd_conn_reset(), i.e. until a later request starts a new
 * handshake or the connection closes.  NULL if the connection holds none.
 */

ngx_http_kcd_identity_t *
ngx_http_kcd_conn_identity(ngx_http_kcd_conn_t *kc, ngx_http_kcd_identity_t *id)
{
    u_char                         *data;
    ngx_str_t                      *s;
    ngx_uint_t                      i;
    ngx_http_kcd_bound_identity_t  *b;

    b = kc->identity;

    if (b == NULL) {
        return NULL;
    }

    ngx_memzero(id, sizeof(ngx_http_kcd_identity_t));

    data = (u_char *) (b + 1);

    for (i = 0; i < NGX_HTTP_KCD_IDENTITY_STRINGS; i++) {
        s = ngx_http_kcd_identity_str(id, i);
        s->data = data + b->str[i][0];
        s->len = b->str[i][1];
    }

    id->scheme = b->scheme;
    id->backend = b->backend;
    id->channel_binding = b->channel_binding;
    id->server = b->server;
    id->user_file = b->user_file;
    id->lockout = b->lockout;

    return id;
}


/* the request record, through its r->pool cleanup handler */

ngx_http_kcd_request_t *
ngx_http_kcd_request(ngx_http_request_t *r, ngx_uint_t create)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_kcd_request_t  *rq;

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_kcd_request_cleanup) {
            return cln->data;
        }
    }

    if (!create) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_kcd_request_t));
    if (cln == NULL) {
        return NULL;
    }

    rq = cln->data;
    ngx_memzero(rq, sizeof(ngx_http_kcd_request_t));
    rq->request = r->main;

    cln->handler = ngx_http_kcd_request_cleanup;

    return rq;
}


static void
ngx_http_kcd_request_cleanup(void *data)
{
    ngx_http_kcd_request_t  *rq = data;

    /* an AP-REQ is a bearer credential until it expires (B7a) */

    if (rq->token.len) {
        ngx_explicit_memzero(rq->token.data, rq->token.len);
    }

    /* the client's Authorization (a Basic password, base64) */

    if (rq->client_auth_copy.len) {
        ngx_explicit_memzero(rq->client_auth_copy.data,
                             rq->client_auth_copy.len);
    }
}


/* the connection's state, through its c->pool cleanup handler */

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

    if (kc->ntlm) {
        ngx_http_kcd_ntlm_pending_free(kc->ntlm);
        kc->ntlm = NULL;
    }

    if (kc->identity) {
        ngx_free(kc->identity);
        kc->identity = NULL;
    }

    kc->scheme = 0;
    kc->state = NGX_HTTP_KCD_CONN_NONE;
}


void
ngx_http_kcd_ntlm_pending_free(ngx_http_kcd_ntlm_pending_t *p)
{
    kcd_ntlm_wipe(p, sizeof(ngx_http_kcd_ntlm_pending_t) + p->type1_len
                     + p->type2_len + p->mech_types_len);
    ngx_free(p);
}


/*
 * Variables (SPEC "Variables"): the request's identity only, i.e. empty
 * wherever none was established or carried for this request (B14).  A
 * subrequest shares the main request's pool and reads its record, where
 * the identity holds in the subrequest's location.
 */

static ngx_int_t
ngx_http_kcd_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t                 s;
    const char               *why;
    ngx_http_kcd_request_t   *rq;
    ngx_http_kcd_identity_t  *id;

    rq = ngx_http_kcd_request(r, 0);
    id = rq ? rq->identity : NULL;

    if (id && r != r->main && !ngx_http_kcd_identity_holds(r, id, &why)) {
        /* a subrequest reads the identity only where it holds (B14) */
        id = NULL;
    }

    ngx_str_null(&s);

    if (id) {
        switch (data) {
        case NGX_HTTP_KCD_VAR_USER:
            s = id->user;
            break;
        case NGX_HTTP_KCD_VAR_PRINCIPAL:
            s = id->principal;
            break;
        case NGX_HTTP_KCD_VAR_SCHEME:
            s = ngx_http_kcd_scheme_names[id->scheme];
            break;
        case NGX_HTTP_KCD_VAR_USER_NAME:
            s = id->name;
            break;
        case NGX_HTTP_KCD_VAR_USER_DOMAIN:
            s = id->domain;
            break;
        default:
            s = rq->cache_status;
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


/* $remote_user is $kcd_user after a logon, as with auth_basic */

static ngx_int_t
ngx_http_kcd_remote_user(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_http_kcd_request_t  *rq;

    rq = ngx_http_kcd_request(r, 0);

    if (rq && rq->identity) {
        return ngx_http_kcd_variable(r, v, NGX_HTTP_KCD_VAR_USER);
    }

    return ngx_http_kcd_original_remote_user(r, v, data);
}


ngx_int_t
ngx_http_kcd_identity_variables(ngx_conf_t *cf)
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


/* postconfiguration: take over nginx's $remote_user */

ngx_int_t
ngx_http_kcd_identity_init(ngx_conf_t *cf)
{
    ngx_uint_t                  i;
    ngx_hash_key_t             *key;
    ngx_http_variable_t        *v;
    ngx_http_core_main_conf_t  *cmcf;

    /* the case-mapping locale of ngx_http_kcd_names.c, before the fork */

    if (kcd_names_init() != 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "no C.UTF-8 locale: user names compare with "
                           "ASCII case mapping only");
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    if (cmcf->variables_keys == NULL) {
        return NGX_OK;
    }

    key = cmcf->variables_keys->keys.elts;

    for (i = 0; i < cmcf->variables_keys->keys.nelts; i++) {
        v = key[i].value;

        if (v->name.len == sizeof("remote_user") - 1
            && ngx_strncmp(v->name.data, "remote_user", v->name.len) == 0
            && v->get_handler != ngx_http_kcd_remote_user)
        {
            ngx_http_kcd_original_remote_user = v->get_handler;
            v->get_handler = ngx_http_kcd_remote_user;

            /* a value read before the logon (limit_req keys) is not kept */
            v->flags |= NGX_HTTP_VAR_NOCACHEABLE;
            break;
        }
    }

    return NGX_OK;
}
