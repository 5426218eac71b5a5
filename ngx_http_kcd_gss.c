/*
 * Kerberos with MIT GSSAPI, see ngx_http_kcd_gss.h.
 *
 * Delegation is done with the krb5 mechanism (S4U2Self through
 * gss_acquire_cred_impersonate_name, S4U2Proxy inside
 * gss_init_sec_context); the service ticket it yields is then moved alone
 * into a fresh MEMORY: ccache and exported as a SPNEGO credential.  So the
 * exported credential, which may sit in shared memory, holds only the
 * user's ticket for that one SPN: never the proxy's TGT nor the S4U2Self
 * evidence ticket, and tokens made from it need no KDC.
 *
 * Thread safety: MIT GSSAPI and MEMORY: ccaches lock internally; the only
 * state shared per kcd_gss_t is the MEMORY: ccache that holds the proxy's
 * TGT, and its (re)acquisition is serialised by a mutex so that many
 * threads that find it missing make one AS request, not one each.  A
 * krb5_context is never shared between threads: one per call.
 */

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <krb5.h>
#include <gssapi/gssapi.h>
#include <gssapi/gssapi_ext.h>
#include <gssapi/gssapi_krb5.h>

#include "ngx_http_kcd_gss.h"


/* seconds of keytab-only accepting after the proxy TGT could not be had */
#define KCD_GSS_ACCEPT_BACKOFF  30


/* credentials kept imported per worker, direct-mapped by content */
#define KCD_GSS_HANDLES  256

typedef struct {
    uint8_t          *blob;       /* the exported credential, a copy */
    size_t            len;
    uint32_t          hash;
    uint64_t          serial;
    char             *principal;
    char             *spn;
    gss_name_t        target;
    gss_cred_id_t     cred;
    krb5_creds       *kcreds;     /* the service ticket, for the fast path */
    krb5_key          key;        /* its session key: derived keys kept */
} kcd_gss_handle_t;


struct kcd_gss_s {
    pthread_mutex_t   lock;
    int               lock_inited;
    char             *keytab;
    char             *principal;
    gss_name_t        proxy_name;
    time_t            accept_only_until;   /* under lock */
    char              ccache[64];
    char              kt_name[4096 + 8];

    /*
     * Held for the life of the worker: MIT keeps a parsed krb5.conf only
     * while some context refers to it, and every GSSAPI call makes a
     * context of its own; without this each upstream token re-read it.
     */
    krb5_context      keep;

    /* imported credentials for kcd_gss_token_fast(), event loop only */
    kcd_gss_handle_t  handles[KCD_GSS_HANDLES];

    /* upstream tokens by path: our AP-REQ, krb5_mk_req_extended() */
    unsigned long     tokens_direct;
    unsigned long     tokens_mk_req;
};


/* SPNEGO, RFC 4178: 1.3.6.1.5.5.2 */
static gss_OID_desc  kcd_spnego_oid =
    { 6, (void *) "\x2b\x06\x01\x05\x05\x02" };

static gss_OID_desc  kcd_krb5_oid =
    { 9, (void *) "\x2a\x86\x48\x86\xf7\x12\x01\x02\x02" };

static gss_OID_set_desc  kcd_spnego_set = { 1, &kcd_spnego_oid };
static gss_OID_set_desc  kcd_krb5_set = { 1, &kcd_krb5_oid };


static void kcd_gss_forget_tgt(kcd_gss_t *g);
static void kcd_gss_handle_free(kcd_gss_t *g, kcd_gss_handle_t *h);
static krb5_creds *kcd_gss_service_creds(kcd_gss_t *g, gss_cred_id_t cred,
    const char *spn);
static int kcd_gss_ap_req_token(kcd_gss_t *g, krb5_creds *creds,
    kcd_gss_buf_t *token);
static int kcd_gss_authenticator_token(kcd_gss_t *g, kcd_gss_handle_t *h,
    kcd_gss_buf_t *token);
static int kcd_gss_local_token(kcd_gss_t *g, kcd_gss_handle_t *h,
    kcd_gss_buf_t *token);
static int kcd_gss_spnego_wrap(const uint8_t *ap_req, size_t len,
    kcd_gss_buf_t *token);


static void
kcd_gss_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);
}


/*
 * "minor text; GSS: major text" - the minor text is what names the cause
 * ("KDC can't fulfill requested option", "Cannot contact any KDC ...").
 */

static size_t
kcd_gss_status_append(OM_uint32 code, int type, gss_OID mech, char *buf,
    size_t len, size_t n, const char *sep)
{
    int              first;
    OM_uint32        maj, min, ctx;
    gss_buffer_desc  msg;

    first = 1;
    ctx = 0;

    do {
        maj = gss_display_status(&min, code, type, mech, &ctx, &msg);
        if (GSS_ERROR(maj)) {
            break;
        }

        if (msg.length && n + 1 < len) {
            n += snprintf(buf + n, len - n, "%s%.*s", first ? "" : sep,
                          (int) msg.length, (char *) msg.value);
            first = 0;
        }

        gss_release_buffer(&min, &msg);

    } while (ctx != 0);

    return n < len ? n : len - 1;
}


static void
kcd_gss_status_text(OM_uint32 major, OM_uint32 minor, gss_OID mech,
    char *buf, size_t len)
{
    size_t  n;

    /* the minor (krb5) text first: it names the cause */
    n = 0;
    buf[0] = '\0';

    if (minor != 0) {
        n = kcd_gss_status_append(minor, GSS_C_MECH_CODE,
                                  mech ? mech : &kcd_krb5_oid, buf, len, 0,
                                  "");
    }

    if (n + 8 < len) {
        n += snprintf(buf + n, len - n, "%sGSS: ", n ? "; " : "");
        kcd_gss_status_append(GSS_ROUTINE_ERROR(major), GSS_C_GSS_CODE,
                              GSS_C_NO_OID, buf, len, n, "; ");
    }
}


/* KDC errors are protocol refusals; the rest is reachability or local. */

static int
kcd_gss_classify(OM_uint32 minor)
{
    krb5_error_code  code;

    code = (krb5_error_code) minor;

    switch (code) {

    case KRB5_KDC_UNREACH:
    case KRB5_REALM_CANT_RESOLVE:
    case KRB5_REALM_UNKNOWN:
    case KRB5KDC_ERR_SVC_UNAVAILABLE:
    case KRB5KRB_AP_ERR_SKEW:
    case ETIMEDOUT:
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return KCD_GSS_UNAVAILABLE;

    default:
        break;
    }

    /* The wire error codes 0..127 of RFC 4120 7.5.9. */
    if (code >= KRB5KDC_ERR_NONE && code <= KRB5KDC_ERR_NONE + 127) {
        return KCD_GSS_REFUSED;
    }

    return KCD_GSS_ERROR;
}


static const char *
kcd_gss_hint(OM_uint32 minor)
{
    switch ((krb5_error_code) minor) {

    case KRB5KDC_ERR_BADOPTION:
        return "not allowed to delegate to this SPN, or the user is marked "
               "sensitive (cannot be delegated)";

    case KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN:
        return "unknown user";

    case KRB5KDC_ERR_S_PRINCIPAL_UNKNOWN:
        return "unknown service principal";

    case KRB5KDC_ERR_POLICY:
        return "refused by KDC policy";

    case KRB5KDC_ERR_CLIENT_REVOKED:
        return "account disabled or locked";

    case KRB5_KDC_UNREACH:
    case ETIMEDOUT:
    case ECONNREFUSED:
        return "KDC unreachable";

    case KRB5KDC_ERR_PREAUTH_FAILED:
    case KRB5KRB_AP_ERR_BAD_INTEGRITY:
        return "wrong password";

    case KRB5KDC_ERR_KEY_EXP:
        return "password expired";

    default:
        return NULL;
    }
}


static int
kcd_gss_fail(const char *what, OM_uint32 major, OM_uint32 minor,
    gss_OID mech, char *err, size_t errlen)
{
    int          rc;
    char         text[512];
    const char  *hint;

    kcd_gss_status_text(major, minor, mech, text, sizeof(text));

    rc = kcd_gss_classify(minor);
    hint = kcd_gss_hint(minor);

    kcd_gss_err(err, errlen, "%s%s: %s%s%s%s",
                rc == KCD_GSS_REFUSED ? "KDC refused " : "",
                what,
                hint ? hint : "", hint ? " (" : "", text, hint ? ")" : "");

    return rc;
}


static int
kcd_gss_import_name(const char *s, gss_name_t *name, char *err,
    size_t errlen)
{
    OM_uint32        major, minor;
    gss_buffer_desc  buf;

    buf.value = (void *) s;
    buf.length = strlen(s);

    major = gss_import_name(&minor, &buf, GSS_KRB5_NT_PRINCIPAL_NAME, name);
    if (GSS_ERROR(major)) {
        kcd_gss_fail("bad principal name", major, minor, NULL, err, errlen);
        kcd_gss_err(err, errlen, "bad principal name \"%s\"", s);
        return KCD_GSS_ERROR;
    }

    return KCD_GSS_OK;
}


static int
kcd_gss_copy_buf(gss_buffer_t in, kcd_gss_buf_t *out)
{
    OM_uint32  minor;

    out->data = NULL;
    out->len = 0;

    if (in->length) {
        out->data = malloc(in->length);
        if (out->data == NULL) {
            explicit_bzero(in->value, in->length);
            gss_release_buffer(&minor, in);
            return KCD_GSS_ERROR;
        }

        memcpy(out->data, in->value, in->length);
        out->len = in->length;

        /* exported credentials hold session keys */
        explicit_bzero(in->value, in->length);
    }

    gss_release_buffer(&minor, in);

    return KCD_GSS_OK;
}


int
kcd_gss_init(kcd_gss_t **gp, const char *keytab, const char *principal,
    char *err, size_t errlen)
{
    kcd_gss_t  *g;

    *gp = NULL;

    g = calloc(1, sizeof(kcd_gss_t));
    if (g == NULL) {
        kcd_gss_err(err, errlen, "out of memory");
        return KCD_GSS_ERROR;
    }

    if (strlen(keytab) > 4096) {
        kcd_gss_err(err, errlen, "keytab path too long");
        free(g);
        return KCD_GSS_ERROR;
    }

    g->keytab = strdup(keytab);
    g->principal = strdup(principal);

    if (g->keytab == NULL || g->principal == NULL) {
        kcd_gss_err(err, errlen, "out of memory");
        goto failed;
    }

    /* "FILE:" unless the administrator wrote a type */
    snprintf(g->kt_name, sizeof(g->kt_name), "%s%s",
             strchr(keytab, ':') ? "" : "FILE:", keytab);

    if (kcd_gss_import_name(principal, &g->proxy_name, err, errlen)
        != KCD_GSS_OK)
    {
        goto failed;
    }

    /* unique in the process: the address of g */
    snprintf(g->ccache, sizeof(g->ccache), "MEMORY:kcd-proxy-%ld-%p",
             (long) getpid(), (void *) g);

    if (pthread_mutex_init(&g->lock, NULL) != 0) {
        kcd_gss_err(err, errlen, "pthread_mutex_init failed");
        goto failed;
    }

    g->lock_inited = 1;

    if (krb5_init_context(&g->keep) != 0) {
        g->keep = NULL;    /* slower, not fatal */
    }

    *gp = g;

    return KCD_GSS_OK;

failed:

    kcd_gss_destroy(g);
    return KCD_GSS_ERROR;
}


void
kcd_gss_destroy(kcd_gss_t *g)
{
    int        i;
    OM_uint32  minor;

    if (g == NULL) {
        return;
    }

    /* MEMORY: ccaches live until destroyed */
    if (g->ccache[0]) {
        kcd_gss_forget_tgt(g);
    }

    if (g->lock_inited) {
        pthread_mutex_destroy(&g->lock);
    }

    for (i = 0; i < KCD_GSS_HANDLES; i++) {
        kcd_gss_handle_free(g, &g->handles[i]);
    }

    if (g->keep) {
        krb5_free_context(g->keep);
    }

    if (g->proxy_name != GSS_C_NO_NAME) {
        gss_release_name(&minor, &g->proxy_name);
    }

    free(g->keytab);
    free(g->principal);
    free(g);
}


int
kcd_gss_check_keytab(const char *keytab, const char *principal, char *err,
    size_t errlen)
{
    int                rc;
    char               name[4096 + 8];
    krb5_keytab        kt;
    krb5_context       ctx;
    krb5_principal     princ;
    krb5_error_code    code;
    krb5_kt_cursor     cursor;
    krb5_keytab_entry  entry;

    if (access(keytab, R_OK) != 0) {
        kcd_gss_err(err, errlen, "keytab \"%s\" is not readable: %s",
                    keytab, strerror(errno));
        return -1;
    }

    if (krb5_init_context(&ctx) != 0) {
        kcd_gss_err(err, errlen, "krb5_init_context() failed");
        return -1;
    }

    rc = -1;
    kt = NULL;
    princ = NULL;

    snprintf(name, sizeof(name), "%s%s",
             strchr(keytab, ':') ? "" : "FILE:", keytab);

    code = krb5_parse_name(ctx, principal, &princ);
    if (code) {
        kcd_gss_err(err, errlen, "bad principal \"%s\": %s", principal,
                    krb5_get_error_message(ctx, code));
        goto done;
    }

    code = krb5_kt_resolve(ctx, name, &kt);
    if (code == 0) {
        code = krb5_kt_start_seq_get(ctx, kt, &cursor);
    }

    if (code) {
        kcd_gss_err(err, errlen, "keytab \"%s\": %s", keytab,
                    krb5_get_error_message(ctx, code));
        goto done;
    }

    /*
     * Walk the entries rather than krb5_kt_get_entry(): a principal given
     * without realm (AD account name) should match any realm's entry.
     */
    while (krb5_kt_next_entry(ctx, kt, &entry, &cursor) == 0) {
        if (strchr(principal, '@') == NULL
            ? krb5_principal_compare_any_realm(ctx, entry.principal, princ)
            : krb5_principal_compare(ctx, entry.principal, princ))
        {
            rc = 0;
        }
        krb5_free_keytab_entry_contents(ctx, &entry);
        if (rc == 0) {
            break;
        }
    }

    krb5_kt_end_seq_get(ctx, kt, &cursor);

    if (rc != 0) {
        kcd_gss_err(err, errlen, "keytab \"%s\" holds no key for \"%s\"",
                    keytab, principal);
    }

done:

    if (kt) {
        krb5_kt_close(ctx, kt);
    }

    if (princ) {
        krb5_free_principal(ctx, princ);
    }

    krb5_free_context(ctx);

    return rc;
}


static int
kcd_gss_expired(OM_uint32 major, gss_cred_id_t cred)
{
    OM_uint32  maj, min, lifetime;

    if (GSS_ROUTINE_ERROR(major) == GSS_S_CREDENTIALS_EXPIRED) {
        return 1;
    }

    if (GSS_ERROR(major) || cred == GSS_C_NO_CREDENTIAL) {
        return 0;
    }

    maj = gss_inquire_cred(&min, cred, NULL, &lifetime, NULL, NULL);

    return GSS_ROUTINE_ERROR(maj) == GSS_S_CREDENTIALS_EXPIRED
           || (!GSS_ERROR(maj) && lifetime == 0);
}


static void
kcd_gss_forget_tgt(kcd_gss_t *g)
{
    krb5_ccache   cc;
    krb5_context  ctx;

    if (krb5_init_context(&ctx) != 0) {
        return;
    }

    if (krb5_cc_resolve(ctx, g->ccache, &cc) == 0) {
        krb5_cc_destroy(ctx, cc);
    }

    krb5_free_context(ctx);
}


/*
 * The proxy's own credential from the keytab.  MIT reuses the TGT in the
 * MEMORY: ccache and gets (or refreshes) it with the client keytab when it
 * is missing or due: after a KDC outage the next call just tries again.
 */

static int
kcd_gss_proxy_cred(kcd_gss_t *g, gss_cred_usage_t usage, gss_OID_set mechs,
    gss_cred_id_t *cred, char *err, size_t errlen)
{
    OM_uint32                    major, minor, tmin;
    gss_key_value_set_desc       store;
    gss_key_value_element_desc   el[3];

    *cred = GSS_C_NO_CREDENTIAL;

    el[0].key = "client_keytab";
    el[0].value = g->kt_name;
    el[1].key = "ccache";
    el[1].value = g->ccache;
    el[2].key = "keytab";
    el[2].value = g->kt_name;

    store.count = (usage == GSS_C_INITIATE) ? 2 : 3;
    store.elements = el;

    pthread_mutex_lock(&g->lock);

    major = gss_acquire_cred_from(&minor, g->proxy_name, GSS_C_INDEFINITE,
                                  mechs, usage, &store, cred, NULL, NULL);

    /*
     * When a refresh fails MIT keeps the old TGT, even an expired one, and
     * the KDC's reason is lost.  Forget an expired TGT and ask again: the
     * error is then the real one (KDC unreachable, account disabled...).
     */
    if (kcd_gss_expired(major, *cred)) {
        if (*cred != GSS_C_NO_CREDENTIAL) {
            gss_release_cred(&tmin, cred);
        }

        kcd_gss_forget_tgt(g);

        major = gss_acquire_cred_from(&minor, g->proxy_name,
                                      GSS_C_INDEFINITE, mechs, usage, &store,
                                      cred, NULL, NULL);
    }

    pthread_mutex_unlock(&g->lock);

    if (GSS_ERROR(major)) {
        char  what[512];

        snprintf(what, sizeof(what), "TGT for %s from keytab %s",
                 g->principal, g->keytab);

        return kcd_gss_fail(what, major, minor, NULL, err, errlen);
    }

    return KCD_GSS_OK;
}


/*
 * Move the ticket for target out of cred into a ccache of its own and
 * export that as a SPNEGO credential.
 */

static int
kcd_gss_export_ticket(gss_cred_id_t cred, const char *user, const char *spn,
    gss_name_t target, kcd_gss_buf_t *out, time_t *endtime, char *err,
    size_t errlen)
{
    int                          rc, found;
    char                         name1[64], name2[64];
    OM_uint32                    major, minor;
    krb5_creds                   creds, copy;
    krb5_ccache                  cc1, cc2;
    krb5_context                 ctx;
    krb5_principal               server;
    krb5_error_code              code;
    krb5_cc_cursor               cursor;
    gss_cred_id_t                ecred;
    gss_buffer_desc              buf, tname;
    gss_key_value_set_desc       store;
    gss_key_value_element_desc   el;

    if (krb5_init_context(&ctx) != 0) {
        kcd_gss_err(err, errlen, "krb5_init_context() failed");
        return KCD_GSS_ERROR;
    }

    rc = KCD_GSS_ERROR;
    cc1 = NULL;
    cc2 = NULL;
    server = NULL;
    ecred = GSS_C_NO_CREDENTIAL;
    found = 0;

    code = krb5_cc_new_unique(ctx, "MEMORY", NULL, &cc1);
    if (code == 0) {
        code = krb5_cc_new_unique(ctx, "MEMORY", NULL, &cc2);
    }

    if (code) {
        kcd_gss_err(err, errlen, "MEMORY ccache: %s",
                    krb5_get_error_message(ctx, code));
        goto done;
    }

    snprintf(name1, sizeof(name1), "MEMORY:%s", krb5_cc_get_name(ctx, cc1));
    snprintf(name2, sizeof(name2), "MEMORY:%s", krb5_cc_get_name(ctx, cc2));

    el.key = "ccache";
    el.value = name1;
    store.count = 1;
    store.elements = &el;

    major = gss_store_cred_into(&minor, cred, GSS_C_INITIATE, &kcd_krb5_oid,
                                1, 0, &store, NULL, NULL);
    if (GSS_ERROR(major)) {
        kcd_gss_fail("storing the delegated credential", major, minor, NULL,
                     err, errlen);
        rc = KCD_GSS_ERROR;
        goto done;
    }

    /* the canonical name of the target, as the ticket carries it */
    major = gss_display_name(&minor, target, &tname, NULL);
    if (GSS_ERROR(major)) {
        goto done;
    }

    code = krb5_parse_name(ctx, tname.value, &server);
    gss_release_buffer(&minor, &tname);
    if (code) {
        goto done;
    }

    code = krb5_cc_start_seq_get(ctx, cc1, &cursor);
    if (code) {
        goto done;
    }

    while (!found && krb5_cc_next_cred(ctx, cc1, &cursor, &creds) == 0) {
        if (!krb5_is_config_principal(ctx, creds.server)
            && krb5_principal_compare(ctx, creds.server, server))
        {
            /*
             * Without second_ticket: MIT keeps the S4U2Self evidence there,
             * it has nothing to do in a cache shared by the workers.
             */
            copy = creds;
            copy.second_ticket.data = NULL;
            copy.second_ticket.length = 0;

            code = krb5_cc_initialize(ctx, cc2, creds.client);
            if (code == 0) {
                code = krb5_cc_store_cred(ctx, cc2, &copy);
            }
            if (code == 0) {
                found = 1;
                *endtime = (time_t) (uint32_t) creds.times.endtime;
            }
        }
        krb5_free_cred_contents(ctx, &creds);
    }

    krb5_cc_end_seq_get(ctx, cc1, &cursor);

    if (!found) {
        kcd_gss_err(err, errlen, "no ticket for %s to %s in the delegated "
                    "credential", user, spn);
        goto done;
    }

    el.value = name2;

    major = gss_acquire_cred_from(&minor, GSS_C_NO_NAME, GSS_C_INDEFINITE,
                                  &kcd_spnego_set, GSS_C_INITIATE, &store,
                                  &ecred, NULL, NULL);
    if (GSS_ERROR(major)) {
        kcd_gss_fail("credential from the service ticket", major, minor,
                     NULL, err, errlen);
        goto done;
    }

    major = gss_export_cred(&minor, ecred, &buf);
    if (GSS_ERROR(major)) {
        kcd_gss_fail("gss_export_cred", major, minor, NULL, err, errlen);
        goto done;
    }

    rc = kcd_gss_copy_buf(&buf, out);
    if (rc != KCD_GSS_OK) {
        kcd_gss_err(err, errlen, "out of memory");
    }

done:

    if (ecred != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&minor, &ecred);
    }

    if (server) {
        krb5_free_principal(ctx, server);
    }

    /* MEMORY: ccaches live until destroyed */
    if (cc1) {
        krb5_cc_destroy(ctx, cc1);
    }

    if (cc2) {
        krb5_cc_destroy(ctx, cc2);
    }

    krb5_free_context(ctx);

    return rc;
}


static int
kcd_gss_check_name(const char *what, const char *s, char *err,
    size_t errlen)
{
    const unsigned char  *p;

    if (s == NULL || *s == '\0') {
        kcd_gss_err(err, errlen, "empty %s", what);
        return KCD_GSS_ERROR;
    }

    for (p = (const unsigned char *) s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            kcd_gss_err(err, errlen, "control character in %s", what);
            return KCD_GSS_ERROR;
        }
    }

    if (p - (const unsigned char *) s > 1024) {
        kcd_gss_err(err, errlen, "%s too long", what);
        return KCD_GSS_ERROR;
    }

    return KCD_GSS_OK;
}


static int
kcd_gss_same_user(gss_cred_id_t cred, const char *user, char *err,
    size_t errlen)
{
    int         equal;
    OM_uint32   major, minor;
    gss_name_t  cname, uname;

    cname = GSS_C_NO_NAME;
    uname = GSS_C_NO_NAME;
    equal = 0;

    major = gss_inquire_cred(&minor, cred, &cname, NULL, NULL, NULL);

    if (!GSS_ERROR(major)
        && kcd_gss_import_name(user, &uname, err, errlen) == KCD_GSS_OK)
    {
        major = gss_compare_name(&minor, cname, uname, &equal);
        if (GSS_ERROR(major)) {
            equal = 0;
        }
    }

    if (cname != GSS_C_NO_NAME) {
        gss_release_name(&minor, &cname);
    }

    if (uname != GSS_C_NO_NAME) {
        gss_release_name(&minor, &uname);
    }

    if (!equal) {
        kcd_gss_err(err, errlen, "the client's ticket is not for %s", user);
        return KCD_GSS_ERROR;
    }

    return KCD_GSS_OK;
}


int
kcd_gss_delegate(kcd_gss_t *g, const char *user, const char *spn,
    const kcd_gss_buf_t *evidence, kcd_gss_buf_t *cred, time_t *endtime,
    char *err, size_t errlen)
{
    int              rc;
    char             what[2200];
    OM_uint32        major, minor, tmin;
    gss_name_t       uname, target;
    gss_ctx_id_t     ctx;
    gss_cred_id_t    pcred, icred;
    gss_buffer_desc  buf, out;

    cred->data = NULL;
    cred->len = 0;
    *endtime = 0;

    if (kcd_gss_check_name("user", user, err, errlen) != KCD_GSS_OK
        || kcd_gss_check_name("SPN", spn, err, errlen) != KCD_GSS_OK)
    {
        return KCD_GSS_ERROR;
    }

    uname = GSS_C_NO_NAME;
    target = GSS_C_NO_NAME;
    pcred = GSS_C_NO_CREDENTIAL;
    icred = GSS_C_NO_CREDENTIAL;
    ctx = GSS_C_NO_CONTEXT;

    /* "HTTP/host" or "HTTP/host@REALM": a krb5 principal, not host-based */
    rc = kcd_gss_import_name(spn, &target, err, errlen);
    if (rc != KCD_GSS_OK) {
        goto done;
    }

    if (evidence != NULL && evidence->len) {

        /* the client's own ticket to us: S4U2Proxy only */
        buf.value = evidence->data;
        buf.length = evidence->len;

        major = gss_import_cred(&minor, &buf, &icred);
        if (GSS_ERROR(major)) {
            rc = kcd_gss_fail("importing the client's ticket", major, minor,
                              NULL, err, errlen);
            rc = KCD_GSS_ERROR;
            goto done;
        }

        /* never delegate one user's ticket under another user's name */
        rc = kcd_gss_same_user(icred, user, err, errlen);
        if (rc != KCD_GSS_OK) {
            goto done;
        }

    } else {

        rc = kcd_gss_proxy_cred(g, GSS_C_INITIATE, &kcd_krb5_set, &pcred,
                                err, errlen);
        if (rc != KCD_GSS_OK) {
            goto done;
        }

        rc = kcd_gss_import_name(user, &uname, err, errlen);
        if (rc != KCD_GSS_OK) {
            goto done;
        }

        /* S4U2Self */
        major = gss_acquire_cred_impersonate_name(&minor, pcred, uname,
                                                  GSS_C_INDEFINITE,
                                                  &kcd_krb5_set,
                                                  GSS_C_INITIATE, &icred,
                                                  NULL, NULL);
        if (GSS_ERROR(major)) {
            snprintf(what, sizeof(what), "S4U2Self for %s (proxy %s)",
                     user, g->principal);
            rc = kcd_gss_fail(what, major, minor, NULL, err, errlen);
            goto done;
        }
    }

    /* S4U2Proxy happens here; the token itself is not used */
    major = gss_init_sec_context(&minor, icred, &ctx, target, &kcd_krb5_oid,
                                 0, GSS_C_INDEFINITE,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER,
                                 NULL, &out, NULL, NULL);
    gss_release_buffer(&tmin, &out);

    if (GSS_ERROR(major)) {
        snprintf(what, sizeof(what), "S4U2Proxy for %s to %s (proxy %s)",
                 user, spn, g->principal);
        rc = kcd_gss_fail(what, major, minor, NULL, err, errlen);
        goto done;
    }

    rc = kcd_gss_export_ticket(icred, user, spn, target, cred, endtime,
                               err, errlen);

done:

    if (ctx != GSS_C_NO_CONTEXT) {
        gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
    }

    if (icred != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&minor, &icred);
    }

    if (pcred != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&minor, &pcred);
    }

    if (uname != GSS_C_NO_NAME) {
        gss_release_name(&minor, &uname);
    }

    if (target != GSS_C_NO_NAME) {
        gss_release_name(&minor, &target);
    }

    return rc;
}


/* what kcd_gss_token() and kcd_gss_token_fast() take */

static int
kcd_gss_token_args(const kcd_gss_buf_t *cred, const char *spn,
    kcd_gss_buf_t *token, char *err, size_t errlen)
{
    token->data = NULL;
    token->len = 0;

    if (cred == NULL || cred->len == 0) {
        kcd_gss_err(err, errlen, "no credential");
        return KCD_GSS_ERROR;
    }

    return kcd_gss_check_name("SPN", spn, err, errlen);
}


/*
 * An upstream token by gss_init_sec_context().  No mutual authentication:
 * the upstream answer is not read back, and every request needs a fresh
 * authenticator (replay caches, B7).
 */

static int
kcd_gss_init_token(gss_cred_id_t cred, gss_name_t target, const char *spn,
    kcd_gss_buf_t *token, char *err, size_t errlen)
{
    int              rc;
    OM_uint32        major, minor;
    gss_ctx_id_t     ctx;
    gss_buffer_desc  out;

    ctx = GSS_C_NO_CONTEXT;

    major = gss_init_sec_context(&minor, cred, &ctx, target,
                                 &kcd_spnego_oid, 0, GSS_C_INDEFINITE,
                                 GSS_C_NO_CHANNEL_BINDINGS, GSS_C_NO_BUFFER,
                                 NULL, &out, NULL, NULL);
    if (GSS_ERROR(major)) {
        char  what[1200];

        snprintf(what, sizeof(what), "token for %s from the cached "
                 "credential", spn);
        rc = kcd_gss_fail(what, major, minor, NULL, err, errlen);

        if (ctx != GSS_C_NO_CONTEXT) {
            gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
        }

        return (rc == KCD_GSS_UNAVAILABLE) ? rc : KCD_GSS_ERROR;
    }

    rc = kcd_gss_copy_buf(&out, token);
    if (rc != KCD_GSS_OK) {
        kcd_gss_err(err, errlen, "out of memory");
    }

    if (ctx != GSS_C_NO_CONTEXT) {
        gss_delete_sec_context(&minor, &ctx, GSS_C_NO_BUFFER);
    }

    return rc;
}


int
kcd_gss_token(kcd_gss_t *g, const kcd_gss_buf_t *cred, const char *spn,
    kcd_gss_buf_t *token, char *err, size_t errlen)
{
    int              rc;
    OM_uint32        major, minor;
    gss_name_t       target;
    gss_cred_id_t    icred;
    gss_buffer_desc  buf;

    if (kcd_gss_token_args(cred, spn, token, err, errlen) != KCD_GSS_OK) {
        return KCD_GSS_ERROR;
    }

    target = GSS_C_NO_NAME;
    icred = GSS_C_NO_CREDENTIAL;

    rc = kcd_gss_import_name(spn, &target, err, errlen);
    if (rc != KCD_GSS_OK) {
        goto done;
    }

    buf.value = cred->data;
    buf.length = cred->len;

    major = gss_import_cred(&minor, &buf, &icred);
    if (GSS_ERROR(major)) {
        kcd_gss_fail("importing the cached credential", major, minor, NULL,
                     err, errlen);
        rc = KCD_GSS_ERROR;
        goto done;
    }

    rc = kcd_gss_init_token(icred, target, spn, token, err, errlen);

done:

    if (icred != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&minor, &icred);
    }

    if (target != GSS_C_NO_NAME) {
        gss_release_name(&minor, &target);
    }

    return rc;
}


int
kcd_gss_accept(kcd_gss_t *g, const uint8_t *token, size_t len,
    char **principal, kcd_gss_buf_t *evidence, kcd_gss_buf_t *out,
    char *err, size_t errlen)
{
    int                          rc, both;
    char                         text[512];
    time_t                       now;
    OM_uint32                    major, minor, tmin, flags;
    gss_name_t                   src;
    gss_ctx_id_t                 ctx;
    gss_cred_id_t                acred, deleg;
    gss_buffer_desc              in, obuf, nbuf;
    gss_key_value_set_desc       store;
    gss_key_value_element_desc   el;

    *principal = NULL;
    evidence->data = NULL;
    evidence->len = 0;
    out->data = NULL;
    out->len = 0;

    if (token == NULL || len == 0) {
        kcd_gss_err(err, errlen, "empty Negotiate token");
        return KCD_GSS_DENIED;
    }

    acred = GSS_C_NO_CREDENTIAL;
    deleg = GSS_C_NO_CREDENTIAL;
    src = GSS_C_NO_NAME;
    ctx = GSS_C_NO_CONTEXT;

    in.value = (void *) token;
    in.length = len;

    /*
     * GSS_C_BOTH with the proxy's TGT makes MIT return the client's ticket
     * as a credential usable for S4U2Proxy.  That needs the TGT, so when
     * the KDC is away accept with the keytab alone: authentication must
     * not depend on the KDC, only delegation does.
     */
    now = time(NULL);

    pthread_mutex_lock(&g->lock);
    both = (now >= g->accept_only_until);
    pthread_mutex_unlock(&g->lock);

    rc = KCD_GSS_ERROR;

    if (both) {
        rc = kcd_gss_proxy_cred(g, GSS_C_BOTH, &kcd_spnego_set, &acred,
                                text, sizeof(text));

        if (rc != KCD_GSS_OK) {
            /*
             * Without a TGT each try costs a KDC timeout (and MIT leaks a
             * little on that path): accept with the keytab alone for a
             * while.  Delegation calls keep retrying the TGT meanwhile.
             */
            pthread_mutex_lock(&g->lock);
            g->accept_only_until = now + KCD_GSS_ACCEPT_BACKOFF;
            pthread_mutex_unlock(&g->lock);
        }
    }

    if (rc == KCD_GSS_OK) {
        major = gss_accept_sec_context(&minor, &ctx, acred, &in,
                                       GSS_C_NO_CHANNEL_BINDINGS, &src, NULL,
                                       &obuf, &flags, NULL, &deleg);

        /*
         * That credential only accepts tickets for kcd_service_principal
         * itself.  A ticket for another name in the keytab (an AD account
         * keytab holds the account name and its SPNs) fails with
         * KRB5KRB_AP_ERR_NOT_US before the replay cache sees it: accept it
         * with any keytab key instead, without evidence (delegation then
         * uses S4U2Self).  The minor code cannot tell: through SPNEGO the
         * mechglue hands out a remapped number.  So retry on any failure;
         * a bad token fails twice, a replay still is one.
         */
        if (GSS_ERROR(major)) {
            gss_release_buffer(&tmin, &obuf);
            gss_delete_sec_context(&tmin, &ctx, GSS_C_NO_BUFFER);
            gss_release_cred(&tmin, &acred);
            ctx = GSS_C_NO_CONTEXT;
            rc = KCD_GSS_ERROR;
        }
    }

    if (rc != KCD_GSS_OK) {
        el.key = "keytab";
        el.value = g->kt_name;
        store.count = 1;
        store.elements = &el;

        major = gss_acquire_cred_from(&minor, GSS_C_NO_NAME,
                                      GSS_C_INDEFINITE, &kcd_spnego_set,
                                      GSS_C_ACCEPT, &store, &acred, NULL,
                                      NULL);
        if (GSS_ERROR(major)) {
            rc = kcd_gss_fail("acceptor credential", major, minor, NULL,
                              err, errlen);
            rc = KCD_GSS_ERROR;
            goto done;
        }

        major = gss_accept_sec_context(&minor, &ctx, acred, &in,
                                       GSS_C_NO_CHANNEL_BINDINGS, &src, NULL,
                                       &obuf, &flags, NULL, &deleg);
    }

    if (obuf.length) {
        if (kcd_gss_copy_buf(&obuf, out) != KCD_GSS_OK) {
            kcd_gss_err(err, errlen, "out of memory");
            rc = KCD_GSS_ERROR;
            goto done;
        }

    } else {
        gss_release_buffer(&tmin, &obuf);
    }

    if (GSS_ERROR(major)) {
        kcd_gss_fail("client token rejected", major, minor, NULL, err,
                     errlen);
        rc = KCD_GSS_DENIED;
        goto done;
    }

    if (major & GSS_S_CONTINUE_NEEDED) {
        kcd_gss_err(err, errlen, "Negotiate needs another round trip");
        rc = KCD_GSS_CONTINUE;
        goto done;
    }

    major = gss_display_name(&minor, src, &nbuf, NULL);
    if (GSS_ERROR(major)) {
        rc = kcd_gss_fail("client name", major, minor, NULL, err, errlen);
        rc = KCD_GSS_ERROR;
        goto done;
    }

    *principal = strndup(nbuf.value, nbuf.length);
    gss_release_buffer(&tmin, &nbuf);

    if (*principal == NULL) {
        kcd_gss_err(err, errlen, "out of memory");
        rc = KCD_GSS_ERROR;
        goto done;
    }

    rc = KCD_GSS_OK;

    if (deleg != GSS_C_NO_CREDENTIAL) {
        krb5_flags  tkt_flags;

        /* S4U2Proxy needs a forwardable evidence ticket (MS-SFU 3.2.5.2) */
        tkt_flags = 0;
        major = gss_krb5_get_tkt_flags(&minor, ctx, &tkt_flags);

        if (!GSS_ERROR(major) && (tkt_flags & TKT_FLG_FORWARDABLE)) {
            major = gss_export_cred(&minor, deleg, &obuf);
            if (!GSS_ERROR(major)) {
                if (kcd_gss_copy_buf(&obuf, evidence) != KCD_GSS_OK) {
                    kcd_gss_err(err, errlen, "out of memory");
                    rc = KCD_GSS_ERROR;
                }
            }
        }
    }

done:

    if (rc != KCD_GSS_OK) {
        free(*principal);
        *principal = NULL;
        kcd_gss_free(evidence);
        if (rc != KCD_GSS_CONTINUE && rc != KCD_GSS_DENIED) {
            kcd_gss_free(out);
        }
    }

    if (ctx != GSS_C_NO_CONTEXT) {
        gss_delete_sec_context(&tmin, &ctx, GSS_C_NO_BUFFER);
    }

    if (deleg != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&tmin, &deleg);
    }

    if (acred != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&tmin, &acred);
    }

    if (src != GSS_C_NO_NAME) {
        gss_release_name(&tmin, &src);
    }

    return rc;
}


int
kcd_gss_password(kcd_gss_t *g, const char *user, const char *password,
    char **principal, char *err, size_t errlen)
{
    int                          rc;
    char                         what[1200];
    OM_uint32                    major, minor, tmin;
    gss_name_t                   uname, cname;
    gss_cred_id_t                cred;
    gss_buffer_desc              nbuf;
    gss_key_value_set_desc       store;
    gss_key_value_element_desc   el[3];

    *principal = NULL;

    if (kcd_gss_check_name("user", user, err, errlen) != KCD_GSS_OK) {
        return KCD_GSS_DENIED;
    }

    /* a user, not a service: "HTTP/x" would try a service's key */
    if (strchr(user, '/') != NULL || password == NULL || *password == '\0') {
        kcd_gss_err(err, errlen, "bad user name or empty password");
        return KCD_GSS_DENIED;
    }

    uname = GSS_C_NO_NAME;
    cname = GSS_C_NO_NAME;
    cred = GSS_C_NO_CREDENTIAL;

    rc = kcd_gss_import_name(user, &uname, err, errlen);
    if (rc != KCD_GSS_OK) {
        return KCD_GSS_DENIED;
    }

    /*
     * "verify": MIT then gets a ticket to our own principal and decrypts it
     * with the keytab, so a forged AS reply (spoofed KDC) cannot log in.
     */
    el[0].key = "password";
    el[0].value = password;
    el[1].key = "verify";
    el[1].value = g->principal;
    el[2].key = "keytab";
    el[2].value = g->kt_name;

    store.count = 3;
    store.elements = el;

    major = gss_acquire_cred_from(&minor, uname, GSS_C_INDEFINITE,
                                  &kcd_krb5_set, GSS_C_INITIATE, &store,
                                  &cred, NULL, NULL);
    if (GSS_ERROR(major)) {
        snprintf(what, sizeof(what), "password check for %s", user);
        rc = kcd_gss_fail(what, major, minor, NULL, err, errlen);

        switch ((krb5_error_code) minor) {

        case KRB5KDC_ERR_PREAUTH_FAILED:
        case KRB5KRB_AP_ERR_BAD_INTEGRITY:
        case KRB5KDC_ERR_C_PRINCIPAL_UNKNOWN:
        case KRB5KDC_ERR_CLIENT_REVOKED:
        case KRB5KDC_ERR_KEY_EXP:
        case KRB5KDC_ERR_POLICY:
        case KRB5_PREAUTH_FAILED:
            rc = KCD_GSS_DENIED;
            break;

        default:
            if (rc == KCD_GSS_REFUSED) {
                rc = KCD_GSS_DENIED;
            }
        }

        goto done;
    }

    major = gss_inquire_cred(&minor, cred, &cname, NULL, NULL, NULL);
    if (!GSS_ERROR(major)) {
        major = gss_display_name(&minor, cname, &nbuf, NULL);
    }

    if (GSS_ERROR(major)) {
        rc = kcd_gss_fail("user name", major, minor, NULL, err, errlen);
        rc = KCD_GSS_ERROR;
        goto done;
    }

    *principal = strndup(nbuf.value, nbuf.length);
    gss_release_buffer(&tmin, &nbuf);

    if (*principal == NULL) {
        kcd_gss_err(err, errlen, "out of memory");
        rc = KCD_GSS_ERROR;
        goto done;
    }

    rc = KCD_GSS_OK;

done:

    if (cred != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&tmin, &cred);
    }

    if (cname != GSS_C_NO_NAME) {
        gss_release_name(&tmin, &cname);
    }

    gss_release_name(&tmin, &uname);

    return rc;
}


void
kcd_gss_free(kcd_gss_buf_t *b)
{
    if (b == NULL) {
        return;
    }

    if (b->data) {
        explicit_bzero(b->data, b->len);
        free(b->data);
    }

    b->data = NULL;
    b->len = 0;
}


static void
kcd_gss_handle_free(kcd_gss_t *g, kcd_gss_handle_t *h)
{
    OM_uint32  minor;

    if (h->key && g->keep) {
        krb5_k_free_key(g->keep, h->key);
    }

    if (h->kcreds && g->keep) {
        krb5_free_creds(g->keep, h->kcreds);
    }

    if (h->cred != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&minor, &h->cred);
    }

    if (h->target != GSS_C_NO_NAME) {
        gss_release_name(&minor, &h->target);
    }

    if (h->blob) {
        memset(h->blob, 0, h->len);
        free(h->blob);
    }

    free(h->principal);
    free(h->spn);
    memset(h, 0, sizeof(kcd_gss_handle_t));
}


static uint32_t
kcd_gss_fnv1a(const char *p, const char *s)
{
    uint32_t  h;

    h = 2166136261u;

    while (*p) {
        h = (h ^ (uint8_t) *p++) * 16777619u;
    }

    h = (h ^ 0) * 16777619u;

    while (*s) {
        h = (h ^ (uint8_t) *s++) * 16777619u;
    }

    return h;
}


/*
 * kcd_gss_token() for the event loop's cache hits: the imported
 * credential and the target name are kept per worker, keyed by the
 * credential's bytes, so a request costs one gss_init_sec_context() (no
 * import, no name parsing, no KDC).  Not thread-safe: one thread only.
 */

int
kcd_gss_token_fast(kcd_gss_t *g, const char *principal,
    const kcd_gss_buf_t *cred, uint64_t serial, const char *spn,
    kcd_gss_buf_t *token, char *err, size_t errlen)
{
    int                rc;
    uint32_t           hash;
    OM_uint32          major, minor;
    gss_buffer_desc    buf;
    kcd_gss_handle_t  *h;

    if (kcd_gss_token_args(cred, spn, token, err, errlen) != KCD_GSS_OK) {
        return KCD_GSS_ERROR;
    }

    hash = kcd_gss_fnv1a(principal, spn);
    h = &g->handles[hash % KCD_GSS_HANDLES];

    if (h->cred == GSS_C_NO_CREDENTIAL || h->hash != hash
        || h->len != cred->len || memcmp(h->blob, cred->data, h->len) != 0
        || strcmp(h->spn, spn) != 0 || strcmp(h->principal, principal) != 0)
    {
        kcd_gss_handle_free(g, h);

        h->blob = malloc(cred->len);
        h->spn = strdup(spn);
        h->principal = strdup(principal);

        if (h->blob == NULL || h->spn == NULL || h->principal == NULL) {
            kcd_gss_handle_free(g, h);
            kcd_gss_err(err, errlen, "out of memory");
            return KCD_GSS_ERROR;
        }

        memcpy(h->blob, cred->data, cred->len);
        h->len = cred->len;
        h->hash = hash;

        rc = kcd_gss_import_name(spn, &h->target, err, errlen);
        if (rc != KCD_GSS_OK) {
            kcd_gss_handle_free(g, h);
            return rc;
        }

        buf.value = cred->data;
        buf.length = cred->len;

        major = gss_import_cred(&minor, &buf, &h->cred);
        if (GSS_ERROR(major)) {
            kcd_gss_fail("importing the cached credential", major, minor,
                         NULL, err, errlen);
            kcd_gss_handle_free(g, h);
            return KCD_GSS_ERROR;
        }

        h->kcreds = kcd_gss_service_creds(g, h->cred, spn);
    }

    h->serial = serial;

    if (kcd_gss_local_token(g, h, token) == KCD_GSS_OK) {
        return KCD_GSS_OK;
    }

    rc = kcd_gss_init_token(h->cred, h->target, spn, token, err, errlen);

    if (rc != KCD_GSS_OK) {
        kcd_gss_handle_free(g, h);
    }

    return rc;
}


/*
 * The fast path of kcd_gss_token_fast(): the service ticket taken out of
 * the imported credential once, then per request just what MIT's own
 * gss_init_sec_context() does (RFC 4121 4.1: an AP-REQ with the 0x8003
 * checksum and a new subkey, GSS framing, SPNEGO NegTokenInit with the
 * krb5 token, RFC 4178), but on the worker's long-lived krb5 context: no
 * krb5.conf checks, no per-call context set-up.  Any failure falls back to
 * gss_init_sec_context().
 */

static krb5_creds *
kcd_gss_service_creds(kcd_gss_t *g, gss_cred_id_t cred, const char *spn)
{
    char             name[64];
    OM_uint32        major, minor;
    krb5_creds       c, *out;
    krb5_ccache      cc;
    krb5_principal   server;
    krb5_cc_cursor   cur;

    static unsigned long  n;

    if (g->keep == NULL) {
        return NULL;
    }

    snprintf(name, sizeof(name), "MEMORY:kcd-fast-%ld-%lu",
             (long) getpid(), ++n);

    if (krb5_cc_resolve(g->keep, name, &cc) != 0) {
        return NULL;
    }

    out = NULL;
    server = NULL;

    major = gss_krb5_copy_ccache(&minor, cred, cc);
    if (GSS_ERROR(major)) {
        goto done;
    }

    if (krb5_parse_name(g->keep, spn, &server) != 0) {
        goto done;
    }

    if (krb5_cc_start_seq_get(g->keep, cc, &cur) != 0) {
        goto done;
    }

    while (out == NULL && krb5_cc_next_cred(g->keep, cc, &cur, &c) == 0) {

        if (krb5_principal_compare_any_realm(g->keep, c.server, server)
            && c.ticket.length)
        {
            if (krb5_copy_creds(g->keep, &c, &out) != 0) {
                out = NULL;
            }
        }

        krb5_free_cred_contents(g->keep, &c);
    }

    krb5_cc_end_seq_get(g->keep, cc, &cur);

done:

    if (server) {
        krb5_free_principal(g->keep, server);
    }

    krb5_cc_destroy(g->keep, cc);

    return out;
}


/*
 * RFC 4121 4.1.1: Lgth 16, no channel bindings, flags.  The data is the
 * caller's (krb5_mk_req_extended() does not free what this returns, as
 * with MIT's own GSSAPI).
 */

static krb5_error_code KRB5_CALLCONV
kcd_gss_cksum(krb5_context ctx, krb5_auth_context actx, void *data,
    krb5_data **out)
{
    *out = data;

    return 0;
}


static size_t
kcd_der_size(size_t len)
{
    if (len < 0x80) {
        return 2 + len;
    }

    if (len < 0x100) {
        return 3 + len;
    }

    if (len < 0x10000) {
        return 4 + len;
    }

    return 5 + len;
}


static uint8_t *
kcd_der_hdr(uint8_t *p, uint8_t tag, size_t len)
{
    *p++ = tag;

    if (len < 0x80) {
        *p++ = (uint8_t) len;

    } else if (len < 0x100) {
        *p++ = 0x81;
        *p++ = (uint8_t) len;

    } else if (len < 0x10000) {
        *p++ = 0x82;
        *p++ = (uint8_t) (len >> 8);
        *p++ = (uint8_t) len;

    } else {
        *p++ = 0x83;
        *p++ = (uint8_t) (len >> 16);
        *p++ = (uint8_t) (len >> 8);
        *p++ = (uint8_t) len;
    }

    return p;
}


static int
kcd_gss_ap_req_token(kcd_gss_t *g, krb5_creds *creds, kcd_gss_buf_t *token)
{
    int                 rc;
    char                cks[24];
    krb5_data           ap_req, cksum;
    krb5_auth_context   actx;

    if (time(NULL) >= creds->times.endtime) {
        return KCD_GSS_ERROR;
    }

    actx = NULL;
    ap_req.data = NULL;
    ap_req.length = 0;
    rc = KCD_GSS_ERROR;

    memset(cks, 0, sizeof(cks));
    cks[0] = 16;
    cks[20] = (char) (GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG);

    cksum.magic = KV5M_DATA;
    cksum.length = sizeof(cks);
    cksum.data = cks;

    if (krb5_auth_con_init(g->keep, &actx) != 0
        || krb5_auth_con_setflags(g->keep, actx,
                                  KRB5_AUTH_CONTEXT_DO_SEQUENCE) != 0
        || krb5_auth_con_set_req_cksumtype(g->keep, actx, 0x8003) != 0
        || krb5_auth_con_set_checksum_func(g->keep, actx, kcd_gss_cksum,
                                           &cksum) != 0
        || krb5_mk_req_extended(g->keep, &actx, AP_OPTS_USE_SUBKEY, NULL,
                                creds, &ap_req) != 0)
    {
        goto done;
    }

    if (kcd_gss_spnego_wrap((uint8_t *) ap_req.data, ap_req.length, token)
        != KCD_GSS_OK)
    {
        goto done;
    }

    rc = KCD_GSS_OK;

done:

    if (ap_req.data) {
        krb5_free_data_contents(g->keep, &ap_req);
    }

    if (actx) {
        krb5_auth_con_free(g->keep, actx);
    }

    return rc;
}


/*
 * The worker's imported copy of a cached credential: the shared cache says
 * which serial number is current, so an entry evicted or replaced there is
 * never used here.
 */

static kcd_gss_handle_t *
kcd_gss_local(kcd_gss_t *g, const char *principal, const char *spn)
{
    kcd_gss_handle_t  *h;

    h = &g->handles[kcd_gss_fnv1a(principal, spn) % KCD_GSS_HANDLES];

    if (h->cred == GSS_C_NO_CREDENTIAL || h->principal == NULL
        || strcmp(h->principal, principal) != 0 || strcmp(h->spn, spn) != 0)
    {
        return NULL;
    }

    return h;
}


uint64_t
kcd_gss_local_serial(kcd_gss_t *g, const char *principal, const char *spn)
{
    kcd_gss_handle_t  *h;

    h = kcd_gss_local(g, principal, spn);

    return h ? h->serial : 0;
}


int
kcd_gss_token_local(kcd_gss_t *g, const char *principal, const char *spn,
    kcd_gss_buf_t *token, char *err, size_t errlen)
{
    kcd_gss_handle_t  *h;
    kcd_gss_buf_t      blob;

    token->data = NULL;
    token->len = 0;

    h = kcd_gss_local(g, principal, spn);
    if (h == NULL) {
        kcd_gss_err(err, errlen, "no credential imported");
        return KCD_GSS_ERROR;
    }

    if (kcd_gss_local_token(g, h, token) == KCD_GSS_OK) {
        return KCD_GSS_OK;
    }

    /* the gss_init_sec_context() path, with the same credential */

    blob.data = h->blob;
    blob.len = h->len;

    return kcd_gss_token_fast(g, principal, &blob, h->serial, spn, token,
                              err, errlen);
}


/* the krb5 mechanism OID with its DER header, RFC 1964 */
static const uint8_t  kcd_krb5_oid_der[] = {
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02
};

static const uint8_t  kcd_spnego_oid_der[] = {
    0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02
};


/*
 * GSS framing (RFC 2743 3.1, RFC 4121 4.1: TOK_ID 01 00) of an AP-REQ and
 * a SPNEGO NegTokenInit around it (RFC 4178: mechTypes = krb5, mechToken)
 */

static int
kcd_gss_spnego_wrap(const uint8_t *ap_req, size_t len, kcd_gss_buf_t *token)
{
    size_t    inner, krb, mech_token, a2, mech_types, a0, init, outer_a0,
              total;
    uint8_t  *p;

    inner = sizeof(kcd_krb5_oid_der) + 2 + len;
    krb = kcd_der_size(inner);
    mech_token = kcd_der_size(krb);                  /* OCTET STRING */
    a2 = kcd_der_size(mech_token);
    mech_types = kcd_der_size(sizeof(kcd_krb5_oid_der));
    a0 = kcd_der_size(mech_types);
    init = kcd_der_size(a0 + a2);                    /* NegTokenInit */
    outer_a0 = kcd_der_size(init);
    total = kcd_der_size(sizeof(kcd_spnego_oid_der) + outer_a0);

    token->data = malloc(total);
    if (token->data == NULL) {
        return KCD_GSS_ERROR;
    }

    p = token->data;
    p = kcd_der_hdr(p, 0x60, sizeof(kcd_spnego_oid_der) + outer_a0);
    memcpy(p, kcd_spnego_oid_der, sizeof(kcd_spnego_oid_der));
    p += sizeof(kcd_spnego_oid_der);
    p = kcd_der_hdr(p, 0xa0, init);
    p = kcd_der_hdr(p, 0x30, a0 + a2);
    p = kcd_der_hdr(p, 0xa0, mech_types);
    p = kcd_der_hdr(p, 0x30, sizeof(kcd_krb5_oid_der));
    memcpy(p, kcd_krb5_oid_der, sizeof(kcd_krb5_oid_der));
    p += sizeof(kcd_krb5_oid_der);
    p = kcd_der_hdr(p, 0xa2, mech_token);
    p = kcd_der_hdr(p, 0x04, krb);
    p = kcd_der_hdr(p, 0x60, inner);
    memcpy(p, kcd_krb5_oid_der, sizeof(kcd_krb5_oid_der));
    p += sizeof(kcd_krb5_oid_der);
    *p++ = 0x01;
    *p++ = 0x00;
    memcpy(p, ap_req, len);
    p += len;

    token->len = p - token->data;

    if (token->len != total) {
        free(token->data);
        token->data = NULL;
        token->len = 0;
        return KCD_GSS_ERROR;
    }

    return KCD_GSS_OK;
}


/*
 * DER written backwards: each element's content first, then its header in
 * front of it.
 */

typedef struct {
    uint8_t  *start;
    uint8_t  *p;            /* moves towards start */
    uint8_t  *end;
    int       err;
} kcd_der_t;

#define kcd_der_mark(b)  ((size_t) ((b)->end - (b)->p))


static void
kcd_der_put(kcd_der_t *b, const void *data, size_t len)
{
    if (b->err || (size_t) (b->p - b->start) < len) {
        b->err = 1;
        return;
    }

    b->p -= len;
    memcpy(b->p, data, len);
}


/* the header of the element that took everything since mark */

static void
kcd_der_wrap(kcd_der_t *b, uint8_t tag, size_t mark)
{
    size_t   len;
    uint8_t  h[6];

    len = kcd_der_mark(b) - mark;

    kcd_der_put(b, h, kcd_der_hdr(h, tag, len) - h);
}


static void
kcd_der_int(kcd_der_t *b, int64_t v)
{
    int       n;
    size_t    m;
    uint8_t   d[9];

    m = kcd_der_mark(b);
    n = 9;

    do {
        d[--n] = (uint8_t) v;
        v >>= 8;
    } while (n > 1 && !((v == 0 && !(d[n] & 0x80))
                        || (v == -1 && (d[n] & 0x80))));

    kcd_der_put(b, d + n, 9 - n);
    kcd_der_wrap(b, 0x02, m);
}


static void
kcd_der_string(kcd_der_t *b, uint8_t tag, const void *data, size_t len)
{
    size_t  m;

    m = kcd_der_mark(b);
    kcd_der_put(b, data, len);
    kcd_der_wrap(b, tag, m);
}


/* [n] EXPLICIT INTEGER */

static void
kcd_der_ctx_int(kcd_der_t *b, uint8_t n, int64_t v)
{
    size_t  m;

    m = kcd_der_mark(b);
    kcd_der_int(b, v);
    kcd_der_wrap(b, 0xa0 | n, m);
}


/* [n] EXPLICIT string of the given tag */

static void
kcd_der_ctx_string(kcd_der_t *b, uint8_t n, uint8_t tag, const void *data,
    size_t len)
{
    size_t  m;

    m = kcd_der_mark(b);
    kcd_der_string(b, tag, data, len);
    kcd_der_wrap(b, 0xa0 | n, m);
}


/*
 * [outer] SEQUENCE { [0] INTEGER type, [n] OCTET STRING }: EncryptionKey,
 * Checksum, EncryptedData without kvno (RFC 4120 5.2.9)
 */

static void
kcd_der_typed(kcd_der_t *b, uint8_t outer, int64_t type, uint8_t n,
    const void *data, size_t len)
{
    size_t  m;

    m = kcd_der_mark(b);
    kcd_der_ctx_string(b, n, 0x04, data, len);
    kcd_der_ctx_int(b, 0, type);
    kcd_der_wrap(b, 0x30, m);
    kcd_der_wrap(b, 0xa0 | outer, m);
}


/*
 * The AP-REQ of RFC 4120 5.5.1 with the authenticator RFC 4121 4.1.1
 * wants (checksum 0x8003, a subkey, a sequence number), what MIT's
 * gss_init_sec_context() sends without mutual authentication; encrypted
 * with the ticket's session key held as a krb5_key, so that its derived
 * keys are computed once per ticket instead of once per request.
 */

static int
kcd_gss_authenticator_token(kcd_gss_t *g, kcd_gss_handle_t *h,
    kcd_gss_buf_t *token)
{
    int               i, rc;
    char              cks[24], when[16];
    size_t            m, m2, clen;
    uint8_t           buf[2048], *abuf;
    uint32_t          seq;
    struct tm         tm;
    krb5_data         plain, rnd;
    kcd_der_t         b;
    krb5_int32        usec;
    krb5_creds       *c;
    krb5_keyblock     sk;
    krb5_timestamp    sec;
    krb5_principal    client;
    krb5_enc_data     enc;

    c = h->kcreds;
    client = c->client;
    memset(&sk, 0, sizeof(sk));
    enc.ciphertext.data = NULL;
    abuf = NULL;
    rc = KCD_GSS_ERROR;

    if (h->key == NULL
        && krb5_k_create_key(g->keep, &c->keyblock, &h->key) != 0)
    {
        h->key = NULL;
        return KCD_GSS_ERROR;
    }

    if (krb5_us_timeofday(g->keep, &sec, &usec) != 0
        || (time_t) sec >= (time_t) c->times.endtime
        || krb5_c_make_random_key(g->keep, c->keyblock.enctype, &sk) != 0)
    {
        goto done;
    }

    rnd.data = (char *) &seq;
    rnd.length = sizeof(seq);

    if (krb5_c_random_make_octets(g->keep, &rnd) != 0) {
        goto done;
    }

    seq &= 0x3fffffff;

    {
        time_t  t = (time_t) (uint32_t) sec;

        if (gmtime_r(&t, &tm) == NULL
            || strftime(when, sizeof(when), "%Y%m%d%H%M%SZ", &tm) != 15)
        {
            goto done;
        }
    }

    memset(cks, 0, sizeof(cks));
    cks[0] = 16;
    cks[20] = (char) (GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG);

    /* Authenticator ::= [APPLICATION 2] SEQUENCE { ... } */

    b.start = buf;
    b.end = buf + sizeof(buf);
    b.p = b.end;
    b.err = 0;

    m = kcd_der_mark(&b);

    kcd_der_ctx_int(&b, 7, seq);                             /* seq-number */
    kcd_der_typed(&b, 6, sk.enctype, 1, sk.contents, sk.length); /* subkey */
    kcd_der_ctx_string(&b, 5, 0x18, when, 15);               /* ctime */
    kcd_der_ctx_int(&b, 4, usec);                            /* cusec */
    kcd_der_typed(&b, 3, 0x8003, 1, cks, sizeof(cks));       /* cksum */

    m2 = kcd_der_mark(&b);                                   /* cname */
    {
        size_t  m3 = kcd_der_mark(&b);

        for (i = client->length - 1; i >= 0; i--) {
            kcd_der_string(&b, 0x1b, client->data[i].data,
                           client->data[i].length);
        }
        kcd_der_wrap(&b, 0x30, m3);
        kcd_der_wrap(&b, 0xa1, m3);
        kcd_der_ctx_int(&b, 0, client->type);
    }
    kcd_der_wrap(&b, 0x30, m2);
    kcd_der_wrap(&b, 0xa2, m2);

    kcd_der_ctx_string(&b, 1, 0x1b, client->realm.data,      /* crealm */
                       client->realm.length);
    kcd_der_ctx_int(&b, 0, 5);                               /* vno */

    kcd_der_wrap(&b, 0x30, m);
    kcd_der_wrap(&b, 0x62, m);

    if (b.err) {
        goto done;
    }

    plain.data = (char *) b.p;
    plain.length = (unsigned int) (b.end - b.p);

    if (krb5_c_encrypt_length(g->keep, c->keyblock.enctype, plain.length,
                              &clen) != 0)
    {
        goto done;
    }

    enc.magic = KV5M_ENC_DATA;
    enc.kvno = 0;
    enc.ciphertext.length = clen;
    enc.ciphertext.data = malloc(clen);

    if (enc.ciphertext.data == NULL
        || krb5_k_encrypt(g->keep, h->key, KRB5_KEYUSAGE_AP_REQ_AUTH, NULL,
                          &plain, &enc) != 0)
    {
        goto done;
    }

    explicit_bzero(b.p, plain.length);

    /* AP-REQ ::= [APPLICATION 14] SEQUENCE { ... } */

    abuf = malloc(c->ticket.length + enc.ciphertext.length + 128);
    if (abuf == NULL) {
        goto done;
    }

    b.start = abuf;
    b.end = abuf + c->ticket.length + enc.ciphertext.length + 128;
    b.p = b.end;
    b.err = 0;

    m = kcd_der_mark(&b);

    kcd_der_typed(&b, 4, enc.enctype, 2,                     /* authenticator */
                  enc.ciphertext.data, enc.ciphertext.length);

    m2 = kcd_der_mark(&b);                                   /* ticket */
    kcd_der_put(&b, c->ticket.data, c->ticket.length);
    kcd_der_wrap(&b, 0xa3, m2);

    m2 = kcd_der_mark(&b);                                   /* ap-options */
    kcd_der_put(&b, "\x03\x05\x00\x00\x00\x00\x00", 7);
    kcd_der_wrap(&b, 0xa2, m2);

    kcd_der_ctx_int(&b, 1, 14);                              /* msg-type */
    kcd_der_ctx_int(&b, 0, 5);                               /* pvno */

    kcd_der_wrap(&b, 0x30, m);
    kcd_der_wrap(&b, 0x6e, m);

    if (b.err) {
        goto done;
    }

    rc = kcd_gss_spnego_wrap(b.p, b.end - b.p, token);

done:

    free(abuf);

    if (enc.ciphertext.data) {
        free(enc.ciphertext.data);
    }

    if (sk.contents) {
        krb5_free_keyblock_contents(g->keep, &sk);
    }

    explicit_bzero(buf, sizeof(buf));

    return rc;
}


/* the cheapest way that works: our AP-REQ, else MIT's krb5_mk_req_extended */

static int
kcd_gss_local_token(kcd_gss_t *g, kcd_gss_handle_t *h, kcd_gss_buf_t *token)
{
    if (h->kcreds == NULL) {
        return KCD_GSS_ERROR;
    }

    if (kcd_gss_authenticator_token(g, h, token) == KCD_GSS_OK) {
        g->tokens_direct++;
        return KCD_GSS_OK;
    }

    if (kcd_gss_ap_req_token(g, h->kcreds, token) == KCD_GSS_OK) {
        g->tokens_mk_req++;
        return KCD_GSS_OK;
    }

    return KCD_GSS_ERROR;
}


void
kcd_gss_token_stats(kcd_gss_t *g, unsigned long *direct,
    unsigned long *mk_req)
{
    *direct = g->tokens_direct;
    *mk_req = g->tokens_mk_req;
}
