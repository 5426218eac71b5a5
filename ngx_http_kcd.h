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
#include "ngx_http_kcd_winbind.h"
#include "ngx_http_kcd_spnego.h"


#define NGX_HTTP_KCD_NTLM          0x01
#define NGX_HTTP_KCD_NEGOTIATE     0x02
#define NGX_HTTP_KCD_BASIC         0x04

#define NGX_HTTP_KCD_MAX_SCHEMES   3

/* sizes of the fixed per-connection buffers */
#define NGX_HTTP_KCD_TYPE1_MAX     1024
#define NGX_HTTP_KCD_TYPE2_MAX     1024
#define NGX_HTTP_KCD_NAME_MAX      256

/* the longest SPNEGO MechTypeList kept for mechListMIC (Windows: 48) */
#define NGX_HTTP_KCD_MECH_TYPES_MAX  256

/* the longest Authorization value accepted before decoding */
#define NGX_HTTP_KCD_TOKEN_MAX     (4 * ((KCD_NTLM_MAX_MSG + 2) / 3))


typedef struct {
    ngx_str_t                  user;      /* as in the file */
    ngx_str_t                  domain;    /* empty: any domain */
    u_char                     hash[16];
    ngx_str_t                  groups;    /* third field, NUL-separated */
    ngx_uint_t                 line;      /* in the file, for messages */
} ngx_http_kcd_account_t;


typedef struct {
    ngx_str_t                  path;
    ngx_array_t                accounts;  /* ngx_http_kcd_account_t */
    ngx_str_t                  domain_checked;  /* last server domain the
                                                   lines were checked for */
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
    ngx_atomic_t               require_denied;      /* kcd_require, B20 */
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

    ngx_array_t                user_files;   /* ngx_http_kcd_user_file_t * */
    ngx_str_t                  default_realm;  /* of krb5.conf */
    kcd_gss_keytab_t          *keytab_mem;   /* B17: read by the master */

    ngx_str_t                  keytab_file;  /* where kcd_keytab was set */
    ngx_uint_t                 keytab_line;
} ngx_http_kcd_main_conf_t;


typedef struct {
    ngx_str_t                  ntlm_domain;
    ngx_str_t                  ntlm_computer;
    ngx_str_t                  ntlm_dns_domain;
    ngx_str_t                  ntlm_dns_computer;
    ngx_flag_t                 ntlm_key_exch;

    ngx_uint_t                 auth_used;    /* schemes offered in it */
    ngx_uint_t                 delegates;    /* some location has kcd_spn */

    /* in upstream{} blocks: the balancer this module wraps (B10) */
    ngx_http_upstream_init_peer_pt  original_init_peer;

    /* B13 checks: some location authenticates (ngx_http_kcd_conf_check.c) */
    ngx_uint_t                 auth_schemes;
    ngx_str_t                  auth_file;
    ngx_uint_t                 auth_line;
    ngx_str_t                  basic_file;
    ngx_uint_t                 basic_line;
    ngx_uint_t                 keepalive_warned;
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
    u_char                    *upstream_cb;  /* B22: 16 bytes, NULL: off */

    /* where kcd_auth / kcd_spn were set, for nginx -t messages */
    ngx_str_t                  auth_file;
    ngx_uint_t                 auth_line;
    ngx_str_t                  spn_file;
    ngx_uint_t                 spn_line;
    ngx_uint_t                 spn_here;     /* set in this very block */

    ngx_http_handler_pt        content_handler;  /* wrapped (B7a) */
} ngx_http_kcd_loc_conf_t;


/* what checked an identity (B14: an identity holds where the same checks
   would have accepted it) */
#define NGX_HTTP_KCD_BACKEND_FILE        1   /* kcd_ntlm_user_file */
#define NGX_HTTP_KCD_BACKEND_WINBIND     2   /* kcd_ntlm_winbind */
#define NGX_HTTP_KCD_BACKEND_KEYTAB      3   /* client Kerberos, kcd_keytab */
#define NGX_HTTP_KCD_BACKEND_KDC         4   /* Basic by an AS exchange */


/*
 * One logon's identity (B14), the only thing the access handler, the
 * variables and delegation consult.  All strings live in one block with
 * the record in r->pool; the copy bound to a connection is packed
 * (ngx_http_kcd_bound_identity_t).
 */
typedef struct {
    ngx_uint_t                 scheme;       /* NGX_HTTP_KCD_NTLM ... */
    ngx_str_t                  user;         /* $kcd_user */
    ngx_str_t                  name;         /* $kcd_user_name */
    ngx_str_t                  domain;       /* $kcd_user_domain */
    ngx_str_t                  principal;    /* user@REALM, NUL-terminated */

    /* scope: where the same checks would have accepted it */
    void                      *server;       /* ngx_http_kcd_srv_conf_t * */
    ngx_uint_t                 backend;      /* NGX_HTTP_KCD_BACKEND_* */
    ngx_http_kcd_user_file_t  *user_file;    /* BACKEND_FILE */
    ngx_str_t                  map_domain;   /* input of the realm mapping */
    ngx_str_t                  realm;        /* its output; empty: none */
    ngx_uint_t                 channel_binding;  /* strongest policy met */
    void                      *lockout;      /* kcd_lockout zone, or NULL */

    /* the groups of the logon (B20): names and SIDs, each NUL-terminated */
    ngx_str_t                  groups;
} ngx_http_kcd_identity_t;


/*
 * The identity bound to a connection (B3, B14), one malloc()ed block: what
 * an idle authenticated connection keeps, so no ngx_str_t and no field
 * wider than it needs.  str[i] is the offset and the length in the bytes
 * after the record of the i-th string of ngx_http_kcd_identity_t
 * (ngx_http_kcd_identity.c); bytes equal to ones already stored are not
 * stored again (the name in the principal, the domain in "DOMAIN\name").
 */
#define NGX_HTTP_KCD_IDENTITY_STRINGS  7

typedef struct {
    void                      *server;
    ngx_http_kcd_user_file_t  *user_file;
    void                      *lockout;
    u_char                     scheme;
    u_char                     backend;
    u_char                     channel_binding;
    uint16_t                   str[NGX_HTTP_KCD_IDENTITY_STRINGS][2];
} ngx_http_kcd_bound_identity_t;


/* connection states */
#define NGX_HTTP_KCD_CONN_NONE           0
#define NGX_HTTP_KCD_CONN_CHALLENGED     1
#define NGX_HTTP_KCD_CONN_AUTHENTICATED  2


/*
 * An NTLM handshake in progress (MS-NLMP 3.2.5), malloc()ed, one block:
 * the record, then the bytes type1, type2 and mech_types point to, each
 * as long as it is (room for mech_types only in SPNEGO).
 */
typedef struct {
    u_char                    *type1;
    size_t                     type1_len;
    u_char                    *type2;
    size_t                     type2_len;
    u_char                     challenge[8];

    /* NTLM inside SPNEGO (B5): the client's MechTypeList as sent */
    ngx_uint_t                 spnego;       /* the handshake is in SPNEGO */
    ngx_uint_t                 spnego_mic;   /* mechListMIC required */
    u_char                    *mech_types;
    size_t                     mech_types_len;
} ngx_http_kcd_ntlm_pending_t;


/*
 * Per client connection, found through a c->pool cleanup handler.  Kept
 * small: an idle authenticated connection holds this and its identity.
 */
typedef struct {
    ngx_uint_t                 state;
    ngx_uint_t                 scheme;       /* scheme of the handshake */
    ngx_http_kcd_ntlm_pending_t  *ntlm;      /* while CHALLENGED */
    ngx_http_kcd_bound_identity_t  *identity;  /* while AUTHENTICATED, B3 */

    /* a Kerberos client's own ticket, exported, for S4U2Proxy */
    kcd_gss_buf_t              evidence;
} ngx_http_kcd_conn_t;


/*
 * Per request, found through an r->pool cleanup handler: it survives the
 * internal redirects that clear the module contexts, and subrequests (which
 * share the pool) find the main request's record, for reading only.
 */
typedef struct {
    ngx_http_request_t        *request;      /* the main request */
    ngx_http_kcd_identity_t   *identity;     /* of this request (B14) */
    ngx_uint_t                 consumed;     /* client's Authorization taken */

    /* the client's Authorization, in custody since the post-read phase */
    ngx_str_t                  client_auth;
    ngx_uint_t                 client_auth_set;
    ngx_str_t                  client_auth_copy;  /* wiped at the end */

    /* the delegated token (B7a), in headers_in only while it is sent */
    ngx_str_t                  token;        /* "Negotiate <base64>" */
    void                     **token_loc;    /* r->loc_conf that made it */
    ngx_table_elt_t           *token_elt;
    ngx_http_upstream_t       *token_upstream;  /* that carried it */
    ngx_int_t                (*create_request)(ngx_http_request_t *r);
    ngx_int_t                (*process_header)(ngx_http_request_t *r);
    ngx_int_t                (*reinit_request)(ngx_http_request_t *r);
    ngx_uint_t                 refused;      /* B15, for the balancer */
    ngx_str_t                  spn;
    ngx_str_t                  cache_status;

    /* the last SPNEGO leg (accept-completed) for the final response, B5 */
    ngx_str_t                  final_challenge;
} ngx_http_kcd_request_t;


/* stages of the access handler */
#define NGX_HTTP_KCD_STAGE_AUTH          0
#define NGX_HTTP_KCD_STAGE_DELEGATE      1
#define NGX_HTTP_KCD_STAGE_DONE          2

/* a validation step's answer: 401 with the location's challenges */
#define NGX_HTTP_KCD_CHALLENGE           (-100)


typedef struct ngx_http_kcd_task_s  ngx_http_kcd_task_t;


/* per request, cleared by internal redirects */
typedef struct {
    ngx_uint_t                 stage;
    ngx_uint_t                 done;         /* a task's rc is in rc */
    ngx_int_t                  rc;
    ngx_uint_t                 pending;      /* a task or a wait is out */

    ngx_http_kcd_identity_t   *identity;
    ngx_str_t                  spn;

    /* waiting for another request's KDC exchange (single flight) */
    ngx_event_t                wait;
    ngx_msec_t                 waited;
    ngx_uint_t                 fetching;     /* we hold the placeholder */

    /* Basic credentials while they are checked */
    ngx_str_t                  basic_user;
    ngx_str_t                  basic_domain;
    ngx_str_t                  basic_password;
    ngx_http_kcd_account_t    *basic_account;

    /* the NTLM AUTHENTICATE being checked (winbind) */
    u_char                    *type3;
    size_t                     type3_len;
    kcd_ntlm_authenticate_t    auth;
    ngx_http_kcd_ntlm_pending_t  *ntlm;      /* taken from the connection */
    ngx_str_t                  ntlm_user;    /* UTF-8, as sent */
    ngx_str_t                  ntlm_domain;
    ngx_str_t                  ntlm_workstation;
    ngx_uint_t                 cb_met;
    ngx_uint_t                 handshake_scheme;

    /* the groups the backend named for this logon (B20), NUL-separated */
    ngx_str_t                  groups;

    /* this request's NTLM message came inside SPNEGO (B5) */
    ngx_uint_t                 spnego;
    ngx_uint_t                 spnego_select;   /* name supportedMech */
    ngx_uint_t                 spnego_mic_required;
    u_char                    *spnego_mech_types;
    size_t                     spnego_mech_types_len;
    u_char                    *spnego_mic;      /* client's mechListMIC */
    size_t                     spnego_mic_len;
} ngx_http_kcd_ctx_t;


/* a blocking call for the thread pool (B9) */

#define NGX_HTTP_KCD_TASK_WB_NTLM        1
#define NGX_HTTP_KCD_TASK_WB_PLAIN       2
#define NGX_HTTP_KCD_TASK_GSS_ACCEPT     3
#define NGX_HTTP_KCD_TASK_GSS_PASSWORD   4
#define NGX_HTTP_KCD_TASK_DELEGATE       5

typedef ngx_int_t (*ngx_http_kcd_task_done_pt)(ngx_http_request_t *r,
    ngx_http_kcd_task_t *t);

struct ngx_http_kcd_task_s {
    ngx_uint_t                 kind;
    ngx_http_request_t        *request;
    kcd_gss_t                 *gss;
    ngx_http_kcd_task_done_pt  done;

    /* keeps an exiting worker alive while the task is out (B18) */
    ngx_event_t                guard;

    /* inputs, allocated from the request pool before posting */
    char                      *user;
    char                      *domain;
    char                      *workstation;
    char                      *password;
    char                      *principal;
    char                      *spn;
    u_char                     challenge[8];
    u_char                    *nt;
    size_t                     nt_len;
    u_char                    *lm;
    size_t                     lm_len;
    u_char                    *token;
    size_t                     token_len;
    kcd_gss_buf_t              evidence;      /* borrowed, not owned */
    const u_char              *upstream_cb;   /* B22, 16 bytes or NULL */
    ngx_uint_t                 want_groups;   /* kcd_require here (B20) */

    /* outputs, malloc()ed by the libraries where noted */
    int                        status;
    char                       error[512];
    kcd_wb_result_t            wb;
    char                      *out_principal; /* malloc */
    kcd_gss_buf_t              out_evidence;  /* malloc */
    kcd_gss_buf_t              out_token;     /* malloc */
    kcd_gss_buf_t              cred;          /* malloc */
    time_t                     endtime;
};


extern ngx_module_t  ngx_http_kcd_module;


/* ngx_http_kcd_metrics.c: counters and kcd_status */
ngx_int_t ngx_http_kcd_metrics_init(ngx_conf_t *cf,
    ngx_http_kcd_main_conf_t *kmcf);
ngx_int_t ngx_http_kcd_status_handler(ngx_http_request_t *r);
ngx_http_kcd_counters_t *ngx_http_kcd_counters(ngx_http_request_t *r);

#define ngx_http_kcd_count(r, name)                                         \
    do {                                                                    \
        ngx_http_kcd_counters_t  *cnt_ = ngx_http_kcd_counters(r);          \
        if (cnt_) {                                                         \
            (void) ngx_atomic_fetch_add(&cnt_->name, 1);                    \
        }                                                                   \
    } while (0)

/* ngx_http_kcd_task.c: the thread pool */
ngx_http_kcd_task_t *ngx_http_kcd_task_alloc(ngx_http_request_t *r,
    ngx_uint_t kind);
ngx_int_t ngx_http_kcd_task_post(ngx_http_request_t *r,
    ngx_http_kcd_task_t *t, ngx_http_kcd_task_done_pt done);
char *ngx_http_kcd_cstr(ngx_pool_t *pool, ngx_str_t *s);

/* ngx_http_kcd_userfile.c */
char *ngx_http_kcd_user_file_load(ngx_conf_t *cf, ngx_str_t *path,
    ngx_http_kcd_user_file_t **uf);
/* B13 checks, ngx_http_kcd_conf_check.c */
ngx_int_t ngx_http_kcd_conf_check_realm(ngx_conf_t *cf, const char *directive,
    ngx_str_t *realm);
extern ngx_conf_post_t  ngx_http_kcd_conf_check_realm_p;
extern ngx_conf_post_t  ngx_http_kcd_conf_check_computer_p;
extern ngx_conf_post_t  ngx_http_kcd_conf_check_principal_p;
ngx_int_t ngx_http_kcd_conf_check_spn(ngx_conf_t *cf, ngx_str_t *spn);
void ngx_http_kcd_secret_mode_check(ngx_conf_t *cf, const char *directive,
    ngx_str_t *path, ngx_file_info_t *fi);
ngx_int_t ngx_http_kcd_conf_check_file(ngx_conf_t *cf, const char *directive,
    ngx_str_t *path);
ngx_int_t ngx_http_kcd_keytab_load(ngx_conf_t *cf,
    ngx_http_kcd_main_conf_t *kmcf, char *err, size_t errlen);
ngx_int_t ngx_http_kcd_conf_check_location(ngx_conf_t *cf,
    ngx_http_kcd_loc_conf_t *klcf);
ngx_int_t ngx_http_kcd_conf_check_servers(ngx_conf_t *cf);
ngx_int_t ngx_http_kcd_init_module(ngx_cycle_t *cycle);

ngx_int_t ngx_http_kcd_user_file_check_domain(ngx_conf_t *cf,
    ngx_http_kcd_user_file_t *uf, ngx_str_t *domain, ngx_str_t *conf_file,
    ngx_uint_t conf_line);
ngx_http_kcd_account_t *ngx_http_kcd_user_file_find(
    ngx_http_kcd_user_file_t *uf, ngx_str_t *user, ngx_str_t *domain);

/* ngx_http_kcd_identity.c: identity, its scope, where it is kept */
ngx_int_t ngx_http_kcd_realm(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_str_t *map_domain, ngx_str_t *realm);
ngx_http_kcd_identity_t *ngx_http_kcd_identity_create(ngx_http_request_t *r,
    ngx_uint_t scheme, ngx_uint_t backend, ngx_str_t *name,
    ngx_str_t *domain, ngx_str_t *map_domain, ngx_uint_t cb_met);
ngx_http_kcd_identity_t *ngx_http_kcd_identity_kerberos(
    ngx_http_request_t *r, ngx_uint_t scheme, ngx_uint_t backend,
    ngx_str_t *principal);
ngx_uint_t ngx_http_kcd_identity_holds(ngx_http_request_t *r,
    ngx_http_kcd_identity_t *id, const char **why);
ngx_int_t ngx_http_kcd_logon_succeeded(ngx_http_request_t *r,
    ngx_http_kcd_identity_t *id, ngx_uint_t bind);
ngx_int_t ngx_http_kcd_logon_failed(ngx_http_request_t *r,
    ngx_uint_t scheme, ngx_str_t *user, ngx_str_t *domain,
    ngx_str_t *workstation, const char *reason);
ngx_http_kcd_request_t *ngx_http_kcd_request(ngx_http_request_t *r,
    ngx_uint_t create);
ngx_http_kcd_conn_t *ngx_http_kcd_conn(ngx_http_request_t *r,
    ngx_uint_t create);
void ngx_http_kcd_conn_reset(ngx_http_kcd_conn_t *kc);
ngx_http_kcd_identity_t *ngx_http_kcd_conn_identity(ngx_http_kcd_conn_t *kc,
    ngx_http_kcd_identity_t *id);
void ngx_http_kcd_ntlm_pending_free(ngx_http_kcd_ntlm_pending_t *p);
ngx_int_t ngx_http_kcd_identity_variables(ngx_conf_t *cf);
void ngx_http_kcd_logon_name(ngx_http_request_t *r, ngx_str_t *user,
    ngx_str_t *domain, ngx_str_t *out_user, ngx_str_t *out_domain);
ngx_int_t ngx_http_kcd_identity_init(ngx_conf_t *cf);

/* ngx_http_ntlm_reauth.c: the NTLM handshake */
ngx_int_t ngx_http_kcd_ntlm_handle(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx,
    ngx_uint_t scheme, u_char *msg, size_t len);

/* ngx_http_kcd_basic.c */
ngx_int_t ngx_http_kcd_basic(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx, ngx_str_t *tok);

/* ngx_http_kcd_spnego_ntlm.c: the NTLM legs inside SPNEGO */
ngx_int_t ngx_http_kcd_spnego_challenge(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, ngx_http_kcd_ntlm_pending_t *pend,
    u_char *type2, size_t len);
ngx_int_t ngx_http_kcd_spnego_complete(ngx_http_request_t *r,
    ngx_http_kcd_ctx_t *ctx, ngx_http_kcd_ntlm_pending_t *pend,
    const u_char *session_key, const char **reason);
ngx_int_t ngx_http_kcd_spnego_value(ngx_http_request_t *r, int neg_state,
    kcd_spnego_mech_t mech, const u_char *token, size_t len,
    const u_char *mic, size_t mic_len, ngx_str_t *value);

/* ngx_http_kcd_negotiate.c */
ngx_int_t ngx_http_kcd_negotiate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx, u_char *token,
    size_t len);

/* ngx_http_kcd_delegate.c */
ngx_int_t ngx_http_kcd_delegate(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf, ngx_http_kcd_ctx_t *ctx);

/* ngx_http_kcd_upstream_cb.c */
char *ngx_http_kcd_upstream_cb_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* ngx_http_kcd_cache.c */
char *ngx_http_kcd_cache_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_kcd_cache_get(ngx_http_kcd_cache_t *cache,
    ngx_str_t *principal, ngx_str_t *spn, ngx_pool_t *pool,
    kcd_gss_buf_t *cred, uint64_t *serial);
void ngx_http_kcd_cache_cancel(ngx_http_kcd_cache_t *cache,
    ngx_str_t *principal, ngx_str_t *spn);
void ngx_http_kcd_cache_drop(ngx_http_kcd_cache_t *cache,
    ngx_str_t *principal, ngx_str_t *spn);
void ngx_http_kcd_cache_put(ngx_http_kcd_cache_t *cache,
    ngx_str_t *principal, ngx_str_t *spn, kcd_gss_buf_t *cred,
    time_t endtime);

/* ngx_http_kcd_upstream.c: the delegated token and upstream connections */
ngx_int_t ngx_http_kcd_upstream_init(ngx_conf_t *cf);
ngx_int_t ngx_http_kcd_upstream_set_token(ngx_http_request_t *r,
    ngx_str_t *value);
ngx_int_t ngx_http_kcd_take_authorization(ngx_http_request_t *r,
    ngx_str_t *value);
ngx_int_t ngx_http_kcd_upstream_wrap_content(ngx_conf_t *cf,
    ngx_http_kcd_loc_conf_t *klcf);

/* ngx_http_kcd_filter.c: what goes back to the client */
ngx_int_t ngx_http_kcd_filter_init(ngx_conf_t *cf);
ngx_int_t ngx_http_kcd_strip(ngx_http_request_t *r,
    ngx_http_kcd_loc_conf_t *klcf);
ngx_int_t ngx_http_kcd_add_challenge(ngx_http_request_t *r,
    ngx_str_t *value);


#endif /* _NGX_HTTP_KCD_H_INCLUDED_ */
