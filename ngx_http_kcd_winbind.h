/*
 * NTLM and Basic pass-through to Active Directory through winbind
 * (libwbclient).  Every call blocks: run it in the thread pool.  No nginx
 * types.
 */

#ifndef _NGX_HTTP_KCD_WINBIND_H_INCLUDED_
#define _NGX_HTTP_KCD_WINBIND_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define KCD_WB_OK            0
#define KCD_WB_DENIED       -1   /* wrong password, unknown user, guest,
                                    disabled, locked: 401 */
#define KCD_WB_UNAVAILABLE  -2   /* winbindd or the DC unreachable: 503;
                                    the error text starts with which */

#define KCD_WB_GROUPS_SIZE  8192


typedef struct kcd_wb_result_s {
    char        user[256];        /* account name as the DC returns it */
    char        domain[256];      /* NetBIOS domain as the DC returns it */
    char        dns_domain[256];  /* DNS domain (realm) if known, else "" */
    uint8_t     session_key[16];  /* user session key (NTLM) */
    char        error[256];       /* the winbind/NT status text */

    /*
     * the user's group SIDs from the logon ("S-1-5-21-...-513"), and after
     * kcd_wb_group_names() their names ("KCD\Exchange Users"), each
     * NUL-terminated, one after the other
     */
    char        sids[KCD_WB_GROUPS_SIZE];
    int         nsids;
    char        groups[KCD_WB_GROUPS_SIZE];
    int         ngroups;
} kcd_wb_result_t;


/*
 * Challenge/response logon (WBC_AUTH_USER_LEVEL_RESPONSE): user, domain,
 * workstation in UTF-8 as the client sent them; nt: the whole NTLMv2
 * response.  Guest logons are refused.
 */
int kcd_wb_auth_ntlm(const char *user, const char *domain,
    const char *workstation, const uint8_t challenge[8],
    const uint8_t *nt, size_t nt_len, const uint8_t *lm, size_t lm_len,
    kcd_wb_result_t *res);

/* plaintext logon (Basic) */
int kcd_wb_auth_plain(const char *user, const char *domain,
    const char *password, kcd_wb_result_t *res);

/*
 * B20: the names of res->sids (as the DC's logon answer or a PAC gave
 * them) into res->groups, through winbindd (LookupSids).  SIDs it cannot
 * name are left out.  0, or -1 with res->error set; blocks: thread pool.
 */
int kcd_wb_group_names(kcd_wb_result_t *res);

/* append one SID string to res->sids; -1 when full */
int kcd_wb_add_sid(kcd_wb_result_t *res, const char *sid);

/*
 * Start-up check: winbindd answers and the privileged pipe can be opened
 * by this process.  0, or -1 with a message in err.
 */
int kcd_wb_check(char *err, size_t errlen);


#endif /* _NGX_HTTP_KCD_WINBIND_H_INCLUDED_ */
