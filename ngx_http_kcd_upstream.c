/*
 * What goes to upstreams (B7, B7a, B10).
 *
 * The delegated token.  nginx's proxy module sends every element of
 * r->headers_in.headers, so the token is handed over as one element there,
 * recorded in the request record with the location that made it.  Where
 * nginx would carry it elsewhere, it is taken away:
 *
 *  - internal redirects (error_page, try_files, X-Accel-Redirect, index,
 *    named locations) keep headers_in: every request entering a location
 *    passes the rewrite phase, whose handler here wipes the token; the
 *    access handler of a location that delegates makes a fresh one;
 *  - subrequests (mirror, SSI, auth_request, slice...) share the parent's
 *    header elements: a subrequest entering its location gets a private
 *    copy of the header list without the token;
 *  - and, failing closed for whatever nginx adds next: the balancer wrapper
 *    below refuses to connect a request whose headers still carry a token
 *    that is not its own, made in its own location.
 *
 * The client's own Authorization is taken out of the request as soon as
 * the access handler has read it, whatever the outcome of the logon.
 *
 * Upstream connections (B10).  Backends keep Kerberos authentication for
 * the connection (IIS authPersistNonNTLM, Apache GssapiConnectionBound), so
 * a cached connection that has carried a delegated request must never
 * serve a request without a token of its own.  Every upstream{} block's
 * balancer is wrapped (as ngx_http_upstream_keepalive_module wraps
 * round-robin): a connection freed after carrying a token is tagged, and a
 * request without a token never takes a tagged connection from the
 * keepalive cache.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"


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


static ngx_int_t ngx_http_kcd_rewrite_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_private_headers(ngx_http_request_t *r,
    ngx_table_elt_t *token);
static void ngx_http_kcd_wipe_element(ngx_table_elt_t *h);
static ngx_uint_t ngx_http_kcd_list_has(ngx_list_t *list, ngx_table_elt_t *h);
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
 * postconfiguration: the rewrite-phase handler, and the balancer wrapper
 * around every upstream{} block (and implicit proxy_pass upstreams).
 */

ngx_int_t
ngx_http_kcd_upstream_init(ngx_conf_t *cf)
{
    ngx_uint_t                      i;
    ngx_http_handler_pt            *h;
    ngx_http_kcd_srv_conf_t        *kscf;
    ngx_http_core_main_conf_t      *cmcf;
    ngx_http_upstream_srv_conf_t  **uscfp;
    ngx_http_upstream_main_conf_t  *umcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_kcd_rewrite_handler;

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
            /* proxy_pass http://host:port; no cache, but the backstop */
            uscfp[i]->peer.init = ngx_http_kcd_init_round_robin_peer;
        }
    }

    return NGX_OK;
}


/*
 * B7a: hand the delegated token ("Negotiate <base64>", request pool) to the
 * upstream request of this request in this location, and nowhere else.
 */

ngx_int_t
ngx_http_kcd_upstream_set_token(ngx_http_request_t *r, ngx_str_t *value)
{
    ngx_table_elt_t         *h;
    ngx_http_kcd_request_t  *rq;

    rq = ngx_http_kcd_request(r, 1);
    if (rq == NULL || r != r->main) {
        return NGX_ERROR;
    }

    if (rq->token) {
        ngx_http_kcd_wipe_element(rq->token);
        rq->token = NULL;
    }

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h->key, "Authorization");
    h->lowcase_key = (u_char *) "authorization";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
    h->value = *value;

    r->headers_in.authorization = h;

    rq->token = h;
    rq->token_loc = r->loc_conf;

    return NGX_OK;
}


/*
 * The client's Authorization is read once and then taken out of the
 * request, whatever the outcome of the logon (B7): an error_page target or
 * any other upstream never sees it.  Removing an element from
 * headers_in.headers would move the elements other headers_in pointers
 * refer to, and upstream modules send every element they don't override;
 * so the element (shared with any subrequest) is emptied and renamed to a
 * hop-by-hop header the proxy module never forwards.
 */

ngx_int_t
ngx_http_kcd_consume_authorization(ngx_http_request_t *r)
{
    ngx_table_elt_t         *h;
    ngx_http_kcd_request_t  *rq;

    h = r->headers_in.authorization;

    if (h == NULL) {
        return NGX_OK;
    }

    rq = ngx_http_kcd_request(r, 1);
    if (rq == NULL) {
        return NGX_ERROR;
    }

    if (rq->token == h) {
        rq->token = NULL;
    }

    rq->consumed = 1;

    ngx_http_kcd_wipe_element(h);
    r->headers_in.authorization = NULL;

    return NGX_OK;
}


static void
ngx_http_kcd_wipe_element(ngx_table_elt_t *h)
{
    if (h->value.len) {
        ngx_explicit_memzero(h->value.data, h->value.len);
    }

    ngx_str_set(&h->key, "Keep-Alive");
    h->lowcase_key = (u_char *) "keep-alive";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
    ngx_str_null(&h->value);
}


/*
 * Rewrite phase: every request entering a location (internal redirects,
 * named locations and subrequests all pass here) loses a token made for
 * another place.
 */

static ngx_int_t
ngx_http_kcd_rewrite_handler(ngx_http_request_t *r)
{
    ngx_http_kcd_request_t  *rq;

    rq = ngx_http_kcd_request(r, 0);

    if (rq == NULL || rq->token == NULL) {
        return NGX_DECLINED;
    }

    if (r == r->main) {
        /* after an internal redirect: the new location delegates anew */
        ngx_http_kcd_wipe_element(rq->token);

        if (r->headers_in.authorization == rq->token) {
            r->headers_in.authorization = NULL;
        }

        rq->token = NULL;
        rq->token_loc = NULL;

        return NGX_DECLINED;
    }

    if (ngx_http_kcd_list_has(&r->headers_in.headers, rq->token)) {
        if (ngx_http_kcd_private_headers(r, rq->token) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return NGX_DECLINED;
}


/* a subrequest's own header list, without the parent's token */

static ngx_int_t
ngx_http_kcd_private_headers(ngx_http_request_t *r, ngx_table_elt_t *token)
{
    ngx_uint_t        i, n;
    ngx_list_t        list;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *nh;

    n = 0;
    part = &r->headers_in.headers.part;

    while (part) {
        n += part->nelts;
        part = part->next;
    }

    if (ngx_list_init(&list, r->pool, n ? n : 1, sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (&h[i] == token) {
            continue;
        }

        nh = ngx_list_push(&list);
        if (nh == NULL) {
            return NGX_ERROR;
        }

        *nh = h[i];
    }

    r->headers_in.headers = list;

    if (r->headers_in.authorization == token) {
        r->headers_in.authorization = NULL;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_kcd_list_has(ngx_list_t *list, ngx_table_elt_t *h)
{
    ngx_list_part_t  *part;

    for (part = &list->part; part; part = part->next) {
        if (h >= (ngx_table_elt_t *) part->elts
            && h < (ngx_table_elt_t *) part->elts + part->nelts)
        {
            return 1;
        }
    }

    return 0;
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
    ngx_uint_t                 own;
    ngx_http_upstream_t       *u;
    ngx_http_kcd_request_t    *rq;
    ngx_http_kcd_peer_data_t  *kp;

    rq = ngx_http_kcd_request(r, 0);

    own = 0;

    if (rq && rq->token && rq->token->hash
        && ngx_http_kcd_list_has(&r->headers_in.headers, rq->token))
    {
        own = (r == rq->request && r->loc_conf == rq->token_loc);

        if (!own) {
            /* B7a, failing closed: a token that is not this request's */
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "kcd: a delegated token reached an upstream it "
                          "was not made for: request not sent");
            return NGX_ERROR;
        }
    }

    if (init(r, us) != NGX_OK) {
        return NGX_ERROR;
    }

    kp = ngx_palloc(r->pool, sizeof(ngx_http_kcd_peer_data_t));
    if (kp == NULL) {
        return NGX_ERROR;
    }

    u = r->upstream;

    kp->data = u->peer.data;
    kp->original_get_peer = u->peer.get;
    kp->original_free_peer = u->peer.free;
    kp->request = r;
    kp->carries_token = own;

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

    ngx_pool_cleanup_t  *cln;

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
