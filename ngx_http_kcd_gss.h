/*
 * Kerberos with MIT GSSAPI: accept client tokens (SPNEGO/Kerberos), get
 * delegated service tickets (S4U2Self + S4U2Proxy, or S4U2Proxy with the
 * client's own ticket), make upstream tokens, check Basic passwords by an
 * AS exchange.  Calls marked "blocking" may talk to the KDC: thread pool.
 * No nginx types.
 */

#ifndef _NGX_HTTP_KCD_GSS_H_INCLUDED_
#define _NGX_HTTP_KCD_GSS_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <time.h>


#define KCD_GSS_OK            0
#define KCD_GSS_CONTINUE      1   /* accept: send the output token, 401 */
#define KCD_GSS_DENIED       -1   /* bad token, wrong password: 401 */
#define KCD_GSS_REFUSED      -2   /* KDC refused (policy, unknown): 502 */
#define KCD_GSS_UNAVAILABLE  -3   /* KDC unreachable / timeout: 503 */
#define KCD_GSS_ERROR        -4   /* local failure (keytab...): 500 */


typedef struct kcd_gss_s  kcd_gss_t;     /* per worker process */

typedef struct {
    uint8_t    *data;                    /* malloc()ed, kcd_gss_free() */
    size_t      len;
} kcd_gss_buf_t;


/*
 * One per worker: keytab and the proxy's own principal; the proxy TGT is
 * kept in a private MEMORY: ccache.  Not blocking (no KDC call yet).
 */
int kcd_gss_init(kcd_gss_t **g, const char *keytab, const char *principal,
    char *err, size_t errlen);
void kcd_gss_destroy(kcd_gss_t *g);

/*
 * B17, secrets read like TLS keys: the master reads the keytab at
 * configuration time and copies every entry into an MIT MEMORY: keytab
 * that workers inherit through fork(), so they never open the file (root
 * 0600 is fine).  Fails (-1 with a message naming the path and the OS or
 * Kerberos error) when the file cannot be read or holds no key for the
 * principal.  kcd_gss_keytab_name() is what kcd_gss_init() takes:
 * "MEMORY:kcd/<n>:<path>", the path kept in it for log lines.  The
 * keytab lives until kcd_gss_keytab_free() (the configuration cycle's
 * pool cleanup: a reload reads the file again into a new one).
 */
typedef struct kcd_gss_keytab_s  kcd_gss_keytab_t;

int kcd_gss_keytab_load(kcd_gss_keytab_t **kt, const char *path,
    const char *principal, char *err, size_t errlen);
const char *kcd_gss_keytab_name(kcd_gss_keytab_t *kt);
void kcd_gss_keytab_free(kcd_gss_keytab_t *kt);

/*
 * Accept a client's Negotiate token (blocking: replay cache, no KDC).
 * On KCD_GSS_OK: *principal = "user@REALM" (malloc), *evidence = the
 * client's ticket exported as a credential (for S4U2Proxy without protocol
 * transition; len 0 if the ticket is not forwardable), out = optional
 * mutual-auth token.
 */
int kcd_gss_accept(kcd_gss_t *g, const uint8_t *token, size_t len,
    char **principal, kcd_gss_buf_t *evidence, kcd_gss_buf_t *out,
    char *err, size_t errlen);

/*
 * The same; with pac != NULL, on KCD_GSS_OK, *pac is the ticket's
 * PAC_LOGON_INFO (NDR, malloc; len 0 when the ticket has no PAC or MIT did
 * not verify its signatures).  B20.
 */
int kcd_gss_accept_pac(kcd_gss_t *g, const uint8_t *token, size_t len,
    char **principal, kcd_gss_buf_t *evidence, kcd_gss_buf_t *pac,
    kcd_gss_buf_t *out, char *err, size_t errlen);

/*
 * Blocking.  Get a service ticket for user to spn: with evidence (the
 * client's exported credential) S4U2Proxy only, else S4U2Self +
 * S4U2Proxy.  cred = the resulting credential, exported (gss_export_cred)
 * so any worker can import it; *endtime = ticket end (Unix time).
 */
int kcd_gss_delegate(kcd_gss_t *g, const char *user, const char *spn,
    const kcd_gss_buf_t *evidence, kcd_gss_buf_t *cred, time_t *endtime,
    char *err, size_t errlen);

/*
 * Upstream tokens (B7): "Authorization: Negotiate" bytes (before base64),
 * one fresh token per call: a SPNEGO NegTokenInit (RFC 4178, mechTypes =
 * krb5) around the krb5 mechanism's AP-REQ (RFC 4121 4.1), built by MIT's
 * krb5_mk_req_extended() from the service ticket that the exported
 * credential cred holds for spn: a new subkey, a sequence number, the
 * 0x8003 checksum without mutual authentication.  No KDC request.
 *
 * cb: NULL (no channel binding: Bnd is 16 zero bytes), or the 16-byte
 * channel binding hash that goes into the checksum's Bnd field (RFC 4121
 * 4.1.1.2: MD5 of the flattened gss_channel_bindings_struct; for B22 the
 * application data is "tls-server-end-point:" + the certificate hash of
 * RFC 5929 4.1, see kcd_ntlm_tls_cb_hash()).
 *
 * Errors: KCD_GSS_ERROR with a message (no ticket for spn in cred, the
 * ticket expired, a local krb5 failure).  token is malloc()ed:
 * kcd_gss_free().
 */

/* Thread-safe (a krb5 context per call): the thread pool's path. */
int kcd_gss_token(kcd_gss_t *g, const kcd_gss_buf_t *cred, const char *spn,
    const uint8_t *cb, kcd_gss_buf_t *token, char *err, size_t errlen);

/*
 * The same, keeping the imported credential and its ticket per worker
 * under (principal, SPN) with the cache's serial number of that
 * credential: one krb5_mk_req_extended() per call on the worker's
 * long-lived krb5 context.  Event loop only (not thread-safe).
 */
int kcd_gss_token_fast(kcd_gss_t *g, const char *principal,
    const kcd_gss_buf_t *cred, uint64_t serial, const char *spn,
    const uint8_t *cb, kcd_gss_buf_t *token, char *err, size_t errlen);

/*
 * The serial number of the credential this worker holds imported for
 * (principal, SPN), 0 if none; and a token from it.  Event loop only.
 */
uint64_t kcd_gss_local_serial(kcd_gss_t *g, const char *principal,
    const char *spn);
int kcd_gss_token_local(kcd_gss_t *g, const char *principal, const char *spn,
    const uint8_t *cb, kcd_gss_buf_t *token, char *err, size_t errlen);

/* Blocking.  Basic: AS exchange with the password. */
int kcd_gss_password(kcd_gss_t *g, const char *user, const char *password,
    char **principal, char *err, size_t errlen);

void kcd_gss_free(kcd_gss_buf_t *b);


#endif /* _NGX_HTTP_KCD_GSS_H_INCLUDED_ */
