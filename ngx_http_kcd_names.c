/*
 * Account names as Windows compares them: see ngx_http_kcd_names.h.
 */

#include <locale.h>
#include <pthread.h>
#include <string.h>
#include <wctype.h>

#include "ngx_http_kcd_names.h"


static locale_t        kcd_names_locale = (locale_t) 0;
static pthread_once_t  kcd_names_once = PTHREAD_ONCE_INIT;


static void
kcd_names_create(void)
{
    kcd_names_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
}


int
kcd_names_init(void)
{
    (void) pthread_once(&kcd_names_once, kcd_names_create);

    return kcd_names_locale == (locale_t) 0 ? -1 : 0;
}


uint32_t
kcd_names_upper(uint32_t c)
{
    wint_t  u;

    if (c < 0x80) {
        return (c >= 'a' && c <= 'z') ? c - 0x20 : c;
    }

    if (kcd_names_init() != 0 || c > 0x10ffff
        || (c >= 0xd800 && c <= 0xdfff))
    {
        return c;
    }

    u = towupper_l((wint_t) c, kcd_names_locale);

    /* a mapping that leaves the BMP would change the UTF-16 length */
    if (c <= 0xffff && u > 0xffff) {
        return c;
    }

    return (uint32_t) u;
}


uint16_t
kcd_names_upper16(uint16_t c)
{
    return (uint16_t) kcd_names_upper(c);
}


/* strict UTF-8 (RFC 3629): the code point at *pos, or -1 */
static long
kcd_names_utf8_next(const unsigned char *s, size_t len, size_t *pos)
{
    size_t    i, n;
    uint32_t  c, min;

    c = s[*pos];

    if (c < 0x80) {
        (*pos)++;
        return (long) c;
    }

    if ((c & 0xe0) == 0xc0) {
        n = 1;
        c &= 0x1f;
        min = 0x80;

    } else if ((c & 0xf0) == 0xe0) {
        n = 2;
        c &= 0x0f;
        min = 0x800;

    } else if ((c & 0xf8) == 0xf0) {
        n = 3;
        c &= 0x07;
        min = 0x10000;

    } else {
        return -1;
    }

    if (len - *pos <= n) {
        return -1;
    }

    for (i = 1; i <= n; i++) {
        if ((s[*pos + i] & 0xc0) != 0x80) {
            return -1;
        }

        c = c << 6 | (s[*pos + i] & 0x3f);
    }

    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        return -1;
    }

    *pos += n + 1;

    return (long) c;
}


int
kcd_names_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    long                  ca, cb;
    size_t                i, j;
    const unsigned char  *pa, *pb;

    pa = (const unsigned char *) a;
    pb = (const unsigned char *) b;
    i = 0;
    j = 0;

    while (i < alen && j < blen) {
        ca = kcd_names_utf8_next(pa, alen, &i);
        cb = kcd_names_utf8_next(pb, blen, &j);

        if (ca < 0 || cb < 0) {
            return 0;
        }

        if (ca != cb
            && kcd_names_upper((uint32_t) ca) != kcd_names_upper((uint32_t) cb))
        {
            return 0;
        }
    }

    return i == alen && j == blen;
}


/* code point c as UTF-8 at dst (room for 4 bytes); the length */
static size_t
kcd_names_utf8_put(unsigned char *dst, uint32_t c)
{
    if (c < 0x80) {
        dst[0] = (unsigned char) c;
        return 1;
    }

    if (c < 0x800) {
        dst[0] = (unsigned char) (0xc0 | c >> 6);
        dst[1] = (unsigned char) (0x80 | (c & 0x3f));
        return 2;
    }

    if (c < 0x10000) {
        dst[0] = (unsigned char) (0xe0 | c >> 12);
        dst[1] = (unsigned char) (0x80 | (c >> 6 & 0x3f));
        dst[2] = (unsigned char) (0x80 | (c & 0x3f));
        return 3;
    }

    dst[0] = (unsigned char) (0xf0 | c >> 18);
    dst[1] = (unsigned char) (0x80 | (c >> 12 & 0x3f));
    dst[2] = (unsigned char) (0x80 | (c >> 6 & 0x3f));
    dst[3] = (unsigned char) (0x80 | (c & 0x3f));
    return 4;
}


size_t
kcd_names_fold(char *dst, size_t dstlen, const char *src, size_t len)
{
    long                  c;
    size_t                i, n, at;
    uint32_t              u;
    wint_t                l;
    unsigned char        *d;
    const unsigned char  *s;

    d = (unsigned char *) dst;
    s = (const unsigned char *) src;
    n = 0;
    i = 0;

    while (i < len) {

        if (dstlen - n < 4) {
            return (size_t) -1;
        }

        at = i;
        c = kcd_names_utf8_next(s, len, &i);

        if (c < 0) {
            /* not UTF-8: the byte as it is */
            i = at + 1;
            d[n++] = (s[at] >= 'A' && s[at] <= 'Z') ? s[at] + 0x20 : s[at];
            continue;
        }

        /* the upper case the user file compares, then its lower case */

        u = kcd_names_upper((uint32_t) c);

        if (u < 0x80) {
            d[n++] = (unsigned char) ((u >= 'A' && u <= 'Z') ? u + 0x20 : u);
            continue;
        }

        l = (kcd_names_init() == 0) ? towlower_l((wint_t) u, kcd_names_locale)
                                    : (wint_t) u;

        if (l > 0x10ffff || (l >= 0xd800 && l <= 0xdfff)) {
            l = (wint_t) u;
        }

        n += kcd_names_utf8_put(d + n, (uint32_t) l);
    }

    return n;
}


static int
kcd_names_is_local(const kcd_names_str_t *d, const kcd_names_str_t *netbios,
    const kcd_names_str_t *aliases, size_t naliases)
{
    size_t  i;

    if (d->len == 0) {
        return 0;
    }

    if (netbios->len
        && kcd_names_equal(d->data, d->len, netbios->data, netbios->len))
    {
        return 1;
    }

    for (i = 0; i < naliases; i++) {
        if (aliases[i].len
            && kcd_names_equal(d->data, d->len, aliases[i].data,
                               aliases[i].len))
        {
            return 1;
        }
    }

    return 0;
}


int
kcd_names_logon(const kcd_names_str_t *user, const kcd_names_str_t *domain,
    const kcd_names_str_t *netbios, const kcd_names_str_t *aliases,
    size_t naliases, kcd_names_str_t *out_user, kcd_names_str_t *out_domain)
{
    const char  *at;

    *out_user = *user;
    *out_domain = *domain;

    /* a UPN: user@dns.domain with an empty domain field (MS-NLMP 3.2.5.1.2) */

    if (domain->len == 0 && user->len) {
        at = NULL;

        for (at = user->data + user->len; at > user->data; at--) {
            if (at[-1] == '@') {
                at--;
                break;
            }
        }

        if (at > user->data && at < user->data + user->len - 1
            && *at == '@')
        {
            out_user->data = user->data;
            out_user->len = (size_t) (at - user->data);
            out_domain->data = at + 1;
            out_domain->len = (size_t) (user->data + user->len - at - 1);
        }
    }

    if (kcd_names_is_local(out_domain, netbios, aliases, naliases)) {
        if (netbios->len) {
            *out_domain = *netbios;
        }

        return 1;
    }

    return 0;
}
