/*
 * kcd_ntlm_user_file: local accounts with NT hashes, the embedded
 * validation backend (no domain needed).  Read when the configuration is
 * loaded, so `nginx -t` reports a bad line and `nginx -s reload` picks up
 * changes.
 *
 *     # comment
 *     [DOMAIN\]user:<NT hash, 32 hex digits>[:group,group]    # comment
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_names.h"


#define NGX_HTTP_KCD_USER_FILE_MAX  (16 * 1024 * 1024)


static ngx_int_t ngx_http_kcd_user_file_line(ngx_conf_t *cf,
    ngx_http_kcd_user_file_t *uf, u_char *p, u_char *last, ngx_uint_t n);
static ngx_int_t ngx_http_kcd_user_file_groups(ngx_conf_t *cf,
    ngx_http_kcd_user_file_t *uf, ngx_http_kcd_account_t *acc, u_char *p,
    u_char *last, ngx_uint_t n);


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
    u_char                  *colon, *sep, *hex, *end, *q;
    ngx_int_t                hi, lo;
    ngx_uint_t               i;
    ngx_http_kcd_account_t  *acc;

    /* trailing comment, white space and CR */

    for (q = p; q < last; q++) {
        if (*q == '#' && (q == p || q[-1] == ' ' || q[-1] == '\t')) {
            last = q;
            break;
        }
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t'
                        || last[-1] == '\r'))
    {
        last--;
    }

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p == last) {
        return NGX_OK;
    }

    /* user names have no ':' (MS-ADTS sAMAccountName) */
    colon = ngx_strlchr(p, last, ':');

    if (colon == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_ntlm_user_file \"%V\", line %ui: expected "
                           "\"[DOMAIN\\]user:<32 hex digits>\"",
                           &uf->path, n);
        return NGX_ERROR;
    }

    hex = colon + 1;
    end = ngx_strlchr(hex, last, ':');

    if (end == NULL) {
        end = last;
    }

    if (end - hex != 32) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_ntlm_user_file \"%V\", line %ui: the NT hash "
                           "must be 32 hex digits", &uf->path, n);
        return NGX_ERROR;
    }

    acc = ngx_array_push(&uf->accounts);
    if (acc == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < 16; i++) {
        hi = ngx_hextoi(&hex[2 * i], 1);
        lo = ngx_hextoi(&hex[2 * i + 1], 1);

        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "kcd_ntlm_user_file \"%V\", line %ui: the NT "
                               "hash must be 32 hex digits", &uf->path, n);
            return NGX_ERROR;
        }

        acc->hash[i] = (u_char) (hi * 16 + lo);
    }

    sep = ngx_strlchr(p, colon, '\\');

    if (sep) {
        acc->domain.data = p;
        acc->domain.len = sep - p;
        acc->user.data = sep + 1;
        acc->user.len = colon - (sep + 1);

    } else {
        acc->domain.len = 0;
        acc->domain.data = NULL;
        acc->user.data = p;
        acc->user.len = colon - p;
    }

    if (acc->user.len == 0 || (sep && acc->domain.len == 0)
        || acc->user.len > NGX_HTTP_KCD_NAME_MAX
        || acc->domain.len > NGX_HTTP_KCD_NAME_MAX)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_ntlm_user_file \"%V\", line %ui: empty or "
                           "too long user or domain name", &uf->path, n);
        return NGX_ERROR;
    }

    /* the line buffer is temporary */

    acc->user.data = ngx_pstrdup(cf->pool, &acc->user);
    if (acc->user.data == NULL) {
        return NGX_ERROR;
    }

    if (acc->domain.len) {
        acc->domain.data = ngx_pstrdup(cf->pool, &acc->domain);
        if (acc->domain.data == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_str_null(&acc->groups);

    if (end < last) {
        return ngx_http_kcd_user_file_groups(cf, uf, acc, end + 1, last, n);
    }

    return NGX_OK;
}


/* the optional third field: groups for kcd_require (B20), comma-separated */

static ngx_int_t
ngx_http_kcd_user_file_groups(ngx_conf_t *cf, ngx_http_kcd_user_file_t *uf,
    ngx_http_kcd_account_t *acc, u_char *p, u_char *last, ngx_uint_t n)
{
    u_char  *comma, *s, *e, *q;

    /* the names, each NUL-terminated, one after the other (B20) */

    acc->groups.data = ngx_pnalloc(cf->pool, last - p + 1);
    if (acc->groups.data == NULL) {
        return NGX_ERROR;
    }

    q = acc->groups.data;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        for (s = p; s < comma && (*s == ' ' || *s == '\t'); s++) {
            /* void */
        }

        for (e = comma; e > s && (e[-1] == ' ' || e[-1] == '\t'); e--) {
            /* void */
        }

        if (e == s || e - s > NGX_HTTP_KCD_NAME_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "kcd_ntlm_user_file \"%V\", line %ui: empty "
                               "or too long group name", &uf->path, n);
            return NGX_ERROR;
        }

        q = ngx_cpymem(q, s, e - s);
        *q++ = '\0';

        p = comma + 1;
    }

    acc->groups.len = q - acc->groups.data;

    return NGX_OK;
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
