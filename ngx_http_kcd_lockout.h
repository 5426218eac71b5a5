/*
 * Account protection: extranet smart lockout and password-spray defence
 * (B19, ngx_http_kcd_lockout.c) and access rules (B20,
 * ngx_http_kcd_require.c).  Both are nginx modules of their own inside
 * the same shared object; the access path of ngx_http_kcd_module calls
 * the hooks below.
 */

#ifndef _NGX_HTTP_KCD_LOCKOUT_H_INCLUDED_
#define _NGX_HTTP_KCD_LOCKOUT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* what a failed password check was, for ngx_http_kcd_lockout_failed() */
#define NGX_HTTP_KCD_LOCKOUT_WRONG_PASSWORD  0
#define NGX_HTTP_KCD_LOCKOUT_UNKNOWN_USER    1


/* $kcd_lockout_status */
#define NGX_HTTP_KCD_LOCKOUT_NONE            0
#define NGX_HTTP_KCD_LOCKOUT_FAMILIAR        1
#define NGX_HTTP_KCD_LOCKOUT_UNFAMILIAR      2
#define NGX_HTTP_KCD_LOCKOUT_LOCKED          3
#define NGX_HTTP_KCD_LOCKOUT_LOG_ONLY        4


/* counters, in the kcd_lockout_zone's shared memory */
typedef struct {
    ngx_atomic_t               refused_lockout;
    ngx_atomic_t               refused_spray;
} ngx_http_kcd_lockout_counters_t;


extern ngx_module_t  ngx_http_kcd_lockout_module;
extern ngx_module_t  ngx_http_kcd_require_module;


/*
 * B19, before a password is checked (NTLM AUTHENTICATE, Basic), with the
 * names as the client sent them (user may be a UPN; domain may be empty).
 * NGX_OK: go on and check the password.  NGX_DECLINED: refuse the logon
 * exactly as a wrong password (the caller answers as it does for one and
 * asks no user file, DC or KDC); the refusal is already logged and
 * counted.  NGX_OK whenever kcd_lockout is off here.
 */
ngx_int_t ngx_http_kcd_lockout_check(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *domain);

/*
 * B19: what to return for a logon ngx_http_kcd_lockout_check() refused:
 * rc, the wrong-password answer, at once, or NGX_AGAIN and rc later (the
 * request ctx's done/rc), after as long as a checked wrong password takes
 * in this zone (DC or KDC round trip): the same timing class.
 */
ngx_int_t ngx_http_kcd_lockout_answer(ngx_http_request_t *r, ngx_int_t rc);

/*
 * B19: a password check failed: why is NGX_HTTP_KCD_LOCKOUT_WRONG_PASSWORD
 * (counted for the account and the address) or _UNKNOWN_USER (counted for
 * the address only, so that made-up names never take zone memory).
 */
void ngx_http_kcd_lockout_failed(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *domain, ngx_uint_t why);

/*
 * B19, from ngx_http_kcd_logon_failed(): counts the refusal when reason
 * says it was a failed password check (see ngx_http_kcd_lockout.c).
 */
void ngx_http_kcd_lockout_logon_failed(ngx_http_request_t *r,
    ngx_uint_t scheme, ngx_str_t *user, ngx_str_t *domain,
    const char *reason);

/*
 * B19, from ngx_http_kcd_logon_succeeded(), principal: the identity's
 * canonical user@REALM.  The client address becomes one of the account's
 * familiar addresses, the failed count of its class resets (a lock stays).
 */
void ngx_http_kcd_lockout_success(ngx_http_request_t *r,
    ngx_str_t *principal);

/* Prometheus lines of every zone appended to b; the size needed first */
size_t ngx_http_kcd_lockout_status_size(ngx_http_request_t *r);
u_char *ngx_http_kcd_lockout_status(ngx_http_request_t *r, u_char *p,
    u_char *last);


/*
 * Names folded as the user file compares them (kcd_names_fold(): the lower
 * case of the Unicode upper case): "JÜRGEN" -> "jürgen", "al\xc4\xb1ce"
 * (dotless i) -> "alice".  Writes to dst, returns the end, NULL when it
 * does not fit before last.  Bytes that are not UTF-8 are kept (ASCII
 * lowered).
 */
u_char *ngx_http_kcd_lower(u_char *dst, u_char *last, u_char *src,
    size_t len);

/*
 * B20: after authentication, before delegation.  user, principal: the
 * request's identity; groups: the names and SIDs of its groups from the
 * logon, each NUL-terminated (len 0: none known).  NGX_OK: admitted (or no
 * kcd_require here); NGX_HTTP_FORBIDDEN: refused, logged at info, counted.
 */
void *ngx_http_kcd_lockout_scope(ngx_http_request_t *r);
ngx_int_t ngx_http_kcd_require_check(ngx_http_request_t *r,
    ngx_http_kcd_identity_t *id);

/* B20 for the request's identity (access handler, after the logon) */
ngx_int_t ngx_http_kcd_require(ngx_http_request_t *r);

/* kcd_require is set in this location: the logon should collect groups */
ngx_uint_t ngx_http_kcd_require_wants_groups(ngx_http_request_t *r);

/*
 * The groups of a winbind logon or a PAC (kcd_wb_result_t: names, then
 * SIDs) as one NUL-separated string in pool.  NGX_OK or NGX_ERROR.
 */
struct kcd_wb_result_s;
ngx_int_t ngx_http_kcd_require_wb_groups(ngx_pool_t *pool,
    struct kcd_wb_result_s *res, ngx_str_t *groups);


#endif /* _NGX_HTTP_KCD_LOCKOUT_H_INCLUDED_ */
