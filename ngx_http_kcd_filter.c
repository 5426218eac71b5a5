/*
 * What goes back to the client (B1, B10, B15, B16, kcd_strip_negotiate):
 *
 *  - upstream "WWW-Authenticate: Negotiate <token>" challenges (mutual
 *    authentication for the proxy, meaningless to the client) and
 *    "Persistent-Auth" never reach the client; with kcd_strip_negotiate
 *    the bare Negotiate challenges of an upstream 401 go too.  Every
 *    WWW-Authenticate field is parsed as a list of challenges (B16).
 *
 * (An upstream 401 to a request that carried our token never gets here: it
 * is turned into a 502 where the upstream answer is parsed, B15, in
 * ngx_http_kcd_upstream.c.)
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_authlist.h"


#define NGX_HTTP_KCD_MAX_CHALLENGES  16


static ngx_int_t ngx_http_kcd_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_kcd_final_challenge(ngx_http_request_t *r,
    ngx_http_kcd_request_t *rq);
static ngx_int_t ngx_http_kcd_filter_challenges(ngx_http_request_t *r,
    ngx_table_elt_t *h, ngx_uint_t strip);
static ngx_uint_t ngx_http_kcd_is_negotiate(const u_char *scheme,
    size_t len);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_http_kcd_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_kcd_header_filter;

    return NGX_OK;
}


/* kcd_strip_negotiate for this request: 1 when Negotiate is withheld */

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


/* one WWW-Authenticate of the module's own 401 */

ngx_int_t
ngx_http_kcd_add_challenge(ngx_http_request_t *r, ngx_str_t *value)
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


static ngx_int_t
ngx_http_kcd_header_filter(ngx_http_request_t *r)
{
    ngx_uint_t                i, strip;
    ngx_list_part_t          *part;
    ngx_table_elt_t          *h;
    ngx_http_kcd_request_t   *rq;
    ngx_http_kcd_loc_conf_t  *klcf;

    rq = ngx_http_kcd_request(r, 0);

    if (r->upstream == NULL) {
        /* our own responses: challenges are built as configured */
        if (ngx_http_kcd_final_challenge(r, rq) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_http_next_header_filter(r);
    }

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

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

        if (h[i].key.len == sizeof("WWW-Authenticate") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "WWW-Authenticate",
                               h[i].key.len) == 0)
        {
            if (ngx_http_kcd_filter_challenges(r, &h[i], strip) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    if (ngx_http_kcd_final_challenge(r, rq) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_next_header_filter(r);
}


/*
 * B5: the response that ends an NTLM handshake inside SPNEGO carries the
 * server's last negTokenResp (accept-completed, mechListMIC), once, on the
 * main request, whatever produced the response.
 */

static ngx_int_t
ngx_http_kcd_final_challenge(ngx_http_request_t *r,
    ngx_http_kcd_request_t *rq)
{
    ngx_table_elt_t  *h;

    if (rq == NULL || rq->final_challenge.len == 0 || r != r->main
        || r->headers_out.status >= NGX_HTTP_BAD_REQUEST)
    {
        return NGX_OK;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value = rq->final_challenge;

    rq->final_challenge.len = 0;

    return NGX_OK;
}


/*
 * B16: drop the Negotiate challenges of one field: always those with data
 * (a mutual-authentication token for the proxy), the bare one when
 * stripping applies; keep the others, rejoined.  A field that is not a
 * valid list loses every Negotiate it may hold: the whole field goes if
 * the word appears in it.
 */

static ngx_int_t
ngx_http_kcd_filter_challenges(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_uint_t strip)
{
    int                        n, i;
    u_char                    *p;
    size_t                     len;
    ngx_uint_t                 drop, kept;
    kcd_authlist_challenge_t   ch[NGX_HTTP_KCD_MAX_CHALLENGES];
    ngx_uint_t                 keep[NGX_HTTP_KCD_MAX_CHALLENGES];

    n = kcd_authlist_parse(h->value.data, h->value.len, ch,
                           NGX_HTTP_KCD_MAX_CHALLENGES);

    if (n < 0 || n > NGX_HTTP_KCD_MAX_CHALLENGES) {
        if (ngx_strlcasestrn(h->value.data, h->value.data + h->value.len,
                             (u_char *) "negotiate", 9 - 1)
            == NULL)
        {
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "kcd: malformed upstream \"WWW-Authenticate: %V\" "
                      "removed", &h->value);
        goto remove;
    }

    drop = 0;
    len = 0;

    for (i = 0; i < n; i++) {
        keep[i] = !(ngx_http_kcd_is_negotiate(ch[i].scheme,
                                              ch[i].scheme_len)
                    && (ch[i].has_data || strip));

        if (keep[i]) {
            len += (ch[i].end - ch[i].start) + 2;

        } else {
            drop++;
        }
    }

    if (drop == 0) {
        return NGX_OK;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "kcd: Negotiate removed from upstream "
                   "\"WWW-Authenticate: %V\"", &h->value);

    if (drop == (ngx_uint_t) n) {
        goto remove;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    kept = 0;
    h->value.data = p;

    for (i = 0; i < n; i++) {
        if (!keep[i]) {
            continue;
        }

        if (kept++) {
            *p++ = ',';
            *p++ = ' ';
        }

        p = ngx_cpymem(p, ch[i].start, ch[i].end - ch[i].start);
    }

    h->value.len = p - h->value.data;

    return NGX_OK;

remove:

    h->hash = 0;

    if (r->headers_out.www_authenticate == h) {
        r->headers_out.www_authenticate = NULL;
    }

    return NGX_OK;
}


static ngx_uint_t
ngx_http_kcd_is_negotiate(const u_char *scheme, size_t len)
{
    return len == sizeof("Negotiate") - 1
           && ngx_strncasecmp((u_char *) scheme, (u_char *) "Negotiate",
                              len) == 0;
}
