/*
 * What crosses the proxy in each direction (B7, B10, strip_negotiate):
 *
 *  - upstream: the client's Authorization never goes; with kcd_spn our own
 *    "Authorization: Negotiate <token>" takes its place;
 *  - client: upstream "WWW-Authenticate: Negotiate <token>" (mutual
 *    authentication for the proxy, meaningless to the client) and
 *    "Persistent-Auth" never come back; with kcd_strip_negotiate the bare
 *    "Negotiate" challenge of an upstream 401 goes too.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"


static ngx_int_t ngx_http_kcd_header_filter(ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_http_kcd_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_kcd_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_header_filter(ngx_http_request_t *r)
{
    u_char                   *p, *last;
    ngx_uint_t                i, strip;
    ngx_list_part_t          *part;
    ngx_table_elt_t          *h;
    ngx_http_kcd_loc_conf_t  *klcf;

    if (r->upstream == NULL) {
        /* our own responses: challenges are built as configured */
        return ngx_http_next_header_filter(r);
    }

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (klcf->schemes == 0 && klcf->spn == NULL
        && klcf->strip_negotiate == NULL)
    {
        return ngx_http_next_header_filter(r);
    }

    strip = (r->headers_out.status == NGX_HTTP_UNAUTHORIZED)
            ? ngx_http_kcd_strip(r, klcf) : 0;

    part = &r->headers_out.headers.part;
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

        if (h[i].hash == 0) {
            continue;
        }

        if (h[i].key.len == sizeof("Persistent-Auth") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Persistent-Auth",
                               h[i].key.len) == 0)
        {
            h[i].hash = 0;
            continue;
        }

        if (h[i].key.len != sizeof("WWW-Authenticate") - 1
            || ngx_strncasecmp(h[i].key.data, (u_char *) "WWW-Authenticate",
                               h[i].key.len) != 0)
        {
            continue;
        }

        p = h[i].value.data;
        last = p + h[i].value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        if (last - p < 9
            || ngx_strncasecmp(p, (u_char *) "Negotiate", 9) != 0
            || (last - p > 9 && p[9] != ' '))
        {
            continue;
        }

        p += 9;

        while (p < last && *p == ' ') {
            p++;
        }

        if (p < last || strip) {
            /* a token (mutual authentication), or stripping applies */
            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "kcd: upstream \"WWW-Authenticate: %V\" removed",
                           &h[i].value);
            h[i].hash = 0;

            if (r->headers_out.www_authenticate == &h[i]) {
                r->headers_out.www_authenticate = NULL;
            }
        }
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Take the client's Authorization out of the request.  Removing an element
 * from headers_in.headers would move the elements the other headers_in
 * pointers refer to, and upstream modules send every element whose name
 * they don't override.  So the element is kept, emptied and renamed to a
 * hop-by-hop header that the proxy module never forwards from the client
 * (Keep-Alive is in its default set of overridden headers).
 */

ngx_int_t
ngx_http_kcd_hide_authorization(ngx_http_request_t *r)
{
    ngx_table_elt_t      *h;
    ngx_http_kcd_conn_t  *kc;

    h = r->headers_in.authorization;

    if (h == NULL) {
        return NGX_OK;
    }

    kc = ngx_http_kcd_conn(r, 0);

    if (kc && kc->injected == h
        && kc->injected_req == r->connection->requests)
    {
        /* ours, after an internal redirect: it goes again if needed */
        kc->injected = NULL;
    }

    if (h->value.len) {
        ngx_explicit_memzero(h->value.data, h->value.len);
    }

    ngx_str_set(&h->key, "Keep-Alive");
    h->lowcase_key = (u_char *) "keep-alive";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);
    ngx_str_null(&h->value);

    r->headers_in.authorization = NULL;

    return NGX_OK;
}


ngx_int_t
ngx_http_kcd_set_upstream_authorization(ngx_http_request_t *r,
    ngx_str_t *value)
{
    ngx_table_elt_t      *h;
    ngx_http_kcd_conn_t  *kc;

    if (ngx_http_kcd_hide_authorization(r) != NGX_OK) {
        return NGX_ERROR;
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

    kc = ngx_http_kcd_conn(r, 1);
    if (kc == NULL) {
        return NGX_ERROR;
    }

    kc->injected = h;
    kc->injected_req = r->connection->requests;

    return NGX_OK;
}
