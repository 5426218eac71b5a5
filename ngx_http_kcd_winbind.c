/*
 * NTLM and Basic pass-through to Active Directory through winbind
 * (libwbclient).
 *
 * Every call blocks (winbindd talks NETLOGON to a domain controller), so
 * the module runs them in a thread pool.  The classic wbc*() calls share
 * one global context inside libwbclient, which is not safe to use from
 * several threads at once; the wbcCtx*() calls take an explicit context,
 * so each thread keeps its own (pthread key, freed when the thread ends).
 * A context holds its winbindd socket open between calls, and libwbclient
 * reopens it after fork(), so a context created before fork is harmless.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

#include <wbclient.h>

#include "ngx_http_kcd_winbind.h"


/* NTSTATUS values that mean "no domain controller can answer" (MS-ERREF) */
#define KCD_NT_IO_TIMEOUT                      0xC00000B5
#define KCD_NT_PIPE_DISCONNECTED               0xC00000B0
#define KCD_NT_PIPE_BROKEN                     0xC000014B
#define KCD_NT_NO_MEMORY                       0xC0000017
#define KCD_NT_NO_LOGON_SERVERS                0xC000005E
#define KCD_NT_INSUFFICIENT_RESOURCES          0xC000009A
#define KCD_NT_INVALID_SERVER_STATE            0xC00000DC
#define KCD_NT_INTERNAL_ERROR                  0xC00000E5
#define KCD_NT_NO_TRUST_SAM_ACCOUNT            0xC000018B
#define KCD_NT_TRUSTED_DOMAIN_FAILURE          0xC000018C
#define KCD_NT_TRUSTED_RELATIONSHIP_FAILURE    0xC000018D
#define KCD_NT_NETLOGON_NOT_STARTED            0xC0000192
#define KCD_NT_CONNECTION_DISCONNECTED         0xC000020C
#define KCD_NT_CONNECTION_RESET                0xC000020D
#define KCD_NT_DOMAIN_CONTROLLER_NOT_FOUND     0xC0000233
#define KCD_NT_CONNECTION_REFUSED              0xC0000236
#define KCD_NT_NETWORK_UNREACHABLE             0xC000023C
#define KCD_NT_HOST_UNREACHABLE                0xC000023D
#define KCD_NT_RPC_FACILITY_MASK               0xFFFF0000
#define KCD_NT_RPC_FACILITY                    0xC0020000
#define KCD_NT_RPC_NT_FACILITY                 0xC0030000

/* winbindd limits a request to 64 KiB; a sane NTLMv2 blob is < 2 KiB */
#define KCD_WB_MAX_RESPONSE                    65535


static pthread_key_t   kcd_wb_key;
static pthread_once_t  kcd_wb_once = PTHREAD_ONCE_INIT;
static int             kcd_wb_key_ok;


static void
kcd_wb_ctx_free(void *p)
{
    wbcCtxFree(p);
}


static void
kcd_wb_key_init(void)
{
    kcd_wb_key_ok = (pthread_key_create(&kcd_wb_key, kcd_wb_ctx_free) == 0);
}


static struct wbcContext *
kcd_wb_ctx(void)
{
    struct wbcContext  *ctx;

    (void) pthread_once(&kcd_wb_once, kcd_wb_key_init);

    if (!kcd_wb_key_ok) {
        return NULL;
    }

    ctx = pthread_getspecific(kcd_wb_key);
    if (ctx != NULL) {
        return ctx;
    }

    ctx = wbcCtxCreate();
    if (ctx == NULL) {
        return NULL;
    }

    if (pthread_setspecific(kcd_wb_key, ctx) != 0) {
        wbcCtxFree(ctx);
        return NULL;
    }

    return ctx;
}


static void
kcd_wb_copy(char *dst, size_t size, const char *src)
{
    size_t  n;

    if (src == NULL) {
        src = "";
    }

    n = strlen(src);
    if (n >= size) {
        n = size - 1;
    }

    memcpy(dst, src, n);
    dst[n] = '\0';
}


static bool
kcd_wb_nt_unavailable(uint32_t st)
{
    switch (st) {
    case KCD_NT_IO_TIMEOUT:
    case KCD_NT_PIPE_DISCONNECTED:
    case KCD_NT_PIPE_BROKEN:
    case KCD_NT_NO_MEMORY:
    case KCD_NT_NO_LOGON_SERVERS:
    case KCD_NT_INSUFFICIENT_RESOURCES:
    case KCD_NT_INVALID_SERVER_STATE:
    case KCD_NT_INTERNAL_ERROR:
    case KCD_NT_NO_TRUST_SAM_ACCOUNT:
    case KCD_NT_TRUSTED_DOMAIN_FAILURE:
    case KCD_NT_TRUSTED_RELATIONSHIP_FAILURE:
    case KCD_NT_NETLOGON_NOT_STARTED:
    case KCD_NT_CONNECTION_DISCONNECTED:
    case KCD_NT_CONNECTION_RESET:
    case KCD_NT_DOMAIN_CONTROLLER_NOT_FOUND:
    case KCD_NT_CONNECTION_REFUSED:
    case KCD_NT_NETWORK_UNREACHABLE:
    case KCD_NT_HOST_UNREACHABLE:
        return true;
    }

    /* DCE/RPC transport faults: the secure channel broke, not the user */
    return (st & KCD_NT_RPC_FACILITY_MASK) == KCD_NT_RPC_FACILITY
           || (st & KCD_NT_RPC_FACILITY_MASK) == KCD_NT_RPC_NT_FACILITY;
}


/* puts "cause: " before the error text already in res->error */

static void
kcd_wb_cause(kcd_wb_result_t *res, const char *cause)
{
    size_t  n, m;
    char    text[sizeof(res->error)];

    memcpy(text, res->error, sizeof(text));
    text[sizeof(text) - 1] = '\0';

    /* cause + ": " + as much of the text as fits */
    n = strlen(cause);
    if (n > sizeof(res->error) - 3) {
        n = sizeof(res->error) - 3;
    }

    memcpy(res->error, cause, n);
    memcpy(res->error + n, ": ", 2);
    n += 2;

    m = strlen(text);
    if (m > sizeof(res->error) - 1 - n) {
        m = sizeof(res->error) - 1 - n;
    }

    memcpy(res->error + n, text, m);
    res->error[n + m] = '\0';
}


/*
 * Map the outcome of wbcCtxAuthenticateUserEx() and free what it returned.
 * The session key is wiped from libwbclient's copy before it goes back to
 * the allocator.
 */
static int
kcd_wb_result(wbcErr wbc, struct wbcAuthUserInfo *info,
    struct wbcAuthErrorInfo *err, const char *user, const char *domain,
    kcd_wb_result_t *res)
{
    int       rc;
    char      sid[WBC_SID_STRING_BUFLEN];
    uint32_t  i;

    if (wbc == WBC_ERR_SUCCESS && info != NULL) {

        if (info->user_flags & WBC_AUTH_USER_INFO_GUEST) {
            /* "map to guest" on the DC must never let a stranger in */
            kcd_wb_copy(res->error, sizeof(res->error),
                        "guest logon refused");
            rc = KCD_WB_DENIED;

        } else {
            kcd_wb_copy(res->user, sizeof(res->user),
                        info->account_name ? info->account_name : user);
            kcd_wb_copy(res->domain, sizeof(res->domain),
                        info->domain_name ? info->domain_name : domain);
            kcd_wb_copy(res->dns_domain, sizeof(res->dns_domain),
                        info->dns_domain_name);
            memcpy(res->session_key, info->user_session_key, 16);
            rc = KCD_WB_OK;

            /* sids[0] is the user, then the primary group, then groups */

            for (i = 1; i < info->num_sids; i++) {
                if (wbcSidToStringBuf(&info->sids[i].sid, sid, sizeof(sid))
                    <= 0
                    || kcd_wb_add_sid(res, sid) != 0)
                {
                    break;
                }
            }
        }

        explicit_bzero(info->user_session_key,
                       sizeof(info->user_session_key));
        explicit_bzero(info->lm_session_key, sizeof(info->lm_session_key));

    } else if (wbc == WBC_ERR_AUTH_ERROR && err != NULL) {

        if (err->nt_string != NULL) {
            kcd_wb_copy(res->error, sizeof(res->error), err->nt_string);

        } else {
            (void) snprintf(res->error, sizeof(res->error),
                            "NT status 0x%08x", (unsigned) err->nt_status);
        }

        rc = kcd_wb_nt_unavailable(err->nt_status) ? KCD_WB_UNAVAILABLE
                                                   : KCD_WB_DENIED;

        if (rc == KCD_WB_UNAVAILABLE) {
            /* B21: winbindd answered, the domain behind it did not */
            kcd_wb_cause(res, "domain controller unreachable");
        }

    } else {
        (void) snprintf(res->error, sizeof(res->error), "winbind: %s",
                        wbcErrorString(wbc));

        /*
         * B21: no answer from winbindd itself is not the domain's fault:
         * winbindd is not running, or this worker may not use its
         * privileged pipe (group winbindd_priv)
         */
        if (wbc == WBC_ERR_WINBIND_NOT_AVAILABLE) {
            kcd_wb_cause(res, "winbindd not available (not running, or no "
                         "access to its privileged pipe)");
        }

        switch (wbc) {

        /* what the client sent is at fault */
        case WBC_ERR_INVALID_PARAM:
        case WBC_ERR_DOMAIN_NOT_FOUND:
        case WBC_ERR_UNKNOWN_USER:
        case WBC_ERR_AUTH_ERROR:       /* without details */
            rc = KCD_WB_DENIED;
            break;

        /*
         * WINBIND_NOT_AVAILABLE (no socket, no privileged pipe, request
         * timed out), NO_MEMORY, NSS_ERROR, and success without user
         * info, which must never let anyone in
         */
        default:
            rc = KCD_WB_UNAVAILABLE;
        }
    }

    if (info != NULL) {
        wbcFreeMemory(info);
    }

    if (err != NULL) {
        wbcFreeMemory(err);
    }

    return rc;
}


int
kcd_wb_auth_ntlm(const char *user, const char *domain,
    const char *workstation, const uint8_t challenge[8],
    const uint8_t *nt, size_t nt_len, const uint8_t *lm, size_t lm_len,
    kcd_wb_result_t *res)
{
    wbcErr                    wbc;
    struct wbcContext        *ctx;
    struct wbcAuthUserInfo   *info;
    struct wbcAuthErrorInfo  *err;
    struct wbcAuthUserParams  p;

    memset(res, 0, sizeof(*res));

    if (user == NULL || domain == NULL || nt == NULL || nt_len == 0) {
        kcd_wb_copy(res->error, sizeof(res->error), "empty NT response");
        return KCD_WB_DENIED;
    }

    if (nt_len > KCD_WB_MAX_RESPONSE || lm_len > KCD_WB_MAX_RESPONSE) {
        kcd_wb_copy(res->error, sizeof(res->error), "response too long");
        return KCD_WB_DENIED;
    }

    ctx = kcd_wb_ctx();
    if (ctx == NULL) {
        kcd_wb_copy(res->error, sizeof(res->error),
                    "winbind: cannot create a libwbclient context");
        return KCD_WB_UNAVAILABLE;
    }

    memset(&p, 0, sizeof(p));
    p.account_name = user;
    p.domain_name = domain;
    p.workstation_name = workstation ? workstation : "";
    p.level = WBC_AUTH_USER_LEVEL_RESPONSE;

    /*
     * parameter_control stays 0: no MSV1_0_ALLOW_*_TRUST_ACCOUNT, so
     * machine accounts cannot log on to a web site.
     */

    memcpy(p.password.response.challenge, challenge, 8);
    p.password.response.nt_length = (uint32_t) nt_len;
    p.password.response.nt_data = (uint8_t *) nt;
    p.password.response.lm_length = (lm != NULL) ? (uint32_t) lm_len : 0;
    p.password.response.lm_data = (lm != NULL && lm_len) ? (uint8_t *) lm
                                                          : NULL;

    info = NULL;
    err = NULL;

    wbc = wbcCtxAuthenticateUserEx(ctx, &p, &info, &err);

    return kcd_wb_result(wbc, info, err, user, domain, res);
}


int
kcd_wb_auth_plain(const char *user, const char *domain,
    const char *password, kcd_wb_result_t *res)
{
    wbcErr                    wbc;
    struct wbcContext        *ctx;
    struct wbcAuthUserInfo   *info;
    struct wbcAuthErrorInfo  *err;
    struct wbcAuthUserParams  p;

    memset(res, 0, sizeof(*res));

    if (user == NULL || user[0] == '\0' || password == NULL) {
        kcd_wb_copy(res->error, sizeof(res->error), "empty user");
        return KCD_WB_DENIED;
    }

    ctx = kcd_wb_ctx();
    if (ctx == NULL) {
        kcd_wb_copy(res->error, sizeof(res->error),
                    "winbind: cannot create a libwbclient context");
        return KCD_WB_UNAVAILABLE;
    }

    memset(&p, 0, sizeof(p));
    p.account_name = user;
    p.domain_name = domain ? domain : "";
    p.workstation_name = "";
    p.level = WBC_AUTH_USER_LEVEL_PLAIN;
    p.password.plaintext = password;

    info = NULL;
    err = NULL;

    wbc = wbcCtxAuthenticateUserEx(ctx, &p, &info, &err);

    return kcd_wb_result(wbc, info, err, user, p.domain_name, res);
}


int
kcd_wb_add_sid(kcd_wb_result_t *res, const char *sid)
{
    size_t  used, n;
    char   *p;
    int     i;

    used = 0;
    p = res->sids;

    for (i = 0; i < res->nsids; i++) {
        n = strlen(p) + 1;
        used += n;
        p += n;
    }

    n = strlen(sid) + 1;

    if (used + n > sizeof(res->sids)) {
        return -1;
    }

    memcpy(p, sid, n);
    res->nsids++;

    return 0;
}


static int
kcd_wb_group_names_one_by_one(struct wbcContext *ctx,
    struct wbcDomainSid *sids, kcd_wb_result_t *res)
{
    int                 i;
    char               *p, *last, *domain, *name;
    size_t              n;
    enum wbcSidType     type;

    p = res->groups;
    last = res->groups + sizeof(res->groups);

    for (i = 0; i < res->nsids; i++) {
        domain = NULL;
        name = NULL;

        if (wbcCtxLookupSid(ctx, &sids[i], &domain, &name, &type)
            == WBC_ERR_SUCCESS
            && name != NULL && name[0] != '\0'
            && type != WBC_SID_NAME_UNKNOWN && type != WBC_SID_NAME_INVALID)
        {
            n = (domain ? strlen(domain) + 1 : 0) + strlen(name) + 1;

            if (n <= (size_t) (last - p)) {
                p += snprintf(p, last - p, "%s%s%s",
                              (domain && domain[0]) ? domain : "",
                              (domain && domain[0]) ? "\\" : "", name) + 1;
                res->ngroups++;
            }
        }

        wbcFreeMemory(domain);
        wbcFreeMemory(name);
    }

    return 0;
}


int
kcd_wb_group_names(kcd_wb_result_t *res)
{
    int                         i, ndomains, rc;
    char                       *s, *p, *last;
    size_t                      n;
    wbcErr                      wbc;
    struct wbcContext          *ctx;
    struct wbcDomainSid        *sids;
    struct wbcDomainInfo       *domains;
    struct wbcTranslatedName   *names;

    res->ngroups = 0;
    res->groups[0] = '\0';

    if (res->nsids == 0) {
        return 0;
    }

    ctx = kcd_wb_ctx();
    if (ctx == NULL) {
        kcd_wb_copy(res->error, sizeof(res->error),
                    "winbind: cannot create a libwbclient context");
        return -1;
    }

    sids = calloc(res->nsids, sizeof(struct wbcDomainSid));
    if (sids == NULL) {
        kcd_wb_copy(res->error, sizeof(res->error), "out of memory");
        return -1;
    }

    s = res->sids;

    for (i = 0; i < res->nsids; i++) {
        if (wbcStringToSid(s, &sids[i]) != WBC_ERR_SUCCESS) {
            (void) snprintf(res->error, sizeof(res->error),
                            "invalid SID \"%.80s\"", s);
            free(sids);
            return -1;
        }

        s += strlen(s) + 1;
    }

    domains = NULL;
    names = NULL;
    ndomains = 0;

    wbc = wbcCtxLookupSids(ctx, sids, res->nsids, &domains, &ndomains,
                           &names);

    if (wbc != WBC_ERR_SUCCESS) {
        /*
         * one SID of a domain winbindd does not know (a PAC carries
         * S-1-18-1, "authentication authority asserted identity") fails
         * the whole batch: name them one by one
         */
        rc = kcd_wb_group_names_one_by_one(ctx, sids, res);
        free(sids);
        return rc;
    }

    free(sids);

    rc = 0;
    p = res->groups;
    last = res->groups + sizeof(res->groups);

    for (i = 0; i < res->nsids; i++) {

        if (names[i].name == NULL || names[i].name[0] == '\0'
            || names[i].type == WBC_SID_NAME_UNKNOWN
            || names[i].type == WBC_SID_NAME_INVALID)
        {
            continue;
        }

        s = (names[i].domain_index >= 0 && names[i].domain_index < ndomains
             && domains[names[i].domain_index].short_name)
            ? domains[names[i].domain_index].short_name : "";

        n = strlen(s) + (s[0] ? 1 : 0) + strlen(names[i].name) + 1;

        if (n > (size_t) (last - p)) {
            break;
        }

        p += snprintf(p, last - p, "%s%s%s", s, s[0] ? "\\" : "",
                      names[i].name) + 1;
        res->ngroups++;
    }

    wbcFreeMemory(domains);
    wbcFreeMemory(names);

    return rc;
}


/*
 * The privileged pipe has no public query for its directory, so probe it
 * with a request that needs it but that winbindd answers locally: a PAC
 * check (WBC_AUTH_USER_LEVEL_PAC) of a blob that is not a PAC.  The answer
 * is an error either way; only WBC_ERR_WINBIND_NOT_AVAILABLE (after the
 * unprivileged pipe answered) means the privileged pipe could not be
 * opened: no permission on <state dir>/winbindd_privileged.
 */
int
kcd_wb_check(char *errbuf, size_t errlen)
{
    int                          rc;
    wbcErr                       wbc;
    uint8_t                      junk[4];
    struct wbcContext           *ctx;
    struct wbcAuthUserInfo      *info;
    struct wbcAuthErrorInfo     *err;
    struct wbcAuthUserParams     p;
    struct wbcInterfaceDetails  *details;

    ctx = wbcCtxCreate();
    if (ctx == NULL) {
        (void) snprintf(errbuf, errlen,
                        "winbind: cannot create a libwbclient context");
        return -1;
    }

    rc = -1;
    details = NULL;

    wbc = wbcCtxInterfaceDetails(ctx, &details);
    if (wbc != WBC_ERR_SUCCESS) {
        (void) snprintf(errbuf, errlen,
                        "winbindd does not answer (%s): is winbindd running "
                        "and is its socket in the default directory "
                        "(/run/samba/winbindd)?", wbcErrorString(wbc));
        goto done;
    }

    memset(junk, 0, sizeof(junk));
    memset(&p, 0, sizeof(p));
    p.account_name = "";
    p.domain_name = "";
    p.workstation_name = "";
    p.level = WBC_AUTH_USER_LEVEL_PAC;
    p.password.pac.data = junk;
    p.password.pac.length = sizeof(junk);

    info = NULL;
    err = NULL;

    wbc = wbcCtxAuthenticateUserEx(ctx, &p, &info, &err);

    if (info != NULL) {
        wbcFreeMemory(info);
    }

    if (err != NULL) {
        wbcFreeMemory(err);
    }

    if (wbc == WBC_ERR_WINBIND_NOT_AVAILABLE) {
        (void) snprintf(errbuf, errlen,
                        "winbindd (domain %s) answers but its privileged "
                        "pipe cannot be opened by uid %u: add the nginx "
                        "worker user to the group that owns winbindd's "
                        "\"winbindd_privileged\" directory (Debian: "
                        "\"usermod -aG winbindd_priv <user>\", directory "
                        "/var/lib/samba/winbindd_privileged) and restart "
                        "nginx",
                        details->netbios_domain ? details->netbios_domain
                                                : "?",
                        (unsigned) geteuid());
        goto done;
    }

    rc = 0;

done:

    if (details != NULL) {
        wbcFreeMemory(details);
    }

    wbcCtxFree(ctx);

    return rc;
}
