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
#include <fcntl.h>
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
#include <openssl/asn1.h>

#include "ngx_http_kcd_gss.h"
#include "ngx_http_kcd_spnego.h"


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
    krb5_creds       *kcreds;     /* the service ticket, taken out once */
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
static krb5_creds *kcd_gss_service_creds(krb5_context kctx,
    gss_cred_id_t cred, const char *spn);
static int kcd_gss_ap_req_token(krb5_context kctx, krb5_creds *creds,
    const uint8_t *cb, kcd_gss_buf_t *token, char *err, size_t errlen);


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

    /*
     * B21: no KDC configured or found for the realm is a name problem (a
     * realm typed in lower case, a malformed SPN, a realm we don't
     * serve), answered like a KDC refusal, not as an unreachable KDC.
     */
    case KRB5_REALM_UNKNOWN:
        return KCD_GSS_REFUSED;

    case KRB5_KDC_UNREACH:
    case KRB5_REALM_CANT_RESOLVE:
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

    case KRB5_REALM_UNKNOWN:
        return "no KDC known for this realm (realms are upper case: a "
               "misspelled realm or a malformed name?)";

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
                (rc == KCD_GSS_REFUSED
                 && (krb5_error_code) minor != KRB5_REALM_UNKNOWN)
                ? "KDC refused " : "",
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
        g->keep = NULL;
        kcd_gss_err(err, errlen, "krb5_init_context() failed");
        goto failed;
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


struct kcd_gss_keytab_s {
    krb5_context      ctx;
    krb5_keytab       kt;        /* held open: MIT frees a MEMORY: keytab
                                    when its last handle is closed */
    char              name[4096 + 64];
};


int
kcd_gss_keytab_load(kcd_gss_keytab_t **ktp, const char *path,
    const char *principal, char *err, size_t errlen)
{
    int                 found, n, fd;
    char                fname[4096 + 8];
    krb5_keytab         file;
    krb5_principal      princ;
    krb5_error_code     code;
    krb5_kt_cursor      cursor;
    kcd_gss_keytab_t   *kt;
    krb5_keytab_entry   entry;

    static unsigned     generation;

    *ktp = NULL;

    if (strlen(path) > 4096) {
        kcd_gss_err(err, errlen, "keytab path too long");
        return -1;
    }

    /*
     * open() first: MIT's own message for an unreadable keytab is
     * "Key table file ... not found" even for EACCES.
     */
    fd = open(path, O_RDONLY);
    if (fd == -1) {
        kcd_gss_err(err, errlen, "keytab \"%s\" cannot be opened: %s", path,
                    strerror(errno));
        return -1;
    }

    close(fd);

    kt = calloc(1, sizeof(kcd_gss_keytab_t));
    if (kt == NULL) {
        kcd_gss_err(err, errlen, "out of memory");
        return -1;
    }

    if (krb5_init_context(&kt->ctx) != 0) {
        kcd_gss_err(err, errlen, "krb5_init_context() failed");
        free(kt);
        return -1;
    }

    file = NULL;
    princ = NULL;
    found = 0;
    n = 0;

    snprintf(fname, sizeof(fname), "FILE:%s", path);
    snprintf(kt->name, sizeof(kt->name), "MEMORY:kcd/%ld/%u:%s",
             (long) getpid(), ++generation, path);

    code = krb5_parse_name(kt->ctx, principal, &princ);
    if (code) {
        kcd_gss_err(err, errlen, "bad principal \"%s\": %s", principal,
                    krb5_get_error_message(kt->ctx, code));
        goto failed;
    }

    code = krb5_kt_resolve(kt->ctx, kt->name, &kt->kt);
    if (code) {
        kt->kt = NULL;
        kcd_gss_err(err, errlen, "MEMORY: keytab: %s",
                    krb5_get_error_message(kt->ctx, code));
        goto failed;
    }

    code = krb5_kt_resolve(kt->ctx, fname, &file);
    if (code == 0) {
        code = krb5_kt_start_seq_get(kt->ctx, file, &cursor);
    }

    if (code) {
        kcd_gss_err(err, errlen, "keytab \"%s\": %s", path,
                    krb5_get_error_message(kt->ctx, code));
        goto failed;
    }

    /*
     * Every entry (all kvnos and enctypes: clients may hold tickets for
     * the previous key); a principal given without realm (AD account
     * name) matches any realm's entry.
     */
    while ((code = krb5_kt_next_entry(kt->ctx, file, &entry, &cursor)) == 0)
    {
        if (strchr(principal, '@') == NULL
            ? krb5_principal_compare_any_realm(kt->ctx, entry.principal,
                                               princ)
            : krb5_principal_compare(kt->ctx, entry.principal, princ))
        {
            found = 1;
        }

        code = krb5_kt_add_entry(kt->ctx, kt->kt, &entry);
        krb5_free_keytab_entry_contents(kt->ctx, &entry);

        if (code) {
            krb5_kt_end_seq_get(kt->ctx, file, &cursor);
            kcd_gss_err(err, errlen, "keytab \"%s\": copy to memory: %s",
                        path, krb5_get_error_message(kt->ctx, code));
            goto failed;
        }

        n++;
    }

    krb5_kt_end_seq_get(kt->ctx, file, &cursor);

    if (code != KRB5_KT_END) {
        kcd_gss_err(err, errlen, "keytab \"%s\": %s", path,
                    krb5_get_error_message(kt->ctx, code));
        goto failed;
    }

    if (!found) {
        kcd_gss_err(err, errlen, "keytab \"%s\" holds no key for \"%s\" "
                    "(%d entries)", path, principal, n);
        goto failed;
    }

    krb5_kt_close(kt->ctx, file);
    krb5_free_principal(kt->ctx, princ);

    *ktp = kt;

    return 0;

failed:

    if (file) {
        krb5_kt_close(kt->ctx, file);
    }

    if (princ) {
        krb5_free_principal(kt->ctx, princ);
    }

    kcd_gss_keytab_free(kt);

    return -1;
}


const char *
kcd_gss_keytab_name(kcd_gss_keytab_t *kt)
{
    return kt->name;
}


void
kcd_gss_keytab_free(kcd_gss_keytab_t *kt)
{
    if (kt == NULL) {
        return;
    }

    if (kt->kt) {
        krb5_kt_close(kt->ctx, kt->kt);
    }

    krb5_free_context(kt->ctx);
    free(kt);
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


/*
 * B21: an SPN is "service/host[@REALM]" with an upper-case realm.  Checked
 * before any KDC call: "HTTP@host" (the GSSAPI host-based form) parses as
 * principal "HTTP" in realm "host", and MIT then reports "Cannot find KDC
 * for realm", which must not read as an unreachable KDC.
 */

static int
kcd_gss_check_spn(const char *spn, char *err, size_t errlen)
{
    const char  *slash, *at, *p;

    slash = strchr(spn, '/');
    at = strchr(spn, '@');

    if (slash == NULL || slash == spn || slash[1] == '\0'
        || slash[1] == '@' || strchr(slash + 1, '/') != NULL
        || (at && (at < slash || at[1] == '\0' || strchr(at + 1, '@'))))
    {
        kcd_gss_err(err, errlen, "malformed SPN \"%s\": not "
                    "service/host[@REALM]%s", spn,
                    (at && slash == NULL) ? " (\"service@host\" is the "
                    "GSSAPI form)" : "");
        return KCD_GSS_ERROR;
    }

    for (p = at; p && *p; p++) {
        if (*p >= 'a' && *p <= 'z') {
            kcd_gss_err(err, errlen, "malformed SPN \"%s\": realm in lower "
                        "case", spn);
            return KCD_GSS_ERROR;
        }
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
        || kcd_gss_check_name("SPN", spn, err, errlen) != KCD_GSS_OK
        || kcd_gss_check_spn(spn, err, errlen) != KCD_GSS_OK)
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
 * The thread pool's token, right after the KDC exchange: a krb5 context
 * of its own (one per call, B9), the same AP-REQ builder as the event
 * loop's kcd_gss_token_fast().
 */

int
kcd_gss_token(kcd_gss_t *g, const kcd_gss_buf_t *cred, const char *spn,
    const uint8_t *cb, kcd_gss_buf_t *token, char *err, size_t errlen)
{
    int              rc;
    OM_uint32        major, minor;
    krb5_creds      *kcreds;
    krb5_context     kctx;
    gss_cred_id_t    icred;
    gss_buffer_desc  buf;

    if (kcd_gss_token_args(cred, spn, token, err, errlen) != KCD_GSS_OK) {
        return KCD_GSS_ERROR;
    }

    if (krb5_init_context(&kctx) != 0) {
        kcd_gss_err(err, errlen, "krb5_init_context() failed");
        return KCD_GSS_ERROR;
    }

    icred = GSS_C_NO_CREDENTIAL;
    kcreds = NULL;

    buf.value = cred->data;
    buf.length = cred->len;

    major = gss_import_cred(&minor, &buf, &icred);
    if (GSS_ERROR(major)) {
        kcd_gss_fail("importing the cached credential", major, minor, NULL,
                     err, errlen);
        rc = KCD_GSS_ERROR;
        goto done;
    }

    kcreds = kcd_gss_service_creds(kctx, icred, spn);
    if (kcreds == NULL) {
        kcd_gss_err(err, errlen, "the credential holds no ticket for %s",
                    spn);
        rc = KCD_GSS_ERROR;
        goto done;
    }

    rc = kcd_gss_ap_req_token(kctx, kcreds, cb, token, err, errlen);

done:

    if (kcreds) {
        krb5_free_creds(kctx, kcreds);
    }

    if (icred != GSS_C_NO_CREDENTIAL) {
        gss_release_cred(&minor, &icred);
    }

    krb5_free_context(kctx);

    return rc;
}


/*
 * What a refused client token means, from the krb5 text of the failure
 * (through SPNEGO the minor code is remapped by the mechglue; its text is
 * the mechanism's own).  B5: the log names the real cause.
 */

static const struct {
    krb5_error_code   code;
    const char       *cause;
} kcd_gss_accept_causes[] = {
    { KRB5KRB_AP_ERR_SKEW, "clock skew between client and proxy" },
    { KRB5KRB_AP_ERR_BADKEYVER, "wrong key version (kvno): the keytab is "
                                "older than the KDC's key" },
    { KRB5_KT_KVNONOTFOUND, "wrong key version (kvno): the keytab is older "
                            "than the KDC's key" },
    { KRB5KRB_AP_ERR_BAD_INTEGRITY, "the keytab's key does not match the "
                                    "KDC's" },
    { KRB5KRB_AP_WRONG_PRINC, "wrong service: ticket for another principal" },
    { KRB5KRB_AP_ERR_NOT_US, "wrong service: ticket for another principal" },
    { KRB5_KT_NOTFOUND, "wrong service: no key for the ticket's principal "
                        "in the keytab" },
    { KRB5KRB_AP_ERR_TKT_EXPIRED, "ticket expired" },
    { KRB5KRB_AP_ERR_TKT_NYV, "ticket not yet valid (clock skew)" },
    { KRB5KRB_AP_ERR_REPEAT, "replay of an earlier token" },
    { KRB5KRB_AP_ERR_MODIFIED, "the keytab's key does not match the KDC's" }
};


/* MIT's extended messages for a missing keytab entry (rd_req_dec.c) */

static const struct {
    const char       *text;
    krb5_error_code   code;
} kcd_gss_accept_texts[] = {
    { "found in keytab but not with this kvno", KRB5KRB_AP_ERR_BADKEYVER },
    { "keytab is likely out of date", KRB5KRB_AP_ERR_BADKEYVER },
    { "not found in keytab", KRB5_KT_NOTFOUND },
    { "No key table entry found for", KRB5_KT_NOTFOUND }
};


static int
kcd_gss_accept_cause(const char *text)
{
    size_t       i, j;
    const char  *msg;

    for (j = 0;
         j < sizeof(kcd_gss_accept_texts) / sizeof(kcd_gss_accept_texts[0]);
         j++)
    {
        if (strstr(text, kcd_gss_accept_texts[j].text) == NULL) {
            continue;
        }

        for (i = 0; i < sizeof(kcd_gss_accept_causes)
                        / sizeof(kcd_gss_accept_causes[0]);
             i++)
        {
            if (kcd_gss_accept_causes[i].code
                == kcd_gss_accept_texts[j].code)
            {
                return (int) i;
            }
        }
    }

    for (i = 0;
         i < sizeof(kcd_gss_accept_causes) / sizeof(kcd_gss_accept_causes[0]);
         i++)
    {
        msg = error_message(kcd_gss_accept_causes[i].code);

        if (msg != NULL && *msg != '\0' && strstr(text, msg) != NULL) {
            return (int) i;
        }
    }

    return -1;
}


static int
kcd_gss_accept_is(int cause, krb5_error_code code)
{
    return cause >= 0 && kcd_gss_accept_causes[cause].code == code;
}


static void
kcd_gss_accept_failed(OM_uint32 major, OM_uint32 minor, char *err,
    size_t errlen, int *cause)
{
    char  text[512];

    kcd_gss_status_text(major, minor, NULL, text, sizeof(text));
    *cause = kcd_gss_accept_cause(text);

    if (*cause >= 0) {
        kcd_gss_err(err, errlen, "client token rejected: %s (%s)",
                    kcd_gss_accept_causes[*cause].cause, text);

    } else {
        kcd_gss_err(err, errlen, "client token rejected: %s", text);
    }
}


int
kcd_gss_accept(kcd_gss_t *g, const uint8_t *token, size_t len,
    char **principal, kcd_gss_buf_t *evidence, kcd_gss_buf_t *out,
    char *err, size_t errlen)
{
    return kcd_gss_accept_pac(g, token, len, principal, evidence, NULL, out,
                              err, errlen);
}


/*
 * B20: the PAC_LOGON_INFO of the client's ticket, only when MIT verified
 * the PAC's signatures (authenticated); else none: fail closed, no groups.
 */
static void
kcd_gss_logon_info(gss_name_t src, kcd_gss_buf_t *pac)
{
    int              authenticated, complete, more;
    OM_uint32        major, minor, tmin;
    gss_buffer_desc  attr, value, display;

    attr.value = (void *) "urn:mspac:logon-info";
    attr.length = sizeof("urn:mspac:logon-info") - 1;
    value.value = NULL;
    value.length = 0;
    display.value = NULL;
    display.length = 0;
    authenticated = 0;
    complete = 0;
    more = -1;

    major = gss_get_name_attribute(&minor, src, &attr, &authenticated,
                                   &complete, &value, &display, &more);

    if (!GSS_ERROR(major) && authenticated && value.length) {
        (void) kcd_gss_copy_buf(&value, pac);
    }

    gss_release_buffer(&tmin, &value);
    gss_release_buffer(&tmin, &display);
}


int
kcd_gss_accept_pac(kcd_gss_t *g, const uint8_t *token, size_t len,
    char **principal, kcd_gss_buf_t *evidence, kcd_gss_buf_t *pac,
    kcd_gss_buf_t *out, char *err, size_t errlen)
{
    int                          rc, both, cause, first_cause;
    char                         text[512], first[512];
    time_t                       now;
    OM_uint32                    major, minor, tmin, flags;
    gss_name_t                   src;
    gss_OID_set                  mechs;
    gss_ctx_id_t                 ctx;
    gss_cred_id_t                acred, deleg;
    gss_buffer_desc              in, obuf, nbuf;
    gss_key_value_set_desc       store;
    gss_key_value_element_desc   el;

    *principal = NULL;
    evidence->data = NULL;
    evidence->len = 0;

    if (pac != NULL) {
        pac->data = NULL;
        pac->len = 0;
    }
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
    first[0] = '\0';
    first_cause = -1;

    in.value = (void *) token;
    in.length = len;

    /*
     * B5: Kerberos raw (RFC 4121 framing, thisMech krb5) or inside SPNEGO;
     * an acceptor credential of the SPNEGO mechanism takes only the latter
     */
    mechs = (kcd_spnego_this_mech(token, len) == KCD_SPNEGO_MECH_KRB5)
            ? &kcd_krb5_set : &kcd_spnego_set;

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
        rc = kcd_gss_proxy_cred(g, GSS_C_BOTH, mechs, &acred,
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
            kcd_gss_accept_failed(major, minor, first, sizeof(first),
                                  &first_cause);

            /*
             * The first try may have filled the replay cache: a retry
             * with the same token then says "Request is a replay" and
             * hides the cause.  Retry only for failures another keytab
             * key can fix; report the first cause otherwise.
             */
            if (kcd_gss_accept_is(first_cause, KRB5KRB_AP_ERR_SKEW)
                || kcd_gss_accept_is(first_cause, KRB5KRB_AP_ERR_REPEAT)
                || kcd_gss_accept_is(first_cause, KRB5KRB_AP_ERR_TKT_EXPIRED)
                || kcd_gss_accept_is(first_cause, KRB5KRB_AP_ERR_TKT_NYV))
            {
                if (obuf.length
                    && kcd_gss_copy_buf(&obuf, out) != KCD_GSS_OK)
                {
                    kcd_gss_free(out);
                }

                gss_release_buffer(&tmin, &obuf);
                kcd_gss_err(err, errlen, "%s", first);
                rc = KCD_GSS_DENIED;
                goto done;
            }

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
                                      GSS_C_INDEFINITE, mechs,
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
        kcd_gss_accept_failed(major, minor, err, errlen, &cause);

        /* a replay after our own first try: the first cause is the one */
        if (first[0] != '\0' && !kcd_gss_accept_is(first_cause,
                                                    KRB5KRB_AP_ERR_REPEAT)
            && (kcd_gss_accept_is(cause, KRB5KRB_AP_ERR_REPEAT)
                || (cause < 0 && first_cause >= 0)))
        {
            kcd_gss_err(err, errlen, "%s", first);
        }

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

    if (pac != NULL) {
        kcd_gss_logon_info(src, pac);
    }

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
        if (pac != NULL) {
            kcd_gss_free(pac);
        }
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
 * credential and its service ticket are kept per worker, keyed by the
 * credential's bytes, so a request costs one krb5_mk_req_extended() on the
 * worker's long-lived krb5 context (no import, no krb5.conf, no KDC).
 * Not thread-safe: one thread only.
 */

int
kcd_gss_token_fast(kcd_gss_t *g, const char *principal,
    const kcd_gss_buf_t *cred, uint64_t serial, const char *spn,
    const uint8_t *cb, kcd_gss_buf_t *token, char *err, size_t errlen)
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

        buf.value = cred->data;
        buf.length = cred->len;

        major = gss_import_cred(&minor, &buf, &h->cred);
        if (GSS_ERROR(major)) {
            kcd_gss_fail("importing the cached credential", major, minor,
                         NULL, err, errlen);
            kcd_gss_handle_free(g, h);
            return KCD_GSS_ERROR;
        }

        h->kcreds = kcd_gss_service_creds(g->keep, h->cred, spn);
        if (h->kcreds == NULL) {
            kcd_gss_err(err, errlen, "the credential holds no ticket for %s",
                        spn);
            kcd_gss_handle_free(g, h);
            return KCD_GSS_ERROR;
        }
    }

    h->serial = serial;

    rc = kcd_gss_ap_req_token(g->keep, h->kcreds, cb, token, err, errlen);

    if (rc != KCD_GSS_OK) {
        kcd_gss_handle_free(g, h);
    }

    return rc;
}


/*
 * The service ticket for spn taken out of an imported credential (a copy
 * through a private MEMORY: ccache), or NULL.
 */

static krb5_creds *
kcd_gss_service_creds(krb5_context kctx, gss_cred_id_t cred, const char *spn)
{
    char             name[64];
    OM_uint32        major, minor;
    krb5_creds       c, *out;
    krb5_ccache      cc;
    krb5_principal   server;
    krb5_cc_cursor   cur;

    static unsigned long  n;

    snprintf(name, sizeof(name), "MEMORY:kcd-tkt-%ld-%lu", (long) getpid(),
             __atomic_add_fetch(&n, 1, __ATOMIC_RELAXED));

    if (krb5_cc_resolve(kctx, name, &cc) != 0) {
        return NULL;
    }

    out = NULL;
    server = NULL;

    major = gss_krb5_copy_ccache(&minor, cred, cc);
    if (GSS_ERROR(major)) {
        goto done;
    }

    if (krb5_parse_name(kctx, spn, &server) != 0) {
        goto done;
    }

    if (krb5_cc_start_seq_get(kctx, cc, &cur) != 0) {
        goto done;
    }

    while (out == NULL && krb5_cc_next_cred(kctx, cc, &cur, &c) == 0) {

        if (krb5_principal_compare_any_realm(kctx, c.server, server)
            && c.ticket.length)
        {
            if (krb5_copy_creds(kctx, &c, &out) != 0) {
                out = NULL;
            }
        }

        krb5_free_cred_contents(kctx, &c);
    }

    krb5_cc_end_seq_get(kctx, cc, &cur);

done:

    if (server) {
        krb5_free_principal(kctx, server);
    }

    krb5_cc_destroy(kctx, cc);

    return out;
}


/*
 * RFC 4121 4.1.1: the authenticator checksum of the krb5 GSS mechanism,
 * type 0x8003, 24 bytes: Lgth (16, u32 LE), Bnd (MD5 of the channel
 * bindings, RFC 4121 4.1.1.2, zeros without), Flags (u32 LE).  What MIT's
 * gss_init_sec_context() sends without mutual authentication (the
 * upstream answer is not read back and every request needs a fresh
 * authenticator, B7).  The data is the caller's: krb5_mk_req_extended()
 * does not free what this returns.
 */

#define KCD_GSS_CKSUMTYPE_GSSAPI  0x8003
#define KCD_GSS_CKSUM_LEN         24
#define KCD_GSS_CKSUM_BND         4
#define KCD_GSS_CKSUM_FLAGS       20

static krb5_error_code KRB5_CALLCONV
kcd_gss_cksum(krb5_context ctx, krb5_auth_context actx, void *data,
    krb5_data **out)
{
    *out = data;

    return 0;
}


/*
 * RFC 2743 3.1 framing of the krb5 mechanism's first token (RFC 4121
 * 4.1): [APPLICATION 0] { thisMech = the krb5 OID, TOK_ID 01 00, the
 * AP-REQ }, the headers written by OpenSSL's ASN.1 encoder.
 */

static const uint8_t  kcd_gss_tok_id_ap_req[2] = { 0x01, 0x00 };

static int
kcd_gss_frame(const krb5_data *ap_req, uint8_t **out, size_t *out_len)
{
    int             oid, inner, total;
    uint8_t        *p;
    const gss_OID   mech = (const gss_OID) gss_mech_krb5;

    if (ap_req->length > 0x1000000) {
        return KCD_GSS_ERROR;
    }

    oid = ASN1_object_size(0, (int) mech->length, V_ASN1_OBJECT);
    inner = oid + (int) sizeof(kcd_gss_tok_id_ap_req) + (int) ap_req->length;
    total = ASN1_object_size(1, inner, 0);

    if (oid < 0 || total < 0) {
        return KCD_GSS_ERROR;
    }

    *out = malloc(total);
    if (*out == NULL) {
        return KCD_GSS_ERROR;
    }

    p = *out;
    ASN1_put_object(&p, 1, inner, 0, V_ASN1_APPLICATION);
    ASN1_put_object(&p, 0, (int) mech->length, V_ASN1_OBJECT,
                    V_ASN1_UNIVERSAL);
    memcpy(p, mech->elements, mech->length);
    p += mech->length;
    memcpy(p, kcd_gss_tok_id_ap_req, sizeof(kcd_gss_tok_id_ap_req));
    p += sizeof(kcd_gss_tok_id_ap_req);
    memcpy(p, ap_req->data, ap_req->length);
    p += ap_req->length;

    *out_len = p - *out;

    if (*out_len != (size_t) total) {
        free(*out);
        *out = NULL;
        return KCD_GSS_ERROR;
    }

    return KCD_GSS_OK;
}


/*
 * One upstream token (B7): the AP-REQ by MIT's krb5_mk_req_extended()
 * (a new subkey and sequence number, the RFC 4121 checksum above, the
 * authenticator encrypted with the ticket's session key), framed for the
 * krb5 mechanism and offered in a SPNEGO NegTokenInit (RFC 4178) by the
 * SPNEGO codec.  cb: NULL, or the 16-byte channel binding hash (B22).
 */

static int
kcd_gss_ap_req_token(krb5_context kctx, krb5_creds *creds,
    const uint8_t *cb, kcd_gss_buf_t *token, char *err, size_t errlen)
{
    int                  rc;
    char                 cks[KCD_GSS_CKSUM_LEN];
    size_t               framed_len, out_len;
    uint8_t             *framed;
    unsigned char       *out;
    krb5_data            ap_req, cksum;
    krb5_error_code      code;
    krb5_auth_context    actx;
    kcd_spnego_mech_t    mech;
    const char          *msg;

    token->data = NULL;
    token->len = 0;

    if (time(NULL) >= (time_t) (uint32_t) creds->times.endtime) {
        kcd_gss_err(err, errlen, "the service ticket has expired");
        return KCD_GSS_ERROR;
    }

    actx = NULL;
    ap_req.data = NULL;
    ap_req.length = 0;
    framed = NULL;
    out = NULL;
    rc = KCD_GSS_ERROR;

    memset(cks, 0, sizeof(cks));
    cks[0] = 16;

    if (cb) {
        memcpy(cks + KCD_GSS_CKSUM_BND, cb, 16);
    }

    cks[KCD_GSS_CKSUM_FLAGS] = (char) (GSS_C_CONF_FLAG | GSS_C_INTEG_FLAG);

    cksum.magic = KV5M_DATA;
    cksum.length = sizeof(cks);
    cksum.data = cks;

    code = krb5_auth_con_init(kctx, &actx);

    if (code == 0) {
        code = krb5_auth_con_setflags(kctx, actx,
                                      KRB5_AUTH_CONTEXT_DO_SEQUENCE);
    }

    if (code == 0) {
        code = krb5_auth_con_set_req_cksumtype(kctx, actx,
                                               KCD_GSS_CKSUMTYPE_GSSAPI);
    }

    if (code == 0) {
        code = krb5_auth_con_set_checksum_func(kctx, actx, kcd_gss_cksum,
                                               &cksum);
    }

    if (code == 0) {
        code = krb5_mk_req_extended(kctx, &actx, AP_OPTS_USE_SUBKEY, NULL,
                                    creds, &ap_req);
    }

    if (code != 0) {
        msg = krb5_get_error_message(kctx, code);
        kcd_gss_err(err, errlen, "krb5_mk_req_extended(): %s", msg);
        krb5_free_error_message(kctx, msg);
        goto done;
    }

    if (kcd_gss_frame(&ap_req, &framed, &framed_len) != KCD_GSS_OK) {
        kcd_gss_err(err, errlen, "GSS framing of the AP-REQ failed");
        goto done;
    }

    mech = KCD_SPNEGO_MECH_KRB5;

    if (kcd_spnego_encode_init(&mech, 1, framed, framed_len, &out, &out_len)
        != 0)
    {
        kcd_gss_err(err, errlen, "SPNEGO NegTokenInit encoding failed");
        goto done;
    }

    /* kcd_gss_free() owns what is returned: malloc()ed */

    token->data = malloc(out_len);
    if (token->data == NULL) {
        kcd_gss_err(err, errlen, "out of memory");
        goto done;
    }

    memcpy(token->data, out, out_len);
    token->len = out_len;

    rc = KCD_GSS_OK;

done:

    if (out) {
        kcd_spnego_free(out);
    }

    if (framed) {
        free(framed);
    }

    if (ap_req.data) {
        krb5_free_data_contents(kctx, &ap_req);
    }

    if (actx) {
        krb5_auth_con_free(kctx, actx);
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
    const uint8_t *cb, kcd_gss_buf_t *token, char *err, size_t errlen)
{
    int                rc;
    kcd_gss_handle_t  *h;

    token->data = NULL;
    token->len = 0;

    h = kcd_gss_local(g, principal, spn);
    if (h == NULL) {
        kcd_gss_err(err, errlen, "no credential imported");
        return KCD_GSS_ERROR;
    }

    rc = kcd_gss_ap_req_token(g->keep, h->kcreds, cb, token, err, errlen);

    if (rc != KCD_GSS_OK) {
        kcd_gss_handle_free(g, h);
    }

    return rc;
}
