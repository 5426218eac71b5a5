/*
 * One line of the NT-hash user file (SPEC "NT-hash user file"), parsed
 * without nginx types so that unit tests and fuzzers can drive it:
 *
 *     # comment
 *     [DOMAIN\]user:<NT hash, 32 hex digits>[:group,group...]  # comment
 */

#ifndef _NGX_HTTP_KCD_USERLINE_H_INCLUDED_
#define _NGX_HTTP_KCD_USERLINE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define KCD_USER_LINE_OK      0    /* an account */
#define KCD_USER_LINE_EMPTY   1    /* blank or comment only */
#define KCD_USER_LINE_ERROR  -1    /* malformed: see why */

#define KCD_USER_LINE_NAME_MAX   256
#define KCD_USER_LINE_GROUPS_MAX 64


typedef struct {
    const uint8_t  *data;
    size_t          len;
} kcd_user_line_str_t;


/* every string points into the line given to kcd_user_line_parse() */
typedef struct {
    kcd_user_line_str_t  domain;      /* len 0: no domain, any domain */
    kcd_user_line_str_t  user;
    uint8_t              hash[16];
    size_t               ngroups;
    kcd_user_line_str_t  groups[KCD_USER_LINE_GROUPS_MAX];
} kcd_user_line_t;


/*
 * Parses line [p, p + len) (without its '\n'; a final CR, leading and
 * trailing blanks and a '#' comment that follows a blank or starts the
 * line are ignored).  Names and groups are bytes as written (UTF-8 by
 * convention), at most KCD_USER_LINE_NAME_MAX bytes each; group names are
 * trimmed of blanks and must not be empty (an empty third field is no
 * group).  The NT hash of the empty
 * password is refused: such a line would log anyone on without a
 * password.  On error *why is a static English sentence.
 */
int kcd_user_line_parse(const uint8_t *p, size_t len, kcd_user_line_t *out,
    const char **why);


#endif /* _NGX_HTTP_KCD_USERLINE_H_INCLUDED_ */
