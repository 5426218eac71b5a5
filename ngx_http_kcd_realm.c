/*
 * The realm of a logon (SPEC kcd_realm, kcd_domain_map, B5 "Names"): a
 * configuration lookup shared by identities, lockout accounts and access
 * rules; and the account a logon's names mean for the user file (B5),
 * shared by the logons and the lockout.  Calls nothing else of the module
 * but ngx_http_kcd_names.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_names.h"


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


/*
 * SPEC B5 "Names": the account a logon names for the user file.  A UPN
 * (user@dns.domain, empty domain) is split; a domain that is the server's
 * own under another spelling (kcd_ntlm_dns_domain, kcd_realm, the default
 * realm) becomes kcd_ntlm_domain, a realm of kcd_domain_map its NetBIOS
 * name.  Compared with Unicode simple case mapping (ngx_http_kcd_names.c).
 * out_user / out_domain point into the inputs or the configuration.
 */

void
ngx_http_kcd_logon_name(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *domain, ngx_str_t *out_user, ngx_str_t *out_domain)
{
    ngx_uint_t                  i;
    kcd_names_str_t             u, d, nb, al[3], ou, od;
    ngx_http_kcd_domain_map_t  *map;
    ngx_http_kcd_loc_conf_t    *klcf;
    ngx_http_kcd_srv_conf_t    *kscf;
    ngx_http_kcd_main_conf_t   *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);
    kscf = ngx_http_get_module_srv_conf(r, ngx_http_kcd_module);
    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    u.data = (char *) user->data;
    u.len = user->len;
    d.data = (char *) domain->data;
    d.len = domain->len;
    nb.data = (char *) kscf->ntlm_domain.data;
    nb.len = kscf->ntlm_domain.len;
    al[0].data = (char *) kscf->ntlm_dns_domain.data;
    al[0].len = kscf->ntlm_dns_domain.len;
    al[1].data = (char *) klcf->realm.data;
    al[1].len = klcf->realm.len;
    al[2].data = (char *) kmcf->default_realm.data;
    al[2].len = kmcf->default_realm.len;

    if (!kcd_names_logon(&u, &d, &nb, al, 3, &ou, &od)
        && od.len && kmcf->domain_map)
    {
        /* another domain of the forest, named by its DNS name */

        map = kmcf->domain_map->elts;

        for (i = 0; i < kmcf->domain_map->nelts; i++) {
            if (kcd_names_equal(od.data, od.len,
                                (char *) map[i].realm.data,
                                map[i].realm.len))
            {
                od.data = (char *) map[i].netbios.data;
                od.len = map[i].netbios.len;
                break;
            }
        }
    }

    out_user->data = (u_char *) ou.data;
    out_user->len = ou.len;
    out_domain->data = (u_char *) od.data;
    out_domain->len = od.len;
}
