/*
 * NTLM cryptography (MS-NLMP 3.3.2, 3.1.5.1.2) on OpenSSL 3 libcrypto.
 *
 * MD4 is our own (RFC 1320): in OpenSSL 3 it lives in the legacy provider,
 * and loading that provider into the default library context would change
 * what nginx's own TLS accepts.  RC4, needed only when KEY_EXCH is
 * negotiated (MS-NLMP 3.4.4.2, 3.2.5.1.2), comes from the legacy provider
 * loaded into a private OSSL_LIB_CTX that nothing else uses.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/x509.h>

#include <pthread.h>

#include <openssl/provider.h>

#include "ngx_http_kcd_names.h"
#include "ngx_http_kcd_ntlm.h"
#include "ngx_http_kcd_ntlm_crypto.h"


/*
 * Not in the header: the RFC 2744 / MS-NLMP 3.1.5.1.2 hashing of channel
 * binding application data, exported only so that the unit test can check
 * it against the published vector, whose certificate is not published.
 */
int kcd_ntlm_cb_hash_appdata(const uint8_t *appdata, size_t len,
    uint8_t out[16]);


/* MD4, RFC 1320 */

typedef struct {
    uint32_t        state[4];
    uint64_t        count;            /* bytes */
    uint8_t         buf[64];
} kcd_md4_ctx_t;


#define MD4_F(x, y, z)   (((x) & (y)) | (~(x) & (z)))
#define MD4_G(x, y, z)   (((x) & (y)) | ((x) & (z)) | ((y) & (z)))
#define MD4_H(x, y, z)   ((x) ^ (y) ^ (z))
#define MD4_ROTL(x, n)   (((x) << (n)) | ((x) >> (32 - (n))))

#define MD4_R1(a, b, c, d, k, s)                                              \
    a = MD4_ROTL(a + MD4_F(b, c, d) + x[k], s)
#define MD4_R2(a, b, c, d, k, s)                                              \
    a = MD4_ROTL(a + MD4_G(b, c, d) + x[k] + 0x5a827999, s)
#define MD4_R3(a, b, c, d, k, s)                                              \
    a = MD4_ROTL(a + MD4_H(b, c, d) + x[k] + 0x6ed9eba1, s)


static void
kcd_md4_block(kcd_md4_ctx_t *ctx, const uint8_t *p)
{
    int       i;
    uint32_t  a, b, c, d, x[16];

    for (i = 0; i < 16; i++) {
        x[i] = (uint32_t) p[i * 4]
               | (uint32_t) p[i * 4 + 1] << 8
               | (uint32_t) p[i * 4 + 2] << 16
               | (uint32_t) p[i * 4 + 3] << 24;
    }

    a = ctx->state[0];
    b = ctx->state[1];
    c = ctx->state[2];
    d = ctx->state[3];

    MD4_R1(a, b, c, d,  0,  3); MD4_R1(d, a, b, c,  1,  7);
    MD4_R1(c, d, a, b,  2, 11); MD4_R1(b, c, d, a,  3, 19);
    MD4_R1(a, b, c, d,  4,  3); MD4_R1(d, a, b, c,  5,  7);
    MD4_R1(c, d, a, b,  6, 11); MD4_R1(b, c, d, a,  7, 19);
    MD4_R1(a, b, c, d,  8,  3); MD4_R1(d, a, b, c,  9,  7);
    MD4_R1(c, d, a, b, 10, 11); MD4_R1(b, c, d, a, 11, 19);
    MD4_R1(a, b, c, d, 12,  3); MD4_R1(d, a, b, c, 13,  7);
    MD4_R1(c, d, a, b, 14, 11); MD4_R1(b, c, d, a, 15, 19);

    MD4_R2(a, b, c, d,  0,  3); MD4_R2(d, a, b, c,  4,  5);
    MD4_R2(c, d, a, b,  8,  9); MD4_R2(b, c, d, a, 12, 13);
    MD4_R2(a, b, c, d,  1,  3); MD4_R2(d, a, b, c,  5,  5);
    MD4_R2(c, d, a, b,  9,  9); MD4_R2(b, c, d, a, 13, 13);
    MD4_R2(a, b, c, d,  2,  3); MD4_R2(d, a, b, c,  6,  5);
    MD4_R2(c, d, a, b, 10,  9); MD4_R2(b, c, d, a, 14, 13);
    MD4_R2(a, b, c, d,  3,  3); MD4_R2(d, a, b, c,  7,  5);
    MD4_R2(c, d, a, b, 11,  9); MD4_R2(b, c, d, a, 15, 13);

    MD4_R3(a, b, c, d,  0,  3); MD4_R3(d, a, b, c,  8,  9);
    MD4_R3(c, d, a, b,  4, 11); MD4_R3(b, c, d, a, 12, 15);
    MD4_R3(a, b, c, d,  2,  3); MD4_R3(d, a, b, c, 10,  9);
    MD4_R3(c, d, a, b,  6, 11); MD4_R3(b, c, d, a, 14, 15);
    MD4_R3(a, b, c, d,  1,  3); MD4_R3(d, a, b, c,  9,  9);
    MD4_R3(c, d, a, b,  5, 11); MD4_R3(b, c, d, a, 13, 15);
    MD4_R3(a, b, c, d,  3,  3); MD4_R3(d, a, b, c, 11,  9);
    MD4_R3(c, d, a, b,  7, 11); MD4_R3(b, c, d, a, 15, 15);

    ctx->state[0] += a;
    ctx->state[1] += b;
    ctx->state[2] += c;
    ctx->state[3] += d;

    /* the block may be password material */
    OPENSSL_cleanse(x, sizeof(x));
}


static void
kcd_md4_init(kcd_md4_ctx_t *ctx)
{
    ctx->state[0] = 0x67452301;
    ctx->state[1] = 0xefcdab89;
    ctx->state[2] = 0x98badcfe;
    ctx->state[3] = 0x10325476;
    ctx->count = 0;
}


static void
kcd_md4_update(kcd_md4_ctx_t *ctx, const uint8_t *p, size_t len)
{
    size_t  used, n;

    used = (size_t) (ctx->count & 63);
    ctx->count += len;

    if (used) {
        n = 64 - used;

        if (len < n) {
            memcpy(ctx->buf + used, p, len);
            return;
        }

        memcpy(ctx->buf + used, p, n);
        kcd_md4_block(ctx, ctx->buf);
        p += n;
        len -= n;
    }

    while (len >= 64) {
        kcd_md4_block(ctx, p);
        p += 64;
        len -= 64;
    }

    if (len) {
        memcpy(ctx->buf, p, len);
    }
}


static void
kcd_md4_final(kcd_md4_ctx_t *ctx, uint8_t digest[16])
{
    int       i;
    size_t    used, pad;
    uint8_t   tail[72];
    uint64_t  bits;

    bits = ctx->count << 3;
    used = (size_t) (ctx->count & 63);
    pad = (used < 56) ? 56 - used : 120 - used;

    memset(tail, 0, sizeof(tail));
    tail[0] = 0x80;

    for (i = 0; i < 8; i++) {
        tail[pad + i] = (uint8_t) (bits >> (8 * i));
    }

    kcd_md4_update(ctx, tail, pad + 8);

    for (i = 0; i < 4; i++) {
        digest[i * 4] = (uint8_t) ctx->state[i];
        digest[i * 4 + 1] = (uint8_t) (ctx->state[i] >> 8);
        digest[i * 4 + 2] = (uint8_t) (ctx->state[i] >> 16);
        digest[i * 4 + 3] = (uint8_t) (ctx->state[i] >> 24);
    }

    OPENSSL_cleanse(ctx, sizeof(kcd_md4_ctx_t));
}


void
kcd_md4(const uint8_t *data, size_t len, uint8_t digest[16])
{
    kcd_md4_ctx_t  ctx;

    kcd_md4_init(&ctx);
    kcd_md4_update(&ctx, data, len);
    kcd_md4_final(&ctx, digest);
}


/*
 * Strict UTF-8 decoder (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF).  Returns the code point and advances *pos, or -1.
 */
long
kcd_ntlm_utf8_next(const uint8_t *s, size_t len, size_t *pos)
{
    size_t    i, n;
    uint8_t   c;
    uint32_t  cp, min;

    i = *pos;
    c = s[i];

    if (c < 0x80) {
        *pos = i + 1;
        return c;
    }

    if ((c & 0xe0) == 0xc0) {
        n = 1; cp = c & 0x1f; min = 0x80;

    } else if ((c & 0xf0) == 0xe0) {
        n = 2; cp = c & 0x0f; min = 0x800;

    } else if ((c & 0xf8) == 0xf0) {
        n = 3; cp = c & 0x07; min = 0x10000;

    } else {
        return -1;
    }

    if (len - i - 1 < n) {
        return -1;
    }

    for (i++; n; n--, i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return -1;
        }

        cp = (cp << 6) | (s[i] & 0x3f);
    }

    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return -1;
    }

    *pos = i;

    return cp;
}


int
kcd_ntlm_nt_hash(const char *password, size_t len, uint8_t hash[16])
{
    long           cp;
    size_t         pos;
    uint8_t        u[4];
    uint32_t       hi, lo;
    kcd_md4_ctx_t  ctx;

    /* streamed: no copy of the password in UTF-16 left in memory */

    kcd_md4_init(&ctx);

    pos = 0;

    while (pos < len) {
        cp = kcd_ntlm_utf8_next((const uint8_t *) password, len, &pos);

        if (cp < 0) {
            OPENSSL_cleanse(&ctx, sizeof(ctx));
            OPENSSL_cleanse(&cp, sizeof(cp));
            return -1;
        }

        if (cp < 0x10000) {
            u[0] = (uint8_t) cp;
            u[1] = (uint8_t) (cp >> 8);
            kcd_md4_update(&ctx, u, 2);

        } else {
            hi = 0xd800 + ((uint32_t) (cp - 0x10000) >> 10);
            lo = 0xdc00 + ((uint32_t) (cp - 0x10000) & 0x3ff);
            u[0] = (uint8_t) hi;
            u[1] = (uint8_t) (hi >> 8);
            u[2] = (uint8_t) lo;
            u[3] = (uint8_t) (lo >> 8);
            kcd_md4_update(&ctx, u, 4);
        }
    }

    kcd_md4_final(&ctx, hash);
    OPENSSL_cleanse(u, sizeof(u));
    OPENSSL_cleanse(&cp, sizeof(cp));

    return 0;
}


/*
 * HMAC-MD5 with the OpenSSL 3 EVP_MAC API (MD5 is in the default provider).
 *
 * Fetching the HMAC implementation and the MD5 digest by name takes the
 * provider store's locks and string compares: about half the cost of one
 * HMAC-MD5 of an NTLM message, four of which are computed per logon.  So
 * one prototype context with the digest set is fetched once per process
 * and every HMAC starts from a copy of it (EVP_MAC_CTX_dup: reads only,
 * safe from any thread); each copy is keyed, used and freed (the free
 * cleanses the key schedule) as before.  The prototype holds no key.
 */

static pthread_once_t   kcd_hmac_md5_once = PTHREAD_ONCE_INIT;
static EVP_MAC_CTX     *kcd_hmac_md5_proto;


static void
kcd_hmac_md5_load(void)
{
    EVP_MAC      *mac;
    OSSL_PARAM    params[2];
    EVP_MAC_CTX  *ctx;

    mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (mac == NULL) {
        return;
    }

    ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);

    if (ctx == NULL) {
        return;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "MD5", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (!EVP_MAC_CTX_set_params(ctx, params)) {
        EVP_MAC_CTX_free(ctx);
        return;
    }

    kcd_hmac_md5_proto = ctx;
}


static EVP_MAC_CTX *
kcd_hmac_md5_init(const uint8_t *key, size_t key_len)
{
    EVP_MAC_CTX  *ctx;

    (void) pthread_once(&kcd_hmac_md5_once, kcd_hmac_md5_load);

    if (kcd_hmac_md5_proto == NULL) {
        return NULL;
    }

    ctx = EVP_MAC_CTX_dup(kcd_hmac_md5_proto);
    if (ctx == NULL) {
        return NULL;
    }

    if (!EVP_MAC_init(ctx, key, key_len, NULL)) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }

    return ctx;
}


static int
kcd_hmac_md5_final(EVP_MAC_CTX *ctx, uint8_t out[16])
{
    int     rc;
    size_t  n;

    rc = EVP_MAC_final(ctx, out, &n, 16);
    EVP_MAC_CTX_free(ctx);

    return (rc && n == 16) ? 0 : -1;
}


static int
kcd_hmac_md5(const uint8_t *key, size_t key_len, const uint8_t *a,
    size_t a_len, const uint8_t *b, size_t b_len, uint8_t out[16])
{
    EVP_MAC_CTX  *ctx;

    ctx = kcd_hmac_md5_init(key, key_len);
    if (ctx == NULL) {
        return -1;
    }

    if (!EVP_MAC_update(ctx, a, a_len)
        || (b_len && !EVP_MAC_update(ctx, b, b_len)))
    {
        EVP_MAC_CTX_free(ctx);
        return -1;
    }

    return kcd_hmac_md5_final(ctx, out);
}


int
kcd_ntlm_ntowfv2(const uint8_t nt_hash[16], const uint8_t *user,
    size_t user_len, const uint8_t *domain, size_t domain_len,
    uint8_t ntowf[16])
{
    size_t        i, n;
    uint8_t       buf[64];
    uint16_t      c;
    EVP_MAC_CTX  *ctx;

    if (user_len & 1) {
        return -1;
    }

    ctx = kcd_hmac_md5_init(nt_hash, 16);
    if (ctx == NULL) {
        return -1;
    }

    /*
     * UPPER(user) in chunks: no allocation, nothing left on the heap.
     * Windows upper-cases one UTF-16 code unit at a time with Unicode
     * simple case mapping (ngx_http_kcd_names.c).
     */

    n = 0;

    for (i = 0; i < user_len; i += 2) {
        c = kcd_names_upper16((uint16_t) (user[i] | user[i + 1] << 8));
        buf[n++] = (uint8_t) c;
        buf[n++] = (uint8_t) (c >> 8);

        if (n == sizeof(buf) || i + 2 == user_len) {
            if (!EVP_MAC_update(ctx, buf, n)) {
                EVP_MAC_CTX_free(ctx);
                return -1;
            }

            n = 0;
        }
    }

    if (domain_len && !EVP_MAC_update(ctx, domain, domain_len)) {
        EVP_MAC_CTX_free(ctx);
        return -1;
    }

    OPENSSL_cleanse(buf, sizeof(buf));

    return kcd_hmac_md5_final(ctx, ntowf);
}


int
kcd_ntlm_verify_v2(const uint8_t nt_hash[16], const uint8_t *user,
    size_t user_len, const uint8_t *domain, size_t domain_len,
    const uint8_t server_challenge[8], const uint8_t *nt_response,
    size_t nt_len, uint8_t session_key[16])
{
    int      attempt, ok;
    size_t   dlen;
    uint8_t  ntowf[16], proof[16];

    /* NTProofStr[16] || temp, temp at least the 28-byte fixed part */
    if (nt_len < 16 + 28) {
        return -1;
    }

    ok = 0;
    dlen = domain_len;

    /* MS-NLMP 3.2.5.1.2: a second try with an empty domain name */

    for (attempt = 0; attempt < 2; attempt++) {
        if (attempt == 1) {
            if (domain_len == 0) {
                break;
            }

            dlen = 0;
        }

        if (kcd_ntlm_ntowfv2(nt_hash, user, user_len, domain, dlen, ntowf)
            != 0)
        {
            break;
        }

        if (kcd_hmac_md5(ntowf, 16, server_challenge, 8, nt_response + 16,
                         nt_len - 16, proof)
            != 0)
        {
            break;
        }

        if (CRYPTO_memcmp(proof, nt_response, 16) == 0) {
            ok = 1;
            break;
        }
    }

    if (ok) {
        /* SessionBaseKey = HMAC-MD5(NTOWFv2, NTProofStr) */
        ok = (kcd_hmac_md5(ntowf, 16, proof, 16, NULL, 0, session_key) == 0);
    }

    OPENSSL_cleanse(ntowf, sizeof(ntowf));
    OPENSSL_cleanse(proof, sizeof(proof));

    return ok ? 0 : -1;
}


int
kcd_ntlm_verify_mic(const uint8_t session_key[16],
    const uint8_t *negotiate, size_t negotiate_len,
    const uint8_t *challenge, size_t challenge_len,
    const uint8_t *authenticate, size_t authenticate_len,
    const uint8_t mic[16])
{
    int           rc;
    uint8_t       zero[16], calc[16];
    EVP_MAC_CTX  *ctx;

    if (authenticate_len < 88) {
        return -1;
    }

    ctx = kcd_hmac_md5_init(session_key, 16);
    if (ctx == NULL) {
        return -1;
    }

    memset(zero, 0, sizeof(zero));

    /* the MIC field (bytes 72..87) counts as zeros */

    if (!EVP_MAC_update(ctx, negotiate, negotiate_len)
        || !EVP_MAC_update(ctx, challenge, challenge_len)
        || !EVP_MAC_update(ctx, authenticate, 72)
        || !EVP_MAC_update(ctx, zero, 16)
        || !EVP_MAC_update(ctx, authenticate + 88, authenticate_len - 88))
    {
        EVP_MAC_CTX_free(ctx);
        return -1;
    }

    if (kcd_hmac_md5_final(ctx, calc) != 0) {
        return -1;
    }

    rc = CRYPTO_memcmp(calc, mic, 16) == 0 ? 0 : -1;

    OPENSSL_cleanse(calc, sizeof(calc));

    return rc;
}


/*
 * gss_channel_bindings_struct flattened as SSPI hashes it (RFC 2744 3.11,
 * MS-NLMP 3.1.5.1.2): initiator addrtype, initiator address length,
 * acceptor addrtype, acceptor address length (all u32 LE zero: no
 * addresses), application data length (u32 LE), application data.
 */
int
kcd_ntlm_cb_hash_appdata(const uint8_t *appdata, size_t len,
    uint8_t out[16])
{
    int          rc;
    uint8_t      hdr[20];
    unsigned     n;
    EVP_MD_CTX  *md;

    if (len > 0xffffffff) {
        return -1;
    }

    memset(hdr, 0, 16);
    hdr[16] = (uint8_t) len;
    hdr[17] = (uint8_t) (len >> 8);
    hdr[18] = (uint8_t) (len >> 16);
    hdr[19] = (uint8_t) (len >> 24);

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return -1;
    }

    rc = EVP_DigestInit_ex(md, EVP_md5(), NULL)
         && EVP_DigestUpdate(md, hdr, sizeof(hdr))
         && EVP_DigestUpdate(md, appdata, len)
         && EVP_DigestFinal_ex(md, out, &n)
         && n == 16;

    EVP_MD_CTX_free(md);

    return rc ? 0 : -1;
}


int
kcd_ntlm_tls_cb_hash(const uint8_t *cert_der, size_t cert_len,
    uint8_t out[16])
{
    int                   mdnid, pknid, secbits, rc;
    X509                 *x;
    size_t                prefix;
    uint32_t              flags;
    unsigned              hlen;
    const EVP_MD         *md;
    const unsigned char  *p;
    uint8_t               appdata[21 + EVP_MAX_MD_SIZE];

    static const char     tag[] = "tls-server-end-point:";

    if (cert_der == NULL || cert_len == 0 || cert_len > 0x7fffffff) {
        return -1;
    }

    p = cert_der;
    x = d2i_X509(NULL, &p, (long) cert_len);

    if (x == NULL) {
        return -1;
    }

    /* exactly one certificate: we hash the bytes we parsed */
    if ((size_t) (p - cert_der) != cert_len) {
        X509_free(x);
        return -1;
    }

    rc = X509_get_signature_info(x, &mdnid, &pknid, &secbits, &flags);
    X509_free(x);

    if (!rc) {
        return -1;
    }

    /*
     * RFC 5929 4.1: MD5 and SHA-1 become SHA-256; a signature with no single
     * hash (Ed25519, ...) has no tls-server-end-point binding.
     */
    if (mdnid == NID_md5 || mdnid == NID_sha1 || mdnid == NID_md5_sha1) {
        mdnid = NID_sha256;
    }

    if (mdnid == NID_undef) {
        return -1;
    }

    md = EVP_get_digestbynid(mdnid);
    if (md == NULL) {
        return -1;
    }

    prefix = sizeof(tag) - 1;
    memcpy(appdata, tag, prefix);

    if (!EVP_Digest(cert_der, cert_len, appdata + prefix, &hlen, md, NULL)) {
        return -1;
    }

    return kcd_ntlm_cb_hash_appdata(appdata, prefix + hlen, out);
}


int
kcd_ntlm_memcmp_ct(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0 ? 0 : 1;
}


void
kcd_ntlm_wipe(void *p, size_t len)
{
    OPENSSL_cleanse(p, len);
}


/* RC4 from the legacy provider, in a library context of our own */

static OSSL_LIB_CTX    *kcd_rc4_libctx;
static EVP_CIPHER      *kcd_rc4_cipher;
static pthread_once_t   kcd_rc4_once = PTHREAD_ONCE_INIT;


static void
kcd_rc4_load(void)
{
    OSSL_LIB_CTX  *lib;

    lib = OSSL_LIB_CTX_new();
    if (lib == NULL) {
        return;
    }

    if (OSSL_PROVIDER_load(lib, "legacy") == NULL
        || OSSL_PROVIDER_load(lib, "default") == NULL)
    {
        OSSL_LIB_CTX_free(lib);
        return;
    }

    kcd_rc4_cipher = EVP_CIPHER_fetch(lib, "RC4", NULL);
    if (kcd_rc4_cipher == NULL) {
        OSSL_LIB_CTX_free(lib);
        return;
    }

    kcd_rc4_libctx = lib;
}


int
kcd_ntlm_rc4_init(void)
{
    (void) pthread_once(&kcd_rc4_once, kcd_rc4_load);

    return kcd_rc4_cipher == NULL ? -1 : 0;
}


static EVP_CIPHER_CTX *
kcd_rc4_new(const uint8_t *key, size_t key_len)
{
    EVP_CIPHER_CTX  *c;

    if (kcd_ntlm_rc4_init() != 0) {
        return NULL;
    }

    c = EVP_CIPHER_CTX_new();
    if (c == NULL) {
        return NULL;
    }

    if (!EVP_EncryptInit_ex2(c, kcd_rc4_cipher, NULL, NULL, NULL)
        || !EVP_CIPHER_CTX_set_key_length(c, (int) key_len)
        || !EVP_EncryptInit_ex2(c, NULL, key, NULL, NULL))
    {
        EVP_CIPHER_CTX_free(c);
        return NULL;
    }

    return c;
}


static int
kcd_rc4_update(EVP_CIPHER_CTX *c, uint8_t *data, size_t len)
{
    int  n;

    if (len > 0x7fffffff || !EVP_EncryptUpdate(c, data, &n, data, (int) len)
        || (size_t) n != len)
    {
        return -1;
    }

    return 0;
}


int
kcd_ntlm_exported_session_key(uint32_t flags,
    const uint8_t key_exchange_key[16], const uint8_t *encrypted,
    size_t encrypted_len, uint8_t exported[16])
{
    int              rc;
    EVP_CIPHER_CTX  *c;

    if (!(flags & KCD_NTLM_NEGOTIATE_KEY_EXCH)) {
        memcpy(exported, key_exchange_key, 16);
        return 0;
    }

    /* MS-NLMP 3.2.5.1.2: RC4K(KeyExchangeKey, EncryptedRandomSessionKey) */

    if (encrypted == NULL || encrypted_len != 16) {
        return -1;
    }

    c = kcd_rc4_new(key_exchange_key, 16);
    if (c == NULL) {
        return -1;
    }

    memcpy(exported, encrypted, 16);
    rc = kcd_rc4_update(c, exported, 16);
    EVP_CIPHER_CTX_free(c);

    if (rc != 0) {
        kcd_ntlm_wipe(exported, 16);
    }

    return rc;
}


static int
kcd_md5_key(const uint8_t *key, size_t key_len, const char *magic,
    uint8_t out[16])
{
    int          ok;
    EVP_MD_CTX  *md;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return -1;
    }

    /* the magic constants include their terminating NUL (MS-NLMP 3.4.5) */

    ok = EVP_DigestInit_ex(md, EVP_md5(), NULL)
         && EVP_DigestUpdate(md, key, key_len)
         && EVP_DigestUpdate(md, magic, strlen(magic) + 1)
         && EVP_DigestFinal_ex(md, out, NULL);

    EVP_MD_CTX_free(md);

    return ok ? 0 : -1;
}


static int
kcd_ntlm_sec_dir_init(kcd_ntlm_sec_dir_t *d, uint32_t flags,
    const uint8_t exported[16], const char *sign_magic,
    const char *seal_magic)
{
    size_t   seal_len;
    uint8_t  seal_key[16];

    d->seq = 0;
    d->rc4 = NULL;

    /* SIGNKEY, MS-NLMP 3.4.5.2 */

    if (kcd_md5_key(exported, 16, sign_magic, d->sign_key) != 0) {
        return -1;
    }

    if (!(flags & KCD_NTLM_NEGOTIATE_KEY_EXCH)) {
        return 0;
    }

    /* SEALKEY, MS-NLMP 3.4.5.3: 128, 56 or 40 bits of the session key */

    if (flags & KCD_NTLM_NEGOTIATE_128) {
        seal_len = 16;

    } else if (flags & KCD_NTLM_NEGOTIATE_56) {
        seal_len = 7;

    } else {
        seal_len = 5;
    }

    if (kcd_md5_key(exported, seal_len, seal_magic, seal_key) != 0) {
        return -1;
    }

    d->rc4 = kcd_rc4_new(seal_key, 16);
    kcd_ntlm_wipe(seal_key, sizeof(seal_key));

    return d->rc4 == NULL ? -1 : 0;
}


int
kcd_ntlm_sec_init(kcd_ntlm_sec_t *sec, uint32_t flags,
    const uint8_t exported[16])
{
    memset(sec, 0, sizeof(kcd_ntlm_sec_t));

    /* NTLMv2 session security needs extended session security */

    if (!(flags & KCD_NTLM_NEGOTIATE_ESS)) {
        return -1;
    }

    sec->flags = flags;

    if (kcd_ntlm_sec_dir_init(&sec->client, flags, exported,
            "session key to client-to-server signing key magic constant",
            "session key to client-to-server sealing key magic constant")
        != 0
        || kcd_ntlm_sec_dir_init(&sec->server, flags, exported,
            "session key to server-to-client signing key magic constant",
            "session key to server-to-client sealing key magic constant")
        != 0)
    {
        kcd_ntlm_sec_free(sec);
        return -1;
    }

    return 0;
}


void
kcd_ntlm_sec_free(kcd_ntlm_sec_t *sec)
{
    EVP_CIPHER_CTX_free(sec->client.rc4);
    EVP_CIPHER_CTX_free(sec->server.rc4);
    kcd_ntlm_wipe(sec, sizeof(kcd_ntlm_sec_t));
}


/* MS-NLMP 3.4.4.2: MAC with extended session security */
static int
kcd_ntlm_mac(kcd_ntlm_sec_dir_t *d, const uint8_t *msg, size_t len,
    uint8_t sig[16])
{
    uint8_t       seq[4], mac[16];
    EVP_MAC_CTX  *ctx;

    seq[0] = (uint8_t) d->seq;
    seq[1] = (uint8_t) (d->seq >> 8);
    seq[2] = (uint8_t) (d->seq >> 16);
    seq[3] = (uint8_t) (d->seq >> 24);

    ctx = kcd_hmac_md5_init(d->sign_key, 16);
    if (ctx == NULL) {
        return -1;
    }

    if (!EVP_MAC_update(ctx, seq, 4) || !EVP_MAC_update(ctx, msg, len)) {
        EVP_MAC_CTX_free(ctx);
        return -1;
    }

    if (kcd_hmac_md5_final(ctx, mac) != 0) {
        return -1;
    }

    if (d->rc4 != NULL && kcd_rc4_update(d->rc4, mac, 8) != 0) {
        return -1;
    }

    sig[0] = 1;                       /* Version */
    sig[1] = 0;
    sig[2] = 0;
    sig[3] = 0;
    memcpy(sig + 4, mac, 8);
    memcpy(sig + 12, seq, 4);

    d->seq++;

    return 0;
}


int
kcd_ntlm_sec_sign(kcd_ntlm_sec_t *sec, const uint8_t *msg, size_t len,
    uint8_t sig[16])
{
    return kcd_ntlm_mac(&sec->server, msg, len, sig);
}


int
kcd_ntlm_sec_verify(kcd_ntlm_sec_t *sec, const uint8_t *msg, size_t len,
    const uint8_t *sig, size_t sig_len)
{
    uint8_t  calc[16];

    if (sig == NULL || sig_len != 16) {
        return -1;
    }

    if (kcd_ntlm_mac(&sec->client, msg, len, calc) != 0) {
        return -1;
    }

    return CRYPTO_memcmp(calc, sig, 16) == 0 ? 0 : -1;
}


/* test-only: RC4 of the client-to-server sealing handle (MS-NLMP 4.2.4.4) */
int kcd_ntlm_sec_seal_client(kcd_ntlm_sec_t *sec, uint8_t *data, size_t len);

int
kcd_ntlm_sec_seal_client(kcd_ntlm_sec_t *sec, uint8_t *data, size_t len)
{
    if (sec->client.rc4 == NULL) {
        return -1;
    }

    return kcd_rc4_update(sec->client.rc4, data, len);
}
