/*
 * B20: group SIDs from the PAC of a Kerberos client's ticket.
 *
 * MIT Kerberos verifies the PAC's server signature when it accepts the
 * ticket and hands the PAC_LOGON_INFO buffer out as the name attribute
 * "urn:mspac:logon-info" (ngx_http_kcd_gss.c).  The buffer is NDR (MS-PAC
 * 2.5, KERB_VALIDATION_INFO inside a type serialization header); Samba's
 * libndr-krb5pac decodes it, the same marshallers Samba's own KDC and
 * winbindd use.  The SIDs become names through winbind like the groups of
 * an NTLM logon (kcd_wb_group_names()).
 */

#define HAVE_IMMEDIATE_STRUCTURES 1

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <talloc.h>
#include <ndr.h>
#include <gen_ndr/ndr_krb5pac.h>
#include <wbclient.h>

#include "ngx_http_kcd_pac.h"


static int
kcd_pac_add(kcd_wb_result_t *res, const struct dom_sid *dom, int has_rid,
    uint32_t rid)
{
    int                  i;
    char                 buf[WBC_SID_STRING_BUFLEN];
    struct wbcDomainSid  sid;

    if (dom == NULL || dom->num_auths < 0
        || dom->num_auths + (has_rid ? 1 : 0) > WBC_MAXSUBAUTHS)
    {
        return 0;
    }

    memset(&sid, 0, sizeof(sid));
    sid.sid_rev_num = dom->sid_rev_num;
    sid.num_auths = dom->num_auths;
    memcpy(sid.id_auth, dom->id_auth, sizeof(sid.id_auth));

    for (i = 0; i < dom->num_auths; i++) {
        sid.sub_auths[i] = dom->sub_auths[i];
    }

    if (has_rid) {
        sid.sub_auths[sid.num_auths++] = rid;
    }

    if (wbcSidToStringBuf(&sid, buf, sizeof(buf)) <= 0) {
        return 0;
    }

    return kcd_wb_add_sid(res, buf);
}


int
kcd_pac_logon_sids(const uint8_t *buf, size_t len, kcd_wb_result_t *res)
{
    int                        rc;
    uint32_t                   i;
    DATA_BLOB                  blob;
    TALLOC_CTX                *mem;
    union PAC_INFO             info;
    enum ndr_err_code          nerr;
    struct PAC_LOGON_INFO     *li;
    struct netr_SamBaseInfo   *base;

    mem = talloc_new(NULL);
    if (mem == NULL) {
        (void) snprintf(res->error, sizeof(res->error), "out of memory");
        return -1;
    }

    blob.data = (uint8_t *) buf;
    blob.length = len;

    memset(&info, 0, sizeof(info));

    nerr = ndr_pull_union_blob(&blob, mem, &info, PAC_TYPE_LOGON_INFO,
                               (ndr_pull_flags_fn_t) ndr_pull_PAC_INFO);

    if (!NDR_ERR_CODE_IS_SUCCESS(nerr) || info.logon_info.info == NULL) {
        (void) snprintf(res->error, sizeof(res->error),
                        "PAC logon info cannot be decoded (NDR error %d)",
                        (int) nerr);
        talloc_free(mem);
        return -1;
    }

    li = info.logon_info.info;
    base = &li->info3.base;
    rc = 0;

    if (kcd_pac_add(res, base->domain_sid, 1, base->primary_gid) != 0) {
        rc = -1;
    }

    for (i = 0; rc == 0 && i < base->groups.count && base->groups.rids; i++) {
        if (base->groups.rids[i].rid != base->primary_gid) {
            rc = kcd_pac_add(res, base->domain_sid, 1,
                             base->groups.rids[i].rid);
        }
    }

    /* extra SIDs: universal groups of other domains, claims of identity */
    for (i = 0; rc == 0 && i < li->info3.sidcount && li->info3.sids; i++) {
        rc = kcd_pac_add(res, li->info3.sids[i].sid, 0, 0);
    }

    /* resource groups: domain local groups of the resource domain */
    for (i = 0;
         rc == 0 && i < li->resource_groups.groups.count
         && li->resource_groups.groups.rids;
         i++)
    {
        rc = kcd_pac_add(res, li->resource_groups.domain_sid, 1,
                         li->resource_groups.groups.rids[i].rid);
    }

    if (rc != 0) {
        (void) snprintf(res->error, sizeof(res->error),
                        "too many groups in the PAC");
    }

    talloc_free(mem);

    return rc;
}


int
kcd_pac_groups(kcd_gss_buf_t *pac, kcd_wb_result_t *res)
{
    int  rc;

    if (pac->len == 0) {
        return 0;
    }

    rc = kcd_pac_logon_sids(pac->data, pac->len, res);

    if (rc == 0 && res->nsids) {
        /* no winbindd (an MIT realm): the SIDs alone, rules may name them */
        (void) kcd_wb_group_names(res);
    }

    kcd_gss_free(pac);

    return rc;
}
