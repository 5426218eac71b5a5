/*
 * B13: configuration mistakes that `nginx -t` catches (errors) or points
 * out (warnings, the test still succeeds), each with the file:line to
 * look at.  The directive handlers and merges of ngx_http_kcd_module.c
 * call in here; the checks themselves live in this file.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"


static ngx_int_t ngx_http_kcd_conf_check_lower(ngx_str_t *s);
static char *ngx_http_kcd_conf_check_realm_post(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_kcd_conf_check_computer_post(ngx_conf_t *cf,
    void *post, void *data);
static char *ngx_http_kcd_conf_check_principal_post(ngx_conf_t *cf,
    void *post, void *data);


/*
 * the "post" of kcd_realm, kcd_ntlm_computer and kcd_service_principal in
 * the command table: called while the directive is parsed, so messages
 * carry its file:line
 */
ngx_conf_post_t  ngx_http_kcd_conf_check_realm_p =
    { ngx_http_kcd_conf_check_realm_post };
ngx_conf_post_t  ngx_http_kcd_conf_check_computer_p =
    { ngx_http_kcd_conf_check_computer_post };
ngx_conf_post_t  ngx_http_kcd_conf_check_principal_p =
    { ngx_http_kcd_conf_check_principal_post };


/*
 * kcd_realm, the realm of kcd_domain_map: Kerberos realms of Active
 * Directory are the DNS domain in upper case, and MIT compares them
 * case-sensitively, so "kcd.test" can never match a ticket.
 */

ngx_int_t
ngx_http_kcd_conf_check_realm(ngx_conf_t *cf, const char *directive,
    ngx_str_t *realm)
{
    if (realm->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s: empty realm", directive);
        return NGX_ERROR;
    }

    if (ngx_http_kcd_conf_check_lower(realm)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%s \"%V\": a Kerberos realm is upper case "
                           "(Active Directory: the DNS domain in capitals)",
                           directive, realm);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* ngx_conf_post_t handler of kcd_realm */

static char *
ngx_http_kcd_conf_check_realm_post(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *realm = data;

    if (ngx_http_kcd_conf_check_realm(cf, "kcd_realm", realm) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* kcd_service_principal: "name[@REALM]", the realm upper case */

static char *
ngx_http_kcd_conf_check_principal_post(ngx_conf_t *cf, void *post,
    void *data)
{
    ngx_str_t  *name = data;

    u_char     *at;
    ngx_str_t   realm;

    at = ngx_strlchr(name->data, name->data + name->len, '@');

    if (at == NULL) {
        return NGX_CONF_OK;
    }

    realm.data = at + 1;
    realm.len = name->data + name->len - realm.data;

    if (realm.len == 0 || ngx_http_kcd_conf_check_lower(&realm)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_service_principal \"%V\": the realm after "
                           "'@' is upper case (Active Directory: the DNS "
                           "domain in capitals)", name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * ngx_conf_post_t handler of kcd_ntlm_computer: NetBIOS names are at most
 * 15 characters; Windows truncates longer host names for the machine
 * account, and with winbind pass-through the DC refuses a logon whose
 * MsvAvNbComputerName differs from it.
 */

static char *
ngx_http_kcd_conf_check_computer_post(ngx_conf_t *cf, void *post, void *data)
{
    ngx_str_t  *name = data;

    if (name->len > 15) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "kcd_ntlm_computer \"%V\" is longer than 15 "
                           "characters: NetBIOS computer names are at most "
                           "15 (the machine account name is \"%*s\")",
                           name, (size_t) 15, name->data);
    }

    return NGX_CONF_OK;
}


/*
 * A static kcd_spn must be "service/host[@REALM]": the GSS host-based
 * form "HTTP@host" and names without a host fail at the KDC on every
 * request, as "server not found", not here.
 */

ngx_int_t
ngx_http_kcd_conf_check_spn(ngx_conf_t *cf, ngx_str_t *spn)
{
    u_char     *slash, *at, *last;
    ngx_str_t   realm;

    last = spn->data + spn->len;
    slash = ngx_strlchr(spn->data, last, '/');
    at = ngx_strlchr(spn->data, last, '@');

    if (slash == NULL || slash == spn->data || slash + 1 == last
        || (at && (at < slash || at == slash + 1 || at + 1 == last
                   || ngx_strlchr(at + 1, last, '@') != NULL))
        || ngx_strlchr(slash + 1, at ? at : last, '/') != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_spn \"%V\" is not \"service/host[@REALM]\" "
                           "(e.g. HTTP/exchange.corp.example)%s", spn,
                           (at && slash == NULL)
                           ? ": \"service@host\" is the GSSAPI form, write "
                             "\"service/host\"" : "");
        return NGX_ERROR;
    }

    if (at) {
        realm.data = at + 1;
        realm.len = last - realm.data;

        if (ngx_http_kcd_conf_check_lower(&realm)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "kcd_spn \"%V\": the realm is upper case",
                               spn);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * kcd_keytab at parse time: the master (root) can read it, with the OS
 * error and file:line when not; a warning when others can read it.
 */

ngx_int_t
ngx_http_kcd_conf_check_file(ngx_conf_t *cf, const char *directive,
    ngx_str_t *path)
{
    ngx_fd_t         fd;
    ngx_file_info_t  fi;

    fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "%s \"%V\" cannot be opened", directive, path);
        return NGX_ERROR;
    }

    if (ngx_fd_info(fd, &fi) != NGX_FILE_ERROR) {
        ngx_http_kcd_secret_mode_check(cf, directive, path, &fi);
    }

    ngx_close_file(fd);

    return NGX_OK;
}


static void
ngx_http_kcd_keytab_cleanup(void *data)
{
    kcd_gss_keytab_free(data);
}


/*
 * B17: the keytab's entries copied into a MEMORY: keytab by the master,
 * at configuration time; freed with the cycle's pool (the workers of that
 * cycle hold their own copies since fork(), so nothing they use goes).
 */

ngx_int_t
ngx_http_kcd_keytab_load(ngx_conf_t *cf, ngx_http_kcd_main_conf_t *kmcf,
    char *err, size_t errlen)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_cpystrn((u_char *) err, (u_char *) "out of memory", errlen);
        return NGX_ERROR;
    }

    if (kcd_gss_keytab_load(&kmcf->keytab_mem, (char *) kmcf->keytab.data,
                            (char *) kmcf->service_principal.data,
                            err, errlen)
        != 0)
    {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_kcd_keytab_cleanup;
    cln->data = kmcf->keytab_mem;

    return NGX_OK;
}


/*
 * Called from the merge of every location (and server) configuration:
 * notes in the server's configuration that it authenticates, and warns
 * once per server when authentication meets keepalive_timeout 0 (NTLM and
 * the Negotiate handshakes need the connection kept between the 401 and
 * the next request: every logon then fails without an error).
 */

ngx_int_t
ngx_http_kcd_conf_check_location(ngx_conf_t *cf,
    ngx_http_kcd_loc_conf_t *klcf)
{
    ngx_http_kcd_srv_conf_t   *kscf;
    ngx_http_core_loc_conf_t  *clcf;

    if (klcf->schemes == 0) {
        return NGX_OK;
    }

    kscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_kcd_module);
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* "alice" and "KCD\alice" are one account where the domain is KCD */

    if (klcf->user_file && kscf->ntlm_domain.len
        && ngx_http_kcd_user_file_check_domain(cf, klcf->user_file,
                                               &kscf->ntlm_domain,
                                               &klcf->auth_file,
                                               klcf->auth_line)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (kscf->auth_schemes == 0) {
        kscf->auth_file = klcf->auth_file;
        kscf->auth_line = klcf->auth_line;
    }

    if ((klcf->schemes & NGX_HTTP_KCD_BASIC)
        && !(kscf->auth_schemes & NGX_HTTP_KCD_BASIC))
    {
        kscf->basic_file = klcf->auth_file;
        kscf->basic_line = klcf->auth_line;
    }

    kscf->auth_schemes |= klcf->schemes;

    if (clcf->keepalive_timeout == 0
        && (klcf->schemes & (NGX_HTTP_KCD_NTLM|NGX_HTTP_KCD_NEGOTIATE))
        && !kscf->keepalive_warned)
    {
        kscf->keepalive_warned = 1;

        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "\"keepalive_timeout 0\" where \"kcd_auth\" in "
                      "%V:%ui offers NTLM or Negotiate: their handshake "
                      "needs the connection kept open, every logon will "
                      "fail", &klcf->auth_file, klcf->auth_line);
    }

    return NGX_OK;
}


/*
 * Called at postconfiguration, when every listen is known: for each
 * server that authenticates, warns about http2 on one of its listeners
 * (B11: NTLM cannot work over HTTP/2) and about Basic without any TLS
 * listener (Basic is offered only over TLS: it would never be offered).
 */

ngx_int_t
ngx_http_kcd_conf_check_servers(ngx_conf_t *cf)
{
    ngx_uint_t                  s, p, a, i, tls;
    ngx_http_conf_port_t       *port;
    ngx_http_conf_addr_t       *addr;
    ngx_http_kcd_srv_conf_t    *kscf;
    ngx_http_core_srv_conf_t  **cscfp, **servers;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    if (cmcf->ports == NULL) {
        return NGX_OK;
    }

    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {

        kscf = cscfp[s]->ctx->srv_conf[ngx_http_kcd_module.ctx_index];

        if (kscf->auth_schemes == 0) {
            continue;
        }

        tls = 0;
        port = cmcf->ports->elts;

        for (p = 0; p < cmcf->ports->nelts; p++) {
            addr = port[p].addrs.elts;

            for (a = 0; a < port[p].addrs.nelts; a++) {
                servers = addr[a].servers.elts;

                for (i = 0; i < addr[a].servers.nelts; i++) {
                    if (servers[i] == cscfp[s]) {
                        break;
                    }
                }

                if (i == addr[a].servers.nelts) {
                    continue;
                }

#if (NGX_HTTP_SSL)
                if (addr[a].opt.ssl) {
                    tls = 1;
                }
#endif

#if (NGX_HTTP_V2)
                if (addr[a].opt.http2
                    && (kscf->auth_schemes
                        & (NGX_HTTP_KCD_NTLM|NGX_HTTP_KCD_NEGOTIATE)))
                {
                    ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                                  "\"http2\" on \"listen %V\" of a server "
                                  "with \"kcd_auth\" in %V:%ui: NTLM and "
                                  "Negotiate cannot work over HTTP/2, "
                                  "remove \"http2\" from that listen",
                                  &addr[a].opt.addr_text, &kscf->auth_file,
                                  kscf->auth_line);
                }
#endif
            }
        }

        if ((kscf->auth_schemes & NGX_HTTP_KCD_BASIC) && !tls) {
            ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                          "\"kcd_auth basic\" in %V:%ui on a server without "
                          "a TLS listener: Basic is offered and accepted "
                          "only over TLS, so it never will be here",
                          &kscf->basic_file, kscf->basic_line);
        }
    }

    return NGX_OK;
}


/*
 * init_module, in the master at start-up and at every reload: one NOTICE
 * line with the version (debian/changelog), so the error log says which
 * build is running.  Not for "nginx -t".
 */

#ifndef NGX_HTTP_KCD_VERSION
#define NGX_HTTP_KCD_VERSION  "unknown"
#endif

ngx_int_t
ngx_http_kcd_init_module(ngx_cycle_t *cycle)
{
    if (!ngx_test_config) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "ngx_http_kcd_module/%s (nginx/%s)",
                      NGX_HTTP_KCD_VERSION, NGINX_VERSION);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_kcd_conf_check_lower(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] >= 'a' && s->data[i] <= 'z') {
            return 1;
        }
    }

    return 0;
}
