/*
 * WWW-Authenticate lists (RFC 9110 11.6.1, B16).
 */

#include "ngx_http_kcd_authlist.h"


static int
kcd_authlist_tchar(unsigned char c)
{
    /* RFC 9110 5.6.2 */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
        return 1;
    }

    return 0;
}


static int
kcd_authlist_t68char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_'
           || c == '~' || c == '+' || c == '/';
}


/* the end of a quoted-string starting at p (at the '"'), or NULL */

static const unsigned char *
kcd_authlist_quoted(const unsigned char *p, const unsigned char *last)
{
    for (p++; p < last; p++) {
        if (*p == '\\') {
            if (++p == last) {
                return NULL;
            }
            continue;
        }

        if (*p == '"') {
            return p + 1;
        }
    }

    return NULL;
}


/* auth-param = token BWS "=" BWS ( token / quoted-string ), exactly */

static int
kcd_authlist_is_param(const unsigned char *p, const unsigned char *last)
{
    const unsigned char  *q;

    for (q = p; q < last && kcd_authlist_tchar(*q); q++) { /* void */ }

    if (q == p) {
        return 0;
    }

    while (q < last && (*q == ' ' || *q == '\t')) {
        q++;
    }

    if (q == last || *q != '=') {
        return 0;
    }

    for (q++; q < last && (*q == ' ' || *q == '\t'); q++) { /* void */ }

    if (q == last) {
        return 0;
    }

    if (*q == '"') {
        q = kcd_authlist_quoted(q, last);
        return q == last;
    }

    for (p = q; q < last && kcd_authlist_tchar(*q); q++) { /* void */ }

    return q > p && q == last;
}


/* token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */

static int
kcd_authlist_is_token68(const unsigned char *p, const unsigned char *last)
{
    const unsigned char  *q;

    for (q = p; q < last && kcd_authlist_t68char(*q); q++) { /* void */ }

    if (q == p) {
        return 0;
    }

    while (q < last && *q == '=') {
        q++;
    }

    return q == last;
}


int
kcd_authlist_parse(const unsigned char *value, size_t len,
    kcd_authlist_challenge_t *out, int max)
{
    int                    n, cur;
    const unsigned char   *p, *last, *e, *s, *q;

    p = value;
    last = value + len;
    n = 0;
    cur = -1;       /* index of the open challenge, -1: none (or not kept) */

    while (p < last) {

        /* one list element: up to a comma outside quoted strings */

        for (e = p; e < last && *e != ','; e++) {
            if (*e == '"') {
                e = kcd_authlist_quoted(e, last);
                if (e == NULL) {
                    return -1;
                }
                e--;
            }
        }

        s = p;
        q = e;

        while (s < q && (*s == ' ' || *s == '\t')) {
            s++;
        }

        while (q > s && (q[-1] == ' ' || q[-1] == '\t')) {
            q--;
        }

        p = (e < last) ? e + 1 : e;

        if (s == q) {
            continue;             /* empty list element */
        }

        if (kcd_authlist_is_param(s, q)) {
            if (n == 0) {
                return -1;        /* a parameter before any scheme */
            }

            if (cur >= 0) {
                out[cur].end = q;
                out[cur].has_data = 1;
            }

            continue;
        }

        /* a new challenge: auth-scheme [ 1*SP ( token68 / auth-param ) ] */

        for (e = s; e < q && kcd_authlist_tchar(*e); e++) { /* void */ }

        if (e == s || (e < q && *e != ' ')) {
            return -1;
        }

        if (e < q) {
            const unsigned char  *d = e;

            while (d < q && *d == ' ') {
                d++;
            }

            if (!kcd_authlist_is_token68(d, q) && !kcd_authlist_is_param(d, q))
            {
                return -1;
            }
        }

        if (n < max) {
            out[n].start = s;
            out[n].end = q;
            out[n].scheme = s;
            out[n].scheme_len = e - s;
            out[n].has_data = (e < q);
            cur = n;

        } else {
            cur = -1;
        }

        n++;
    }

    return n;
}
