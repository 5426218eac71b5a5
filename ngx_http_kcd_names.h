/*
 * Account names as Windows compares them (SPEC "NT-hash user file", B5
 * "Names"): Unicode simple case mapping for user and domain comparison and
 * for NTOWFv2's UPPER(user), UPN and DNS-domain spellings of a logon.
 *
 * The case mapping is glibc's towupper_l() on the C.UTF-8 locale (glibc's
 * Unicode tables), created once with newlocale(): nothing here depends on
 * the process's own locale.  No nginx types.
 */

#ifndef _NGX_HTTP_KCD_NAMES_H_INCLUDED_
#define _NGX_HTTP_KCD_NAMES_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


typedef struct {
    const char     *data;
    size_t          len;
} kcd_names_str_t;


/*
 * kcd_names_init: creates the C.UTF-8 case-mapping locale (idempotent,
 * thread-safe).  0, or -1 when the C library has no C.UTF-8 locale: then
 * every function below maps ASCII only.  Call it in the master at
 * configuration time so that the error can be logged.
 */
int kcd_names_init(void);

/*
 * kcd_names_upper16: Unicode simple uppercase mapping of one UTF-16 code
 * unit, as Windows upper-cases names (one code unit at a time; surrogates
 * stay as they are).  Used for NTOWFv2 (MS-NLMP 3.3.2).
 */
uint16_t kcd_names_upper16(uint16_t c);

/* the same for one Unicode code point */
uint32_t kcd_names_upper(uint32_t c);

/*
 * kcd_names_equal: 1 when a and b (UTF-8) name the same account or domain
 * under Unicode simple case mapping (JÜRGEN = jürgen, ΑΛΈΞΗΣ = αλέξης,
 * ДМИТРИЙ = дмитрий), 0 otherwise, also for invalid UTF-8.
 */
int kcd_names_equal(const char *a, size_t alen, const char *b, size_t blen);

/*
 * kcd_names_fold: a name (UTF-8) as a key, for counts and rules that must
 * treat every spelling kcd_names_equal() accepts as one (B19, B20): each
 * code point becomes the lower case of its upper case (the same
 * kcd_names_upper() mapping, then towlower_l), so "JÜRGEN" and "jürgen"
 * give "jürgen", and "al\u0131ce" (dotless i, upper case I) and
 * "\u017Fam" (long s, upper case S) give "alice" and "sam".  Two names
 * kcd_names_equal() finds equal always fold to the same bytes.  Bytes
 * that are not UTF-8 are copied (ASCII lowered).  Writes at most dstlen
 * bytes to dst (no NUL); returns the length, or (size_t) -1 when the
 * folded name does not fit.
 */
size_t kcd_names_fold(char *dst, size_t dstlen, const char *src, size_t len);

/*
 * kcd_names_logon: the account a logon names, SPEC B5 "Names".
 *
 * user, domain: as the client sent them (UTF-8).  netbios: the server's
 * NetBIOS domain (may be empty); aliases: other spellings of that domain
 * (its DNS name, its realm), naliases of them.
 *
 *   user@dns.domain, empty domain   -> user, dns.domain   (a UPN)
 *   then a domain equal to netbios or one of the aliases -> netbios
 *
 * *out_user and *out_domain point into the inputs or at netbios.  Returns
 * 1 when the domain is the server's own (netbios, an alias, or a UPN
 * suffix that is one), 0 otherwise (the domain is returned as given).
 */
int kcd_names_logon(const kcd_names_str_t *user,
    const kcd_names_str_t *domain, const kcd_names_str_t *netbios,
    const kcd_names_str_t *aliases, size_t naliases,
    kcd_names_str_t *out_user, kcd_names_str_t *out_domain);


#endif /* _NGX_HTTP_KCD_NAMES_H_INCLUDED_ */
