/*
 * kcd_ntlm_user_file: local accounts with NT hashes, the embedded
 * validation backend (no domain needed), SPEC "NT-hash user file" and B17.
 * Read by the master when the configuration is loaded (so workers never
 * need read access, `nginx -t` reports a bad line and `nginx -s reload`
 * picks up changes):
 *
 *     # comment
 *     [DOMAIN\]user:<NT hash, 32 hex digits>[:group,group]    # comment
 *
 * The line syntax is in ngx_http_kcd_userline.c; here: the file, a UTF-8
 * byte-order mark, and accounts defined twice.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <stdlib.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_names.h"
#include "ngx_http_kcd_userline.h"


#define NGX_HTTP_KCD_USER_FILE_MAX  (16 * 1024 * 1024)


static ngx_int_t ngx_http_kcd_user_file_line(ngx_conf_t *cf,
    ngx_http_kcd_user_file_t *uf, u_char *p, u_char *last, ngx_uint_t n);
static ngx_int_t ngx_http_kcd_user_file_unique(ngx_conf_t *cf,
    ngx_http_kcd_user_file_t *uf);
static int ngx_libc_cdecl ngx_http_kcd_account_cmp(const void *one,
    const void *two);
static u_char *ngx_http_kcd_account_fold(u_char *dst, ngx_str_t *name);


/*
 * Loads path (relative to the prefix) into *ufp, allocated from cf->pool.
 * Errors are logged (emerg, with the path, file line and OS error) and
 * give NGX_CONF_ERROR.
 */

char *
ngx_http_kcd_user_file_load(ngx_conf_t *cf, ngx_str_t *path,
    ngx_http_kcd_user_file_t **ufp)
{
    u_char                    *buf, *p, *last, *eol;
    ssize_t                    n;
    ngx_fd_t                   fd;
    ngx_uint_t                 line;
    ngx_file_info_t            fi;
    ngx_http_kcd_user_file_t  *uf;

    uf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_user_file_t));
    if (uf == NULL) {
        return NGX_CONF_ERROR;
    }

    uf->path = *path;

    if (ngx_conf_full_name(cf->cycle, &uf->path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&uf->accounts, cf->pool, 16,
                       sizeof(ngx_http_kcd_account_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    fd = ngx_open_file(uf->path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "kcd_ntlm_user_file \"%V\" cannot be opened",
                           &uf->path);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "kcd_ntlm_user_file \"%V\": fstat() failed",
                           &uf->path);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    ngx_http_kcd_secret_mode_check(cf, "kcd_ntlm_user_file", &uf->path, &fi);

    if (ngx_file_size(&fi) > NGX_HTTP_KCD_USER_FILE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_ntlm_user_file \"%V\" is larger than %d "
                           "bytes", &uf->path, NGX_HTTP_KCD_USER_FILE_MAX);
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    buf = ngx_pnalloc(cf->temp_pool, (size_t) ngx_file_size(&fi) + 1);
    if (buf == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }

    n = read(fd, buf, (size_t) ngx_file_size(&fi));
    ngx_close_file(fd);

    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "kcd_ntlm_user_file \"%V\" cannot be read",
                           &uf->path);
        return NGX_CONF_ERROR;
    }

    p = buf;
    last = buf + n;
    line = 0;

    /* a UTF-8 byte-order mark, as Windows editors write */

    if (last - p >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
        p += 3;
    }

    while (p < last) {
        line++;

        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        if (ngx_http_kcd_user_file_line(cf, uf, p, eol, line) != NGX_OK) {
            ngx_explicit_memzero(buf, n);
            return NGX_CONF_ERROR;
        }

        p = eol + 1;
    }

    ngx_explicit_memzero(buf, n);

    if (ngx_http_kcd_user_file_unique(cf, uf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (uf->accounts.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "kcd_ntlm_user_file \"%V\" has no accounts",
                           &uf->path);
    }

    *ufp = uf;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_kcd_user_file_line(ngx_conf_t *cf, ngx_http_kcd_user_file_t *uf,
    u_char *p, u_char *last, ngx_uint_t n)
{
    int                      rc;
    u_char                  *q;
    size_t                   len;
    ngx_uint_t               i;
    const char              *why;
    kcd_user_line_t          ul;
    ngx_http_kcd_account_t  *acc;

    why = "malformed line";

    rc = kcd_user_line_parse(p, last - p, &ul, &why);

    if (rc == KCD_USER_LINE_EMPTY) {
        return NGX_OK;
    }

    if (rc != KCD_USER_LINE_OK) {
        ngx_explicit_memzero(&ul, sizeof(kcd_user_line_t));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_ntlm_user_file %V:%ui: %s",
                           &uf->path, n, why);
        return NGX_ERROR;
    }

    acc = ngx_array_push(&uf->accounts);
    if (acc == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(acc, sizeof(ngx_http_kcd_account_t));

    ngx_memcpy(acc->hash, ul.hash, 16);
    ngx_explicit_memzero(ul.hash, 16);

    acc->line = n;

    /* the line buffer is temporary */

    acc->user.len = ul.user.len;
    acc->user.data = ngx_pnalloc(cf->pool, ul.user.len);
    if (acc->user.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(acc->user.data, ul.user.data, ul.user.len);

    if (ul.domain.len) {
        acc->domain.len = ul.domain.len;
        acc->domain.data = ngx_pnalloc(cf->pool, ul.domain.len);
        if (acc->domain.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(acc->domain.data, ul.domain.data, ul.domain.len);
    }

    if (ul.ngroups == 0) {
        return NGX_OK;
    }

    /* the names, each NUL-terminated, one after the other (B20) */

    len = 0;

    for (i = 0; i < ul.ngroups; i++) {
        len += ul.groups[i].len + 1;
    }

    acc->groups.data = ngx_pnalloc(cf->pool, len);
    if (acc->groups.data == NULL) {
        return NGX_ERROR;
    }

    q = acc->groups.data;

    for (i = 0; i < ul.ngroups; i++) {
        q = ngx_cpymem(q, ul.groups[i].data, ul.groups[i].len);
        *q++ = '\0';
    }

    acc->groups.len = len;

    return NGX_OK;
}


/*
 * The same account twice (same domain, or both without one, and the same
 * user, compared with Unicode simple case mapping as Windows compares
 * names and _find below does: "JÜRGEN" is "jürgen", kcd_names_fold()) is
 * an error naming both lines: appending a new line to change a password
 * must not leave the old one in force.  Folded keys sorted, O(n log n): user files of
 * many thousand lines load fast.
 */

typedef struct {
    u_char                  *key;     /* fold(domain) NUL fold(user) */
    size_t                   len;
    ngx_http_kcd_account_t  *acc;
} ngx_http_kcd_account_key_t;


static ngx_int_t
ngx_http_kcd_user_file_unique(ngx_conf_t *cf, ngx_http_kcd_user_file_t *uf)
{
    u_char                      *p;
    ngx_uint_t                   i, n;
    ngx_http_kcd_account_t      *acc, *a, *b;
    ngx_http_kcd_account_key_t  *keys;

    n = uf->accounts.nelts;

    if (n < 2) {
        return NGX_OK;
    }

    keys = ngx_palloc(cf->temp_pool, n * sizeof(ngx_http_kcd_account_key_t));
    if (keys == NULL) {
        return NGX_ERROR;
    }

    acc = uf->accounts.elts;

    for (i = 0; i < n; i++) {

        /* folded domain, NUL (never in a name), folded user */

        p = ngx_pnalloc(cf->temp_pool,
                        4 * (acc[i].domain.len + acc[i].user.len) + 9);
        if (p == NULL) {
            return NGX_ERROR;
        }

        keys[i].key = p;
        keys[i].acc = &acc[i];

        p = ngx_http_kcd_account_fold(p, &acc[i].domain);
        if (p == NULL) {
            return NGX_ERROR;
        }

        *p++ = '\0';

        p = ngx_http_kcd_account_fold(p, &acc[i].user);
        if (p == NULL) {
            return NGX_ERROR;
        }

        keys[i].len = p - keys[i].key;
    }

    qsort(keys, n, sizeof(ngx_http_kcd_account_key_t),
          ngx_http_kcd_account_cmp);

    for (i = 1; i < n; i++) {
        if (keys[i - 1].len != keys[i].len
            || ngx_memcmp(keys[i - 1].key, keys[i].key, keys[i].len) != 0)
        {
            continue;
        }

        a = keys[i - 1].acc;
        b = keys[i].acc;

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_ntlm_user_file %V:%ui and %V:%ui: "
                           "account \"%V%s%V\" defined twice",
                           &uf->path, a->line, &uf->path, b->line,
                           &b->domain, b->domain.len ? "\\" : "",
                           &b->user);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * SPEC "NT-hash user file": lines without a domain log on in the server's
 * own domain, so where kcd_ntlm_domain is KCD, "alice" and "KCD\alice" are
 * the same account twice (two passwords, one maybe meant for another
 * person): an error naming both lines and the kcd_auth that uses them.
 * Called from the merge of each location that authenticates with the
 * file; a file shared by servers of one domain is checked once.
 */

ngx_int_t
ngx_http_kcd_user_file_check_domain(ngx_conf_t *cf,
    ngx_http_kcd_user_file_t *uf, ngx_str_t *domain, ngx_str_t *conf_file,
    ngx_uint_t conf_line)
{
    u_char                      *p;
    ngx_uint_t                   i, n, k;
    ngx_http_kcd_account_t      *acc, *a, *b;
    ngx_http_kcd_account_key_t  *keys;

    if (uf->domain_checked.len == domain->len
        && ngx_strncmp(uf->domain_checked.data, domain->data, domain->len)
           == 0)
    {
        return NGX_OK;
    }

    uf->domain_checked = *domain;

    n = uf->accounts.nelts;
    acc = uf->accounts.elts;

    keys = ngx_palloc(cf->temp_pool, n * sizeof(ngx_http_kcd_account_key_t));
    if (keys == NULL) {
        return NGX_ERROR;
    }

    /* the user names of the lines without domain and of this domain */

    k = 0;

    for (i = 0; i < n; i++) {
        if (acc[i].domain.len
            && !kcd_names_equal((char *) acc[i].domain.data,
                                acc[i].domain.len, (char *) domain->data,
                                domain->len))
        {
            continue;
        }

        p = ngx_pnalloc(cf->temp_pool, 4 * acc[i].user.len + 4);
        if (p == NULL) {
            return NGX_ERROR;
        }

        keys[k].key = p;
        keys[k].acc = &acc[i];

        p = ngx_http_kcd_account_fold(p, &acc[i].user);
        if (p == NULL) {
            return NGX_ERROR;
        }

        keys[k].len = p - keys[k].key;
        k++;
    }

    if (k < 2) {
        return NGX_OK;
    }

    qsort(keys, k, sizeof(ngx_http_kcd_account_key_t),
          ngx_http_kcd_account_cmp);

    /* within each kind names are unique already: a pair is one of each */

    for (i = 1; i < k; i++) {
        if (keys[i - 1].len != keys[i].len
            || ngx_memcmp(keys[i - 1].key, keys[i].key, keys[i].len) != 0)
        {
            continue;
        }

        a = keys[i - 1].acc;
        b = keys[i].acc;

        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "kcd_ntlm_user_file %V:%ui and %V:%ui: \"%V%s%V\" and "
                      "\"%V%s%V\" are the same account where "
                      "kcd_ntlm_domain is \"%V\" (lines without a domain "
                      "log on in the server's own domain) in %V:%ui",
                      &uf->path, a->line, &uf->path, b->line,
                      &a->domain, a->domain.len ? "\\" : "", &a->user,
                      &b->domain, b->domain.len ? "\\" : "", &b->user,
                      domain, conf_file, conf_line);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * name -> its key under kcd_names_fold(): names that kcd_names_equal(), and
 * so ngx_http_kcd_user_file_find(), cannot tell apart give the same bytes.
 * dst has room for 4 * name->len + 4 bytes; NULL when the key does not
 * fit (it always does: a code point folds to at most 4 bytes).
 */

static u_char *
ngx_http_kcd_account_fold(u_char *dst, ngx_str_t *name)
{
    size_t  n;

    if (name->len == 0) {
        return dst;
    }

    n = kcd_names_fold((char *) dst, 4 * name->len + 4,
                       (char *) name->data, name->len);

    return (n == (size_t) -1) ? NULL : dst + n;
}


/* by folded name, equal names by line */

static int ngx_libc_cdecl
ngx_http_kcd_account_cmp(const void *one, const void *two)
{
    int                          rc;
    ngx_http_kcd_account_key_t  *a, *b;

    a = (ngx_http_kcd_account_key_t *) one;
    b = (ngx_http_kcd_account_key_t *) two;

    rc = ngx_memcmp(a->key, b->key, ngx_min(a->len, b->len));

    if (rc != 0) {
        return rc < 0 ? -1 : 1;
    }

    if (a->len != b->len) {
        return a->len < b->len ? -1 : 1;
    }

    return a->acc->line < b->acc->line ? -1 : (a->acc->line > b->acc->line);
}


/*
 * kcd_keytab, kcd_ntlm_user_file (here rather than in conf_check.c,
 * which calls this file: calls go one way): B17 has the master read them, so
 * workers never need access; a file readable by every local user exposes
 * the service account's keys or the users' NT hashes (each is as good as
 * the password for NTLM).
 */

void
ngx_http_kcd_secret_mode_check(ngx_conf_t *cf, const char *directive,
    ngx_str_t *path, ngx_file_info_t *fi)
{
    if (ngx_file_access(fi) & S_IROTH) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "%s \"%V\" is readable by other users "
                           "(mode 0%ui%ui%ui): only the master process reads "
                           "it, chmod o-r", directive, path,
                           (ngx_uint_t) (ngx_file_access(fi) >> 6) & 7,
                           (ngx_uint_t) (ngx_file_access(fi) >> 3) & 7,
                           (ngx_uint_t) ngx_file_access(fi) & 7);
    }
}


/*
 * User and domain compare case-insensitively; an account without domain
 * matches any domain, an exact domain match wins over it.
 */

ngx_http_kcd_account_t *
ngx_http_kcd_user_file_find(ngx_http_kcd_user_file_t *uf, ngx_str_t *user,
    ngx_str_t *domain)
{
    ngx_uint_t               i;
    ngx_http_kcd_account_t  *acc, *any;

    acc = uf->accounts.elts;
    any = NULL;

    for (i = 0; i < uf->accounts.nelts; i++) {

        /* Unicode simple case mapping, as Windows compares names */

        if (!kcd_names_equal((char *) acc[i].user.data, acc[i].user.len,
                             (char *) user->data, user->len))
        {
            continue;
        }

        if (acc[i].domain.len == 0) {
            if (any == NULL) {
                any = &acc[i];
            }
            continue;
        }

        if (domain->len == 0
            || kcd_names_equal((char *) acc[i].domain.data, acc[i].domain.len,
                               (char *) domain->data, domain->len))
        {
            return &acc[i];
        }
    }

    return any;
}
