/*
 * ngx_http_kcd_module: declarations shared by the nginx side of the module
 * (configuration, per-connection NTLM state, validation backends,
 * delegation, ticket cache, header filter).
 */

#ifndef _NGX_HTTP_KCD_H_INCLUDED_
#define _NGX_HTTP_KCD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd_ntlm.h"
#include "ngx_http_kcd_gss.h"


#define NGX_HTTP_KCD_NTLM          0x01
#define NGX_HTTP_KCD_NEGOTIATE     0x02
#define NGX_HTTP_KCD_BASIC         0x04

#define NGX_HTTP_KCD_MAX_SCHEMES   3

/* sizes of the fixed per-connection buffers */
#define NGX_HTTP_KCD_TYPE1_MAX     1024
#define NGX_HTTP_KCD_TYPE2_MAX     1024
#define NGX_HTTP_KCD_NAME_MAX      256

/* the longest Authorization value accepted before decoding */
#define NGX_HTTP_KCD_TOKEN_MAX     (4 * ((KCD_NTLM_MAX_MSG + 2) / 3))


typedef struct {
    ngx_str_t                  user;      /* as in the file */
    ngx_str_t                  domain;    /* empty: any domain */
    u_char                     hash[16];
} ngx_http_kcd_account_t;


typedef struct {
    ngx_str_t                  path;
    ngx_array_t                accounts;  /* ngx_http_kcd_account_t */
} ngx_http_kcd_user_file_t;


typedef struct {
    ngx_str_t                  netbios;
    ngx_str_t                  realm;
} ngx_http_kcd_domain_map_t;


typedef struct ngx_http_kcd_cache_s  ngx_http_kcd_cache_t;


/* counters for kcd_status, in shared memory */
typedef struct {
    ngx_atomic_t               challenges;
    ngx_atomic_t               ntlm_ok;
    ngx_atomic_t               ntlm_failed;
    ngx_atomic_t               negotiate_ok;
    ngx_atomic_t               negotiate_failed;
    ngx_atomic_t               basic_ok;
    ngx_atomic_t               basic_failed;
    ngx_atomic_t               reauth;
    ngx_atomic_t               bad_request;
    ngx_atomic_t               http2_refused;
    ngx_atomic_t               delegation_ok;
    ngx_atomic_t               delegation_refused;
    ngx_atomic_t               delegation_unavailable;
    ngx_atomic_t               cache_hit;
    ngx_atomic_t               cache_miss;
    ngx_atomic_t               winbind_ok;
    ngx_atomic_t               winbind_failed;
    ngx_atomic_t               winbind_unavailable;
} ngx_http_kcd_counters_t;


typedef struct {
    ngx_str_t                  keytab;
    ngx_str_t                  service_principal;
    ngx_array_t               *domain_map;  /* ngx_http_kcd_domain_map_t */

    ngx_str_t                  thread_pool_name;
    ngx_thread_pool_t         *thread_pool;

    ngx_http_kcd_cache_t      *cache;

    ngx_shm_zone_t            *counters_zone;
    ngx_http_kcd_counters_t   *counters;

    ngx_uint_t                 use_winbind;  /* some location has it on */
    ngx_uint_t                 use_gss;

    kcd_gss_t                 *gss;          /* per worker */

    ngx_str_t                  keytab_file;  /* where kcd_keytab was set */
    ngx_uint_t                 keytab_line;
} ngx_http_kcd_main_conf_t;


typedef struct {
    ngx_str_t                  ntlm_domain;
    ngx_str_t                  ntlm_computer;
    ngx_str_t                  ntlm_dns_domain;
    ngx_str_t                  ntlm_dns_computer;
} ngx_http_kcd_srv_conf_t;


typedef struct {
    ngx_uint_t                 schemes;      /* bit mask, 0: off */
    ngx_uint_t                 order[NGX_HTTP_KCD_MAX_SCHEMES];
    ngx_uint_t                 nschemes;

    ngx_http_complex_value_t  *strip_negotiate;  /* NULL: off */
    ngx_flag_t                 strip_set;

    ngx_http_kcd_user_file_t  *user_file;
    ngx_flag_t                 winbind;
    ngx_uint_t                 channel_binding;
    ngx_str_t                  basic_realm;
    ngx_str_t                  realm;
    ngx_http_complex_value_t  *spn;

    /* where kcd_auth / kcd_spn were set, for nginx -t messages */
    ngx_str_t                  auth_file;
    ngx_uint_t                 auth_line;
    ngx_str_t                  spn_file;
    ngx_uint_t                 spn_line;
} ngx_http_kcd_loc_conf_t;


/* connection states */
#define NGX_HTTP_KCD_CONN_NONE           0
#define NGX_HTTP_KCD_CONN_CHALLENGED     1
#define NGX_HTTP_KCD_CONN_AUTHENTICATED  2


/* per client connection, lives in c->pool */
typedef struct {
    ngx_uint_t                 state;
    ngx_uint_t                 scheme;       /* scheme of the handshake */

    /* NTLM handshake in progress (MS-NLMP 3.2.5) */
    u_char                     type1[NGX_HTTP_KCD_TYPE1_MAX];
    size_t                     type1_len;
    u_char                     type2[NGX_HTTP_KCD_TYPE2_MAX];
    size_t                     type2_len;
    u_char                     challenge[8];

    /* identity once authenticated (B3) */
    ngx_uint_t                 auth_scheme;
    u_char                     user[2 * NGX_HTTP_KCD_NAME_MAX + 2];
    size_t                     user_len;
    u_char                     principal[2 * NGX_HTTP_KCD_NAME_MAX + 2];
    size_t                     principal_len;

    /*
     * where the identity was checked: it is reused only where the same
     * server and validation backend would have checked it (B3)
     */
    void                      *scope_srv;
    void                      *scope_user_file;
    ngx_flag_t                 scope_winbind;

    /* a Kerberos client's own ticket, exported, for S4U2Proxy */
    kcd_gss_buf_t              evidence;

    /*
     * the identity of the current request, kept here because an internal
     * redirect (index, try_files, error_page) clears the request's ctx
     * after the client's Authorization has been taken out
     */
    ngx_uint_t                 req_num;
    ngx_uint_t                 req_scheme;
    ngx_str_t                  req_user;       /* in the request pool */
    ngx_str_t                  req_principal;

    /* the upstream Authorization we put into headers_in (B7) */
    ngx_table_elt_t           *injected;
    ngx_uint_t                 injected_req;

    ngx_connection_t          *connection;
} ngx_http_kcd_conn_t;


/* the pending asynchronous step of a request */
#define NGX_HTTP_KCD_TASK_NONE           0
#define NGX_HTTP_KCD_TASK_WB_NTLM        1
#define NGX_HTTP_KCD_TASK_WB_PLAIN       2
#define NGX_HTTP_KCD_TASK_GSS_ACCEPT     3
#define NGX_HTTP_KCD_TASK_GSS_PASSWORD   4
#define NGX_HTTP_KCD_TASK_DELEGATE       5


typedef struct ngx_http_kcd_task_s  ngx_http_kcd_task_t;


/* per request */
typedef struct {
    ngx_uint_t                 done;         /* final rc is known */
    ngx_int_t                  rc;
    ngx_uint_t                 pending;      /* a thread task is out */
    ngx_uint_t                 authenticated;
    ngx_uint_t                 delegated;

    ngx_uint_t                 auth_scheme;
    ngx_str_t                  user;
    ngx_str_t                  principal;
    ngx_str_t                  cache_status;
    ngx_str_t                  spn;

    ngx_http_kcd_task_t       *task;

    /* waiting for another request's KDC exchange (single flight) */
    ngx_event_t                wait;
    ngx_msec_t                 waited;
    ngx_uint_t                 fetching;     /* we hold the placeholder */

    /* Basic credentials while they are checked */
    ngx_str_t                  basic_user;
    ngx_str_t                  basic_domain;
    ngx_str_t                  basic_password;

    /* the NTLM AUTHENTICATE being checked by winbind */
    u_char                    *type3;
    size_t                     type3_len;
    kcd_ntlm_authenticate_t    auth;
    u_char                     type1[NGX_HTTP_KCD_TYPE1_MAX];
    size_t                     type1_len;
    u_char                     type2[NGX_HTTP_KCD_TYPE2_MAX];
    size_t                     type2_len;
    u_char                     challenge[8];
    ngx_str_t                  ntlm_user;    /* UTF-8 */
    ngx_str_t                  ntlm_domain;
    ngx_str_t                  ntlm_workstation;
    ngx_uint_t                 handshake_scheme;
} ngx_http_kcd_ctx_t;


extern ngx_module_t  ngx_http_kcd_module;


/* ngx_http_kcd_module.c */
ngx_http_kcd_ctx_t *ngx_http_kcd_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_kcd_challenge(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf);
ngx_int_t ngx_http_kcd_strip(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf);
ngx_int_t ngx_http_kcd_post_task(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, ngx_uint_t kind);
ngx_int_t ngx_http_kcd_authenticated(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, ngx_uint_t scheme, ngx_str_t *user,
    ngx_str_t *principal);
ngx_int_t ngx_http_kcd_principal(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_str_t *user, ngx_str_t *domain,
    ngx_str_t *principal);
ngx_http_kcd_counters_t *ngx_http_kcd_counters(ngx_http_request_t *r);

#define ngx_http_kcd_count(r, name)                                         \
    do {                                                                    \
        ngx_http_kcd_counters_t  *cnt_ = ngx_http_kcd_counters(r);          \
        if (cnt_) {                                                         \
            (void) ngx_atomic_fetch_add(&cnt_->name, 1);                    \
        }                                                                   \
    } while (0)


/* ngx_http_ntlm_reauth.c */
ngx_http_kcd_conn_t *ngx_http_kcd_conn(ngx_http_request_t *r,
    ngx_uint_t create);
void ngx_http_kcd_conn_reset(ngx_http_kcd_conn_t *kc);
ngx_int_t ngx_http_kcd_ntlm_handle(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    ngx_uint_t scheme, u_char *msg, size_t len);
ngx_uint_t ngx_http_kcd_conn_in_scope(ngx_http_request_t *r,
    ngx_http_kcd_conn_t *kc);
void ngx_http_kcd_conn_set_scope(ngx_http_request_t *r,
    ngx_http_kcd_conn_t *kc);
ngx_int_t ngx_http_kcd_ntlm_winbind_done(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    ngx_int_t status, const char *error, const u_char *session_key,
    const char *user, const char *domain);

/* ngx_http_kcd_userfile.c */
char *ngx_http_kcd_user_file_load(ngx_conf_t *cf, ngx_str_t *path,
    ngx_http_kcd_user_file_t **uf);
ngx_http_kcd_account_t *ngx_http_kcd_user_file_find(
    ngx_http_kcd_user_file_t *uf, ngx_str_t *user, ngx_str_t *domain);

/* ngx_http_kcd_filter.c */
ngx_int_t ngx_http_kcd_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_kcd_hide_authorization(ngx_http_request_t *r);
ngx_int_t ngx_http_kcd_set_upstream_authorization(ngx_http_request_t *r,
    ngx_str_t *value);

/* ngx_http_kcd_delegate.c */
ngx_int_t ngx_http_kcd_delegate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx);
ngx_int_t ngx_http_kcd_delegate_done(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, ngx_int_t status, const char *error,
    kcd_gss_buf_t *cred, time_t endtime, kcd_gss_buf_t *token);

/* ngx_http_kcd_cache.c */
char *ngx_http_kcd_cache_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_kcd_cache_get(ngx_http_kcd_cache_t *cache,
    ngx_str_t *principal, ngx_str_t *spn, ngx_pool_t *pool,
    kcd_gss_buf_t *cred, uint64_t *serial);
void ngx_http_kcd_cache_cancel(ngx_http_kcd_cache_t *cache,
    ngx_str_t *principal, ngx_str_t *spn);
void ngx_http_kcd_cache_put(ngx_http_kcd_cache_t *cache,
    ngx_str_t *principal, ngx_str_t *spn, kcd_gss_buf_t *cred,
    time_t endtime);


#endif /* _NGX_HTTP_KCD_H_INCLUDED_ */
