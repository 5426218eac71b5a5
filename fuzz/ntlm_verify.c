/*
 * Fuzz target: the success path.  The input does not become a message
 * directly: it chooses the names, the client's flags, challenge,
 * timestamp, clock skew, extra AV pairs, channel bindings, target name,
 * MIC or not, and the binding policy; the harness then acts as a correct
 * NTLMv2 client (bench/kcd_ntlm_client.c, with the known NT hash) and
 * runs the module's whole verification chain.  Oracle, both ways:
 *   - the valid AUTHENTICATE is accepted exactly when the policy allows
 *     (bindings per kcd_channel_binding, challenge age <= the TTL);
 *   - the wrong NT hash never verifies;
 *   - with a MIC, any single byte changed anywhere in the AUTHENTICATE
 *     makes the chain refuse it.
 * ngx_http_kcd_ntlm.c: kcd_ntlm_parse_negotiate, kcd_ntlm_build_challenge,
 * kcd_ntlm_parse_authenticate, kcd_ntlm_check_authenticate;
 * ngx_http_kcd_ntlm_crypto.c: kcd_ntlm_ntowfv2, kcd_ntlm_verify_v2,
 * kcd_ntlm_verify_mic.
 */

#include "kcd_fuzz_ntlm.h"
#include "kcd_ntlm_client.h"


#define KCD_FUZZ_TTL  ((uint64_t) KCD_NTLM_CHALLENGE_TTL * 10000000)


typedef struct {
    const uint8_t  *p;
    size_t          n;
} kcd_fuzz_in_t;


static uint8_t  kcd_fuzz_hash[16], kcd_fuzz_wrong[16];


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    if (kcd_ntlm_nt_hash(KCD_FUZZ_PASSWORD, strlen(KCD_FUZZ_PASSWORD),
                         kcd_fuzz_hash) != 0
        || kcd_ntlm_nt_hash("Secret2", 7, kcd_fuzz_wrong) != 0)
    {
        abort();
    }

    return 0;
}


static uint8_t
kcd_fuzz_byte(kcd_fuzz_in_t *in)
{
    uint8_t  b;

    if (in->n == 0) {
        return 0;
    }

    b = in->p[0];
    in->p++;
    in->n--;

    return b;
}


static uint64_t
kcd_fuzz_u64(kcd_fuzz_in_t *in)
{
    int       i;
    uint64_t  v;

    v = 0;

    for (i = 0; i < 8; i++) {
        v = v << 8 | kcd_fuzz_byte(in);
    }

    return v;
}


/* up to max bytes, an even count, copied into buf */
static size_t
kcd_fuzz_utf16(kcd_fuzz_in_t *in, uint8_t *buf, size_t max)
{
    size_t  len, i;

    len = (size_t) kcd_fuzz_byte(in) * 2 % (max + 2);

    for (i = 0; i < len; i++) {
        buf[i] = kcd_fuzz_byte(in);
    }

    return len;
}


/* extra pairs of ids the server does not act on, never a duplicate */
static size_t
kcd_fuzz_extra_av(kcd_fuzz_in_t *in, uint8_t *buf, size_t max)
{
    size_t   pos, len, i;
    uint8_t  count, id;

    static const uint8_t  ids[] = { 5, 8, 11, 12, 0x7f, 0xff };

    pos = 0;
    count = kcd_fuzz_byte(in) % 4;

    while (count--) {
        id = ids[kcd_fuzz_byte(in) % sizeof(ids)];
        len = kcd_fuzz_byte(in) % 48;

        if (pos + 4 + len > max) {
            break;
        }

        buf[pos] = id;
        buf[pos + 1] = (id == 0xff) ? 0xff : 0;
        buf[pos + 2] = (uint8_t) len;
        buf[pos + 3] = 0;

        for (i = 0; i < len; i++) {
            buf[pos + 4 + i] = kcd_fuzz_byte(in);
        }

        pos += 4 + len;
    }

    return pos;
}


/* the module's chain (ngx_http_ntlm_reauth.c): 1 accepted, 0 refused */
static int
kcd_fuzz_accept(const uint8_t *hash, const uint8_t *t1, size_t t1_len,
    const uint8_t *t2, size_t t2_len, const uint8_t *t3, size_t t3_len,
    const uint8_t *cb_expected, int policy, uint64_t now)
{
    int                       ok;
    uint8_t                  *msg, key[16];
    const char               *err;
    kcd_ntlm_authenticate_t   auth;

    msg = kcd_fuzz_dup(t3, t3_len);

    ok = kcd_ntlm_parse_authenticate(msg, t3_len, &auth, &err) == KCD_NTLM_OK
         && kcd_ntlm_check_authenticate(&auth, t2, t2_len, cb_expected,
                                        policy, now, &err) == KCD_NTLM_OK
         && kcd_ntlm_verify_v2(hash, auth.user, auth.user_len, auth.domain,
                               auth.domain_len, t2 + 24, auth.nt,
                               auth.nt_len, key) == 0
         && (!auth.has_mic
             || kcd_ntlm_verify_mic(key, t1, t1_len, t2, t2_len, msg,
                                    t3_len, auth.mic) == 0);

    free(msg);

    return ok;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                          policy, expect, got, cb_nonzero;
    long                         t1_len, t2_len, t3_len;
    size_t                       i, at;
    uint8_t                      opts, flip, t1[64], t2[1024], t3[4096];
    uint8_t                      user[128], domain[128], ws[128], tn[128];
    uint8_t                      cb[16], cb_other[16], extra[256];
    uint64_t                     ts, skew, now;
    const char                  *err;
    const uint8_t               *cb_expected;
    kcd_fuzz_in_t                in;
    kcd_ntlmc_params_t           p;
    kcd_ntlm_negotiate_t         neg;
    kcd_ntlm_challenge_params_t  cp;

    in.p = data;
    in.n = size;

    opts = kcd_fuzz_byte(&in);

    /* NEGOTIATE: ours, with the client flags from the input */

    t1_len = kcd_ntlmc_negotiate(t1, sizeof(t1));
    for (i = 12; i < 16; i++) {
        t1[i] = kcd_fuzz_byte(&in);
    }
    t1[12] |= KCD_NTLM_NEGOTIATE_UNICODE;

    if (kcd_ntlm_parse_negotiate(t1, (size_t) t1_len, &neg, &err)
        != KCD_NTLM_OK)
    {
        abort();
    }

    /* CHALLENGE */

    memset(&cp, 0, sizeof(cp));
    cp.client_flags = neg.flags;
    for (i = 0; i < 8; i++) {
        cp.challenge[i] = kcd_fuzz_byte(&in);
    }
    ts = kcd_fuzz_u64(&in) >> 1;
    cp.timestamp = ts;
    cp.nb_domain = "KCD";
    cp.nb_computer = "WEB01";
    cp.dns_domain = (opts & 0x80) ? "kcd.test" : NULL;
    cp.dns_computer = (opts & 0x80) ? "web01.kcd.test" : NULL;

    t2_len = kcd_ntlm_build_challenge(&cp, t2, sizeof(t2));
    if (t2_len < 0) {
        abort();
    }

    /* AUTHENTICATE */

    memset(&p, 0, sizeof(p));
    p.nt_hash = kcd_fuzz_hash;
    p.user_len = kcd_fuzz_utf16(&in, user, sizeof(user));
    if (p.user_len == 0) {
        user[0] = 'u';
        user[1] = 0;
        p.user_len = 2;
    }
    p.user = user;
    p.domain_len = kcd_fuzz_utf16(&in, domain, sizeof(domain));
    p.domain = domain;
    p.workstation_len = kcd_fuzz_utf16(&in, ws, sizeof(ws));
    p.workstation = ws;

    for (i = 0; i < 8; i++) {
        p.client_challenge[i] = kcd_fuzz_byte(&in);
    }

    p.mic = opts & 1;

    for (i = 0; i < 16; i++) {
        cb[i] = kcd_fuzz_byte(&in);
        cb_other[i] = cb[i] ^ 0x5a;
    }

    if (opts & 2) {
        p.cb_hash = cb;
    }

    if (opts & 4) {
        p.target_name_len = kcd_fuzz_utf16(&in, tn, sizeof(tn));
        p.target_name = tn;
    }

    p.extra_av_len = kcd_fuzz_extra_av(&in, extra, sizeof(extra));
    p.extra_av = extra;

    t3_len = kcd_ntlmc_authenticate(&p, t1, (size_t) t1_len, t2,
                                    (size_t) t2_len, t3, sizeof(t3));
    if (t3_len < 0) {
        abort();
    }

    /* the server's side: policy, expected bindings, clock */

    policy = (opts >> 3) % 3;

    switch ((opts >> 5) & 3) {
    case 0:
        cb_expected = NULL;       /* not TLS */
        break;
    case 1:
        cb_expected = cb_other;   /* another certificate */
        break;
    default:
        cb_expected = cb;
        break;
    }

    skew = kcd_fuzz_u64(&in) % (3 * KCD_FUZZ_TTL);
    now = (skew & 1) ? ts + skew / 2 : (ts > skew / 2 ? ts - skew / 2 : 0);

    /* the oracle */

    cb_nonzero = 0;
    if (p.cb_hash) {
        for (i = 0; i < 16; i++) {
            cb_nonzero |= cb[i];
        }
    }

    expect = 1;

    if (policy == KCD_NTLM_CB_ALLOW && cb_nonzero
        && (cb_expected == NULL || cb_expected == cb_other))
    {
        expect = 0;
    }

    if (policy == KCD_NTLM_CB_REQUIRE
        && (!cb_nonzero || cb_expected == NULL || cb_expected == cb_other))
    {
        expect = 0;
    }

    if ((now >= ts ? now - ts : ts - now) > KCD_FUZZ_TTL) {
        expect = 0;
    }

    got = kcd_fuzz_accept(kcd_fuzz_hash, t1, (size_t) t1_len, t2,
                          (size_t) t2_len, t3, (size_t) t3_len, cb_expected,
                          policy, now);
    if (got != expect) {
        abort();
    }

    if (!expect) {
        return 0;
    }

    if (kcd_fuzz_accept(kcd_fuzz_wrong, t1, (size_t) t1_len, t2,
                        (size_t) t2_len, t3, (size_t) t3_len, cb_expected,
                        policy, now))
    {
        abort();
    }

    /* with a MIC, no byte of the AUTHENTICATE can change unnoticed */

    if (p.mic) {
        at = (size_t) kcd_fuzz_byte(&in) << 8 | kcd_fuzz_byte(&in);
        at %= (size_t) t3_len;
        flip = kcd_fuzz_byte(&in);
        t3[at] ^= flip ? flip : 0x01;

        if (kcd_fuzz_accept(kcd_fuzz_hash, t1, (size_t) t1_len, t2,
                            (size_t) t2_len, t3, (size_t) t3_len,
                            cb_expected, policy, now))
        {
            abort();
        }
    }

    return 0;
}
