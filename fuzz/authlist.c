/*
 * Fuzz target: a WWW-Authenticate field value of an upstream response
 * (RFC 9110 11.6.1), ngx_http_kcd_authlist.c: kcd_authlist_parse(), as
 * the B16 filter (ngx_http_kcd_filter.c) calls it.  Checks beyond the
 * sanitizers:
 *
 *  - every challenge lies inside the value, in order, without overlap,
 *    trimmed, separated from the next by a comma; its scheme is a
 *    non-empty token at its start, followed by a space when it has data;
 *    every byte outside the challenges is a space, a tab or a comma;
 *  - count semantics of max: the same count for every max, the first max
 *    challenges stored (each call gets an array of exactly max entries,
 *    so a store past it is an ASan report), the stored ones the same;
 *  - the filter's rebuild: the challenges joined with ", " (all of them,
 *    and those the filter keeps when it strips Negotiate) parse again to
 *    the same challenges.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ngx_http_kcd_authlist.h"


#define KCD_FUZZ_MAX_CHALLENGES  16     /* the filter's array */


static int
kcd_fuzz_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-.^_`|~",
                                                           c) != NULL);
}


static int
kcd_fuzz_is_negotiate(const kcd_authlist_challenge_t *c)
{
    return c->scheme_len == 9
           && strncasecmp((const char *) c->scheme, "Negotiate", 9) == 0;
}


static int
kcd_fuzz_same(const kcd_authlist_challenge_t *a,
    const kcd_authlist_challenge_t *b)
{
    return a->end - a->start == b->end - b->start
           && memcmp(a->start, b->start, a->end - a->start) == 0
           && a->scheme_len == b->scheme_len
           && a->has_data == b->has_data;
}


/* the structural properties of one parse */

static void
kcd_fuzz_check(const uint8_t *v, size_t len,
    const kcd_authlist_challenge_t *ch, int n)
{
    int                   i;
    size_t                k;
    const unsigned char  *p, *last, *prev;

    last = v + len;
    prev = v;

    for (i = 0; i < n; i++) {
        const kcd_authlist_challenge_t  *c = &ch[i];

        if (c->start < prev || c->end <= c->start || c->end > last
            || c->scheme != c->start || c->scheme_len == 0
            || c->scheme_len > (size_t) (c->end - c->start))
        {
            abort();
        }

        for (k = 0; k < c->scheme_len; k++) {
            if (!kcd_fuzz_tchar(c->scheme[k])) {
                abort();
            }
        }

        /*
         * data after the scheme exactly when has_data: after a space, or
         * (auth-params in the next list elements) blanks and a comma
         */

        if (c->has_data != (c->end > c->start + c->scheme_len)) {
            abort();
        }

        if (c->has_data && c->start[c->scheme_len] != ' '
            && c->start[c->scheme_len] != '\t'
            && c->start[c->scheme_len] != ',')
        {
            abort();
        }

        /* trimmed */

        if (c->end[-1] == ' ' || c->end[-1] == '\t') {
            abort();
        }

        /* what lies between: blanks and at least one comma */

        if (i > 0 && memchr(prev, ',', c->start - prev) == NULL) {
            abort();
        }

        for (p = prev; p < c->start; p++) {
            if (*p != ' ' && *p != '\t' && *p != ',') {
                abort();
            }
        }

        prev = c->end;
    }

    for (p = prev; p < last; p++) {
        if (*p != ' ' && *p != '\t' && *p != ',') {
            abort();
        }
    }
}


/* joins the challenges as the filter does ("a, b"), keep: NULL for all */

static uint8_t *
kcd_fuzz_join(const kcd_authlist_challenge_t *ch, int n, const int *keep,
    size_t *out_len)
{
    int       i, kept;
    size_t    len;
    uint8_t  *buf, *p;

    len = 0;

    for (i = 0; i < n; i++) {
        len += (ch[i].end - ch[i].start) + 2;
    }

    buf = malloc(len ? len : 1);
    if (buf == NULL) {
        abort();
    }

    p = buf;
    kept = 0;

    for (i = 0; i < n; i++) {
        if (keep && !keep[i]) {
            continue;
        }

        if (kept++) {
            *p++ = ',';
            *p++ = ' ';
        }

        memcpy(p, ch[i].start, ch[i].end - ch[i].start);
        p += ch[i].end - ch[i].start;
    }

    *out_len = p - buf;

    return buf;
}


/* the joined value parses again to the same challenges */

static void
kcd_fuzz_reparse(const kcd_authlist_challenge_t *ch, int n, const int *keep)
{
    int                        i, j, m, want;
    size_t                     len;
    uint8_t                   *v, *exact;
    kcd_authlist_challenge_t  *re;

    v = kcd_fuzz_join(ch, n, keep, &len);

    want = 0;
    for (i = 0; i < n; i++) {
        want += (keep == NULL || keep[i]);
    }

    /* an allocation of exactly the joined length */

    exact = malloc(len ? len : 1);
    if (exact == NULL) {
        abort();
    }
    memcpy(exact, v, len);
    free(v);

    re = malloc((want ? want : 1) * sizeof(kcd_authlist_challenge_t));
    if (re == NULL) {
        abort();
    }

    m = kcd_authlist_parse(exact, len, re, want);

    if (m != want) {
        abort();
    }

    kcd_fuzz_check(exact, len, re, m);

    for (i = 0, j = 0; i < n; i++) {
        if (keep && !keep[i]) {
            continue;
        }

        if (!kcd_fuzz_same(&ch[i], &re[j++])) {
            abort();
        }
    }

    free(re);
    free(exact);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                        n, m, i, strip;
    int                       *keep;
    size_t                     cap;
    uint8_t                   *v;
    kcd_authlist_challenge_t  *all, *some;

    static const int  maxes[] = { 0, 1, 2, 3, KCD_FUZZ_MAX_CHALLENGES };

    v = malloc(size ? size : 1);
    if (v == NULL) {
        abort();
    }
    memcpy(v, data, size);

    /* every challenge is at least one byte and a comma: room for all */

    cap = size / 2 + 1;
    all = malloc(cap * sizeof(kcd_authlist_challenge_t));
    if (all == NULL) {
        abort();
    }

    n = kcd_authlist_parse(v, size, all, (int) cap);

    if (n < -1 || n > (int) cap) {
        abort();
    }

    /* the same count and the same first challenges for every max */

    for (i = 0; i < (int) (sizeof(maxes) / sizeof(maxes[0])); i++) {
        some = maxes[i] ? malloc(maxes[i] * sizeof(kcd_authlist_challenge_t))
                        : NULL;

        m = kcd_authlist_parse(v, size, some, maxes[i]);

        if (m != n) {
            abort();
        }

        for (m = 0; m < n && m < maxes[i]; m++) {
            if (memcmp(&some[m], &all[m], sizeof(kcd_authlist_challenge_t))
                != 0)
            {
                abort();
            }
        }

        free(some);
    }

    if (n <= 0) {
        free(all);
        free(v);
        return 0;
    }

    kcd_fuzz_check(v, size, all, n);

    /* the filter's rebuild: all; without Negotiate with data; without any */

    kcd_fuzz_reparse(all, n, NULL);

    keep = malloc(n * sizeof(int));
    if (keep == NULL) {
        abort();
    }

    for (strip = 0; strip < 2; strip++) {
        for (i = 0; i < n; i++) {
            keep[i] = !(kcd_fuzz_is_negotiate(&all[i])
                        && (all[i].has_data || strip));
        }

        kcd_fuzz_reparse(all, n, keep);
    }

    free(keep);
    free(all);
    free(v);

    return 0;
}
