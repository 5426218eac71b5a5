/*
 * The realm of a logon (SPEC kcd_realm, kcd_domain_map, B5 "Names"): a
 * configuration lookup shared by identities, lockout accounts and access
 * rules.  Calls nothing else of the module.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"


/*
 * The realm of a logon: kcd_domain_map for its domain, else kcd_realm,
 * else the default realm of krb5.conf; always upper case (RFC 4120 realms
 * of AD are the upper-cased DNS domain).  Empty when none is known.
 */

ngx_int_t
ngx_http_kcd_realm(ngx_http_request_t *r, ngx_http_kcd_loc_conf_t *klcf,
    ngx_str_t *map_domain, ngx_str_t *realm)
{
    ngx_uint_t                  i;
    ngx_http_kcd_domain_map_t  *map;
    ngx_http_kcd_main_conf_t   *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    if (map_domain->len && kmcf->domain_map) {
        map = kmcf->domain_map->elts;

        for (i = 0; i < kmcf->domain_map->nelts; i++) {
            if (map[i].netbios.len == map_domain->len
                && ngx_strncasecmp(map[i].netbios.data, map_domain->data,
                                   map_domain->len) == 0)
            {
                *realm = map[i].realm;
                return NGX_OK;
            }
        }
    }

    if (klcf->realm.len) {
        *realm = klcf->realm;
        return NGX_OK;
    }

    *realm = kmcf->default_realm;

    return NGX_OK;
}
