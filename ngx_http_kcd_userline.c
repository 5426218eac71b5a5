/*
 * The user file's line syntax, see ngx_http_kcd_userline.h.  No nginx
 * types: t/unit and fuzz/ drive it directly.
 */

#include <string.h>

#include "ngx_http_kcd_userline.h"


/* MD4(UTF-16LE("")): the NT hash of the empty password */
static const uint8_t  kcd_user_line_empty_hash[16] = {
    0x31, 0xd6, 0xcf, 0xe0, 0xd1, 0x6a, 0xe9, 0x31,
    0xb7, 0x3c, 0x59, 0xd7, 0xe0, 0xc0, 0x89, 0xc0
};


static int
kcd_user_line_blank(uint8_t c)
{
    return c == ' ' || c == '\t';
}


static int
kcd_user_line_hex(uint8_t c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


static int
kcd_user_line_controls(const uint8_t *p, const uint8_t *last)
{
    for ( /* void */ ; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return 1;
        }
    }

    return 0;
}


int
kcd_user_line_parse(const uint8_t *p, size_t len, kcd_user_line_t *out,
    const char **why)
{
    int             hi, lo;
    size_t          i;
    const uint8_t  *last, *q, *colon, *sep, *hex, *g, *ge, *gs;

    memset(out, 0, sizeof(kcd_user_line_t));

    last = p + len;

    /* a comment: '#' at the start or after a blank */

    for (q = p; q < last; q++) {
        if (*q == '#' && (q == p || kcd_user_line_blank(q[-1]))) {
            last = q;
            break;
        }
    }

    while (last > p && (kcd_user_line_blank(last[-1]) || last[-1] == '\r')) {
        last--;
    }

    while (p < last && kcd_user_line_blank(*p)) {
        p++;
    }

    if (p == last) {
        return KCD_USER_LINE_EMPTY;
    }

    colon = memchr(p, ':', last - p);

    if (colon == NULL) {
        *why = "expected \"[DOMAIN\\]user:<32 hex digits>[:group,...]\"";
        return KCD_USER_LINE_ERROR;
    }

    sep = memchr(p, '\\', colon - p);

    if (sep) {
        out->domain.data = p;
        out->domain.len = sep - p;
        out->user.data = sep + 1;
        out->user.len = colon - (sep + 1);

    } else {
        out->user.data = p;
        out->user.len = colon - p;
    }

    if (out->user.len == 0 || (sep && out->domain.len == 0)) {
        *why = "empty user or domain name";
        return KCD_USER_LINE_ERROR;
    }

    if (out->user.len > KCD_USER_LINE_NAME_MAX
        || out->domain.len > KCD_USER_LINE_NAME_MAX)
    {
        *why = "user or domain name longer than 256 bytes";
        return KCD_USER_LINE_ERROR;
    }

    /* the domain ends at the first '\\'; the user is the rest, as written */

    if (kcd_user_line_controls(p, colon)) {
        *why = "a control character in the name";
        return KCD_USER_LINE_ERROR;
    }

    hex = colon + 1;

    if (last - hex < 32 || (last - hex > 32 && hex[32] != ':')) {
        *why = "the NT hash must be 32 hex digits";
        return KCD_USER_LINE_ERROR;
    }

    for (i = 0; i < 16; i++) {
        hi = kcd_user_line_hex(hex[2 * i]);
        lo = kcd_user_line_hex(hex[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            *why = "the NT hash must be 32 hex digits";
            return KCD_USER_LINE_ERROR;
        }

        out->hash[i] = (uint8_t) (hi * 16 + lo);
    }

    if (memcmp(out->hash, kcd_user_line_empty_hash, 16) == 0) {
        *why = "the NT hash of the empty password is refused";
        return KCD_USER_LINE_ERROR;
    }

    if (last - hex == 32) {
        return KCD_USER_LINE_OK;
    }

    /* ":group,group": names trimmed of blanks, none empty */

    g = hex + 33;

    /* "hash:" with nothing after it: no groups */

    while (g < last && kcd_user_line_blank(*g)) {
        g++;
    }

    if (g == last) {
        return KCD_USER_LINE_OK;
    }

    if (kcd_user_line_controls(g, last)) {
        *why = "a control character in a group name";
        return KCD_USER_LINE_ERROR;
    }

    for ( ;; ) {
        ge = memchr(g, ',', last - g);
        if (ge == NULL) {
            ge = last;
        }

        gs = g;
        q = ge;

        while (gs < q && kcd_user_line_blank(*gs)) {
            gs++;
        }

        while (q > gs && kcd_user_line_blank(q[-1])) {
            q--;
        }

        if (gs == q) {
            *why = "empty group name";
            return KCD_USER_LINE_ERROR;
        }

        if (q - gs > KCD_USER_LINE_NAME_MAX) {
            *why = "group name longer than 256 bytes";
            return KCD_USER_LINE_ERROR;
        }

        if (memchr(gs, ':', q - gs) != NULL) {
            *why = "':' in a group name";
            return KCD_USER_LINE_ERROR;
        }

        if (out->ngroups == KCD_USER_LINE_GROUPS_MAX) {
            *why = "more than 64 groups";
            return KCD_USER_LINE_ERROR;
        }

        out->groups[out->ngroups].data = gs;
        out->groups[out->ngroups].len = q - gs;
        out->ngroups++;

        if (ge == last) {
            break;
        }

        g = ge + 1;
    }

    return KCD_USER_LINE_OK;
}
