/*
 * kcd_user_line_parse() driven directly (no nginx): one line of the user
 * file per line of stdin (escapes: none; the harness passes raw bytes),
 * one result line on stdout:
 *
 *   EMPTY
 *   OK domain=<d> user=<u> hash=<hex> groups=<g1>|<g2>
 *   ERROR <why>
 */

#include <stdio.h>
#include <string.h>

#include "ngx_http_kcd_userline.h"


int
main(void)
{
    int              rc;
    char             line[8192];
    size_t           i, len;
    const char      *why;
    kcd_user_line_t  ul;

    while (fgets(line, sizeof(line), stdin)) {
        len = strlen(line);
        if (len && line[len - 1] == '\n') {
            len--;
        }

        why = "?";
        rc = kcd_user_line_parse((const uint8_t *) line, len, &ul, &why);

        if (rc == KCD_USER_LINE_EMPTY) {
            printf("EMPTY\n");
            continue;
        }

        if (rc != KCD_USER_LINE_OK) {
            printf("ERROR %s\n", why);
            continue;
        }

        printf("OK domain=%.*s user=%.*s hash=", (int) ul.domain.len,
               (const char *) ul.domain.data, (int) ul.user.len,
               (const char *) ul.user.data);

        for (i = 0; i < 16; i++) {
            printf("%02x", ul.hash[i]);
        }

        printf(" groups=");

        for (i = 0; i < ul.ngroups; i++) {
            printf("%s%.*s", i ? "|" : "", (int) ul.groups[i].len,
                   (const char *) ul.groups[i].data);
        }

        printf("\n");
    }

    return 0;
}
