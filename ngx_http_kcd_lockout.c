/*
 * B19: extranet smart lockout and password-spray defence.
 *
 *     kcd_lockout_zone name:size [threshold=N] [familiar_threshold=N]
 *                      [window=time] [familiar=N] [spray=N] [log_only];
 *     kcd_lockout name | off;
 *     $kcd_lockout_status
 *
 * One shared-memory zone per kcd_lockout_zone: a red-black tree of nodes
 * on a hash of their key plus LRU queues, as ngx_http_limit_req_module and
 * kcd_ticket_cache do.  Two kinds of node:
 *
 * - an account, keyed by the principal of the account the location's
 *   backend will check, folded with kcd_names_fold() ("ALICE", "KCD\alice",
 *   "alice@kcd.test" and "al\xc4\xb1ce" are one account; see
 *   ngx_http_kcd_lo_logon_key()): failed
 *   password checks counted apart for familiar and unfamiliar client
 *   addresses, each class with its own window and lock, and the last
 *   `familiar` addresses the account logged on from;
 * - a client address: the distinct accounts (hashes of their names, known
 *   or not) whose password checks failed from it within the window; at
 *   `spray` of them the address is locked for every account.
 *
 * Memory policy (documented in docs/lockout.md): an account node is
 * created by a wrong password for a name the backend knows, or by a
 * successful logon; a name the backend does not know is counted at its
 * address only.  Nodes of accounts that logged on successfully ("known")
 * sit on their own LRU queue and are evicted only when no other node is
 * left, so an attacker rotating random or real user names evicts other
 * attack state (address nodes, accounts that never logged on here), never
 * a real user's familiar addresses: only real logons create known nodes.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"
#include "ngx_http_kcd_names.h"


#define NGX_HTTP_KCD_LO_ACCOUNT      1
#define NGX_HTTP_KCD_LO_ADDRESS      2

#define NGX_HTTP_KCD_LO_UNFAMILIAR   0
#define NGX_HTTP_KCD_LO_FAMILIAR     1

#define NGX_HTTP_KCD_LO_KEY_MAX      1024
#define NGX_HTTP_KCD_LO_FAMILIAR_MAX 64
#define NGX_HTTP_KCD_LO_SPRAY_MAX    1024
#define NGX_HTTP_KCD_LO_SAMPLES      4


typedef struct {
    u_char                     addr[16];   /* IPv6, IPv4 mapped */
    time_t                     seen;
} ngx_http_kcd_lo_familiar_t;


typedef struct {
    u_char                     color;
    u_char                     kind;
    u_char                     known;      /* logged on here once */
    u_char                     pad;
    u_short                    key_len;
    u_short                    n;          /* familiar or spray entries */
    ngx_queue_t                queue;

    /* per class (account) or [0] only (address) */
    ngx_uint_t                 fails[2];
    time_t                     start[2];   /* window of the count */
    time_t                     until[2];   /* locked until, 0: not */

    u_char                     data[1];    /* key, then the entries */
} ngx_http_kcd_lo_node_t;


typedef struct {
    ngx_rbtree_t               rbtree;
    ngx_rbtree_node_t          sentinel;
    ngx_queue_t                known;      /* accounts that logged on */
    ngx_queue_t                others;     /* addresses, other accounts */
    ngx_uint_t                 evicting;   /* logged that it started */
    ngx_http_kcd_lockout_counters_t  counters;

    /*
     * how long the last checked wrong passwords took here (ms, from the
     * start of the password check to its end): a refusal waits their
     * mean, so that it is not told apart by its speed when the DC or the
     * KDC checks passwords
     */
    ngx_msec_t                 latency[NGX_HTTP_KCD_LO_SAMPLES];
    ngx_uint_t                 nlatency;   /* samples taken, all time */
} ngx_http_kcd_lo_sh_t;


typedef struct {
    ngx_http_kcd_lo_sh_t      *sh;
    ngx_slab_pool_t           *shpool;
    ngx_shm_zone_t            *shm_zone;
    ngx_str_t                  name;
    ngx_uint_t                 threshold;
    ngx_uint_t                 familiar_threshold;
    time_t                     window;
    ngx_uint_t                 familiar;
    ngx_uint_t                 spray;
    ngx_flag_t                 log_only;
} ngx_http_kcd_lo_zone_t;


typedef struct {
    ngx_array_t                zones;      /* ngx_http_kcd_lo_zone_t * */
} ngx_http_kcd_lo_main_conf_t;


typedef struct {
    ngx_http_kcd_lo_zone_t    *zone;       /* NULL: off */
    ngx_uint_t                 set;
} ngx_http_kcd_lo_loc_conf_t;


typedef struct {
    ngx_uint_t                 status;

    /* the password check started (ngx_current_msec), for the mean */
    ngx_msec_t                 check_start;
    ngx_uint_t                 checking;

    /* a refusal answered after the backend's usual time (timing class) */
    ngx_msec_t                 delay;
    ngx_int_t                  rc;
    ngx_event_t                timer;
    ngx_http_request_t        *request;
} ngx_http_kcd_lo_ctx_t;


static ngx_int_t ngx_http_kcd_lo_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_kcd_lo_count(ngx_http_request_t *r,
    ngx_http_kcd_lo_zone_t *zone, ngx_str_t *user, u_char *ukey, size_t ulen,
    ngx_uint_t why);
static char *ngx_http_kcd_lockout_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_kcd_lockout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_kcd_lo_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_kcd_lo_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_kcd_lo_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_int_t ngx_http_kcd_lo_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_kcd_lo_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_command_t  ngx_http_kcd_lockout_commands[] = {

    { ngx_string("kcd_lockout_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_kcd_lockout_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("kcd_lockout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_kcd_lockout,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_kcd_lockout_module_ctx = {
    ngx_http_kcd_lo_add_variables,         /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_kcd_lo_create_main_conf,      /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_kcd_lo_create_loc_conf,       /* create location configuration */
    ngx_http_kcd_lo_merge_loc_conf         /* merge location configuration */
};


ngx_module_t  ngx_http_kcd_lockout_module = {
    NGX_MODULE_V1,
    &ngx_http_kcd_lockout_module_ctx,      /* module context */
    ngx_http_kcd_lockout_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_kcd_lo_status_names[] = {
    ngx_null_string,
    ngx_string("familiar"),
    ngx_string("unfamiliar"),
    ngx_string("locked"),
    ngx_string("log_only_locked")
};


static ngx_str_t  ngx_http_kcd_lo_class_names[] = {
    ngx_string("unfamiliar"),
    ngx_string("familiar")
};


#define ngx_http_kcd_lo_node(n)                                             \
    ((ngx_http_kcd_lo_node_t *) &(n)->color)

#define ngx_http_kcd_lo_familiar(ln)                                        \
    ((ngx_http_kcd_lo_familiar_t *)                                         \
         ngx_align_ptr((ln)->data + (ln)->key_len, sizeof(time_t)))

#define ngx_http_kcd_lo_hashes(ln)                                          \
    ((uint32_t *) ngx_align_ptr((ln)->data + (ln)->key_len,                 \
                                sizeof(uint32_t)))


static void
ngx_http_kcd_lo_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t       **p;
    ngx_http_kcd_lo_node_t   *ln, *lnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            ln = ngx_http_kcd_lo_node(node);
            lnt = ngx_http_kcd_lo_node(temp);

            p = (ngx_memn2cmp(ln->data, lnt->data, ln->key_len,
                              lnt->key_len) < 0)
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


static ngx_http_kcd_lo_node_t *
ngx_http_kcd_lo_lookup(ngx_http_kcd_lo_zone_t *zone, uint32_t hash,
    u_char *key, size_t len)
{
    ngx_int_t                rc;
    ngx_rbtree_node_t       *node, *sentinel;
    ngx_http_kcd_lo_node_t  *ln;

    node = zone->sh->rbtree.root;
    sentinel = zone->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        ln = ngx_http_kcd_lo_node(node);

        rc = ngx_memn2cmp(key, ln->data, len, (size_t) ln->key_len);

        if (rc == 0) {
            return ln;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_kcd_lo_delete(ngx_http_kcd_lo_zone_t *zone,
    ngx_http_kcd_lo_node_t *ln)
{
    ngx_rbtree_node_t  *node;

    node = (ngx_rbtree_node_t *)
               ((u_char *) ln - offsetof(ngx_rbtree_node_t, color));

    ngx_queue_remove(&ln->queue);
    ngx_rbtree_delete(&zone->sh->rbtree, node);
    ngx_slab_free_locked(zone->shpool, node);
}


/*
 * A new node; when the zone is full, least recently used nodes go: first
 * addresses and accounts that never logged on here, accounts that did
 * only when nothing else is left.
 */

static ngx_http_kcd_lo_node_t *
ngx_http_kcd_lo_alloc(ngx_http_kcd_lo_zone_t *zone, ngx_uint_t kind,
    uint32_t hash, u_char *key, size_t len)
{
    size_t                   size, extra;
    ngx_uint_t               tries;
    ngx_queue_t             *q;
    ngx_rbtree_node_t       *node;
    ngx_http_kcd_lo_node_t  *ln;

    if (kind == NGX_HTTP_KCD_LO_ACCOUNT) {
        extra = sizeof(time_t)
                + zone->familiar * sizeof(ngx_http_kcd_lo_familiar_t);

    } else {
        extra = sizeof(uint32_t) + zone->spray * sizeof(uint32_t);
    }

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_http_kcd_lo_node_t, data) + len + extra;

    node = NULL;

    for (tries = 0; tries < 16; tries++) {

        node = ngx_slab_alloc_locked(zone->shpool, size);
        if (node) {
            break;
        }

        if (!ngx_queue_empty(&zone->sh->others)) {
            q = ngx_queue_last(&zone->sh->others);

        } else if (!ngx_queue_empty(&zone->sh->known)) {
            q = ngx_queue_last(&zone->sh->known);

        } else {
            break;
        }

        if (!zone->sh->evicting) {
            zone->sh->evicting = 1;
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "kcd: kcd_lockout_zone \"%V\" is full: least "
                          "recently used entries are evicted from now on "
                          "(accounts that logged on here last)",
                          &zone->name);
        }

        ngx_http_kcd_lo_delete(zone,
                               ngx_queue_data(q, ngx_http_kcd_lo_node_t,
                                              queue));
    }

    if (node == NULL) {
        return NULL;
    }

    node->key = hash;

    ln = ngx_http_kcd_lo_node(node);
    ngx_memzero(&ln->kind, offsetof(ngx_http_kcd_lo_node_t, data)
                           - offsetof(ngx_http_kcd_lo_node_t, kind));
    ln->kind = (u_char) kind;
    ln->key_len = (u_short) len;
    ngx_memcpy(ln->data, key, len);

    ngx_rbtree_insert(&zone->sh->rbtree, node);
    ngx_queue_insert_head(&zone->sh->others, &ln->queue);

    return ln;
}


/* "a" + 16 bytes of address, IPv4 as ::ffff:a.b.c.d */

static size_t
ngx_http_kcd_lo_addr_key(ngx_http_request_t *r, u_char *key)
{
    struct sockaddr      *sa;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    ngx_memzero(key, 17);
    key[0] = 'a';

    sa = r->connection->sockaddr;

    switch (sa->sa_family) {

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        ngx_memcpy(key + 1, sin6->sin6_addr.s6_addr, 16);
        break;
#endif

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        key[11] = 0xff;
        key[12] = 0xff;
        ngx_memcpy(key + 13, &sin->sin_addr.s_addr, 4);
        break;

    default:
        /* unix sockets: one address */
        break;
    }

    return 17;
}


/*
 * Names folded as the user file compares them (kcd_names_fold(): the lower
 * case of the Unicode upper case), so that every spelling of one account
 * gives one key and one rule: "JÜRGEN" and "jürgen", "ALICE" and
 * "al\xc4\xb1ce" (dotless i).  The end of what was written, or NULL when it
 * does not fit before last.
 */

u_char *
ngx_http_kcd_lower(u_char *dst, u_char *last, u_char *src, size_t len)
{
    size_t  n;

    if (dst > last) {
        return NULL;
    }

    n = kcd_names_fold((char *) dst, last - dst, (char *) src, len);

    return (n == (size_t) -1) ? NULL : dst + n;
}


/* "u" + name@realm folded (name alone when realm is empty); 0: too long */

static size_t
ngx_http_kcd_lo_key(u_char *key, ngx_str_t *name, ngx_str_t *realm)
{
    u_char  *p, *last;

    key[0] = 'u';
    last = key + NGX_HTTP_KCD_LO_KEY_MAX;

    p = ngx_http_kcd_lower(key + 1, last, name->data, name->len);

    if (p != NULL && realm->len) {
        if (p == last) {
            return 0;
        }

        *p++ = '@';
        p = ngx_http_kcd_lower(p, last, realm->data, realm->len);
    }

    return (p == NULL || name->len == 0) ? 0 : (size_t) (p - key);
}


/*
 * "u" + a principal, folded: user@REALM as the identity gets it (DOMAIN
 * through kcd_domain_map, else kcd_realm, else the default realm), a UPN
 * as it is.  principal: a logon's canonical principal instead of the two.
 * 0 when no key can be formed.
 */

static size_t
ngx_http_kcd_lo_account_key(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *domain, ngx_str_t *principal, u_char *key)
{
    ngx_str_t                 realm, none;
    ngx_http_kcd_loc_conf_t  *klcf;

    ngx_str_null(&none);

    if (principal) {
        return ngx_http_kcd_lo_key(key, principal, &none);
    }

    if (ngx_strlchr(user->data, user->data + user->len, '@')) {
        /* alice@kcd.test: a UPN, whatever the domain field says */
        return ngx_http_kcd_lo_key(key, user, &none);
    }

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (ngx_http_kcd_realm(r, klcf, domain ? domain : &none, &realm)
        != NGX_OK)
    {
        return 0;
    }

    return ngx_http_kcd_lo_key(key, user, &realm);
}


/*
 * The account of a logon before (and after) its password is checked, as
 * the backend of this location will check it, never the client's
 * spelling where the backend decides otherwise (B19 "its canonical
 * principal, whatever spelling the client used"):
 *
 * - the user file: the line ngx_http_kcd_user_file_find() finds for the
 *   names (Unicode upper-case comparison), and its principal as the
 *   identity gets it (a line without a domain logs on in the server's
 *   own domain, kcd_realm); a name with no line is unknown (0: counted at
 *   the address only) unless winbind checks it next;
 * - winbind: the names as sent, DOMAIN through the realm mapping;
 * - Basic by the KDC: the very name the AS exchange sends: the user part
 *   (the domain field is not sent), in kcd_realm (else krb5.conf's
 *   default realm) unless it names a realm (ngx_http_kcd_basic()).
 *   Names krb5_parse_name() would unescape or split are refused before
 *   (ngx_http_kcd_basic_kdc_name()), so this string is the principal.
 *
 * The key ("u" + folded principal) is written to key; its length, 0 when
 * the name is no account of the backend's.
 */

static size_t
ngx_http_kcd_lo_logon_key(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *domain, u_char *key)
{
    ngx_str_t                  luser, ldomain, none, realm;
    ngx_http_kcd_account_t    *acc;
    ngx_http_kcd_loc_conf_t   *klcf;

    if (user == NULL || user->len == 0) {
        return 0;
    }

    ngx_str_null(&none);

    if (domain == NULL) {
        domain = &none;
    }

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (klcf->user_file) {
        ngx_http_kcd_logon_name(r, user, domain, &luser, &ldomain);

        acc = ngx_http_kcd_user_file_find(klcf->user_file, &luser,
                                          &ldomain);

        if (acc) {
            /*
             * the principal ngx_http_kcd_identity_create() forms for the
             * line: its user @ the realm of its own domain (map_domain),
             * kcd_realm for a line without one
             */

            if (ngx_http_kcd_realm(r, klcf, &acc->domain, &realm) != NGX_OK)
            {
                return 0;
            }

            return ngx_http_kcd_lo_key(key, &acc->user, &realm);
        }

        if (!klcf->winbind) {
            return 0;
        }
    }

    if (klcf->winbind) {
        return ngx_http_kcd_lo_account_key(r, user, domain, NULL, key);
    }

    /* Basic by the KDC: the principal ngx_http_kcd_basic() sends */

    if (ngx_strlchr(user->data, user->data + user->len, '@')) {
        return ngx_http_kcd_lo_key(key, user, &none);
    }

    if (ngx_http_kcd_realm(r, klcf, &none, &realm) != NGX_OK) {
        return 0;
    }

    return ngx_http_kcd_lo_key(key, user, &realm);
}


/*
 * The lockout zone that applies to r's location (NULL: none); B14 counts
 * it among the checks an identity was accepted under.
 */

void *
ngx_http_kcd_lockout_scope(ngx_http_request_t *r)
{
    ngx_http_kcd_lo_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_lockout_module);

    return llcf ? llcf->zone : NULL;
}


static ngx_http_kcd_lo_zone_t *
ngx_http_kcd_lo_zone(ngx_http_request_t *r)
{
    ngx_http_kcd_lo_loc_conf_t  *llcf;

    llcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_lockout_module);

    if (llcf == NULL || llcf->zone == NULL || llcf->zone->sh == NULL) {
        return NULL;
    }

    return llcf->zone;
}


static void
ngx_http_kcd_lo_set_status(ngx_http_request_t *r, ngx_uint_t status)
{
    ngx_http_kcd_lo_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_lockout_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_kcd_lo_ctx_t));
        if (ctx == NULL) {
            return;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_kcd_lockout_module);
    }

    ctx->status = status;
}


static ngx_uint_t
ngx_http_kcd_lo_is_familiar(ngx_http_kcd_lo_node_t *ln, u_char *addr)
{
    ngx_uint_t                   i;
    ngx_http_kcd_lo_familiar_t  *f;

    f = ngx_http_kcd_lo_familiar(ln);

    for (i = 0; i < ln->n; i++) {
        if (ngx_memcmp(f[i].addr, addr, 16) == 0) {
            return 1;
        }
    }

    return 0;
}


static u_char *
ngx_http_kcd_lo_time(u_char *buf, time_t t)
{
    ngx_tm_t  tm;

    ngx_gmtime(t, &tm);

    return ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


/*
 * A lock of a class that ran out is released (one warn line), and a count
 * whose window ran out starts again.  Called with the zone locked.
 */

static void
ngx_http_kcd_lo_expire(ngx_http_kcd_lo_zone_t *zone,
    ngx_http_kcd_lo_node_t *ln, ngx_uint_t cls, time_t now, ngx_log_t *log,
    ngx_str_t *addr)
{
    if (ln->until[cls] && ln->until[cls] <= now) {

        if (ln->kind == NGX_HTTP_KCD_LO_ACCOUNT) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "kcd: lockout released: account \"%*s\" may log "
                          "on again from %V addresses (zone \"%V\")",
                          (size_t) ln->key_len - 1, ln->data + 1,
                          &ngx_http_kcd_lo_class_names[cls], &zone->name);

        } else {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "kcd: lockout released: client address %V may "
                          "log on again (spray lock, zone \"%V\")",
                          addr, &zone->name);
        }

        ln->until[cls] = 0;
        ln->fails[cls] = 0;
        ln->start[cls] = 0;

        if (ln->kind == NGX_HTTP_KCD_LO_ADDRESS) {
            ln->n = 0;
        }
    }

    if (ln->until[cls] == 0 && ln->fails[cls]
        && ln->start[cls] + zone->window <= now)
    {
        ln->fails[cls] = 0;
        ln->start[cls] = 0;

        if (ln->kind == NGX_HTTP_KCD_LO_ADDRESS) {
            ln->n = 0;
        }
    }
}


static void
ngx_http_kcd_lo_touch(ngx_http_kcd_lo_zone_t *zone,
    ngx_http_kcd_lo_node_t *ln)
{
    ngx_queue_remove(&ln->queue);
    ngx_queue_insert_head(ln->known ? &zone->sh->known : &zone->sh->others,
                          &ln->queue);
}


/* the mean of the last checked wrong passwords' times (ms); zone locked */

static ngx_msec_t
ngx_http_kcd_lo_latency(ngx_http_kcd_lo_zone_t *zone)
{
    ngx_uint_t  i, n;
    ngx_msec_t  sum;

    n = ngx_min(zone->sh->nlatency, NGX_HTTP_KCD_LO_SAMPLES);

    if (n == 0) {
        return 0;
    }

    sum = 0;

    for (i = 0; i < n; i++) {
        sum += zone->sh->latency[i];
    }

    return sum / n;
}


/* the password check starts now: its time is sampled when it fails */

static void
ngx_http_kcd_lo_check_started(ngx_http_request_t *r)
{
    ngx_http_kcd_lo_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_lockout_module);

    if (ctx) {
        ctx->check_start = ngx_current_msec;
        ctx->checking = 1;
    }
}


ngx_int_t
ngx_http_kcd_lockout_check(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *domain)
{
    ngx_http_kcd_lo_ctx_t   *ctx;
    u_char                   akey[17], ukey[NGX_HTTP_KCD_LO_KEY_MAX];
    u_char                   tbuf[32], *te;
    size_t                   ulen;
    time_t                   now, until;
    ngx_msec_t               delay;
    ngx_uint_t               cls, spray, locked;
    ngx_http_kcd_lo_node_t  *an, *un;
    ngx_http_kcd_lo_zone_t  *zone;

    zone = ngx_http_kcd_lo_zone(r);
    if (zone == NULL) {
        return NGX_OK;
    }

    (void) ngx_http_kcd_lo_addr_key(r, akey);
    ulen = ngx_http_kcd_lo_logon_key(r, user, domain, ukey);

    now = ngx_time();
    cls = NGX_HTTP_KCD_LO_UNFAMILIAR;
    locked = 0;
    spray = 0;
    until = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    an = ngx_http_kcd_lo_lookup(zone, ngx_crc32_short(akey, 17), akey, 17);

    if (an) {
        ngx_http_kcd_lo_expire(zone, an, 0, now, r->connection->log,
                               &r->connection->addr_text);

        if (an->until[0]) {
            locked = 1;
            spray = 1;
            until = an->until[0];
            ngx_http_kcd_lo_touch(zone, an);
        }
    }

    un = ulen ? ngx_http_kcd_lo_lookup(zone, ngx_crc32_short(ukey, ulen),
                                       ukey, ulen)
              : NULL;

    if (un) {
        if (ngx_http_kcd_lo_is_familiar(un, akey + 1)) {
            cls = NGX_HTTP_KCD_LO_FAMILIAR;
        }

        ngx_http_kcd_lo_expire(zone, un, cls, now, r->connection->log,
                               &r->connection->addr_text);

        if (!locked && un->until[cls]) {
            locked = 1;
            until = un->until[cls];
        }

        ngx_http_kcd_lo_touch(zone, un);
    }

    delay = ngx_http_kcd_lo_latency(zone);

    if (locked) {
        if (spray) {
            (void) ngx_atomic_fetch_add(&zone->sh->counters.refused_spray, 1);

        } else {
            (void) ngx_atomic_fetch_add(&zone->sh->counters.refused_lockout,
                                        1);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (!locked) {
        ngx_http_kcd_lo_set_status(r, cls == NGX_HTTP_KCD_LO_FAMILIAR
                                      ? NGX_HTTP_KCD_LOCKOUT_FAMILIAR
                                      : NGX_HTTP_KCD_LOCKOUT_UNFAMILIAR);
        ngx_http_kcd_lo_check_started(r);
        return NGX_OK;
    }

    te = ngx_http_kcd_lo_time(tbuf, until);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "kcd: logon of user \"%V\" domain \"%V\" %s: %s "
                  "until %*s (zone \"%V\")",
                  user, domain,
                  zone->log_only ? "would be refused (log_only)"
                                 : "refused",
                  spray ? "too many accounts failed from this address"
                        : (cls == NGX_HTTP_KCD_LO_FAMILIAR
                           ? "account locked for familiar addresses"
                           : "account locked for unfamiliar addresses"),
                  te - tbuf, tbuf, &zone->name);

    if (zone->log_only) {
        ngx_http_kcd_lo_set_status(r, NGX_HTTP_KCD_LOCKOUT_LOG_ONLY);
        ngx_http_kcd_lo_check_started(r);
        return NGX_OK;
    }

    /*
     * no oracle: the refusal counts at the address as the wrong password
     * it stands for would (one more distinct failing account for spray),
     * so that probing a locked account costs what probing any other name
     * costs; the account's own count is left alone (no password was
     * checked)
     */

    ngx_http_kcd_lo_count(r, zone, user, ukey, ulen,
                          NGX_HTTP_KCD_LOCKOUT_UNKNOWN_USER);

    ngx_http_kcd_lo_set_status(r, NGX_HTTP_KCD_LOCKOUT_LOCKED);

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_lockout_module);
    if (ctx) {
        ctx->delay = delay;
    }

    return NGX_DECLINED;
}


static void
ngx_http_kcd_lo_delay_handler(ngx_event_t *ev)
{
    ngx_connection_t       *c;
    ngx_http_request_t     *r;
    ngx_http_kcd_ctx_t     *kctx;
    ngx_http_kcd_lo_ctx_t  *ctx;

    ctx = ev->data;
    r = ctx->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;

    kctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    if (kctx) {
        kctx->pending = 0;
        kctx->done = 1;
        kctx->rc = ctx->rc;
    }

    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


/*
 * The answer to a logon refused by ngx_http_kcd_lockout_check(): rc (the
 * wrong-password answer) at once where passwords are checked locally, or
 * NGX_AGAIN and rc after the time a checked wrong password takes here
 * (the domain controller's or the KDC's round trip), so that the
 * refusal has the timing class of a wrong password.  No thread is held.
 */

ngx_int_t
ngx_http_kcd_lockout_answer(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_kcd_ctx_t     *kctx;
    ngx_http_kcd_lo_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_lockout_module);
    kctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    if (ctx == NULL || kctx == NULL || ctx->delay == 0) {
        return rc;
    }

    ctx->rc = rc;
    ctx->request = r;
    ctx->timer.handler = ngx_http_kcd_lo_delay_handler;
    ctx->timer.data = ctx;
    ctx->timer.log = r->connection->log;

    ngx_add_timer(&ctx->timer, ngx_min(ctx->delay, 10000));

    kctx->pending = 1;
    r->main->blocked++;

    return NGX_AGAIN;
}


void
ngx_http_kcd_lockout_failed(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *domain, ngx_uint_t why)
{
    u_char                   ukey[NGX_HTTP_KCD_LO_KEY_MAX];
    size_t                   ulen;
    ngx_msec_t               elapsed;
    ngx_http_kcd_lo_ctx_t   *ctx;
    ngx_http_kcd_lo_zone_t  *zone;

    zone = ngx_http_kcd_lo_zone(r);
    if (zone == NULL) {
        return;
    }

    ulen = ngx_http_kcd_lo_logon_key(r, user, domain, ukey);

    /*
     * the time of a checked wrong password (timing class), from the start
     * of the check (ngx_http_kcd_lockout_check()) to here, both ends on
     * nginx's monotonic clock: how long the client took to send its
     * request is no part of it
     */

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_lockout_module);

    if (ctx && ctx->checking) {
        ctx->checking = 0;
        elapsed = ngx_current_msec - ctx->check_start;

        ngx_shmtx_lock(&zone->shpool->mutex);

        zone->sh->latency[zone->sh->nlatency % NGX_HTTP_KCD_LO_SAMPLES]
            = ngx_min(elapsed, 60000);
        zone->sh->nlatency++;

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    ngx_http_kcd_lo_count(r, zone, user, ukey, ulen, why);
}


/*
 * A failed password check (or a refusal standing for one) counted: at the
 * address always (distinct accounts, spray), for the account when why is
 * NGX_HTTP_KCD_LOCKOUT_WRONG_PASSWORD and the backend knows the name
 * (ulen: its key from ngx_http_kcd_lo_logon_key(), 0 when unknown).
 */

static void
ngx_http_kcd_lo_count(ngx_http_request_t *r, ngx_http_kcd_lo_zone_t *zone,
    ngx_str_t *user, u_char *ukey, size_t ulen, ngx_uint_t why)
{
    u_char                   akey[17];
    u_char                   tbuf[32], *te, *p;
    time_t                   now;
    uint32_t                 h, *hashes;
    ngx_uint_t               i, cls, limit, alocked, ulocked, nacc, nfail;
    ngx_http_kcd_lo_node_t  *an, *un;

    (void) ngx_http_kcd_lo_addr_key(r, akey);

    if (ulen == 0) {
        /* a name the backend does not know: count it at the address */
        ukey[0] = 'n';
        p = ngx_http_kcd_lower(ukey + 1, ukey + NGX_HTTP_KCD_LO_KEY_MAX,
                               user->data, user->len);
        ulen = (p == NULL) ? 1 : (size_t) (p - ukey);
        why = NGX_HTTP_KCD_LOCKOUT_UNKNOWN_USER;
    }

    h = ngx_crc32_short(ukey, ulen);
    now = ngx_time();
    alocked = 0;
    ulocked = 0;
    nacc = 0;
    nfail = 0;
    cls = NGX_HTTP_KCD_LO_UNFAMILIAR;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* the address: distinct failing accounts within the window (spray) */

    an = ngx_http_kcd_lo_lookup(zone, ngx_crc32_short(akey, 17), akey, 17);

    if (an == NULL) {
        an = ngx_http_kcd_lo_alloc(zone, NGX_HTTP_KCD_LO_ADDRESS,
                                   ngx_crc32_short(akey, 17), akey, 17);
    }

    if (an) {
        ngx_http_kcd_lo_expire(zone, an, 0, now, r->connection->log,
                               &r->connection->addr_text);
        ngx_http_kcd_lo_touch(zone, an);

        hashes = ngx_http_kcd_lo_hashes(an);

        for (i = 0; i < an->n; i++) {
            if (hashes[i] == h) {
                break;
            }
        }

        if (i == an->n && an->until[0] == 0 && an->n < zone->spray) {

            if (an->n == 0) {
                an->start[0] = now;
            }

            hashes[an->n++] = h;
            an->fails[0] = an->n;

            if (an->n >= zone->spray) {
                an->until[0] = now + zone->window;
                alocked = 1;
            }
        }

        nacc = an->n;
    }

    /* the account, when the backend knows it */

    if (why == NGX_HTTP_KCD_LOCKOUT_WRONG_PASSWORD) {

        un = ngx_http_kcd_lo_lookup(zone, ngx_crc32_short(ukey, ulen),
                                    ukey, ulen);

        if (un == NULL) {
            un = ngx_http_kcd_lo_alloc(zone, NGX_HTTP_KCD_LO_ACCOUNT,
                                       ngx_crc32_short(ukey, ulen),
                                       ukey, ulen);
        }

        if (un) {
            if (ngx_http_kcd_lo_is_familiar(un, akey + 1)) {
                cls = NGX_HTTP_KCD_LO_FAMILIAR;
            }

            ngx_http_kcd_lo_expire(zone, un, cls, now, r->connection->log,
                                   &r->connection->addr_text);
            ngx_http_kcd_lo_touch(zone, un);

            limit = (cls == NGX_HTTP_KCD_LO_FAMILIAR)
                    ? zone->familiar_threshold : zone->threshold;

            if (un->until[cls] == 0) {

                if (un->fails[cls] == 0) {
                    un->start[cls] = now;
                }

                un->fails[cls]++;

                if (un->fails[cls] >= limit) {
                    un->until[cls] = now + zone->window;
                    ulocked = 1;
                }
            }

            nfail = un->fails[cls];
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (alocked || ulocked) {
        te = ngx_http_kcd_lo_time(tbuf, now + zone->window);

        if (ulocked) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "kcd: lockout: account \"%*s\" locked for %V "
                          "addresses after %ui failed logons (last from "
                          "%V) until %*s%s (zone \"%V\")",
                          ulen - 1, ukey + 1,
                          &ngx_http_kcd_lo_class_names[cls], nfail,
                          &r->connection->addr_text, te - tbuf, tbuf,
                          zone->log_only ? ", log_only" : "", &zone->name);
        }

        if (alocked) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "kcd: lockout: client address %V locked for "
                          "every account: %ui accounts failed from it "
                          "(spray) until %*s%s (zone \"%V\")",
                          &r->connection->addr_text, nacc, te - tbuf, tbuf,
                          zone->log_only ? ", log_only" : "", &zone->name);
        }
    }
}


/*
 * Every refused logon passes here (ngx_http_kcd_logon_failed()); only
 * failed password checks count: the user file's "wrong password" and
 * "unknown user", the DC's answer to winbind and the KDC's to an AS
 * exchange.  A name the DC or KDC does not know counts at the address
 * only.  Malformed messages, a bad MIC or channel binding, a refused
 * Kerberos ticket and refusals by kcd_lockout itself are no password
 * guesses and do not count.
 */

void
ngx_http_kcd_lockout_logon_failed(ngx_http_request_t *r, ngx_uint_t scheme,
    ngx_str_t *user, ngx_str_t *domain, const char *reason)
{
    ngx_uint_t  i, why;

    static const char  *unknown[] = {
        "unknown user",
        "NT_STATUS_NO_SUCH_USER",
        "not found in Kerberos database",
        NULL
    };

    static const char  *wrong[] = {
        "wrong password",
        "NT_STATUS_WRONG_PASSWORD",
        "NT_STATUS_LOGON_FAILURE",
        "NT_STATUS_ACCOUNT_LOCKED_OUT",
        "Preauthentication failed",
        "Password incorrect",
        "Decrypt integrity check failed",
        NULL
    };

    if (scheme == NGX_HTTP_KCD_NEGOTIATE || user == NULL || user->len == 0
        || reason == NULL || ngx_http_kcd_lo_zone(r) == NULL)
    {
        return;
    }

    why = NGX_HTTP_KCD_LOCKOUT_NONE;

    for (i = 0; unknown[i]; i++) {
        if (ngx_strstr(reason, unknown[i])) {
            why = NGX_HTTP_KCD_LOCKOUT_UNKNOWN_USER + 1;
            break;
        }
    }

    for (i = 0; why == NGX_HTTP_KCD_LOCKOUT_NONE && wrong[i]; i++) {
        if (ngx_strstr(reason, wrong[i])) {
            why = NGX_HTTP_KCD_LOCKOUT_WRONG_PASSWORD + 1;
        }
    }

    if (why == NGX_HTTP_KCD_LOCKOUT_NONE) {
        return;
    }

    ngx_http_kcd_lockout_failed(r, user, domain, why - 1);
}


void
ngx_http_kcd_lockout_success(ngx_http_request_t *r, ngx_str_t *principal)
{
    u_char                      akey[17], ukey[NGX_HTTP_KCD_LO_KEY_MAX];
    size_t                      ulen;
    time_t                      now;
    ngx_uint_t                  i, cls, oldest;
    ngx_http_kcd_lo_ctx_t      *ctx;
    ngx_http_kcd_lo_node_t     *un;
    ngx_http_kcd_lo_zone_t     *zone;
    ngx_http_kcd_lo_familiar_t *f;

    zone = ngx_http_kcd_lo_zone(r);
    if (zone == NULL) {
        return;
    }

    (void) ngx_http_kcd_lo_addr_key(r, akey);
    ulen = ngx_http_kcd_lo_account_key(r, NULL, NULL, principal, ukey);

    if (ulen == 0) {
        return;
    }

    now = ngx_time();
    cls = NGX_HTTP_KCD_LO_UNFAMILIAR;

    ngx_shmtx_lock(&zone->shpool->mutex);

    un = ngx_http_kcd_lo_lookup(zone, ngx_crc32_short(ukey, ulen), ukey, ulen);

    if (un == NULL) {
        un = ngx_http_kcd_lo_alloc(zone, NGX_HTTP_KCD_LO_ACCOUNT,
                                   ngx_crc32_short(ukey, ulen), ukey, ulen);
    }

    if (un) {
        f = ngx_http_kcd_lo_familiar(un);
        oldest = 0;

        for (i = 0; i < un->n; i++) {
            if (ngx_memcmp(f[i].addr, akey + 1, 16) == 0) {
                cls = NGX_HTTP_KCD_LO_FAMILIAR;
                break;
            }

            if (f[i].seen < f[oldest].seen) {
                oldest = i;
            }
        }

        /*
         * a success resets the count of its class (B19); a lock stays
         * for its window: a logon that was not checked against it
         * (Kerberos, log_only) must not hand a guesser new tries
         */

        if (un->until[cls] == 0 || un->until[cls] <= now) {
            un->fails[cls] = 0;
            un->start[cls] = 0;
            un->until[cls] = 0;
        }

        if (i == un->n) {
            if (un->n < zone->familiar) {
                i = un->n++;

            } else {
                i = oldest;
            }

            ngx_memcpy(f[i].addr, akey + 1, 16);
        }

        f[i].seen = now;
        un->known = 1;
        ngx_http_kcd_lo_touch(zone, un);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_lockout_module);

    if (ctx && ctx->status == NGX_HTTP_KCD_LOCKOUT_LOG_ONLY) {
        /* let through by log_only: the access log says so */
        return;
    }

    ngx_http_kcd_lo_set_status(r, cls == NGX_HTTP_KCD_LO_FAMILIAR
                                  ? NGX_HTTP_KCD_LOCKOUT_FAMILIAR
                                  : NGX_HTTP_KCD_LOCKOUT_UNFAMILIAR);
}


/*
 * kcd_status lines: the two counters per zone, and one gauge per lock
 * in force (account and class, or address), the listing an administrator
 * reads before unlocking (docs/lockout.md).
 */

/* a key may double in length when escaped */
#define NGX_HTTP_KCD_LO_LINE  (2 * NGX_HTTP_KCD_LO_KEY_MAX + 256)
#define NGX_HTTP_KCD_LO_LIST_MAX  200

/*
 * A label value of the Prometheus text format: backslash, double quote
 * and line feed escaped (\\, \", \n).  At most 2 * len bytes at p.
 */

static u_char *
ngx_http_kcd_lo_label(u_char *p, u_char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        switch (s[i]) {
        case '\\':
        case '"':
            *p++ = '\\';
            *p++ = s[i];
            break;
        case '\n':
            *p++ = '\\';
            *p++ = 'n';
            break;
        default:
            *p++ = s[i];
        }
    }

    return p;
}


size_t
ngx_http_kcd_lockout_status_size(ngx_http_request_t *r)
{
    ngx_http_kcd_lo_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_lockout_module);

    if (lmcf == NULL) {
        return 0;
    }

    return lmcf->zones.nelts * (3 + NGX_HTTP_KCD_LO_LIST_MAX)
           * NGX_HTTP_KCD_LO_LINE;
}


u_char *
ngx_http_kcd_lockout_status(ngx_http_request_t *r, u_char *p, u_char *last)
{
    u_char                        text[NGX_INET6_ADDRSTRLEN];
    size_t                        n;
    time_t                        now;
    ngx_uint_t                    z, cls, listed;
    ngx_queue_t                  *q, *queues[2];
    ngx_uint_t                    k;
    ngx_http_kcd_lo_node_t       *ln;
    ngx_http_kcd_lo_zone_t      **zones, *zone;
    ngx_http_kcd_lo_main_conf_t  *lmcf;

    lmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_lockout_module);

    if (lmcf == NULL) {
        return p;
    }

    zones = lmcf->zones.elts;
    now = ngx_time();

    for (z = 0; z < lmcf->zones.nelts; z++) {
        zone = zones[z];

        if (zone->sh == NULL || last - p < NGX_HTTP_KCD_LO_LINE * 3) {
            continue;
        }

        p = ngx_sprintf(p,
                 "kcd_lockout_refused_total{zone=\"%V\",reason=\"lockout\"}"
                 " %uA\n"
                 "kcd_lockout_refused_total{zone=\"%V\",reason=\"spray\"}"
                 " %uA\n",
                 &zone->name, zone->sh->counters.refused_lockout,
                 &zone->name, zone->sh->counters.refused_spray);

        listed = 0;

        ngx_shmtx_lock(&zone->shpool->mutex);

        queues[0] = &zone->sh->known;
        queues[1] = &zone->sh->others;

        for (k = 0; k < 2; k++) {
            for (q = ngx_queue_head(queues[k]);
                 q != ngx_queue_sentinel(queues[k])
                 && listed < NGX_HTTP_KCD_LO_LIST_MAX
                 && last - p >= NGX_HTTP_KCD_LO_LINE;
                 q = ngx_queue_next(q))
            {
                ln = ngx_queue_data(q, ngx_http_kcd_lo_node_t, queue);

                for (cls = 0; cls < 2; cls++) {
                    if (ln->until[cls] <= now) {
                        continue;
                    }

                    if (ln->kind == NGX_HTTP_KCD_LO_ACCOUNT) {
                        p = ngx_sprintf(p,
                                 "kcd_lockout_locked_until_seconds{zone="
                                 "\"%V\",account=\"", &zone->name);
                        p = ngx_http_kcd_lo_label(p, ln->data + 1,
                                                  (size_t) ln->key_len - 1);
                        p = ngx_sprintf(p, "\",addresses=\"%V\"} %T\n",
                                 &ngx_http_kcd_lo_class_names[cls],
                                 ln->until[cls]);

                    } else {
                        n = ngx_inet6_ntop(ln->data + 1, text,
                                           sizeof(text));

                        if (n > 7 && ngx_strncmp(text, "::ffff:", 7) == 0) {
                            ngx_memmove(text, text + 7, n - 7);
                            n -= 7;
                        }

                        p = ngx_sprintf(p,
                                 "kcd_lockout_locked_until_seconds{zone="
                                 "\"%V\",address=\"%*s\"} %T\n",
                                 &zone->name, n, text, ln->until[cls]);
                    }

                    listed++;
                }
            }
        }

        ngx_shmtx_unlock(&zone->shpool->mutex);
    }

    return p;
}


static ngx_int_t
ngx_http_kcd_lo_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_http_kcd_lo_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_kcd_lockout_module);

    if (ctx == NULL || ctx->status == NGX_HTTP_KCD_LOCKOUT_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = ngx_http_kcd_lo_status_names[ctx->status].len;
    v->data = ngx_http_kcd_lo_status_names[ctx->status].data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_lo_add_variables(ngx_conf_t *cf)
{
    ngx_str_t             name = ngx_string("kcd_lockout_status");
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &name, NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_kcd_lo_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_lo_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_kcd_lo_zone_t  *ozone = data;

    size_t                   len;
    ngx_http_kcd_lo_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        /* reload: the state survives (B19) */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_calloc(zone->shpool, sizeof(ngx_http_kcd_lo_sh_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_kcd_lo_rbtree_insert);
    ngx_queue_init(&zone->sh->known);
    ngx_queue_init(&zone->sh->others);

    len = sizeof(" in kcd_lockout_zone \"\"") + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in kcd_lockout_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* eviction is logged once by the zone itself */
    zone->shpool->log_nomem = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_lo_number(ngx_conf_t *cf, ngx_str_t *arg, size_t skip,
    ngx_uint_t min, ngx_uint_t max, ngx_uint_t *out)
{
    ngx_int_t  n;

    n = ngx_atoi(arg->data + skip, arg->len - skip);

    if (n == NGX_ERROR || (ngx_uint_t) n < min || (ngx_uint_t) n > max) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"kcd_lockout_zone\": "
                           "a number from %ui to %ui", arg, min, max);
        return NGX_ERROR;
    }

    *out = n;

    return NGX_OK;
}


static char *
ngx_http_kcd_lockout_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_lo_main_conf_t *lmcf = conf;

    u_char                   *p;
    ssize_t                   size;
    ngx_str_t                *value, name, s;
    ngx_uint_t                i;
    ngx_shm_zone_t           *shm_zone;
    ngx_http_kcd_lo_zone_t   *zone, **zp;

    value = cf->args->elts;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_lo_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->threshold = 5;
    zone->familiar_threshold = 20;
    zone->window = 30 * 60;
    zone->familiar = 8;
    zone->spray = 10;

    p = (u_char *) ngx_strlchr(value[1].data, value[1].data + value[1].len,
                               ':');

    if (p == NULL || p == value[1].data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\" in \"kcd_lockout_zone\": "
                           "use name:size", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - name.data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: at least %uzk",
                           &value[1], 8 * ngx_pagesize / 1024);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "threshold=", 10) == 0) {
            if (ngx_http_kcd_lo_number(cf, &value[i], 10, 1, 100000,
                                       &zone->threshold)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "familiar_threshold=", 19) == 0) {
            if (ngx_http_kcd_lo_number(cf, &value[i], 19, 1, 100000,
                                       &zone->familiar_threshold)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "familiar=", 9) == 0) {
            if (ngx_http_kcd_lo_number(cf, &value[i], 9, 1,
                                       NGX_HTTP_KCD_LO_FAMILIAR_MAX,
                                       &zone->familiar)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "spray=", 6) == 0) {
            if (ngx_http_kcd_lo_number(cf, &value[i], 6, 1,
                                       NGX_HTTP_KCD_LO_SPRAY_MAX,
                                       &zone->spray)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "window=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            zone->window = ngx_parse_time(&s, 1);

            if (zone->window == (time_t) NGX_ERROR || zone->window == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid window \"%V\" in "
                                   "\"kcd_lockout_zone\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (value[i].len == 8
            && ngx_strncmp(value[i].data, "log_only", 8) == 0)
        {
            zone->log_only = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"kcd_lockout_zone\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    zp = lmcf->zones.elts;

    for (i = 0; i < lmcf->zones.nelts; i++) {
        if (zp[i]->name.len == name.len
            && ngx_strncmp(zp[i]->name.data, name.data, name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate kcd_lockout_zone \"%V\"", &name);
            return NGX_CONF_ERROR;
        }
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_kcd_lockout_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used by another "
                           "directive", &name);
        return NGX_CONF_ERROR;
    }

    zone->name = name;
    zone->shm_zone = shm_zone;
    shm_zone->init = ngx_http_kcd_lo_init_zone;
    shm_zone->data = zone;

    zp = ngx_array_push(&lmcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = zone;

    return NGX_CONF_OK;
}


static char *
ngx_http_kcd_lockout(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_kcd_lo_loc_conf_t *llcf = conf;

    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_http_kcd_lo_zone_t       **zp;
    ngx_http_kcd_lo_main_conf_t   *lmcf;

    if (llcf->set) {
        return "is duplicate";
    }

    value = cf->args->elts;
    llcf->set = 1;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        llcf->zone = NULL;
        return NGX_CONF_OK;
    }

    lmcf = ngx_http_conf_get_module_main_conf(cf,
                                              ngx_http_kcd_lockout_module);
    zp = lmcf->zones.elts;

    for (i = 0; i < lmcf->zones.nelts; i++) {
        if (zp[i]->name.len == value[1].len
            && ngx_strncmp(zp[i]->name.data, value[1].data, value[1].len)
               == 0)
        {
            llcf->zone = zp[i];
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "unknown kcd_lockout_zone \"%V\": declare it with "
                       "\"kcd_lockout_zone %V:size\" in the http block "
                       "before it is used", &value[1], &value[1]);

    return NGX_CONF_ERROR;
}


static void *
ngx_http_kcd_lo_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_kcd_lo_main_conf_t  *lmcf;

    lmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_lo_main_conf_t));
    if (lmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&lmcf->zones, cf->pool, 2,
                       sizeof(ngx_http_kcd_lo_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return lmcf;
}


static void *
ngx_http_kcd_lo_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_kcd_lo_loc_conf_t  *llcf;

    llcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_lo_loc_conf_t));
    if (llcf == NULL) {
        return NULL;
    }

    /* llcf->zone = NULL; llcf->set = 0; */

    return llcf;
}


static char *
ngx_http_kcd_lo_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_kcd_lo_loc_conf_t  *prev = parent;
    ngx_http_kcd_lo_loc_conf_t  *conf = child;

    if (!conf->set) {
        conf->zone = prev->zone;
        conf->set = prev->set;
    }

    return NGX_CONF_OK;
}
