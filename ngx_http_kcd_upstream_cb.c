/*
 * kcd_upstream_channel_binding off | cert_file (B22): Extended Protection
 * towards the backend.  The backend's TLS certificate is read once, at
 * configuration time; its RFC 5929 tls-server-end-point binding, hashed
 * as RFC 4121 4.1.1.2 wants it in the authenticator checksum's Bnd field
 * (MD5 of the gss_channel_bindings_struct whose application data is
 * "tls-server-end-point:" + the certificate hash), is what every upstream
 * token of the location carries.  A backend that enforces channel binding
 * (IIS with Extended Protection "Require", tokenChecking=Require) then
 * accepts the token over the TLS connection nginx opens to it.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_ntlm_crypto.h"


/* the first certificate of a PEM file (a chain starts with the leaf), or
   a DER certificate; its DER bytes */

static u_char *
ngx_http_kcd_upstream_cb_cert(ngx_conf_t *cf, ngx_str_t *file, int *len)
{
    int             n;
    BIO            *bio;
    X509           *x;
    u_char         *der, *p;
    unsigned long   e;

    bio = BIO_new_file((char *) file->data, "r");
    if (bio == NULL) {
        e = ERR_peek_last_error();
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_upstream_channel_binding: cannot read the "
                           "certificate \"%V\": %s", file,
                           e ? ERR_reason_error_string(e) : "open failed");
        ERR_clear_error();
        return NULL;
    }

    x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

    if (x == NULL) {
        ERR_clear_error();
        (void) BIO_reset(bio);
        x = d2i_X509_bio(bio, NULL);
    }

    BIO_free(bio);
    ERR_clear_error();

    if (x == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_upstream_channel_binding: \"%V\" holds no "
                           "X.509 certificate (PEM or DER)", file);
        return NULL;
    }

    der = NULL;
    n = i2d_X509(x, NULL);

    if (n > 0) {
        der = ngx_pnalloc(cf->pool, n);
        if (der != NULL) {
            p = der;
            n = i2d_X509(x, &p);
        }
    }

    X509_free(x);

    if (der == NULL || n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_upstream_channel_binding: cannot encode "
                           "the certificate of \"%V\"", file);
        return NULL;
    }

    *len = n;

    return der;
}


char *
ngx_http_kcd_upstream_cb_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    int         len;
    u_char     *der, **field;
    ngx_str_t  *value, file;

    field = (u_char **) (p + cmd->offset);

    if (*field != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        *field = NULL;
        return NGX_CONF_OK;
    }

    file = value[1];

    if (ngx_conf_full_name(cf->cycle, &file, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    der = ngx_http_kcd_upstream_cb_cert(cf, &file, &len);
    if (der == NULL) {
        return NGX_CONF_ERROR;
    }

    *field = ngx_pnalloc(cf->pool, 16);
    if (*field == NULL) {
        return NGX_CONF_ERROR;
    }

    if (kcd_ntlm_tls_cb_hash(der, len, *field) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "kcd_upstream_channel_binding: the certificate "
                           "\"%V\" has no tls-server-end-point binding "
                           "(RFC 5929 4.1: its signature uses no single "
                           "hash function)", &file);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
