/*
 * A minimal NTLMv2 client, see kcd_ntlm_client.h.
 */

#include <string.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/params.h>

#include "ngx_http_kcd_ntlm.h"
#include "ngx_http_kcd_ntlm_crypto.h"
#include "kcd_ntlm_client.h"


#define KCD_NTLMC_HDR      88          /* with Version and MIC */
#define KCD_NTLMC_MIC_OFF  72


static const uint8_t  kcd_ntlmc_sig[8] = "NTLMSSP";
static const uint8_t  kcd_ntlmc_version[8] = {
    10, 0, 0x61, 0x4a, 0, 0, 0, 15      /* 10.0.19041, revision 15 */
};


static uint16_t
kcd_ntlmc_get16(const uint8_t *p)
{
    return (uint16_t) (p[0] | p[1] << 8);
}


static uint32_t
kcd_ntlmc_get32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8
           | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}


static void
kcd_ntlmc_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
}


static void
kcd_ntlmc_put32(uint8_t *p, uint32_t v)
{
    kcd_ntlmc_put16(p, (uint16_t) v);
    kcd_ntlmc_put16(p + 2, (uint16_t) (v >> 16));
}


/* HMAC-MD5 over up to three pieces (NULL pieces skipped); 0 or -1 */
static int
kcd_ntlmc_hmac(const uint8_t key[16], const uint8_t *a, size_t alen,
    const uint8_t *b, size_t blen, const uint8_t *c, size_t clen,
    uint8_t out[16])
{
    int                 ok;
    size_t              n;
    EVP_MAC_CTX        *ctx;
    OSSL_PARAM          params[2];
    static EVP_MAC     *mac;

    if (mac == NULL) {
        mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        if (mac == NULL) {
            return -1;
        }
    }

    ctx = EVP_MAC_CTX_new(mac);
    if (ctx == NULL) {
        return -1;
    }

    params[0] = OSSL_PARAM_construct_utf8_string("digest", (char *) "MD5", 0);
    params[1] = OSSL_PARAM_construct_end();

    ok = EVP_MAC_init(ctx, key, 16, params)
         && (a == NULL || EVP_MAC_update(ctx, a, alen))
         && (b == NULL || EVP_MAC_update(ctx, b, blen))
         && (c == NULL || EVP_MAC_update(ctx, c, clen))
         && EVP_MAC_final(ctx, out, &n, 16);

    EVP_MAC_CTX_free(ctx);

    return ok ? 0 : -1;
}


long
kcd_ntlmc_negotiate(uint8_t *out, size_t outlen)
{
    uint32_t  flags;

    if (outlen < 40) {
        return -1;
    }

    flags = KCD_NTLM_NEGOTIATE_UNICODE | KCD_NTLM_NEGOTIATE_OEM
            | KCD_NTLM_REQUEST_TARGET | KCD_NTLM_NEGOTIATE_NTLM
            | KCD_NTLM_NEGOTIATE_ALWAYS_SIGN | KCD_NTLM_NEGOTIATE_ESS
            | KCD_NTLM_NEGOTIATE_VERSION | KCD_NTLM_NEGOTIATE_128
            | KCD_NTLM_NEGOTIATE_56;

    memset(out, 0, 40);
    memcpy(out, kcd_ntlmc_sig, 8);
    kcd_ntlmc_put32(out + 8, 1);
    kcd_ntlmc_put32(out + 12, flags);
    kcd_ntlmc_put32(out + 20, 40);
    kcd_ntlmc_put32(out + 28, 40);
    memcpy(out + 32, kcd_ntlmc_version, 8);

    return 40;
}


/* payload field: length, max length, offset; data copied at *pos */
static void
kcd_ntlmc_field(uint8_t *msg, size_t at, size_t *pos, const uint8_t *data,
    size_t len)
{
    kcd_ntlmc_put16(msg + at, (uint16_t) len);
    kcd_ntlmc_put16(msg + at + 2, (uint16_t) len);
    kcd_ntlmc_put32(msg + at + 4, (uint32_t) *pos);

    if (len) {
        memcpy(msg + *pos, data, len);
    }

    *pos += len;
}


long
kcd_ntlmc_authenticate(const kcd_ntlmc_params_t *p,
    const uint8_t *type1, size_t type1_len,
    const uint8_t *type2, size_t type2_len,
    uint8_t *out, size_t outlen)
{
    size_t          ti_len, ti_off, need, pos, blob_len, nt_off, av;
    uint8_t         ntowf[16], key[16], mic[16], lm[24], *blob;
    uint32_t        flags;
    uint16_t        id, alen;
    const uint8_t  *ti, *ts;

    if (type2_len < 48 || memcmp(type2, kcd_ntlmc_sig, 8) != 0
        || kcd_ntlmc_get32(type2 + 8) != 2)
    {
        return -1;
    }

    ti_len = kcd_ntlmc_get16(type2 + 40);
    ti_off = kcd_ntlmc_get32(type2 + 44);

    if (ti_off > type2_len || type2_len - ti_off < ti_len) {
        return -1;
    }

    ti = type2 + ti_off;

    /* the target info up to (without) its EOL, and the timestamp in it */

    ts = NULL;

    for (av = 0; ; av += 4 + (size_t) alen) {
        if (ti_len - av < 4) {
            return -1;
        }

        id = kcd_ntlmc_get16(ti + av);
        alen = kcd_ntlmc_get16(ti + av + 2);

        if (ti_len - av - 4 < alen) {
            return -1;
        }

        if (id == KCD_NTLM_AV_EOL) {
            break;
        }

        if (id == KCD_NTLM_AV_TIMESTAMP && alen == 8) {
            ts = ti + av + 4;
        }
    }

    /* blob: 28 fixed bytes, pairs, ours, EOL, 4 zero bytes (as Windows) */

    blob_len = 28 + av + (p->mic ? 8 : 0) + (p->cb_hash ? 20 : 0)
               + (p->target_name ? 4 + p->target_name_len : 0)
               + p->extra_av_len + 4 + 4;

    need = KCD_NTLMC_HDR + p->domain_len + p->user_len
           + p->workstation_len + 24 + 16 + blob_len;

    if (need > outlen || need > 0xffff
        || p->target_name_len > 0xffff || p->extra_av_len > 0xffff)
    {
        return -1;
    }

    flags = kcd_ntlmc_get32(type2 + 20)
            & (KCD_NTLM_NEGOTIATE_UNICODE | KCD_NTLM_REQUEST_TARGET
               | KCD_NTLM_NEGOTIATE_NTLM | KCD_NTLM_NEGOTIATE_ALWAYS_SIGN
               | KCD_NTLM_NEGOTIATE_ESS | KCD_NTLM_NEGOTIATE_TARGET_INFO
               | KCD_NTLM_NEGOTIATE_VERSION | KCD_NTLM_NEGOTIATE_128
               | KCD_NTLM_NEGOTIATE_56);
    flags |= KCD_NTLM_NEGOTIATE_UNICODE;

    memset(out, 0, KCD_NTLMC_HDR);
    memcpy(out, kcd_ntlmc_sig, 8);
    kcd_ntlmc_put32(out + 8, 3);
    kcd_ntlmc_put32(out + 60, flags);
    memcpy(out + 64, kcd_ntlmc_version, 8);

    pos = KCD_NTLMC_HDR;

    kcd_ntlmc_field(out, 28, &pos, p->domain, p->domain_len);
    kcd_ntlmc_field(out, 36, &pos, p->user, p->user_len);
    kcd_ntlmc_field(out, 44, &pos, p->workstation, p->workstation_len);

    /* with a timestamp in the challenge the LM response is Z(24) */
    memset(lm, 0, sizeof(lm));
    kcd_ntlmc_field(out, 12, &pos, lm, sizeof(lm));

    nt_off = pos;
    kcd_ntlmc_put16(out + 20, (uint16_t) (16 + blob_len));
    kcd_ntlmc_put16(out + 22, (uint16_t) (16 + blob_len));
    kcd_ntlmc_put32(out + 24, (uint32_t) nt_off);

    blob = out + nt_off + 16;
    memset(blob, 0, 28);
    blob[0] = 1;
    blob[1] = 1;

    if (ts) {
        memcpy(blob + 8, ts, 8);
    }

    memcpy(blob + 16, p->client_challenge, 8);
    pos = 28;

    memcpy(blob + pos, ti, av);
    pos += av;

    if (p->mic) {
        kcd_ntlmc_put16(blob + pos, KCD_NTLM_AV_FLAGS);
        kcd_ntlmc_put16(blob + pos + 2, 4);
        kcd_ntlmc_put32(blob + pos + 4, KCD_NTLM_AV_FLAG_MIC);
        pos += 8;
    }

    if (p->cb_hash) {
        kcd_ntlmc_put16(blob + pos, KCD_NTLM_AV_CHANNEL_BINDINGS);
        kcd_ntlmc_put16(blob + pos + 2, 16);
        memcpy(blob + pos + 4, p->cb_hash, 16);
        pos += 20;
    }

    if (p->target_name) {
        kcd_ntlmc_put16(blob + pos, KCD_NTLM_AV_TARGET_NAME);
        kcd_ntlmc_put16(blob + pos + 2, (uint16_t) p->target_name_len);
        if (p->target_name_len) {
            memcpy(blob + pos + 4, p->target_name, p->target_name_len);
        }
        pos += 4 + p->target_name_len;
    }

    if (p->extra_av_len) {
        memcpy(blob + pos, p->extra_av, p->extra_av_len);
        pos += p->extra_av_len;
    }

    memset(blob + pos, 0, 8);    /* MsvAvEOL and 4 zero bytes */

    /* NTProofStr = HMAC-MD5(NTOWFv2, server challenge || blob) */

    if (kcd_ntlm_ntowfv2(p->nt_hash, p->user, p->user_len, p->domain,
                         p->domain_len, ntowf)
        != 0
        || kcd_ntlmc_hmac(ntowf, type2 + 24, 8, blob, blob_len, NULL, 0,
                          out + nt_off) != 0
        || kcd_ntlmc_hmac(ntowf, out + nt_off, 16, NULL, 0, NULL, 0, key)
           != 0)
    {
        return -1;
    }

    /* session key field: empty, at the end */
    pos = nt_off + 16 + blob_len;
    kcd_ntlmc_field(out, 52, &pos, NULL, 0);

    /* MIC = HMAC-MD5(key, Type1 || Type2 || Type3 with a zero MIC) */

    if (p->mic) {
        if (kcd_ntlmc_hmac(key, type1, type1_len, type2, type2_len, out, pos,
                           mic)
            != 0)
        {
            return -1;
        }

        memcpy(out + KCD_NTLMC_MIC_OFF, mic, 16);
    }

    kcd_ntlm_wipe(ntowf, sizeof(ntowf));
    kcd_ntlm_wipe(key, sizeof(key));

    return (long) pos;
}
