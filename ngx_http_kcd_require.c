/*
 * B20: access rules.
 *
 *     kcd_require user=NAME | group=NAME ...;     (repeatable, H S L)
 *
 * After authentication the request goes on only if the user is one of the
 * named users or a member of one of the named groups; else 403 and one
 * info line, and nothing is delegated.  Any rule that matches admits.  A
 * location without kcd_require inherits the rules of the enclosing block
 * (as auth_basic does); rules of one level are not added to those of
 * another.
 *
 * Names compare case-insensitively with Unicode simple case mapping.  A user rule matches any
 * accepted spelling of the account: "alice" matches the account name of
 * any realm, "KCD\alice" and "alice@KCD.TEST" match that account only
 * (the NetBIOS domain maps to its realm as for delegation).  A group rule
 * "Exchange Users" matches a group of that name in any domain,
 * "KCD\Exchange Users" only in that one.  The groups come from the logon
 * itself: the DC's answer to winbind, the PAC of a Kerberos ticket, or the
 * third field of the user file.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"
#include "ngx_http_kcd_winbind.h"


#define NGX_HTTP_KCD_RULE_USER   1
#define NGX_HTTP_KCD_RULE_GROUP  2


typedef struct {
    ngx_uint_t                 type;
    ngx_str_t                  name;       /* without domain or realm */
    ngx_str_t                  domain;     /* NetBIOS domain, or empty */
    ngx_str_t                  realm;      /* from name@realm, or empty */
    ngx_str_t                  text;       /* as written, for the log */
} ngx_http_kcd_rule_t;


typedef struct {
    ngx_array_t               *rules;      /* ngx_http_kcd_rule_t */
    ngx_str_t                  file;       /* where set, for nginx -t */
    ngx_uint_t                 line;
} ngx_http_kcd_require_loc_conf_t;


static char *ngx_http_kcd_require_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static void *ngx_http_kcd_require_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_kcd_require_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);


static ngx_command_t  ngx_http_kcd_require_commands[] = {

    { ngx_string("kcd_require"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_kcd_require_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_kcd_require_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_kcd_require_create_loc_conf,  /* create location configuration */
    ngx_http_kcd_require_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_kcd_require_module = {
    NGX_MODULE_V1,
    &ngx_http_kcd_require_module_ctx,      /* module context */
    ngx_http_kcd_require_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* names compare as Windows does: Unicode simple case mapping */

static ngx_uint_t
ngx_http_kcd_require_eq(ngx_str_t *a, u_char *b, size_t len)
{
    u_char  x[1024], y[1024], *xe, *ye;

    if (a->len == len && ngx_strncasecmp(a->data, b, len) == 0) {
        return 1;
    }

    xe = ngx_http_kcd_lower(x, x + sizeof(x), a->data, a->len);
    ye = ngx_http_kcd_lower(y, y + sizeof(y), b, len);

    return xe && ye && xe - x == ye - y && ngx_memcmp(x, y, xe - x) == 0;
}


/* "DOMAIN\name" or "name@realm" or "name" */

static void
ngx_http_kcd_require_split(ngx_str_t *s, ngx_str_t *domain, ngx_str_t *name,
    ngx_str_t *realm)
{
    u_char  *p, *last;

    last = s->data + s->len;
    *name = *s;
    ngx_str_null(domain);
    ngx_str_null(realm);

    p = ngx_strlchr(s->data, last, '\\');

    if (p) {
        domain->data = s->data;
        domain->len = p - s->data;
        name->data = p + 1;
        name->len = last - name->data;
        return;
    }

    for (p = last; p > s->data; p--) {
        if (p[-1] == '@') {
            name->len = p - 1 - s->data;
            realm->data = p;
            realm->len = last - p;
            return;
        }
    }
}


static ngx_uint_t
ngx_http_kcd_require_user(ngx_http_request_t *r, ngx_http_kcd_rule_t *rule,
    ngx_http_kcd_identity_t *id)
{
    ngx_str_t                *principal;
    u_char                   *at;
    ngx_str_t                 realm, uname, urealm;
    ngx_http_kcd_loc_conf_t  *klcf;

    /* the account as the logon resolved it: name@REALM */

    principal = &id->principal;
    at = NULL;

    for (at = principal->data + principal->len; at > principal->data; at--) {
        if (at[-1] == '@') {
            break;
        }
    }

    if (at == principal->data) {
        uname = *principal;
        ngx_str_null(&urealm);

    } else {
        uname.data = principal->data;
        uname.len = at - 1 - principal->data;
        urealm.data = at;
        urealm.len = principal->data + principal->len - at;
    }

    if (!ngx_http_kcd_require_eq(&uname, rule->name.data, rule->name.len)) {
        return 0;
    }

    if (rule->realm.len) {
        return ngx_http_kcd_require_eq(&urealm, rule->realm.data,
                                       rule->realm.len);
    }

    if (rule->domain.len == 0) {
        return 1;
    }

    /*
     * DOMAIN\name: an account checked by its domain (user file, winbind)
     * is that domain's account only — two domains mapped to one realm
     * (kcd_realm for domains not in kcd_domain_map) are still two
     */

    if (id->backend == NGX_HTTP_KCD_BACKEND_FILE
        || id->backend == NGX_HTTP_KCD_BACKEND_WINBIND)
    {
        return ngx_http_kcd_require_eq(&id->domain, rule->domain.data,
                                       rule->domain.len);
    }

    /* Kerberos: the realm the module maps that domain to */

    klcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_module);

    if (ngx_http_kcd_realm(r, klcf, &rule->domain, &realm) != NGX_OK) {
        return 0;
    }

    return ngx_http_kcd_require_eq(&urealm, realm.data, realm.len);
}


static ngx_uint_t
ngx_http_kcd_require_group(ngx_http_kcd_rule_t *rule, ngx_str_t *group)
{
    ngx_str_t  gdomain, gname, grealm;

    ngx_http_kcd_require_split(group, &gdomain, &gname, &grealm);

    if (!ngx_http_kcd_require_eq(&gname, rule->name.data, rule->name.len)) {
        return 0;
    }

    if (rule->domain.len) {
        return ngx_http_kcd_require_eq(&gdomain, rule->domain.data,
                                       rule->domain.len);
    }

    if (rule->realm.len) {
        return ngx_http_kcd_require_eq(&grealm, rule->realm.data,
                                       rule->realm.len);
    }

    return 1;
}


/*
 * The groups of a winbind logon or a PAC: their names ("KCD\\Exchange
 * Users") and their SIDs, so that a rule may name either.
 */

ngx_int_t
ngx_http_kcd_require_wb_groups(ngx_pool_t *pool, kcd_wb_result_t *res,
    ngx_str_t *groups)
{
    u_char      *p;
    size_t       nlen, slen;
    const char  *s;
    int          i;

    ngx_str_null(groups);

    nlen = 0;
    for (i = 0, s = res->groups; i < res->ngroups; i++) {
        nlen += ngx_strlen(s) + 1;
        s += ngx_strlen(s) + 1;
    }

    slen = 0;
    for (i = 0, s = res->sids; i < res->nsids; i++) {
        slen += ngx_strlen(s) + 1;
        s += ngx_strlen(s) + 1;
    }

    if (nlen + slen == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(pool, nlen + slen);
    if (p == NULL) {
        return NGX_ERROR;
    }

    groups->data = p;
    p = ngx_cpymem(p, res->groups, nlen);
    p = ngx_cpymem(p, res->sids, slen);
    groups->len = p - groups->data;

    return NGX_OK;
}


ngx_uint_t
ngx_http_kcd_require_wants_groups(ngx_http_request_t *r)
{
    ngx_http_kcd_require_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_require_module);

    return rlcf && rlcf->rules;
}


ngx_int_t
ngx_http_kcd_require_check(ngx_http_request_t *r, ngx_http_kcd_identity_t *id)
{
    ngx_str_t                        *user, *principal, *groups;
    u_char                           *p, *last, *e;
    ngx_str_t                         g;
    ngx_uint_t                        i, ng;
    ngx_http_kcd_rule_t              *rule;
    ngx_http_kcd_require_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r, ngx_http_kcd_require_module);

    if (rlcf == NULL || rlcf->rules == NULL) {
        return NGX_OK;
    }

    user = &id->user;
    principal = &id->principal;
    groups = &id->groups;

    rule = rlcf->rules->elts;
    ng = 0;

    if (groups) {
        for (p = groups->data; p < groups->data + groups->len; p++) {
            ng += (*p == '\0');
        }
    }

    for (i = 0; i < rlcf->rules->nelts; i++) {

        if (rule[i].type == NGX_HTTP_KCD_RULE_USER) {
            if (ngx_http_kcd_require_user(r, &rule[i], id)) {
                return NGX_OK;
            }

            continue;
        }

        p = groups ? groups->data : NULL;
        last = groups ? groups->data + groups->len : NULL;

        while (p < last) {
            e = ngx_strlchr(p, last, '\0');
            if (e == NULL) {
                e = last;
            }

            g.data = p;
            g.len = e - p;

            if (g.len && ngx_http_kcd_require_group(&rule[i], &g)) {
                return NGX_OK;
            }

            p = e + 1;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "kcd: access denied by kcd_require: user \"%V\" "
                  "principal \"%V\" client %V is none of the named users "
                  "and in none of the named groups (%ui groups known "
                  "from the logon)",
                  user, principal, &r->connection->addr_text, ng);

    ngx_http_kcd_count(r, require_denied);

    return NGX_HTTP_FORBIDDEN;
}


/* B20 for the request's identity, from the access handler */

ngx_int_t
ngx_http_kcd_require(ngx_http_request_t *r)
{
    ngx_http_kcd_request_t  *rq;

    if (!ngx_http_kcd_require_wants_groups(r)) {
        return NGX_OK;
    }

    rq = ngx_http_kcd_request(r, 0);

    if (rq == NULL || rq->identity == NULL) {
        /* authenticated without an identity cannot be: fail closed */
        return NGX_HTTP_FORBIDDEN;
    }

    return ngx_http_kcd_require_check(r, rq->identity);
}


static char *
ngx_http_kcd_require_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_kcd_require_loc_conf_t *rlcf = conf;

    ngx_str_t            *value, s;
    ngx_uint_t            i;
    ngx_http_kcd_rule_t  *rule;

    value = cf->args->elts;

    if (rlcf->file.len == 0) {
        rlcf->file = cf->conf_file->file.name;
        rlcf->line = cf->conf_file->line;
    }

    if (rlcf->rules == NULL) {
        rlcf->rules = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_kcd_rule_t));
        if (rlcf->rules == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 1; i < cf->args->nelts; i++) {

        rule = ngx_array_push(rlcf->rules);
        if (rule == NULL) {
            return NGX_CONF_ERROR;
        }

        rule->text = value[i];

        if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            rule->type = NGX_HTTP_KCD_RULE_USER;
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

        } else if (ngx_strncmp(value[i].data, "group=", 6) == 0) {
            rule->type = NGX_HTTP_KCD_RULE_GROUP;
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid rule \"%V\" in \"kcd_require\": use "
                               "user=NAME or group=NAME (quote the whole "
                               "rule when the name has spaces: "
                               "\"group=Exchange Users\")", &value[i]);
            return NGX_CONF_ERROR;
        }

        ngx_http_kcd_require_split(&s, &rule->domain, &rule->name,
                                   &rule->realm);

        if (rule->name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "empty name in \"kcd_require %V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_kcd_require_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_kcd_require_loc_conf_t  *rlcf;

    rlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_kcd_require_loc_conf_t));
    if (rlcf == NULL) {
        return NULL;
    }

    /* rlcf->rules = NULL; */

    return rlcf;
}


static char *
ngx_http_kcd_require_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_kcd_require_loc_conf_t  *prev = parent;
    ngx_http_kcd_require_loc_conf_t  *conf = child;

    ngx_http_kcd_loc_conf_t   *klcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (conf->rules == NULL) {
        conf->rules = prev->rules;
        return NGX_CONF_OK;
    }

    /*
     * rules written where nothing authenticates would admit everyone:
     * an open door that looks closed (inherited rules are fine)
     */

    klcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_kcd_module);
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (klcf->schemes == 0 && conf->rules != prev->rules
        && clcf->name.len)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"kcd_require\" in a location without \"kcd_auth\" "
                      "would admit everyone in %V:%ui",
                      &conf->file, conf->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
