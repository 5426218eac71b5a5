/*
 * Counters in shared memory (one zone, "kcd_status", created whenever the
 * module is loaded) and the kcd_status handler: Prometheus text format.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"


static ngx_int_t ngx_http_kcd_init_counters(ngx_shm_zone_t *shm_zone,
    void *data);


ngx_int_t
ngx_http_kcd_metrics_init(ngx_conf_t *cf, ngx_http_kcd_main_conf_t *kmcf)
{
    ngx_str_t  name;

    ngx_str_set(&name, "kcd_status");

    kmcf->counters_zone = ngx_shared_memory_add(cf, &name, 64 * 1024,
                                                &ngx_http_kcd_module);
    if (kmcf->counters_zone == NULL) {
        return NGX_ERROR;
    }

    kmcf->counters_zone->init = ngx_http_kcd_init_counters;
    kmcf->counters_zone->data = kmcf;

    return NGX_OK;
}


ngx_http_kcd_counters_t *
ngx_http_kcd_counters(ngx_http_request_t *r)
{
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    return kmcf ? kmcf->counters : NULL;
}


/* kcd_status: Prometheus text exposition format */

ngx_int_t
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
        "kcd_winbind_total{result=\"unavailable\"}",
        "kcd_require_denied_total"
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

    size += ngx_http_kcd_lockout_status_size(r);

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    val = (ngx_atomic_t *) kmcf->counters;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        b->last = ngx_sprintf(b->last, "%s %uA\n", names[i], val[i]);
    }

    /* B19, B20: refusals by kcd_lockout and kcd_require, locks in force */
    b->last = ngx_http_kcd_lockout_status(r, b->last, b->end);

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
