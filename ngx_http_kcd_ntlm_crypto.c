/*
 * NTLM cryptography (MS-NLMP 3.3.2, 3.1.5.1.2) on OpenSSL 3 libcrypto.
 *
 * MD4 is our own (RFC 1320): in OpenSSL 3 it lives in the legacy provider,
 * and loading that provider into the default library context would change
 * what nginx's own TLS accepts.
 */

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/x509.h>

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


/* HMAC-MD5 with the OpenSSL 3 EVP_MAC API (MD5 is in the default provider) */

static EVP_MAC_CTX *
kcd_hmac_md5_init(const uint8_t *key, size_t key_len)
{
    EVP_MAC      *mac;
    OSSL_PARAM    params[2];
    EVP_MAC_CTX  *ctx;

    mac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
    if (mac == NULL) {
        return NULL;
    }

    ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);

    if (ctx == NULL) {
        return NULL;
    }

    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *) "MD5", 0);
    params[1] = OSSL_PARAM_construct_end();

    if (!EVP_MAC_init(ctx, key, key_len, params)) {
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


/*
 * Windows upper-cases the user name with its NLS case table, one UTF-16
 * code unit at a time.  We cover the ranges whose mapping is a simple 1:1
 * shift and is the same in Windows and Unicode: ASCII, Latin-1, Latin
 * Extended-A, basic Greek and Cyrillic.  Other scripts stay as sent: a user
 * whose name needs other mappings must type it in upper case (or the
 * domain controller, via winbind, does the check).
 */
static uint16_t
kcd_upcase(uint16_t c)
{
    if (c < 0x80) {
        return (c >= 'a' && c <= 'z') ? c - 0x20 : c;
    }

    if (c >= 0xe0 && c <= 0xfe && c != 0xf7) {
        return c - 0x20;
    }

    if (c == 0xff) {
        return 0x178;
    }

    if (c >= 0x100 && c <= 0x17f) {
        if ((c >= 0x100 && c <= 0x12f)
            || (c >= 0x132 && c <= 0x137)
            || (c >= 0x14a && c <= 0x177))
        {
            return (c & 1) ? c - 1 : c;
        }

        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) {
            return (c & 1) ? c : c - 1;
        }

        return c;
    }

    if (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) {
        return c - 0x20;
    }

    if (c >= 0x430 && c <= 0x44f) {
        return c - 0x20;
    }

    if (c >= 0x450 && c <= 0x45f) {
        return c - 0x50;
    }

    return c;
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

    /* UPPER(user) in chunks: no allocation, nothing left on the heap */

    n = 0;

    for (i = 0; i < user_len; i += 2) {
        c = kcd_upcase((uint16_t) (user[i] | user[i + 1] << 8));
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
