/*
 * Driver for ngx_http_kcd_gss.c, run by t/10-gss.t against a real realm.
 *
 *   gss_test KEYTAB PRINCIPAL COMMAND ARGS...     one command
 *   gss_test KEYTAB PRINCIPAL -                   commands from stdin
 *
 * Commands (one result line each, "RC key=value ... err=text"):
 *   delegate USER SPN [CREDFILE]      S4U2Self + S4U2Proxy
 *   delegate_ev EVFILE USER SPN [CREDFILE]   S4U2Proxy with evidence
 *   token CREDFILE SPN [N]            N tokens, prints the last (base64)
 *   fasttoken CREDFILE SPN [N]        the same by kcd_gss_token_fast (the
 *                                     module's event-loop path) and
 *                                     kcd_gss_token_local after the first
 *   accept TOKENFILE [EVFILE]         raw client token from a file
 *   password USER PASSWORD
 *   check                             kcd_gss_keytab_load
 *   bench USER SPN N                  N delegations, mean time
 *   threads USER SPN T N              T threads x N delegations at once
 *
 * The kcd_gss_t lives as long as the process: the test stops and starts
 * the KDC between stdin commands to prove recovery without re-init.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_http_kcd_gss.h"


static kcd_gss_t   *g;
static const char  *keytab;
static const char  *princ;


static const char *
rc_name(int rc)
{
    switch (rc) {
    case KCD_GSS_OK:          return "OK";
    case KCD_GSS_CONTINUE:    return "CONTINUE";
    case KCD_GSS_DENIED:      return "DENIED";
    case KCD_GSS_REFUSED:     return "REFUSED";
    case KCD_GSS_UNAVAILABLE: return "UNAVAILABLE";
    case KCD_GSS_ERROR:       return "ERROR";
    default:                  return "?";
    }
}


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static char *
b64(const uint8_t *p, size_t n)
{
    static const char  t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char    *s, *d;
    size_t   i;

    s = malloc(n / 3 * 4 + 8);
    if (s == NULL) {
        exit(2);
    }

    d = s;
    for (i = 0; i + 2 < n; i += 3) {
        *d++ = t[p[i] >> 2];
        *d++ = t[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        *d++ = t[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)];
        *d++ = t[p[i + 2] & 63];
    }

    if (n - i == 1) {
        *d++ = t[p[i] >> 2];
        *d++ = t[(p[i] & 3) << 4];
        *d++ = '=';
        *d++ = '=';

    } else if (n - i == 2) {
        *d++ = t[p[i] >> 2];
        *d++ = t[((p[i] & 3) << 4) | (p[i + 1] >> 4)];
        *d++ = t[(p[i + 1] & 15) << 2];
        *d++ = '=';
    }

    *d = '\0';
    return s;
}


static int
read_file(const char *path, kcd_gss_buf_t *b)
{
    long   n;
    FILE  *f;

    b->data = NULL;
    b->len = 0;

    f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    if (n > 0) {
        b->data = malloc(n);
        if (b->data == NULL || fread(b->data, 1, n, f) != (size_t) n) {
            fclose(f);
            return -1;
        }
        b->len = n;
    }

    fclose(f);
    return 0;
}


static int
write_file(const char *path, const kcd_gss_buf_t *b)
{
    FILE  *f;

    f = fopen(path, "wb");
    if (f == NULL) {
        return -1;
    }

    if (b->len && fwrite(b->data, 1, b->len, f) != b->len) {
        fclose(f);
        return -1;
    }

    return fclose(f);
}


static void
do_delegate(const char *evfile, const char *user, const char *spn,
    const char *credfile)
{
    int             rc;
    char            err[1024];
    time_t          end;
    double          t0;
    kcd_gss_buf_t   ev, cred;

    ev.data = NULL;
    ev.len = 0;

    if (evfile && read_file(evfile, &ev) != 0) {
        printf("ERROR err=cannot read %s\n", evfile);
        return;
    }

    err[0] = '\0';
    t0 = now();
    rc = kcd_gss_delegate(g, user, spn, evfile ? &ev : NULL, &cred, &end,
                          err, sizeof(err));
    t0 = now() - t0;

    if (rc == KCD_GSS_OK && credfile && write_file(credfile, &cred) != 0) {
        printf("ERROR err=cannot write %s\n", credfile);
        kcd_gss_free(&cred);
        return;
    }

    printf("%s len=%zu endtime=%ld lifetime=%ld us=%.0f err=%s\n",
           rc_name(rc), cred.len, (long) end,
           rc == KCD_GSS_OK ? (long) (end - time(NULL)) : 0L, t0 * 1e6, err);

    kcd_gss_free(&cred);
    kcd_gss_free(&ev);
}


static void
do_fasttoken(const char *credfile, const char *spn, int n)
{
    int             i, rc;
    char            err[1024], *s;
    double          t0;
    kcd_gss_buf_t   cred, tok;

    if (read_file(credfile, &cred) != 0) {
        printf("ERROR err=cannot read %s\n", credfile);
        return;
    }

    if (n < 1) {
        n = 1;
    }

    err[0] = '\0';
    tok.data = NULL;
    tok.len = 0;

    rc = kcd_gss_token_fast(g, "user@TEST", &cred, 1, spn, NULL, &tok, err,
                            sizeof(err));

    t0 = now();
    for (i = 1; rc == KCD_GSS_OK && i < n; i++) {
        kcd_gss_free(&tok);
        rc = kcd_gss_token_local(g, "user@TEST", spn, NULL, &tok, err,
                                 sizeof(err));
    }
    t0 = (now() - t0) / (n > 1 ? n - 1 : 1);

    s = b64(tok.data, tok.len);
    printf("%s n=%d us=%.1f token=%s err=%s\n", rc_name(rc), n, t0 * 1e6, s,
           err);
    free(s);

    kcd_gss_free(&tok);
    kcd_gss_free(&cred);
}


static void
do_token(const char *credfile, const char *spn, int n)
{
    int             i, rc;
    char            err[1024], *s;
    double          t0;
    kcd_gss_buf_t   cred, tok;

    if (read_file(credfile, &cred) != 0) {
        printf("ERROR err=cannot read %s\n", credfile);
        return;
    }

    if (n < 1) {
        n = 1;
    }

    err[0] = '\0';
    rc = KCD_GSS_ERROR;
    tok.data = NULL;
    tok.len = 0;

    t0 = now();
    for (i = 0; i < n; i++) {
        kcd_gss_free(&tok);
        rc = kcd_gss_token(g, &cred, spn, NULL, &tok, err, sizeof(err));
        if (rc != KCD_GSS_OK) {
            break;
        }
    }
    t0 = (now() - t0) / n;

    s = b64(tok.data, tok.len);
    printf("%s n=%d us=%.1f token=%s err=%s\n", rc_name(rc), n, t0 * 1e6,
           s, err);
    free(s);

    kcd_gss_free(&tok);
    kcd_gss_free(&cred);
}


static void
do_accept(const char *tokfile, const char *evfile)
{
    int             rc;
    char            err[1024], *principal, *s;
    kcd_gss_buf_t   tok, ev, out;

    if (read_file(tokfile, &tok) != 0) {
        printf("ERROR err=cannot read %s\n", tokfile);
        return;
    }

    err[0] = '\0';
    rc = kcd_gss_accept(g, tok.data, tok.len, &principal, &ev, &out, err,
                        sizeof(err));

    if (rc == KCD_GSS_OK && evfile && write_file(evfile, &ev) != 0) {
        printf("ERROR err=cannot write %s\n", evfile);
        rc = KCD_GSS_ERROR;
    }

    s = b64(out.data, out.len);
    printf("%s principal=%s evidence=%zu out=%s err=%s\n", rc_name(rc),
           principal ? principal : "-", ev.len, s, err);
    free(s);

    free(principal);
    kcd_gss_free(&ev);
    kcd_gss_free(&out);
    kcd_gss_free(&tok);
}


static void
do_password(const char *user, const char *pass)
{
    int     rc;
    char    err[1024], *principal;
    double  t0;

    err[0] = '\0';
    t0 = now();
    rc = kcd_gss_password(g, user, pass, &principal, err, sizeof(err));
    t0 = now() - t0;

    printf("%s principal=%s us=%.0f err=%s\n", rc_name(rc),
           principal ? principal : "-", t0 * 1e6, err);
    free(principal);
}


static void
do_bench(const char *user, const char *spn, int n)
{
    int             i, rc, ok;
    char            err[1024];
    time_t          end;
    double          t0;
    kcd_gss_buf_t   cred;

    ok = 0;
    err[0] = '\0';
    rc = KCD_GSS_ERROR;

    t0 = now();
    for (i = 0; i < n; i++) {
        rc = kcd_gss_delegate(g, user, spn, NULL, &cred, &end, err,
                              sizeof(err));
        kcd_gss_free(&cred);
        ok += (rc == KCD_GSS_OK);
    }
    t0 = (now() - t0) / (n ? n : 1);

    printf("%s ok=%d n=%d us=%.0f err=%s\n", rc_name(rc), ok, n, t0 * 1e6,
           err);
}


typedef struct {
    const char  *user;
    const char  *spn;
    int          n;
    int          ok;
} thr_arg_t;


static void *
thr_main(void *p)
{
    int             i;
    char            err[1024];
    time_t          end;
    thr_arg_t      *a;
    kcd_gss_buf_t   cred, tok;

    a = p;

    for (i = 0; i < a->n; i++) {
        if (kcd_gss_delegate(g, a->user, a->spn, NULL, &cred, &end, err,
                             sizeof(err))
            == KCD_GSS_OK
            && kcd_gss_token(g, &cred, a->spn, NULL, &tok, err,
                             sizeof(err))
               == KCD_GSS_OK)
        {
            a->ok++;
            kcd_gss_free(&tok);
        }
        kcd_gss_free(&cred);
    }

    return NULL;
}


static void
do_threads(const char *user, const char *spn, int t, int n)
{
    int         i, ok;
    double      t0;
    pthread_t   tid[64];
    thr_arg_t   arg[64];

    if (t < 1 || t > 64) {
        printf("ERROR err=1..64 threads\n");
        return;
    }

    t0 = now();
    for (i = 0; i < t; i++) {
        arg[i].user = user;
        arg[i].spn = spn;
        arg[i].n = n;
        arg[i].ok = 0;
        pthread_create(&tid[i], NULL, thr_main, &arg[i]);
    }

    ok = 0;
    for (i = 0; i < t; i++) {
        pthread_join(tid[i], NULL);
        ok += arg[i].ok;
    }
    t0 = now() - t0;

    printf("%s ok=%d n=%d s=%.3f err=\n", ok == t * n ? "OK" : "ERROR", ok,
           t * n, t0);
}


static void
run(int argc, char **argv)
{
    int    rc;
    char   err[1024];

#define ARG(i)  ((i) < argc ? argv[i] : NULL)

    if (argc < 1) {
        printf("ERROR err=no command\n");

    } else if (strcmp(argv[0], "delegate") == 0 && argc >= 3) {
        do_delegate(NULL, argv[1], argv[2], ARG(3));

    } else if (strcmp(argv[0], "delegate_ev") == 0 && argc >= 4) {
        do_delegate(argv[1], argv[2], argv[3], ARG(4));

    } else if (strcmp(argv[0], "fasttoken") == 0 && argc >= 3) {
        do_fasttoken(argv[1], argv[2], argc > 3 ? atoi(argv[3]) : 1);

    } else if (strcmp(argv[0], "token") == 0 && argc >= 3) {
        do_token(argv[1], argv[2], argc > 3 ? atoi(argv[3]) : 1);

    } else if (strcmp(argv[0], "accept") == 0 && argc >= 2) {
        do_accept(argv[1], ARG(2));

    } else if (strcmp(argv[0], "password") == 0 && argc >= 3) {
        do_password(argv[1], argv[2]);

    } else if (strcmp(argv[0], "check") == 0) {
        kcd_gss_keytab_t  *kt;

        err[0] = '\0';
        rc = kcd_gss_keytab_load(&kt, keytab, princ, err, sizeof(err));
        printf("%s err=%s\n", rc == 0 ? "OK" : "ERROR", err);
        kcd_gss_keytab_free(kt);

    } else if (strcmp(argv[0], "bench") == 0 && argc >= 4) {
        do_bench(argv[1], argv[2], atoi(argv[3]));

    } else if (strcmp(argv[0], "threads") == 0 && argc >= 5) {
        do_threads(argv[1], argv[2], atoi(argv[3]), atoi(argv[4]));

    } else {
        printf("ERROR err=bad command %s\n", argv[0]);
    }

    fflush(stdout);
}


int
main(int argc, char **argv)
{
    int    n;
    char   line[4096], err[1024], *av[16], *p;

    if (argc < 4) {
        fprintf(stderr, "usage: gss_test KEYTAB PRINCIPAL COMMAND...|-\n");
        return 2;
    }

    keytab = argv[1];
    princ = argv[2];

    if (kcd_gss_init(&g, keytab, princ, err, sizeof(err)) != KCD_GSS_OK) {
        printf("ERROR err=init: %s\n", err);
        return 1;
    }

    if (strcmp(argv[3], "-") != 0) {
        run(argc - 3, argv + 3);

    } else {
        while (fgets(line, sizeof(line), stdin)) {
            n = 0;
            for (p = strtok(line, " \t\r\n"); p && n < 16;
                 p = strtok(NULL, " \t\r\n"))
            {
                av[n++] = p;
            }

            if (n == 0) {
                continue;
            }

            if (strcmp(av[0], "quit") == 0) {
                break;
            }

            run(n, av);
        }
    }

    kcd_gss_destroy(g);

    return 0;
}
