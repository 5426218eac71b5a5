/*
 * Fuzz target: one line of the NT-hash user file (SPEC "NT-hash user
 * file"), ngx_http_kcd_userline.c: kcd_user_line_parse().  The input is
 * the line without its '\n', as the loader passes it (after the BOM of
 * the first line).  Checks beyond the sanitizers: every returned string
 * lies inside the input, names and groups respect their limits, group
 * names are trimmed and non-empty, a parsed hash is never the NT hash of
 * the empty password.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_kcd_userline.h"


static void
kcd_fuzz_inside(const uint8_t *data, size_t size, kcd_user_line_str_t *s)
{
    if (s->len == 0) {
        return;
    }

    if (s->data < data || s->data + s->len > data + size) {
        abort();
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int               rc;
    size_t            i;
    const char       *why;
    kcd_user_line_t   ul;

    static const uint8_t  empty[16] = {
        0x31, 0xd6, 0xcf, 0xe0, 0xd1, 0x6a, 0xe9, 0x31,
        0xb7, 0x3c, 0x59, 0xd7, 0xe0, 0xc0, 0x89, 0xc0
    };

    why = NULL;
    rc = kcd_user_line_parse(data, size, &ul, &why);

    if (rc == KCD_USER_LINE_ERROR) {
        if (why == NULL || why[0] == '\0') {
            abort();
        }
        return 0;
    }

    if (rc != KCD_USER_LINE_OK) {
        return 0;
    }

    kcd_fuzz_inside(data, size, &ul.user);
    kcd_fuzz_inside(data, size, &ul.domain);

    if (ul.user.len == 0 || ul.user.len > KCD_USER_LINE_NAME_MAX
        || ul.domain.len > KCD_USER_LINE_NAME_MAX
        || ul.ngroups > KCD_USER_LINE_GROUPS_MAX
        || memcmp(ul.hash, empty, 16) == 0)
    {
        abort();
    }

    for (i = 0; i < ul.ngroups; i++) {
        kcd_fuzz_inside(data, size, &ul.groups[i]);

        if (ul.groups[i].len == 0
            || ul.groups[i].len > KCD_USER_LINE_NAME_MAX
            || ul.groups[i].data[0] == ' '
            || ul.groups[i].data[ul.groups[i].len - 1] == ' '
            || memchr(ul.groups[i].data, ',', ul.groups[i].len) != NULL
            || memchr(ul.groups[i].data, ':', ul.groups[i].len) != NULL)
        {
            abort();
        }
    }

    return 0;
}
