/*
 * kcd_ticket_cache zone=name:size [margin=time]: delegated credentials in
 * shared memory, keyed by (user principal, SPN), shared by all workers.
 *
 * A red-black tree on a hash of the key plus an LRU queue, as
 * ngx_http_limit_req_module does.  The value is the credential exported
 * with gss_export_cred(): any worker imports it and makes a fresh upstream
 * token without a KDC request.  An entry expires at the ticket's end time
 * minus the margin; when the zone is full the least recently used entries
 * go.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"


typedef struct {
    u_char                     color;
    u_char                     pad;
    u_short                    key_len;
    uint32_t                   cred_len;
    ngx_queue_t                queue;
    time_t                     expires;
    uint64_t                   serial;     /* which credential this is */
    u_char                     data[1];    /* key, then credential */
} ngx_http_kcd_cache_node_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                queue;
    uint64_t                   serial;
} ngx_http_kcd_cache_sh_t;


struct ngx_http_kcd_cache_s {
    ngx_http_kcd_cache_sh_t   *sh;
    ngx_slab_pool_t           *shpool;
    ngx_shm_zone_t            *shm_zone;
    time_t                     margin;
};


static ngx_int_t ngx_http_kcd_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_kcd_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_kcd_cache_node_t *ngx_http_kcd_cache_lookup(
    ngx_http_kcd_cache_t *cache, ngx_uint_t hash, u_char *key, size_t len);
static size_t ngx_http_kcd_cache_key(ngx_str_t *principal, ngx_str_t *spn,
    u_char *buf, size_t size);
static void ngx_http_kcd_cache_remove(ngx_http_kcd_cache_t *cache,
    ngx_str_t *principal, ngx_str_t *spn, ngx_uint_t placeholder);
static void ngx_http_kcd_cache_delete(ngx_http_kcd_cache_t *cache,
    ngx_http_kcd_cache_node_t *cn);


/* how long others wait for one KDC exchange before trying themselves */
#define NGX_HTTP_KCD_CACHE_FETCH_TIME  15


#define ngx_http_kcd_cache_node(n)                                          \
    ((ngx_http_kcd_cache_node_t *) &(n)->color)


static void
ngx_http_kcd_cache_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t          **p;
    ngx_http_kcd_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            cn = ngx_http_kcd_cache_node(node);
            cnt = ngx_http_kcd_cache_node(temp);

            p = (ngx_memn2cmp(cn->data, cnt->data, cn->key_len,
                              cnt->key_len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static size_t
ngx_http_kcd_cache_key(ngx_str_t *principal, ngx_str_t *spn, u_char *buf,
    size_t size)
{
    u_char  *p;

    if (principal->len + 1 + spn->len > size) {
        return 0;
    }

    p = ngx_cpymem(buf, principal->data, principal->len);
    *p++ = '\0';
    p = ngx_cpymem(p, spn->data, spn->len);

    return p - buf;
}


static ngx_http_kcd_cache_node_t *
ngx_http_kcd_cache_lookup(ngx_http_kcd_cache_t *cache, ngx_uint_t hash,
    u_char *key, size_t len)
{
    ngx_int_t                   rc;
    ngx_rbtree_node_t          *node, *sentinel;
    ngx_http_kcd_cache_node_t  *cn;

    node = cache->sh->rbtree.root;
    sentinel = cache->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        cn = ngx_http_kcd_cache_node(node);

        rc = ngx_memn2cmp(key, cn->data, len, (size_t) cn->key_len);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_kcd_cache_delete(ngx_http_kcd_cache_t *cache,
    ngx_http_kcd_cache_node_t *cn)
{
    ngx_rbtree_node_t  *node;

    node = (ngx_rbtree_node_t *)
               ((u_char *) cn - offsetof(ngx_rbtree_node_t, color));

    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, node);

    /* the credential holds a service ticket and its session key */
    ngx_explicit_memzero(cn->data, cn->key_len + cn->cred_len);

    ngx_slab_free_locked(cache->shpool, node);
}


/*
 * NGX_OK: the credential, copied into pool, and its serial number; when
 *     *serial already names it (the worker imported it before), nothing is
 *     copied and cred->len is 0.
 * NGX_DECLINED: a miss; the caller now owns the fetch (a placeholder tells
 *     the other requests and workers to wait for it) and must end it with
 *     ngx_http_kcd_cache_put() or ngx_http_kcd_cache_cancel().
 * NGX_BUSY: another request is asking the KDC for this key: wait, retry.
 */

ngx_int_t
ngx_http_kcd_cache_get(ngx_http_kcd_cache_t *cache, ngx_str_t *principal,
    ngx_str_t *spn, ngx_pool_t *pool, kcd_gss_buf_t *cred, uint64_t *serial)
{
    u_char                      key[1024];
    size_t                      len, size;
    uint32_t                    hash;
    ngx_rbtree_node_t          *node;
    ngx_http_kcd_cache_node_t  *cn;

    len = ngx_http_kcd_cache_key(principal, spn, key, sizeof(key));
    if (len == 0) {
        return NGX_DECLINED;
    }

    hash = ngx_crc32_short(key, len);

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_kcd_cache_lookup(cache, hash, key, len);

    if (cn && cn->expires <= ngx_time()) {
        ngx_http_kcd_cache_delete(cache, cn);
        cn = NULL;
    }

    if (cn && cn->cred_len == 0) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_BUSY;
    }

    if (cn == NULL) {

        /* single flight: one KDC exchange per key, whatever the workers */

        size = offsetof(ngx_rbtree_node_t, color)
               + offsetof(ngx_http_kcd_cache_node_t, data) + len;

        node = ngx_slab_alloc_locked(cache->shpool, size);

        if (node) {
            node->key = hash;
            cn = ngx_http_kcd_cache_node(node);
            cn->key_len = (u_short) len;
            cn->cred_len = 0;
            cn->serial = 0;
            cn->expires = ngx_time() + NGX_HTTP_KCD_CACHE_FETCH_TIME;
            ngx_memcpy(cn->data, key, len);

            ngx_rbtree_insert(&cache->sh->rbtree, node);
            ngx_queue_insert_head(&cache->sh->queue, &cn->queue);
        }

        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    if (*serial && *serial == cn->serial) {
        cred->data = NULL;
        cred->len = 0;

    } else {
        cred->data = ngx_pnalloc(pool, cn->cred_len);
        if (cred->data == NULL) {
            ngx_shmtx_unlock(&cache->shpool->mutex);
            return NGX_ERROR;
        }

        ngx_memcpy(cred->data, cn->data + cn->key_len, cn->cred_len);
        cred->len = cn->cred_len;
        *serial = cn->serial;
    }

    ngx_queue_remove(&cn->queue);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return NGX_OK;
}


/* the fetch failed: drop the placeholder so that the next request tries */

void
ngx_http_kcd_cache_cancel(ngx_http_kcd_cache_t *cache, ngx_str_t *principal,
    ngx_str_t *spn)
{
    ngx_http_kcd_cache_remove(cache, principal, spn, 1);
}


/*
 * B15: the backend refused a ticket from this entry: forget it, so that
 * the next request for (principal, SPN) asks the KDC.
 */

void
ngx_http_kcd_cache_drop(ngx_http_kcd_cache_t *cache, ngx_str_t *principal,
    ngx_str_t *spn)
{
    ngx_http_kcd_cache_remove(cache, principal, spn, 0);
}


/* the entry of (principal, SPN): a placeholder only, or a ticket only */

static void
ngx_http_kcd_cache_remove(ngx_http_kcd_cache_t *cache, ngx_str_t *principal,
    ngx_str_t *spn, ngx_uint_t placeholder)
{
    u_char                      key[1024];
    size_t                      len;
    uint32_t                    hash;
    ngx_http_kcd_cache_node_t  *cn;

    len = ngx_http_kcd_cache_key(principal, spn, key, sizeof(key));
    if (len == 0) {
        return;
    }

    hash = ngx_crc32_short(key, len);

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_kcd_cache_lookup(cache, hash, key, len);

    if (cn && (cn->cred_len == 0) == (placeholder != 0)) {
        ngx_http_kcd_cache_delete(cache, cn);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


void
ngx_http_kcd_cache_put(ngx_http_kcd_cache_t *cache, ngx_str_t *principal,
    ngx_str_t *spn, kcd_gss_buf_t *cred, time_t endtime)
{
    u_char                      key[1024];
    size_t                      len, size;
    time_t                      expires;
    uint32_t                    hash;
    ngx_uint_t                  tries;
    ngx_queue_t                *q;
    ngx_rbtree_node_t          *node;
    ngx_http_kcd_cache_node_t  *cn;

    expires = endtime - cache->margin;

    if (expires <= ngx_time() || cred->len == 0 || cred->len > 1024 * 1024) {
        ngx_http_kcd_cache_cancel(cache, principal, spn);
        return;
    }

    len = ngx_http_kcd_cache_key(principal, spn, key, sizeof(key));
    if (len == 0) {
        return;
    }

    hash = ngx_crc32_short(key, len);

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_kcd_cache_node_t, data)
           + len + cred->len;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_http_kcd_cache_lookup(cache, hash, key, len);
    if (cn) {
        ngx_http_kcd_cache_delete(cache, cn);
    }

    node = NULL;

    for (tries = 0; tries < 64; tries++) {

        node = ngx_slab_alloc_locked(cache->shpool, size);
        if (node) {
            break;
        }

        /* full: the least recently used entries go */

        if (ngx_queue_empty(&cache->sh->queue)) {
            break;
        }

        q = ngx_queue_last(&cache->sh->queue);
        cn = ngx_queue_data(q, ngx_http_kcd_cache_node_t, queue);
        ngx_http_kcd_cache_delete(cache, cn);
    }

    if (node == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "kcd: kcd_ticket_cache \"%V\" is too small for a "
                      "credential of %uz bytes", &cache->shm_zone->shm.name,
                      cred->len);
        return;
    }

    node->key = hash;

    cn = ngx_http_kcd_cache_node(node);
    cn->key_len = (u_short) len;
    cn->cred_len = (uint32_t) cred->len;
    cn->expires = expires;
    cn->serial = ++cache->sh->serial;
    ngx_memcpy(cn->data, key, len);
    ngx_memcpy(cn->data + len, cred->data, cred->len);

    ngx_rbtree_insert(&cache->sh->rbtree, node);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


static ngx_int_t
ngx_http_kcd_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_kcd_cache_t  *ocache = data;

    size_t                 len;
    ngx_http_kcd_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_http_kcd_cache_sh_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_http_kcd_cache_rbtree_insert);
    ngx_queue_init(&cache->sh->queue);
    cache->sh->serial = 0;

    len = sizeof(" in kcd_ticket_cache \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in kcd_ticket_cache \"%V\"%Z",
                &shm_zone->shm.name);

    cache->shpool->log_nomem = 0;

    return NGX_OK;
}


char *
ngx_http_kcd_cache_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_main_conf_t *kmcf = conf;

    u_char                *p;
    ssize_t                size;
    ngx_str_t             *value, name, s;
    ngx_uint_t             i;
    ngx_shm_zone_t        *shm_zone;
    ngx_http_kcd_cache_t  *cache;

    if (kmcf->cache) {
        return "is duplicate";
    }

    value = cf->args->elts;

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_cache_t));
    if (cache == NULL) {
        return NGX_CONF_ERROR;
    }

    cache->margin = 300;
    size = 0;
    name.len = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            name.data = value[i].data + 5;

            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\": use "
                                   "zone=name:size", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small: at least "
                                   "%uzk", &value[i],
                                   8 * ngx_pagesize / 1024);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "margin=", 7) == 0) {

            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            cache->margin = ngx_parse_time(&s, 1);

            if (cache->margin == (time_t) NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid margin \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"kcd_ticket_cache\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"kcd_ticket_cache\" needs "
                           "\"zone=name:size\"");
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size, &ngx_http_kcd_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    cache->shm_zone = shm_zone;
    shm_zone->init = ngx_http_kcd_cache_init_zone;
    shm_zone->data = cache;

    kmcf->cache = cache;

    return NGX_CONF_OK;
}
