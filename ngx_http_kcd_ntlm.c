/*
 * NTLM message codec (MS-NLMP 2.2).  Every length and offset comes from the
 * client: they are checked in 64-bit arithmetic against the message size
 * before any byte is read.
 */

#include <string.h>
#include <time.h>

#include "ngx_http_kcd_ntlm.h"
#include "ngx_http_kcd_ntlm_crypto.h"


#define KCD_NTLM_AUTH_HDR        64    /* AUTHENTICATE up to NegotiateFlags */
#define KCD_NTLM_AUTH_MIC_OFF    72
#define KCD_NTLM_AUTH_HDR_MIC    88    /* ... with Version and MIC */
#define KCD_NTLM_CHAL_HDR        56
#define KCD_NTLM_BLOB_FIXED      28    /* NTLMv2_CLIENT_CHALLENGE before AV */

/* FILETIME of 1970-01-01 */
#define KCD_NTLM_EPOCH_DELTA     11644473600ULL


static const uint8_t  kcd_ntlm_sig[8] = "NTLMSSP";

/*
 * Windows 7 SP1 (6.1.7601), NTLMSSP_REVISION_W2K3: older clients compute
 * the MIC wrong when the CHALLENGE carries no version.
 */
static const uint8_t  kcd_ntlm_version[8] = {
    6, 1, 0xb1, 0x1d, 0, 0, 0, 15
};


typedef struct {
    const uint8_t  *data;
    uint32_t        len;
    uint32_t        off;
} kcd_ntlm_field_t;


static uint16_t
kcd_get16(const uint8_t *p)
{
    return (uint16_t) (p[0] | p[1] << 8);
}


static uint32_t
kcd_get32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8
           | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}


static uint64_t
kcd_get64(const uint8_t *p)
{
    return (uint64_t) kcd_get32(p) | (uint64_t) kcd_get32(p + 4) << 32;
}


static void
kcd_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
}


static void
kcd_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t) v;
    p[1] = (uint8_t) (v >> 8);
    p[2] = (uint8_t) (v >> 16);
    p[3] = (uint8_t) (v >> 24);
}


static void
kcd_put64(uint8_t *p, uint64_t v)
{
    kcd_put32(p, (uint32_t) v);
    kcd_put32(p + 4, (uint32_t) (v >> 32));
}


/*
 * A security buffer (len u16, maxlen u16, offset u32).  Empty fields may
 * carry any offset (clients put 0 or the end of the header there).
 */
static int
kcd_ntlm_field(const uint8_t *msg, size_t len, size_t at, size_t hdr,
    kcd_ntlm_field_t *f)
{
    f->len = kcd_get16(msg + at);
    f->off = kcd_get32(msg + at + 4);
    f->data = NULL;

    if (f->len == 0) {
        return 0;
    }

    if (f->off < hdr || (uint64_t) f->off + f->len > (uint64_t) len) {
        return -1;
    }

    f->data = msg + f->off;

    return 0;
}


int
kcd_ntlm_message_type(const uint8_t *msg, size_t len)
{
    uint32_t  type;

    if (msg == NULL || len < 12 || len > KCD_NTLM_MAX_MSG
        || memcmp(msg, kcd_ntlm_sig, 8) != 0)
    {
        return -1;
    }

    type = kcd_get32(msg + 8);

    return (type >= 1 && type <= 3) ? (int) type : -1;
}


int
kcd_ntlm_parse_negotiate(const uint8_t *msg, size_t len,
    kcd_ntlm_negotiate_t *neg, const char **err)
{
    uint32_t          flags;
    kcd_ntlm_field_t  f;

    /* 16 bytes: old clients omit the (unused) domain/workstation fields */

    if (len < 16 || kcd_ntlm_message_type(msg, len) != 1) {
        *err = "not an NTLM NEGOTIATE message";
        return KCD_NTLM_ERROR;
    }

    flags = kcd_get32(msg + 12);

    /* NEGOTIATE_OEM_DOMAIN_SUPPLIED, NEGOTIATE_OEM_WORKSTATION_SUPPLIED */

    if (flags & 0x00003000) {
        if (len < 32
            || ((flags & 0x00001000)
                && kcd_ntlm_field(msg, len, 16, 32, &f) != 0)
            || ((flags & 0x00002000)
                && kcd_ntlm_field(msg, len, 24, 32, &f) != 0))
        {
            *err = "NEGOTIATE field out of bounds";
            return KCD_NTLM_ERROR;
        }
    }

    /*
     * curl's NEGOTIATE asks for OEM only, yet it follows the UNICODE our
     * CHALLENGE always sets; an AUTHENTICATE in OEM strings is refused.
     */

    neg->flags = flags;

    return KCD_NTLM_OK;
}


/* returns the UTF-16LE length, -1 on bad UTF-8 or when it exceeds max */
static long
kcd_ntlm_put_utf16(const char *s, uint8_t *out, size_t max)
{
    return kcd_ntlm_utf8_to_utf16(s, strlen(s), out, max);
}


long
kcd_ntlm_build_challenge(const kcd_ntlm_challenge_params_t *p,
    uint8_t *out, size_t outlen)
{
    int          i;
    long         n;
    size_t       pos, ti_start, ti_len, name_len;
    uint16_t     ids[4];
    uint32_t     flags;
    const char  *vals[4];

    if (p->nb_domain == NULL || p->nb_computer == NULL
        || outlen < KCD_NTLM_CHAL_HDR || outlen > KCD_NTLM_MAX_MSG)
    {
        return -1;
    }

    /*
     * What every client needs, plus what the client asked for and MS-NLMP
     * lets a server grant: SIGN (a SPNEGO client signs mechListMIC with it;
     * gss-ntlmssp aborts without it when integrity was requested), and
     * KEY_EXCH only when configured (it needs RC4).  Never LM_KEY,
     * DATAGRAM, ANONYMOUS or SEAL: nothing is ever encrypted over HTTP.
     */
    flags = KCD_NTLM_NEGOTIATE_NTLM | KCD_NTLM_NEGOTIATE_UNICODE
            | KCD_NTLM_NEGOTIATE_TARGET_INFO | KCD_NTLM_REQUEST_TARGET
            | KCD_NTLM_TARGET_TYPE_DOMAIN | KCD_NTLM_NEGOTIATE_VERSION;

    flags |= p->client_flags
             & (KCD_NTLM_NEGOTIATE_ESS | KCD_NTLM_NEGOTIATE_ALWAYS_SIGN
                | KCD_NTLM_NEGOTIATE_128 | KCD_NTLM_NEGOTIATE_56
                | KCD_NTLM_NEGOTIATE_SIGN);

    if (p->key_exch) {
        flags |= p->client_flags & KCD_NTLM_NEGOTIATE_KEY_EXCH;
    }

    memset(out, 0, KCD_NTLM_CHAL_HDR);
    memcpy(out, kcd_ntlm_sig, 8);
    kcd_put32(out + 8, 2);
    kcd_put32(out + 20, flags);
    memcpy(out + 24, p->challenge, 8);
    memcpy(out + 48, kcd_ntlm_version, 8);

    pos = KCD_NTLM_CHAL_HDR;

    /* TargetName: the NetBIOS domain, as for TARGET_TYPE_DOMAIN */

    n = kcd_ntlm_put_utf16(p->nb_domain, out + pos, outlen - pos);
    if (n < 0 || n > 0xffff) {
        return -1;
    }

    name_len = (size_t) n;

    kcd_put16(out + 12, (uint16_t) name_len);
    kcd_put16(out + 14, (uint16_t) name_len);
    kcd_put32(out + 16, (uint32_t) pos);
    pos += name_len;

    /* TargetInfo */

    ti_start = pos;

    ids[0] = KCD_NTLM_AV_NB_DOMAIN;    vals[0] = p->nb_domain;
    ids[1] = KCD_NTLM_AV_NB_COMPUTER;  vals[1] = p->nb_computer;
    ids[2] = KCD_NTLM_AV_DNS_DOMAIN;   vals[2] = p->dns_domain;
    ids[3] = KCD_NTLM_AV_DNS_COMPUTER; vals[3] = p->dns_computer;

    for (i = 0; i < 4; i++) {
        if (vals[i] == NULL || vals[i][0] == '\0') {
            if (i < 2) {
                return -1;
            }

            continue;
        }

        if (outlen - pos < 4) {
            return -1;
        }

        n = kcd_ntlm_put_utf16(vals[i], out + pos + 4, outlen - pos - 4);
        if (n <= 0 || n > 0xffff) {
            return -1;
        }

        kcd_put16(out + pos, ids[i]);
        kcd_put16(out + pos + 2, (uint16_t) n);
        pos += 4 + (size_t) n;
    }

    /* a Timestamp makes clients send a MIC and no LM response (3.1.5.1.2) */

    if (outlen - pos < 12 + 4) {
        return -1;
    }

    kcd_put16(out + pos, KCD_NTLM_AV_TIMESTAMP);
    kcd_put16(out + pos + 2, 8);
    kcd_put64(out + pos + 4, p->timestamp);
    pos += 12;

    kcd_put32(out + pos, 0);   /* MsvAvEOL */
    pos += 4;

    ti_len = pos - ti_start;
    if (ti_len > 0xffff) {
        return -1;
    }

    kcd_put16(out + 40, (uint16_t) ti_len);
    kcd_put16(out + 42, (uint16_t) ti_len);
    kcd_put32(out + 44, (uint32_t) ti_start);

    return (long) pos;
}


/*
 * AV pairs of an NTLMv2 blob (MS-NLMP 2.2.2.1): must end with MsvAvEOL.
 * The pairs the server acts on must have their defined size and appear
 * once, so that no two readers can pick different values.
 */
static int
kcd_ntlm_parse_av(const uint8_t *av, size_t len, kcd_ntlm_authenticate_t *a,
    const char **err)
{
    int       seen_flags;
    size_t    pos;
    uint16_t  id, alen;

    seen_flags = 0;
    pos = 0;

    for ( ;; ) {
        if (len - pos < 4) {
            *err = "NTLMv2 AV pairs not terminated";
            return KCD_NTLM_ERROR;
        }

        id = kcd_get16(av + pos);
        alen = kcd_get16(av + pos + 2);

        if (len - pos - 4 < alen) {
            *err = "NTLMv2 AV pair out of bounds";
            return KCD_NTLM_ERROR;
        }

        if (id == KCD_NTLM_AV_EOL) {
            a->av = av;
            a->av_len = pos + 4;
            return KCD_NTLM_OK;
        }

        switch (id) {

        case KCD_NTLM_AV_FLAGS:
            if (alen != 4 || seen_flags) {
                *err = "bad MsvAvFlags";
                return KCD_NTLM_ERROR;
            }

            seen_flags = 1;
            a->av_flags = kcd_get32(av + pos + 4);
            break;

        case KCD_NTLM_AV_CHANNEL_BINDINGS:
            if (alen != 16 || a->cb_hash != NULL) {
                *err = "bad MsvAvChannelBindings";
                return KCD_NTLM_ERROR;
            }

            a->cb_hash = av + pos + 4;
            break;

        case KCD_NTLM_AV_TARGET_NAME:
            if ((alen & 1) || a->target_name != NULL) {
                *err = "bad MsvAvTargetName";
                return KCD_NTLM_ERROR;
            }

            /* an empty name is legal: keep a non-NULL pointer */
            a->target_name = av + pos + 4;
            a->target_name_len = alen;
            break;

        case KCD_NTLM_AV_TIMESTAMP:
            if (alen != 8) {
                *err = "bad MsvAvTimestamp";
                return KCD_NTLM_ERROR;
            }

            break;

        default:
            break;
        }

        pos += 4 + (size_t) alen;
    }
}


int
kcd_ntlm_parse_authenticate(const uint8_t *msg, size_t len,
    kcd_ntlm_authenticate_t *auth, const char **err)
{
    int               i, rc;
    kcd_ntlm_field_t  f[6];

    memset(auth, 0, sizeof(kcd_ntlm_authenticate_t));

    if (len < KCD_NTLM_AUTH_HDR || kcd_ntlm_message_type(msg, len) != 3) {
        *err = "not an NTLM AUTHENTICATE message";
        return KCD_NTLM_ERROR;
    }

    /* LM, NT, domain, user, workstation, encrypted random session key */

    for (i = 0; i < 6; i++) {
        if (kcd_ntlm_field(msg, len, 12 + 8 * i, KCD_NTLM_AUTH_HDR, &f[i])
            != 0)
        {
            *err = "AUTHENTICATE field out of bounds";
            return KCD_NTLM_ERROR;
        }
    }

    auth->flags = kcd_get32(msg + 60);

    auth->lm = f[0].data;
    auth->lm_len = f[0].len;
    auth->nt = f[1].data;
    auth->nt_len = f[1].len;
    auth->domain = f[2].data;
    auth->domain_len = f[2].len;
    auth->user = f[3].data;
    auth->user_len = f[3].len;
    auth->workstation = f[4].data;
    auth->workstation_len = f[4].len;
    auth->enc_session_key = f[5].len ? f[5].data : NULL;
    auth->enc_session_key_len = f[5].len;

    if (!(auth->flags & KCD_NTLM_NEGOTIATE_UNICODE)) {
        *err = "OEM strings refused (no Unicode)";
        return KCD_NTLM_DENIED;
    }

    if ((auth->flags & KCD_NTLM_NEGOTIATE_ANONYMOUS)
        || auth->user_len == 0)
    {
        *err = "anonymous logon refused";
        return KCD_NTLM_DENIED;
    }

    if (auth->nt_len <= 24) {
        *err = "NTLMv1/LM response refused (NTLMv2 only)";
        return KCD_NTLM_DENIED;
    }

    if ((auth->user_len | auth->domain_len | auth->workstation_len) & 1) {
        *err = "odd length of a UTF-16 string";
        return KCD_NTLM_ERROR;
    }

    /* NTLMv2_RESPONSE: NTProofStr[16] || NTLMv2_CLIENT_CHALLENGE */

    if (auth->nt_len < 16 + KCD_NTLM_BLOB_FIXED + 4) {
        *err = "NTLMv2 response too short";
        return KCD_NTLM_ERROR;
    }

    auth->nt_proof = auth->nt;
    auth->blob = auth->nt + 16;
    auth->blob_len = auth->nt_len - 16;

    if (auth->blob[0] != 1 || auth->blob[1] != 1) {
        *err = "unknown NTLMv2 response version";
        return KCD_NTLM_ERROR;
    }

    /* the reserved bytes are covered by NTProofStr: not checked */

    auth->client_timestamp = kcd_get64(auth->blob + 8);
    auth->client_challenge = auth->blob + 16;

    rc = kcd_ntlm_parse_av(auth->blob + KCD_NTLM_BLOB_FIXED,
                           auth->blob_len - KCD_NTLM_BLOB_FIXED, auth, err);
    if (rc != KCD_NTLM_OK) {
        return rc;
    }

    /*
     * MIC presence is told only by MsvAvFlags (MS-NLMP 2.2.1.3); then
     * the MIC occupies bytes 72..87 and no payload may overlap it.
     */

    if (auth->av_flags & KCD_NTLM_AV_FLAG_MIC) {
        if (len < KCD_NTLM_AUTH_HDR_MIC) {
            *err = "MIC announced but message too short";
            return KCD_NTLM_ERROR;
        }

        for (i = 0; i < 6; i++) {
            if (f[i].len && f[i].off < KCD_NTLM_AUTH_HDR_MIC) {
                *err = "MIC announced but payload overlaps it";
                return KCD_NTLM_ERROR;
            }
        }

        auth->has_mic = 1;
        auth->mic = msg + KCD_NTLM_AUTH_MIC_OFF;
    }

    return KCD_NTLM_OK;
}


/* the first pair with this id in a list that ends with EOL, or NULL */
static const uint8_t *
kcd_ntlm_av_find(const uint8_t *av, size_t len, uint16_t id, int *count)
{
    size_t          pos;
    uint16_t        aid, alen;
    const uint8_t  *found;

    found = NULL;
    *count = 0;

    for (pos = 0; len - pos >= 4; pos += 4 + (size_t) alen) {
        aid = kcd_get16(av + pos);
        alen = kcd_get16(av + pos + 2);

        if (aid == KCD_NTLM_AV_EOL || len - pos - 4 < alen) {
            break;
        }

        if (aid == id) {
            if (found == NULL) {
                found = av + pos;
            }

            (*count)++;
        }
    }

    return found;
}


static int
kcd_ntlm_is_zero(const uint8_t *p, size_t len)
{
    uint8_t  acc;
    size_t   i;

    acc = 0;

    for (i = 0; i < len; i++) {
        acc |= p[i];
    }

    return acc == 0;
}


int
kcd_ntlm_check_authenticate(const kcd_ntlm_authenticate_t *auth,
    const uint8_t *challenge_msg, size_t challenge_len,
    const uint8_t *cb_expected, int cb_policy, uint64_t now,
    const char **err)
{
    int             count, cb_present, have_ts;
    size_t          pos;
    uint16_t        id, alen;
    uint32_t        ti_len, ti_off;
    uint64_t        ts, age;
    const uint8_t  *ti, *theirs;

    if (auth->av == NULL) {
        *err = "AUTHENTICATE not parsed";
        return KCD_NTLM_ERROR;
    }

    /* our own CHALLENGE, still checked: it is only bytes kept in memory */

    if (challenge_len < KCD_NTLM_CHAL_HDR
        || kcd_ntlm_message_type(challenge_msg, challenge_len) != 2)
    {
        *err = "bad stored CHALLENGE";
        return KCD_NTLM_ERROR;
    }

    ti_len = kcd_get16(challenge_msg + 40);
    ti_off = kcd_get32(challenge_msg + 44);

    if ((uint64_t) ti_off + ti_len > challenge_len) {
        *err = "bad stored CHALLENGE";
        return KCD_NTLM_ERROR;
    }

    ti = challenge_msg + ti_off;

    /* MS-NLMP 3.3.2 / CVE-2019-1040: every pair we sent comes back as is */

    have_ts = 0;
    ts = 0;

    for (pos = 0; ; pos += 4 + (size_t) alen) {
        if (ti_len - pos < 4) {
            *err = "bad stored CHALLENGE";
            return KCD_NTLM_ERROR;
        }

        id = kcd_get16(ti + pos);
        alen = kcd_get16(ti + pos + 2);

        if (ti_len - pos - 4 < alen) {
            *err = "bad stored CHALLENGE";
            return KCD_NTLM_ERROR;
        }

        if (id == KCD_NTLM_AV_EOL) {
            break;
        }

        theirs = kcd_ntlm_av_find(auth->av, auth->av_len, id, &count);

        if (theirs == NULL) {
            *err = "target info pair not echoed by client";
            return KCD_NTLM_DENIED;
        }

        if (count != 1 || kcd_get16(theirs + 2) != alen
            || memcmp(theirs + 4, ti + pos + 4, alen) != 0)
        {
            *err = (id == KCD_NTLM_AV_TIMESTAMP)
                   ? "challenge timestamp altered by client"
                   : "target info altered by client";
            return KCD_NTLM_DENIED;
        }

        if (id == KCD_NTLM_AV_TIMESTAMP && alen == 8) {
            ts = kcd_get64(ti + pos + 4);
            have_ts = 1;
        }
    }

    if (!have_ts) {
        *err = "stored CHALLENGE has no timestamp";
        return KCD_NTLM_DENIED;
    }

    age = (now >= ts) ? now - ts : ts - now;

    if (age > (uint64_t) KCD_NTLM_CHALLENGE_TTL * 10000000) {
        *err = "challenge expired";
        return KCD_NTLM_DENIED;
    }

    /*
     * The MIC is required when MsvAvFlags announces it: that flag sits in
     * the blob covered by NTProofStr, so it cannot be stripped ("drop the
     * MIC", CVE-2019-1040); the caller verifies the MIC then.  Clients
     * that echo our timestamp but never send a MIC (curl) are accepted:
     * over HTTP no session security is negotiated that a MIC would
     * protect, and the channel bindings are inside the blob too.
     */

    /* channel bindings, IIS Extended Protection semantics */

    cb_present = (auth->cb_hash != NULL
                  && !kcd_ntlm_is_zero(auth->cb_hash, 16));

    switch (cb_policy) {

    case KCD_NTLM_CB_OFF:
        break;

    case KCD_NTLM_CB_ALLOW:
        if (!cb_present) {
            break;
        }

        if (cb_expected == NULL) {
            *err = "channel binding sent over a non-TLS connection";
            return KCD_NTLM_DENIED;
        }

        if (kcd_ntlm_memcmp_ct(auth->cb_hash, cb_expected, 16) != 0) {
            *err = "channel binding mismatch";
            return KCD_NTLM_DENIED;
        }

        break;

    case KCD_NTLM_CB_REQUIRE:
        if (!cb_present) {
            *err = "channel binding missing";
            return KCD_NTLM_DENIED;
        }

        if (cb_expected == NULL) {
            *err = "channel binding required but connection is not TLS";
            return KCD_NTLM_DENIED;
        }

        if (kcd_ntlm_memcmp_ct(auth->cb_hash, cb_expected, 16) != 0) {
            *err = "channel binding mismatch";
            return KCD_NTLM_DENIED;
        }

        break;

    default:
        *err = "bad channel binding policy";
        return KCD_NTLM_ERROR;
    }

    return KCD_NTLM_OK;
}


long
kcd_ntlm_utf16_to_utf8(const uint8_t *in, size_t inlen, char *out,
    size_t outlen)
{
    size_t    i, o, need;
    uint32_t  cp, lo;

    if (inlen & 1 || outlen == 0) {
        return -1;
    }

    o = 0;

    for (i = 0; i < inlen; i += 2) {
        cp = kcd_get16(in + i);

        if (cp >= 0xd800 && cp <= 0xdbff) {
            if (inlen - i < 4) {
                return -1;
            }

            lo = kcd_get16(in + i + 2);

            if (lo < 0xdc00 || lo > 0xdfff) {
                return -1;
            }

            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            i += 2;

        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return -1;
        }

        /* C0, DEL and C1 controls: the result goes to logs and headers */

        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f)) {
            return -1;
        }

        need = (cp < 0x80) ? 1 : (cp < 0x800) ? 2 : (cp < 0x10000) ? 3 : 4;

        if (outlen - o <= need) {
            return -1;
        }

        switch (need) {

        case 1:
            out[o++] = (char) cp;
            break;

        case 2:
            out[o++] = (char) (0xc0 | cp >> 6);
            out[o++] = (char) (0x80 | (cp & 0x3f));
            break;

        case 3:
            out[o++] = (char) (0xe0 | cp >> 12);
            out[o++] = (char) (0x80 | ((cp >> 6) & 0x3f));
            out[o++] = (char) (0x80 | (cp & 0x3f));
            break;

        default:
            out[o++] = (char) (0xf0 | cp >> 18);
            out[o++] = (char) (0x80 | ((cp >> 12) & 0x3f));
            out[o++] = (char) (0x80 | ((cp >> 6) & 0x3f));
            out[o++] = (char) (0x80 | (cp & 0x3f));
            break;
        }
    }

    out[o] = '\0';

    return (long) o;
}


long
kcd_ntlm_utf8_to_utf16(const char *in, size_t inlen, uint8_t *out,
    size_t outlen)
{
    long     cp;
    size_t   i, o;

    o = 0;

    for (i = 0; i < inlen; /* void */) {

        cp = kcd_ntlm_utf8_next((const uint8_t *) in, inlen, &i);
        if (cp < 0) {
            return -1;
        }

        if (cp < 0x10000) {
            if (outlen - o < 2) {
                return -1;
            }

            kcd_put16(out + o, (uint16_t) cp);
            o += 2;

        } else {
            if (outlen - o < 4) {
                return -1;
            }

            cp -= 0x10000;
            kcd_put16(out + o, (uint16_t) (0xd800 + (cp >> 10)));
            kcd_put16(out + o + 2, (uint16_t) (0xdc00 + (cp & 0x3ff)));
            o += 4;
        }
    }

    return (long) o;
}


uint64_t
kcd_ntlm_filetime(time_t unix_time)
{
    return ((uint64_t) unix_time + KCD_NTLM_EPOCH_DELTA) * 10000000;
}
