/*
 * Driver for ngx_http_kcd_winbind.c against a real winbindd (t/20-samba-
 * unit.t runs it inside KcdSamba's mount namespace).  It plays the NTLM
 * client: builds an NTLMv2 response from a password (MS-NLMP 3.3.2) and
 * checks that winbind returns exactly the session base key the client
 * derives.
 *
 *   wb_test check
 *   wb_test ntlm  USER DOMAIN PASSWORD [COMPUTER [NBDOMAIN]]
 *   wb_test plain USER DOMAIN PASSWORD
 *   wb_test loop  N USER DOMAIN PASSWORD COMPUTER
 *   wb_test threads T N USER DOMAIN PASSWORD COMPUTER
 *       (T threads, N validations each, as in nginx's thread pool)
 *
 * Output: one line "OK ...", "DENIED <status>" or "UNAVAILABLE <status>";
 * exit 0 / 1 / 2; 3 for a wrong session key or a usage error.
 */

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "ngx_http_kcd_winbind.h"


typedef struct {
    uint8_t   nt[1024];
    size_t    nt_len;
    uint8_t   challenge[8];
    uint8_t   key[16];
} wb_ntlm_t;


static size_t
utf16le(const char *s, int upper, uint8_t *out, size_t size)
{
    size_t  n;

    /* test names and passwords are ASCII */
    for (n = 0; *s && n + 2 <= size; s++) {
        out[n++] = (uint8_t) (upper ? toupper((unsigned char) *s) : *s);
        out[n++] = 0;
    }

    return n;
}


static int
nt_hash(const char *password, uint8_t hash[16])
{
    int             ok;
    size_t          n;
    uint8_t         buf[512];
    unsigned int    len;
    EVP_MD         *md4;
    OSSL_LIB_CTX   *lib;
    OSSL_PROVIDER  *legacy;

    /* MD4 lives in the legacy provider: keep it out of the default ctx */
    lib = OSSL_LIB_CTX_new();
    if (lib == NULL) {
        return -1;
    }

    ok = 0;
    md4 = NULL;

    legacy = OSSL_PROVIDER_load(lib, "legacy");
    if (legacy != NULL) {
        md4 = EVP_MD_fetch(lib, "MD4", NULL);
    }

    if (md4 != NULL) {
        n = utf16le(password, 0, buf, sizeof(buf));
        ok = EVP_Digest(buf, n, hash, &len, md4, NULL);
        EVP_MD_free(md4);
    }

    if (legacy != NULL) {
        OSSL_PROVIDER_unload(legacy);
    }

    OSSL_LIB_CTX_free(lib);

    return ok ? 0 : -1;
}


static void
av(uint8_t *p, size_t *n, uint16_t id, const uint8_t *v, uint16_t len)
{
    p[(*n)++] = id & 0xff;
    p[(*n)++] = id >> 8;
    p[(*n)++] = len & 0xff;
    p[(*n)++] = len >> 8;
    if (len) {
        memcpy(p + *n, v, len);
        *n += len;
    }
}


static int
make_ntlmv2(const char *user, const char *domain, const char *password,
    const char *computer, const char *nbdomain, wb_ntlm_t *r)
{
    size_t          n, un, dn;
    uint8_t         hash[16], owf[16], name[1024], tmp[1024], proof[16];
    uint8_t         ts[8], s[256];
    uint64_t        ft;
    unsigned int    len;

    if (nt_hash(password, hash) != 0) {
        return -1;
    }

    un = utf16le(user, 1, name, sizeof(name));
    dn = utf16le(domain, 0, name + un, sizeof(name) - un);

    if (HMAC(EVP_md5(), hash, 16, name, un + dn, owf, &len) == NULL) {
        return -1;
    }

    /* FILETIME: 100 ns ticks since 1601-01-01 */
    ft = ((uint64_t) time(NULL) + 11644473600ULL) * 10000000ULL;
    for (n = 0; n < 8; n++) {
        ts[n] = (uint8_t) (ft >> (8 * n));
    }

    if (RAND_bytes(r->challenge, 8) != 1) {
        return -1;
    }

    /* temp = 0x0101 Z(6) timestamp client-challenge Z(4) AV-pairs Z(4) */
    n = 0;
    tmp[n++] = 1;
    tmp[n++] = 1;
    memset(tmp + n, 0, 6);
    n += 6;
    memcpy(tmp + n, ts, 8);
    n += 8;
    if (RAND_bytes(tmp + n, 8) != 1) {
        return -1;
    }
    n += 8;
    memset(tmp + n, 0, 4);
    n += 4;

    av(tmp, &n, 2, s, (uint16_t) utf16le(nbdomain, 0, s, sizeof(s)));
    av(tmp, &n, 1, s, (uint16_t) utf16le(computer, 0, s, sizeof(s)));
    av(tmp, &n, 7, ts, 8);
    av(tmp, &n, 0, NULL, 0);
    memset(tmp + n, 0, 4);
    n += 4;

    /* NTProofStr = HMAC-MD5(NTOWFv2, server challenge || temp) */
    memcpy(name, r->challenge, 8);
    memcpy(name + 8, tmp, n);
    if (HMAC(EVP_md5(), owf, 16, name, 8 + n, proof, &len) == NULL) {
        return -1;
    }

    memcpy(r->nt, proof, 16);
    memcpy(r->nt + 16, tmp, n);
    r->nt_len = 16 + n;

    /* SessionBaseKey = HMAC-MD5(NTOWFv2, NTProofStr) */
    if (HMAC(EVP_md5(), owf, 16, proof, 16, r->key, &len) == NULL) {
        return -1;
    }

    return 0;
}


static int
report(int rc, const kcd_wb_result_t *res, const uint8_t *key)
{
    switch (rc) {
    case KCD_WB_OK:
        if (key != NULL && memcmp(key, res->session_key, 16) != 0) {
            printf("OK user=%s domain=%s dns_domain=%s key=MISMATCH\n",
                   res->user, res->domain, res->dns_domain);
            return 3;
        }
        printf("OK user=%s domain=%s dns_domain=%s key=%s\n",
               res->user, res->domain, res->dns_domain,
               key ? "match" : "n/a");
        return 0;

    case KCD_WB_DENIED:
        printf("DENIED %s\n", res->error);
        return 1;

    case KCD_WB_UNAVAILABLE:
        printf("UNAVAILABLE %s\n", res->error);
        return 2;
    }

    printf("BAD rc %d\n", rc);
    return 3;
}


static int
loop(int count, const char *user, const char *domain, const char *password,
    const char *computer)
{
    int               i, rc;
    double            t;
    wb_ntlm_t         r;
    struct timespec   a, b;
    kcd_wb_result_t   res;

    clock_gettime(CLOCK_MONOTONIC, &a);

    for (i = 0; i < count; i++) {
        if (make_ntlmv2(user, domain, password, computer, domain, &r) != 0) {
            return 3;
        }

        rc = kcd_wb_auth_ntlm(user, domain, "WS1", r.challenge, r.nt,
                              r.nt_len, NULL, 0, &res);
        if (rc != KCD_WB_OK || memcmp(r.key, res.session_key, 16) != 0) {
            printf("iteration %d: ", i);
            report(rc, &res, r.key);
            return 3;
        }
    }

    clock_gettime(CLOCK_MONOTONIC, &b);
    t = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;

    printf("OK %d validations in %.3f s: %.0f/s\n", count, t, count / t);
    return 0;
}


typedef struct {
    pthread_t    tid;
    int          count;
    int          failed;
    char       **argv;
} wb_thread_t;


static void *
thread_main(void *arg)
{
    int               i, rc;
    wb_ntlm_t         r;
    wb_thread_t      *t = arg;
    kcd_wb_result_t   res;

    for (i = 0; i < t->count; i++) {
        if (make_ntlmv2(t->argv[0], t->argv[1], t->argv[2], t->argv[3],
                        t->argv[1], &r) != 0)
        {
            t->failed++;
            continue;
        }

        rc = kcd_wb_auth_ntlm(t->argv[0], t->argv[1], "WS1", r.challenge,
                              r.nt, r.nt_len, NULL, 0, &res);
        if (rc != KCD_WB_OK || memcmp(r.key, res.session_key, 16) != 0) {
            t->failed++;
        }
    }

    return NULL;
}


static int
threads(int n, int count, char **argv)
{
    int               i, failed;
    double            t;
    wb_thread_t       th[64];
    struct timespec   a, b;

    if (n < 1 || n > 64) {
        return 3;
    }

    clock_gettime(CLOCK_MONOTONIC, &a);

    for (i = 0; i < n; i++) {
        th[i].count = count;
        th[i].failed = 0;
        th[i].argv = argv;
        if (pthread_create(&th[i].tid, NULL, thread_main, &th[i]) != 0) {
            return 3;
        }
    }

    failed = 0;
    for (i = 0; i < n; i++) {
        pthread_join(th[i].tid, NULL);
        failed += th[i].failed;
    }

    clock_gettime(CLOCK_MONOTONIC, &b);
    t = (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9;

    if (failed) {
        printf("FAILED %d of %d threaded validations\n", failed, n * count);
        return 3;
    }

    printf("OK %d validations in %d threads in %.3f s: %.0f/s\n",
           n * count, n, t, n * count / t);
    return 0;
}


int
main(int argc, char **argv)
{
    char             err[512];
    wb_ntlm_t        r;
    kcd_wb_result_t  res;

    if (argc == 2 && strcmp(argv[1], "check") == 0) {
        if (kcd_wb_check(err, sizeof(err)) != 0) {
            printf("FAIL %s\n", err);
            return 1;
        }
        printf("OK check\n");
        return 0;
    }

    if (argc >= 5 && argc <= 7 && strcmp(argv[1], "ntlm") == 0) {
        if (make_ntlmv2(argv[2], argv[3], argv[4],
                        argc > 5 ? argv[5] : "KCDPROXY1",
                        argc > 6 ? argv[6] : argv[3], &r) != 0)
        {
            printf("BAD cannot build NTLMv2 response\n");
            return 3;
        }

        return report(kcd_wb_auth_ntlm(argv[2], argv[3], "WS1", r.challenge,
                                       r.nt, r.nt_len, NULL, 0, &res),
                      &res, r.key);
    }

    if (argc == 5 && strcmp(argv[1], "plain") == 0) {
        return report(kcd_wb_auth_plain(argv[2], argv[3], argv[4], &res),
                      &res, NULL);
    }

    if (argc == 7 && strcmp(argv[1], "loop") == 0) {
        return loop(atoi(argv[2]), argv[3], argv[4], argv[5], argv[6]);
    }

    if (argc == 8 && strcmp(argv[1], "threads") == 0) {
        return threads(atoi(argv[2]), atoi(argv[3]), argv + 4);
    }

    fprintf(stderr, "usage: wb_test check | ntlm USER DOMAIN PASSWORD "
            "[COMPUTER [NBDOMAIN]] | plain USER DOMAIN PASSWORD | "
            "loop N USER DOMAIN PASSWORD COMPUTER | "
            "threads T N USER DOMAIN PASSWORD COMPUTER\n");
    return 3;
}
