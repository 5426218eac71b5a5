/*
 * WWW-Authenticate field values as lists of challenges (RFC 9110 11.6.1),
 * for stripping Negotiate challenges from upstream 401s (B16).  No nginx
 * types: the fuzz harnesses drive it directly.
 */

#ifndef _NGX_HTTP_KCD_AUTHLIST_H_INCLUDED_
#define _NGX_HTTP_KCD_AUTHLIST_H_INCLUDED_


#include <stddef.h>


typedef struct {
    const unsigned char  *start;      /* the challenge, scheme first */
    const unsigned char  *end;        /* after its last byte (trimmed) */
    const unsigned char  *scheme;
    size_t                scheme_len;
    int                   has_data;   /* token68 or auth-params follow */
} kcd_authlist_challenge_t;


/*
 * Split one field value into its challenges:
 *
 *   challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *
 * list elements separated by commas (empty elements allowed), auth-params
 * "token BWS = BWS ( token / quoted-string )" belonging to the challenge
 * before them.  Returns the number of challenges (only the first max are
 * stored) or -1 when the value is not such a list.
 */
int kcd_authlist_parse(const unsigned char *value, size_t len,
    kcd_authlist_challenge_t *out, int max);


#endif /* _NGX_HTTP_KCD_AUTHLIST_H_INCLUDED_ */
