/*
 * What goes to upstreams (B7, B7a, B10, B15).
 *
 * The client's credentials.  In a server{} where any location uses
 * kcd_auth, an Authorization header of the schemes the module speaks
 * (NTLM, Negotiate, Basic) is taken into the module's custody in the post-read
 * phase, before anything else can act on the request (a 413 from
 * client_max_body_size, limit_req, a rewrite, an error_page): the access
 * handler reads it from the request record, and no location of that
 * server, no redirect target and no subrequest ever sees it in headers_in.
 * Other schemes (Bearer ...) are left alone.
 *
 * The delegated token.  It is kept in the request record and appears in
 * r->headers_in only while the delegating location's upstream module
 * builds its request (the content handler of a location with kcd_spn is
 * wrapped, and create_request when the body is read first).  Before and
 * after, there is no token in the request: internal redirects, mirror,
 * SSI, auth_request, slice and cache-update subrequests, $http_authorization
 * in a log or a header, other upstream modules — nothing nginx has or adds
 * later can find it.  The built request is checked for the token, so that
 * a "proxy_set_header Authorization" that replaced it is noticed (the
 * request then counts as carrying none).
 *
 * Upstream connections (B10).  Backends keep Kerberos authentication for
 * the connection (IIS authPersistNonNTLM, Apache GssapiConnectionBound), so
 * a cached connection that has carried a delegated request must never
 * serve a request without a token of its own.  Every upstream{} block's
 * balancer is wrapped (as ngx_http_upstream_keepalive_module wraps
 * round-robin): a connection freed after carrying a token is tagged, and a
 * request without a token never takes a tagged connection.
 *
 * The backend's answer (B15).  The response header parser of a request
 * that carried the token is wrapped: a 401 means the backend refused the
 * ticket; it becomes a 502 (before proxy_intercept_errors, error_page or
 * any filter sees it) and the cached ticket is dropped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"


static ngx_int_t  ngx_http_kcd_http_authorization = NGX_ERROR;


typedef struct {
    void                              *data;
    ngx_event_get_peer_pt              original_get_peer;
    ngx_event_free_peer_pt             original_free_peer;
#if (NGX_HTTP_SSL)
    ngx_event_set_peer_session_pt      original_set_session;
    ngx_event_save_peer_session_pt     original_save_session;
#endif
    ngx_http_request_t                *request;
    ngx_uint_t                         carries_token;
} ngx_http_kcd_peer_data_t;


static ngx_int_t ngx_http_kcd_post_read_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_rewrite_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_guard(ngx_http_request_t *r,
    ngx_uint_t token);
static ngx_int_t ngx_http_kcd_reinit_request(ngx_http_request_t *r);
static void ngx_http_kcd_token_out(ngx_http_request_t *r,
    ngx_http_kcd_request_t *rq);
static ngx_int_t ngx_http_kcd_custody(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_content_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_create_request(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_build(ngx_http_request_t *r,
    ngx_http_kcd_request_t *rq, ngx_http_upstream_t *u);
static ngx_uint_t ngx_http_kcd_carries_token(ngx_http_request_t *r,
    ngx_http_upstream_t *u, ngx_http_kcd_request_t *rq);
static ngx_int_t ngx_http_kcd_process_header(ngx_http_request_t *r);
static void ngx_http_kcd_token_in(ngx_http_request_t *r,
    ngx_http_kcd_request_t *rq);
static void ngx_http_kcd_wipe_element(ngx_table_elt_t *h);
static ngx_int_t ngx_http_kcd_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_kcd_init_round_robin_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_kcd_wrap_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us, ngx_http_upstream_init_peer_pt init);
static ngx_int_t ngx_http_kcd_get_peer(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_kcd_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_kcd_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_kcd_save_session(ngx_peer_connection_t *pc,
    void *data);
#endif
static void ngx_http_kcd_tag(void *data);
static ngx_uint_t ngx_http_kcd_tagged(ngx_connection_t *c);


/*
 * postconfiguration: the post-read handler, and the balancer wrapper around
 * every upstream{} block (and implicit proxy_pass upstreams).
 */

ngx_int_t
ngx_http_kcd_upstream_init(ngx_conf_t *cf)
{
    ngx_str_t                       name;
    ngx_uint_t                      i;
    ngx_http_handler_pt            *h;
    ngx_http_kcd_srv_conf_t        *kscf;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_POST_READ_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_kcd_post_read_handler;

    /*
     * Every request entering a location passes one of these: an internal
     * redirect that starts within the upstream module's handler, or after
     * an error nginx found before the post-read phase
     */

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_SERVER_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_kcd_rewrite_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_kcd_rewrite_handler;

    ngx_str_set(&name, "http_authorization");

    ngx_http_kcd_http_authorization = ngx_http_get_variable_index(cf, &name);
    if (ngx_http_kcd_http_authorization == NGX_ERROR) {
        return NGX_ERROR;
    }

    umcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_upstream_module);
    if (umcf == NULL) {
        return NGX_OK;
    }

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {

        if (uscfp[i]->peer.init == NULL
            || uscfp[i]->peer.init == ngx_http_kcd_init_peer
            || uscfp[i]->peer.init == ngx_http_kcd_init_round_robin_peer)
        {
            continue;
        }

        if (uscfp[i]->srv_conf) {
            /* an upstream{} block: keepalive may be in the chain */
            kscf = uscfp[i]->srv_conf[ngx_http_kcd_module.ctx_index];
            kscf->original_init_peer = uscfp[i]->peer.init;
            uscfp[i]->peer.init = ngx_http_kcd_init_peer;

        } else if (uscfp[i]->peer.init
                   == ngx_http_upstream_init_round_robin_peer)
        {
            uscfp[i]->peer.init = ngx_http_kcd_init_round_robin_peer;
        }
    }

    return NGX_OK;
}


/*
 * B7: the client's Authorization, taken on arrival in a server that uses
 * kcd_auth.  The value is copied into the request record; the element
 * (shared with any subrequest) is emptied and renamed to a hop-by-hop
 * header the proxy module never forwards, because removing it would move
 * the elements other headers_in pointers refer to.
 */

static ngx_int_t
ngx_http_kcd_post_read_handler(ngx_http_request_t *r)
{
    return ngx_http_kcd_guard(r, 0);
}


/*
 * Server rewrite and rewrite phases: a request that enters a location
 * without having passed the post-read phase (an error nginx found while
 * reading the request head, then error_page) gives up the client's
 * credentials here; and a delegated token is never active when a location
 * is entered (an internal redirect from within the upstream module's
 * handler: "no live upstreams", a resolver error, then error_page).
 */

static ngx_int_t
ngx_http_kcd_rewrite_handler(ngx_http_request_t *r)
{
    return ngx_http_kcd_guard(r, 1);
}


static ngx_int_t
ngx_http_kcd_guard(ngx_http_request_t *r, ngx_uint_t token)
{
    u_char                   *p, *last;
    size_t                    len;
    ngx_table_elt_t          *h;
    ngx_http_kcd_request_t   *rq;
    ngx_http_kcd_srv_conf_t  *kscf;

    if (token) {
        rq = ngx_http_kcd_request(r, 0);

        if (rq && rq->token_elt && rq->token_elt->hash) {
            ngx_http_kcd_token_out(r, rq);
        }
    }

    kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
    h = r->headers_in.authorization;

    if (!kscf->auth_used || h == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    p = h->value.data;
    last = p + h->value.len;

    /* RFC 9110 5.5: OWS is spaces and tabs */

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    for (len = 0; p + len < last && p[len] != ' ' && p[len] != '\t'; len++) {
        /* void */
    }

    if (!(len == 4 && ngx_strncasecmp(p, (u_char *) "NTLM", 4) == 0)
        && !(len == 9 && ngx_strncasecmp(p, (u_char *) "Negotiate", 9) == 0)
        && !(len == 5 && ngx_strncasecmp(p, (u_char *) "Basic", 5) == 0))
    {
        return NGX_DECLINED;
    }

    return ngx_http_kcd_custody(r) == NGX_OK
           ? NGX_DECLINED : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static ngx_int_t
ngx_http_kcd_custody(ngx_http_request_t *r)
{
    ngx_table_elt_t         *h;
    ngx_http_kcd_request_t  *rq;

    h = r->headers_in.authorization;

    rq = ngx_http_kcd_request(r, 1);
    if (rq == NULL) {
        return NGX_ERROR;
    }

    rq->client_auth.data = ngx_pnalloc(r->pool, h->value.len + 1);
    if (rq->client_auth.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(rq->client_auth.data, h->value.data, h->value.len);
    rq->client_auth.len = h->value.len;
    rq->client_auth.data[h->value.len] = '\0';
    rq->client_auth_set = 1;
    rq->client_auth_copy = rq->client_auth;

    if (h->value.len) {
        ngx_explicit_memzero(h->value.data, h->value.len);
    }

    ngx_http_kcd_wipe_element(h);
    r->headers_in.authorization = NULL;

    return NGX_OK;
}


/*
 * The client's Authorization of this request, once: the value is handed to
 * the access handler and forgotten by the record (the request's identity
 * is what an internal redirect keeps).  NGX_DECLINED when there is none,
 * NGX_ERROR on allocation failure.
 */

ngx_int_t
ngx_http_kcd_take_authorization(ngx_http_request_t *r, ngx_str_t *value)
{
    ngx_http_kcd_request_t  *rq;

    if (r->headers_in.authorization && ngx_http_kcd_custody(r) != NGX_OK) {
        return NGX_ERROR;
    }

    rq = ngx_http_kcd_request(r, 0);

    if (rq == NULL || !rq->client_auth_set) {
        return NGX_DECLINED;
    }

    *value = rq->client_auth;
    rq->client_auth_set = 0;
    ngx_str_null(&rq->client_auth);

    return NGX_OK;
}


/*
 * B7a: the delegated token ("Negotiate <base64>", request pool) for the
 * upstream request of this request in this location, and nowhere else.
 */

ngx_int_t
ngx_http_kcd_upstream_set_token(ngx_http_request_t *r, ngx_str_t *value)
{
    ngx_http_kcd_request_t  *rq;

    rq = ngx_http_kcd_request(r, 1);
    if (rq == NULL || r != r->main) {
        return NGX_ERROR;
    }

    if (rq->token.len) {
        ngx_explicit_memzero(rq->token.data, rq->token.len);
    }

    rq->token = *value;
    rq->token_loc = r->loc_conf;
    rq->token_upstream = NULL;

    return NGX_OK;
}


/*
 * The content handler of locations that delegate: the upstream module's
 * handler runs with the token in headers_in, and it leaves again as soon
 * as the handler returns.
 */

ngx_int_t
ngx_http_kcd_upstream_wrap_content(ngx_conf_t *cf,
    ngx_http_kcd_loc_conf_t *klcf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == NULL
        || clcf->handler == ngx_http_kcd_content_handler)
    {
        return NGX_OK;
    }

    klcf->content_handler = clcf->handler;
    clcf->handler = ngx_http_kcd_content_handler;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_content_handler(ngx_http_request_t *r)
{
    ngx_int_t                 rc;
    ngx_http_upstream_t      *u;
    ngx_http_kcd_request_t   *rq;
    ngx_http_kcd_loc_conf_t  *klcf;

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);
    rq = ngx_http_kcd_request(r, 0);

    if (klcf->content_handler == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: no content handler to run");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rq == NULL || rq->token.len == 0 || r != rq->request
        || r->loc_conf != rq->token_loc)
    {
        return klcf->content_handler(r);
    }

    if (rq->token_elt == NULL) {
        rq->token_elt = ngx_list_push(&r->headers_in.headers);
        if (rq->token_elt == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_http_kcd_token_in(r, rq);

    rc = klcf->content_handler(r);

    u = r->upstream;

    if (r->loc_conf != rq->token_loc) {
        /* the handler redirected the request (error_page): not ours */
        u = NULL;
    }

    if (u && rq->token_upstream == NULL) {

        if (u->request_bufs) {
            /* the request was built within the handler */
            if (ngx_http_kcd_build(r, rq, u) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

        } else if (u->create_request
                   && u->create_request != ngx_http_kcd_create_request)
        {
            /* the body is read first: the request is built later */
            rq->create_request = u->create_request;
            u->create_request = ngx_http_kcd_create_request;
        }
    }

    ngx_http_kcd_token_out(r, rq);

    return rc;
}


/* the token is in headers_in while the upstream module builds its request */

static ngx_int_t
ngx_http_kcd_create_request(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_http_kcd_request_t  *rq;

    rq = ngx_http_kcd_request(r, 0);

    if (rq == NULL || rq->create_request == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_kcd_build(r, rq, NULL);

    ngx_http_kcd_token_out(r, rq);

    return rc;
}


/*
 * Put the token into headers_in (u == NULL: and call the upstream module's
 * create_request), then record that this upstream request carries it and
 * watch the backend's answer.
 */

static ngx_int_t
ngx_http_kcd_build(ngx_http_request_t *r, ngx_http_kcd_request_t *rq,
    ngx_http_upstream_t *u)
{
    ngx_int_t  rc;

    if (u == NULL) {
        ngx_http_kcd_token_in(r, rq);

        rc = rq->create_request(r);
        if (rc != NGX_OK) {
            return rc;
        }

        u = r->upstream;
    }

    if (!ngx_http_kcd_carries_token(r, u, rq)) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "kcd: the delegated token was not sent upstream (a "
                      "\"proxy_set_header Authorization\" replaces it?)");
        return NGX_OK;
    }

    rq->token_upstream = u;

    if (u->process_header) {
        rq->process_header = u->process_header;
        u->process_header = ngx_http_kcd_process_header;
    }

    if (u->reinit_request) {
        rq->reinit_request = u->reinit_request;
        u->reinit_request = ngx_http_kcd_reinit_request;
    }

    return NGX_OK;
}


/*
 * Did the upstream request built for r carry the token?  HTTP/1.x (proxy,
 * and the CGI-style modules) writes header values as they are: look for
 * it.  Other encodings (grpc's HPACK) cannot be searched: they count as
 * carrying it, which is the safe side for B10 and B15.
 */

static ngx_uint_t
ngx_http_kcd_carries_token(ngx_http_request_t *r, ngx_http_upstream_t *u,
    ngx_http_kcd_request_t *rq)
{
    u_char       *start;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (rq == NULL || r != rq->request || rq->token.len == 0
        || r->loc_conf != rq->token_loc)
    {
        return 0;
    }

    if (u->conf && u->conf->module.len == sizeof("grpc") - 1
        && ngx_strncmp(u->conf->module.data, "grpc", 4) == 0)
    {
        return 1;
    }

    for (cl = u->request_bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file || !ngx_buf_in_memory(b)) {
            continue;
        }

        /* it may have been sent already: from the start of the buffer */
        start = (b->start && b->start <= b->pos) ? b->start : b->pos;

        if (b->last - start >= (ssize_t) rq->token.len
            && memmem(start, b->last - start, rq->token.data, rq->token.len))
        {
            return 1;
        }
    }

    return 0;
}


/* proxy_next_upstream: the upstream module resets its parser; watch again */

static ngx_int_t
ngx_http_kcd_reinit_request(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_http_upstream_t     *u;
    ngx_http_kcd_request_t  *rq;

    u = r->upstream;
    rq = ngx_http_kcd_request(r, 0);

    if (rq == NULL || rq->reinit_request == NULL) {
        return NGX_ERROR;
    }

    rc = rq->reinit_request(r);

    if (u->process_header != ngx_http_kcd_process_header) {
        rq->process_header = u->process_header;
        u->process_header = ngx_http_kcd_process_header;
    }

    return rc;
}


/*
 * B15: the backend answered a request that carried our token.  401 means
 * it refused the ticket (wrong key for the SPN, clock skew, wrong SPN): the
 * client, who could not answer that challenge, gets 502 (as an invalid
 * upstream answer, before proxy_intercept_errors and error_page see a 401)
 * and the cached ticket is dropped.
 */

static ngx_int_t
ngx_http_kcd_process_header(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_str_t                  reason, *peer;
    ngx_http_upstream_t       *u;
    ngx_http_kcd_request_t    *rq;
    ngx_http_kcd_main_conf_t  *kmcf;

    u = r->upstream;
    rq = ngx_http_kcd_request(r, 0);

    if (rq == NULL || rq->process_header == NULL) {
        return NGX_ERROR;
    }

    rc = rq->process_header(r);

    if (u->process_header != ngx_http_kcd_process_header) {
        /* the parser moved on (status line -> header lines) */
        rq->process_header = u->process_header;
        u->process_header = ngx_http_kcd_process_header;
    }

    if (rc != NGX_OK || u->headers_in.status_n != NGX_HTTP_UNAUTHORIZED) {
        return rc;
    }

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (kmcf->cache && rq->identity && rq->spn.len) {
        ngx_http_kcd_cache_drop(kmcf->cache, &rq->identity->principal,
                                &rq->spn);
    }

    if (u->headers_in.www_authenticate) {
        reason = u->headers_in.www_authenticate->value;

        if (reason.len > 64) {
            reason.len = 64;
        }

    } else {
        ngx_str_set(&reason, "no WWW-Authenticate");
    }

    peer = u->peer.name;

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "kcd: backend %V refused the delegated ticket of \"%V\" "
                  "for \"%V\" (401, \"%V\"): check the SPN's key in the "
                  "backend's keytab and the clocks; cached ticket dropped",
                  peer ? peer : &reason,
                  rq->identity ? &rq->identity->principal : &reason,
                  &rq->spn, &reason);

    ngx_http_kcd_count(r, delegation_refused);

    /*
     * Not a failure of the peer: it answered, the ticket was wrong.  No
     * other server is tried (the same ticket would be refused), and the
     * balancer is told "next", not "failed" (ngx_http_kcd_free_peer).
     */

    rq->refused = 1;
    u->peer.tries = 1;

    return NGX_HTTP_UPSTREAM_INVALID_HEADER;
}


static void
ngx_http_kcd_token_in(ngx_http_request_t *r, ngx_http_kcd_request_t *rq)
{
    ngx_table_elt_t  *h;

    h = rq->token_elt;

    ngx_str_set(&h->key, "Authorization");
    h->lowcase_key = (u_char *) "authorization";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
    h->value = rq->token;

    r->headers_in.authorization = h;
}


/*
 * The token leaves headers_in; a $http_authorization evaluated meanwhile
 * (proxy_set_header Authorization $http_authorization) is not kept cached
 * for a log, a header or a subrequest.
 */

static void
ngx_http_kcd_token_out(ngx_http_request_t *r, ngx_http_kcd_request_t *rq)
{
    ngx_http_variable_value_t  *v;

    ngx_http_kcd_wipe_element(rq->token_elt);

    if (r->headers_in.authorization == rq->token_elt) {
        r->headers_in.authorization = NULL;
    }

    if (ngx_http_kcd_http_authorization != NGX_ERROR && r->variables) {
        v = &r->variables[ngx_http_kcd_http_authorization];
        v->valid = 0;
        v->not_found = 0;
        v->len = 0;
        v->data = NULL;
    }
}


static void
ngx_http_kcd_wipe_element(ngx_table_elt_t *h)
{
    ngx_str_set(&h->key, "Keep-Alive");
    h->lowcase_key = (u_char *) "keep-alive";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
    ngx_str_null(&h->value);
}


static ngx_int_t
ngx_http_kcd_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_kcd_srv_conf_t  *kscf;

    kscf = ngx_http_conf_upstream_srv_conf(us, ngx_http_kcd_module);

    return ngx_http_kcd_wrap_peer(r, us, kscf->original_init_peer);
}


static ngx_int_t
ngx_http_kcd_init_round_robin_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    return ngx_http_kcd_wrap_peer(r, us,
                                  ngx_http_upstream_init_round_robin_peer);
}


static ngx_int_t
ngx_http_kcd_wrap_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us, ngx_http_upstream_init_peer_pt init)
{
    ngx_http_upstream_t       *u;
    ngx_http_kcd_request_t    *rq;
    ngx_http_kcd_peer_data_t  *kp;

    if (init(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    kp = ngx_palloc(r->pool, sizeof(ngx_http_kcd_peer_data_t));
    if (kp == NULL) {
        return NGX_ERROR;
    }

    u = r->upstream;
    rq = ngx_http_kcd_request(r, 0);

    kp->data = u->peer.data;
    kp->original_get_peer = u->peer.get;
    kp->original_free_peer = u->peer.free;

    /* the request is built before the balancer is asked */
    kp->request = r;
    kp->carries_token = ngx_http_kcd_carries_token(r, u, rq);

    u->peer.data = kp;
    u->peer.get = ngx_http_kcd_get_peer;
    u->peer.free = ngx_http_kcd_free_peer;

#if (NGX_HTTP_SSL)
    kp->original_set_session = u->peer.set_session;
    kp->original_save_session = u->peer.save_session;
    u->peer.set_session = ngx_http_kcd_set_session;
    u->peer.save_session = ngx_http_kcd_save_session;
#endif

    return NGX_OK;
}


/*
 * B10: a request without a token of its own never gets a cached connection
 * that carried one.  The balancer below has already chosen the peer: such
 * a connection is closed and a new one is made to the same peer.
 */

static ngx_int_t
ngx_http_kcd_get_peer(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_kcd_peer_data_t  *kp = data;

    ngx_int_t          rc;
    ngx_connection_t  *c;

    rc = kp->original_get_peer(pc, kp->data);

    if (rc != NGX_DONE || kp->carries_token) {
        return rc;
    }

    c = pc->connection;

    if (c == NULL || !ngx_http_kcd_tagged(c)) {
        return rc;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                   "kcd: cached upstream connection %p carried a delegated "
                   "request: closed for a request without a token", c);

    pc->connection = NULL;
    pc->cached = 0;

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    if (c->pool) {
        ngx_destroy_pool(c->pool);
    }

    ngx_close_connection(c);

    return NGX_OK;
}


static void
ngx_http_kcd_free_peer(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_kcd_peer_data_t  *kp = data;

    ngx_pool_cleanup_t      *cln;
    ngx_http_kcd_request_t  *rq;

    if (state & NGX_PEER_FAILED) {
        rq = ngx_http_kcd_request(kp->request, 0);

        if (rq && rq->refused) {
            /* B15: the backend refused our ticket, it did not fail */
            rq->refused = 0;
            state = NGX_PEER_NEXT;
        }
    }

    if (kp->carries_token && pc->connection && pc->connection->pool
        && !ngx_http_kcd_tagged(pc->connection))
    {
        cln = ngx_pool_cleanup_add(pc->connection->pool, 0);

        if (cln == NULL) {
            /* can't tag it: it must not be cached */
            state |= NGX_PEER_FAILED;

        } else {
            cln->handler = ngx_http_kcd_tag;
            cln->data = NULL;
        }
    }

    kp->original_free_peer(pc, kp->data, state);
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_http_kcd_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_kcd_peer_data_t  *kp = data;

    return kp->original_set_session(pc, kp->data);
}


static void
ngx_http_kcd_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_kcd_peer_data_t  *kp = data;

    kp->original_save_session(pc, kp->data);
}

#endif


/* the tag is the presence of this cleanup handler in the connection pool */

static void
ngx_http_kcd_tag(void *data)
{
}


static ngx_uint_t
ngx_http_kcd_tagged(ngx_connection_t *c)
{
    ngx_pool_cleanup_t  *cln;

    if (c->pool == NULL) {
        return 0;
    }

    for (cln = c->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_kcd_tag) {
            return 1;
        }
    }

    return 0;
}
