/*
 * B20: the groups of a Kerberos client, from the PAC of its ticket
 * (MS-PAC 2.5 KERB_VALIDATION_INFO, the "urn:mspac:logon-info" name
 * attribute MIT Kerberos exposes).  NDR decoding by Samba's libndr-krb5pac.
 * No nginx types.
 */

#ifndef _NGX_HTTP_KCD_PAC_H_INCLUDED_
#define _NGX_HTTP_KCD_PAC_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_http_kcd_winbind.h"
#include "ngx_http_kcd_gss.h"


/*
 * The group SIDs of a PAC_LOGON_INFO buffer (as gss_get_name_attribute()
 * returns it: NDR type serialization 1, MS-RPCE 2.2.6) appended to
 * res->sids: the primary group, the domain groups, the extra SIDs and the
 * resource groups.  0, or -1 with res->error set.
 */
int kcd_pac_logon_sids(const uint8_t *buf, size_t len, kcd_wb_result_t *res);

/*
 * The groups of a Kerberos logon: the SIDs of the PAC_LOGON_INFO in pac
 * (as kcd_gss_accept_pac() returned it, freed here) into res->sids, their
 * names through winbind into res->groups where winbindd answers.  Blocks:
 * thread pool.
 */
int kcd_pac_groups(kcd_gss_buf_t *pac, kcd_wb_result_t *res);


#endif /* _NGX_HTTP_KCD_PAC_H_INCLUDED_ */
