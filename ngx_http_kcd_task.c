/*
 * The thread pool (B9, B18): every call that can wait on the network (KDC,
 * winbind) runs in kcd_thread_pool.  The poster fills a task from the
 * request pool and names the function that turns its result into the
 * request's answer back in the event loop; the access phase is then run
 * again, as ngx_http_auth_request_module does.
 *
 * While a task is out, a timer (not cancelable) keeps a gracefully exiting
 * worker alive: nginx leaves an exiting worker only when no such timer is
 * left, so a reload or a graceful stop never drops a request parked on the
 * KDC (B18).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_kcd.h"
#include "ngx_http_kcd_lockout.h"
#include "ngx_http_kcd_pac.h"
#include "ngx_http_kcd_ntlm_crypto.h"


/* longer than any KDC or winbind timeout */
#define NGX_HTTP_KCD_TASK_GUARD   (10 * 60 * 1000)


static void ngx_http_kcd_thread_handler(void *data, ngx_log_t *log);
static void ngx_http_kcd_thread_event_handler(ngx_event_t *ev);
static void ngx_http_kcd_task_guard_handler(ngx_event_t *ev);
static void ngx_http_kcd_task_free(ngx_http_kcd_task_t *t);


/* a task of the given kind, zeroed, in the request pool; NULL on error */

ngx_http_kcd_task_t *
ngx_http_kcd_task_alloc(ngx_http_request_t *r, ngx_uint_t kind)
{
    ngx_thread_task_t         *task;
    ngx_http_kcd_task_t       *t;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);

    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_kcd_task_t));
    if (task == NULL) {
        return NULL;
    }

    t = task->ctx;
    t->kind = kind;
    t->request = r;
    t->gss = kmcf->gss;
    t->want_groups = ngx_http_kcd_require_wants_groups(r);

    task->handler = ngx_http_kcd_thread_handler;
    task->event.handler = ngx_http_kcd_thread_event_handler;
    task->event.data = task;

    return t;
}


/*
 * Post t; done(r, t) runs in the event loop with the result and returns the
 * access phase's answer (NGX_OK, an HTTP status, NGX_HTTP_KCD_CHALLENGE,
 * or NGX_AGAIN when it posted another step).  Returns NGX_AGAIN, or 500.
 */

ngx_int_t
ngx_http_kcd_task_post(ngx_http_request_t *r, ngx_http_kcd_task_t *t,
    ngx_http_kcd_task_done_pt done)
{
    ngx_thread_task_t         *task;
    ngx_http_kcd_ctx_t        *ctx;
    ngx_http_kcd_main_conf_t  *kmcf;

    kmcf = ngx_http_get_module_main_conf(r, ngx_http_kcd_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    task = (ngx_thread_task_t *) ((u_char *) t - sizeof(ngx_thread_task_t));

    if (kmcf->thread_pool == NULL || ctx == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "kcd: no thread pool");
        ngx_http_kcd_task_free(t);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t->done = done;

    if (ngx_thread_task_post(kmcf->thread_pool, task) != NGX_OK) {
        ngx_http_kcd_task_free(t);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    t->guard.handler = ngx_http_kcd_task_guard_handler;
    t->guard.data = r;
    t->guard.log = r->connection->log;
    ngx_add_timer(&t->guard, NGX_HTTP_KCD_TASK_GUARD);

    ctx->pending = 1;

    r->main->blocked++;
    r->aio = 1;

    return NGX_AGAIN;
}


/* runs in a thread of the pool: no nginx memory pools, no logging */

static void
ngx_http_kcd_thread_handler(void *data, ngx_log_t *log)
{
    ngx_http_kcd_task_t  *t = data;

    t->error[0] = '\0';

    if (t->gss == NULL
        && (t->kind == NGX_HTTP_KCD_TASK_GSS_PASSWORD
            || t->kind == NGX_HTTP_KCD_TASK_GSS_ACCEPT
            || t->kind == NGX_HTTP_KCD_TASK_DELEGATE))
    {
        t->status = KCD_GSS_ERROR;
        ngx_cpystrn((u_char *) t->error,
                    (u_char *) "Kerberos is not initialized in this worker",
                    sizeof(t->error));
        return;
    }

    switch (t->kind) {

    case NGX_HTTP_KCD_TASK_WB_NTLM:
        t->status = kcd_wb_auth_ntlm(t->user, t->domain, t->workstation,
                                     t->challenge, t->nt, t->nt_len,
                                     t->lm, t->lm_len, &t->wb);

        if (t->status == KCD_WB_OK && t->want_groups) {
            (void) kcd_wb_group_names(&t->wb);     /* B20 */
        }

        break;

    case NGX_HTTP_KCD_TASK_WB_PLAIN:
        t->status = kcd_wb_auth_plain(t->user, t->domain, t->password,
                                      &t->wb);
        kcd_ntlm_wipe(t->password, ngx_strlen(t->password));

        if (t->status == KCD_WB_OK && t->want_groups) {
            (void) kcd_wb_group_names(&t->wb);     /* B20 */
        }

        break;

    case NGX_HTTP_KCD_TASK_GSS_PASSWORD:
        t->status = kcd_gss_password(t->gss, t->principal, t->password,
                                     &t->out_principal, t->error,
                                     sizeof(t->error));
        kcd_ntlm_wipe(t->password, ngx_strlen(t->password));
        break;

    case NGX_HTTP_KCD_TASK_GSS_ACCEPT:
        {
        kcd_gss_buf_t  pac;

        t->status = kcd_gss_accept_pac(t->gss, t->token, t->token_len,
                                       &t->out_principal, &t->out_evidence,
                                       t->want_groups ? &pac : NULL,
                                       &t->out_token, t->error,
                                       sizeof(t->error));

        if (t->status == KCD_GSS_OK && t->want_groups) {
            kcd_pac_groups(&pac, &t->wb);          /* B20 */
        }
        }

        break;

    case NGX_HTTP_KCD_TASK_DELEGATE:
        t->status = kcd_gss_delegate(t->gss, t->principal, t->spn,
                                     t->evidence.len ? &t->evidence : NULL,
                                     &t->cred, &t->endtime, t->error,
                                     sizeof(t->error));

        if (t->status == KCD_GSS_OK) {
            t->status = kcd_gss_token(t->gss, &t->cred, t->spn,
                                      t->upstream_cb, &t->out_token,
                                      t->error, sizeof(t->error));
        }

        break;
    }
}


static void
ngx_http_kcd_task_free(ngx_http_kcd_task_t *t)
{
    if (t->guard.timer_set) {
        ngx_del_timer(&t->guard);
    }

    if (t->out_principal) {
        free(t->out_principal);
        t->out_principal = NULL;
    }

    kcd_gss_free(&t->out_evidence);
    kcd_gss_free(&t->out_token);
    kcd_gss_free(&t->cred);

    kcd_ntlm_wipe(t->wb.session_key, sizeof(t->wb.session_key));
}


static void
ngx_http_kcd_thread_event_handler(ngx_event_t *ev)
{
    ngx_int_t             rc;
    ngx_connection_t     *c;
    ngx_thread_task_t    *task;
    ngx_http_request_t   *r;
    ngx_http_kcd_ctx_t   *ctx;
    ngx_http_kcd_task_t  *t;

    task = ev->data;
    t = task->ctx;
    r = t->request;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    r->main->blocked--;
    r->aio = 0;

    ctx = ngx_http_get_module_ctx(r, ngx_http_kcd_module);

    if (ctx == NULL || c->error || r->done) {
        ngx_http_kcd_task_free(t);
        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
        return;
    }

    ctx->pending = 0;

    if (t->guard.timer_set) {
        ngx_del_timer(&t->guard);
    }

    rc = t->done(r, t);

    ngx_http_kcd_task_free(t);

    if (rc != NGX_AGAIN) {
        ctx->done = 1;
        ctx->rc = rc;
    }

    r->write_event_handler(r);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_kcd_task_guard_handler(ngx_event_t *ev)
{
    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "kcd: a KDC or winbind call has been out for %M s",
                  (ngx_msec_t) NGX_HTTP_KCD_TASK_GUARD / 1000);
}


char *
ngx_http_kcd_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return p;
}
