/*
 * kcd-handshake: an epoll load client for complete NTLM handshakes
 * (issue 12).  Each connection: connect, GET with a NEGOTIATE, the 401
 * with the CHALLENGE, GET with a valid NTLMv2 AUTHENTICATE (MIC, no
 * channel bindings: plain HTTP), K follow-up GETs without Authorization
 * (the connection is authenticated), close; then a new connection.  The
 * messages come from bench/kcd_ntlm_client.c; NT hashes from the codec's
 * own MD4.  One thread, one epoll loop, every buffer allocated at start.
 *
 *   kcd-handshake -t 127.0.0.1:8080 -a 'KCD\alice:Secret1' [-a ...]
 *                 [-p /path] [-H host] [-c conns] [-d seconds] [-n max]
 *                 [-k followups] [-s NTLM|Negotiate] [-w pid ...]
 *                 [-r reauth%] [-x abort%] [-i] [-q]
 *
 *   -w PID    a server's parent process (nginx master, apache parent):
 *             CPU of it and its children (utime + stime, /proc/PID/stat,
 *             children that exit are counted through cutime/cstime) is
 *             reported per handshake; repeatable
 *   -r P      P % of connections, once authenticated, re-authenticate as
 *             Office Communicator does: POST Content-Length: 0 with a
 *             NEGOTIATE, then the AUTHENTICATE (counted as handshakes)
 *   -x P      P % of connections are abandoned mid-handshake: closed
 *             after the NEGOTIATE or after the CHALLENGE, half of them
 *             with a reset (SO_LINGER 0)
 *   -i        idle mode: open the conns, authenticate each (plus the K
 *             follow-ups), print "ready" and keep them open until -d
 *             seconds have passed or stdin closes (memory benchmark)
 *
 * Output, one line of key=value (latencies in ms):
 *   handshakes= seconds= hs_per_sec= requests= lat_p50= lat_p90= lat_p99=
 *   lat_max= req_p50= req_p99= errors= aborts= reauths= closed=
 *   status_NNN=... (5xx end the connection, they are not errors; closed:
 *   connections the server closed before answering a request)
 *   server_cpu_s= server_us_per_hs= client_us_per_hs=
 * Exit status 1 when a connection failed (errors > 0), else 0.
 */

#define _GNU_SOURCE

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ngx_http_kcd_ntlm.h"
#include "ngx_http_kcd_ntlm_crypto.h"
#include "kcd_ntlm_client.h"


#define BUF_SIZE     16384
#define MAX_CONNS    65536
#define MAX_USERS    64
#define MAX_PIDS     16

enum {
    S_CONNECT = 0,
    S_TYPE1,          /* NEGOTIATE sent, waiting for the 401 */
    S_TYPE3,          /* AUTHENTICATE sent, waiting for the 200 */
    S_FOLLOW,         /* a follow-up request in flight */
    S_IDLE            /* -i: authenticated, held */
};

typedef struct {
    uint8_t   user[256];
    size_t    user_len;
    uint8_t   domain[256];
    size_t    domain_len;
    uint8_t   hash[16];
} user_t;

typedef struct {
    int       fd;
    int       state;
    int       user;
    int       left;           /* follow-ups still to send */
    int       reauth;         /* 1: re-authenticate once authenticated */
    int       abort_at;       /* 0 none, 1 after Type 1, 2 after Type 2 */
    int       post;           /* the current handshake is the POST kind */
    double    t_start;        /* connect or re-auth start */
    double    t_req;
    size_t    in_len;
    size_t    out_len, out_off;
    uint8_t   type1[64];
    size_t    type1_len;
    char      in[BUF_SIZE];
    char      out[BUF_SIZE];
} conn_t;


static struct sockaddr_in  target;
static const char  *path = "/", *host = "localhost", *scheme = "NTLM";
static user_t       users[MAX_USERS];
static int          nusers, follow = 0, reauth_pct = 0, abort_pct = 0;
static int          idle_mode, quiet, ep;
static pid_t        pids[MAX_PIDS];
static int          npids;

static unsigned long  handshakes, requests, errors, aborts, reauths, closed;
static unsigned long  status_count[600];
static double        *lat_hs, *lat_req;
static size_t         n_hs, n_req, cap_hs, cap_req;
static unsigned int   rnd = 12345;


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static unsigned int
rand_next(void)
{
    rnd = rnd * 1103515245 + 12345;
    return (rnd >> 8) & 0xffffff;
}


static void
record(double **a, size_t *n, size_t *cap, double v)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 1 << 20;
        *a = realloc(*a, *cap * sizeof(double));
        if (*a == NULL) {
            perror("realloc");
            exit(1);
        }
    }

    (*a)[(*n)++] = v;
}


static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}


static double
pct(double *a, size_t n, double p)
{
    size_t  i;

    if (n == 0) {
        return 0;
    }

    i = (size_t) (p / 100.0 * (double) (n - 1) + 0.5);

    return a[i] * 1000.0;
}


/* CPU seconds of root and its children, see -w */
static double
proc_cpu(pid_t root)
{
    int             i, n;
    char            fn[300], buf[1024], *p, *tok[20], *save;
    long            ticks;
    double          total;
    FILE           *f;
    DIR            *d;
    struct dirent  *e;

    ticks = sysconf(_SC_CLK_TCK);
    total = 0;

    d = opendir("/proc");
    if (d == NULL) {
        return 0;
    }

    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char) e->d_name[0])) {
            continue;
        }

        snprintf(fn, sizeof(fn), "/proc/%s/stat", e->d_name);
        f = fopen(fn, "r");
        if (f == NULL) {
            continue;
        }

        n = (int) fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        if (n <= 0) {
            continue;
        }
        buf[n] = '\0';

        p = strrchr(buf, ')');
        if (p == NULL) {
            continue;
        }

        for (i = 0, p = strtok_r(p + 2, " ", &save); p && i < 20;
             p = strtok_r(NULL, " ", &save))
        {
            tok[i++] = p;
        }

        if (i < 15) {
            continue;
        }

        /* tok[0] = field 3 (state): ppid 4, utime 14 ... cstime 17 */

        if (atoi(e->d_name) == root) {
            total += atof(tok[11]) + atof(tok[12]) + atof(tok[13])
                     + atof(tok[14]);

        } else if (atoi(tok[1]) == root) {
            total += atof(tok[11]) + atof(tok[12]);
        }
    }

    closedir(d);

    return total / (double) ticks;
}


static double
servers_cpu(void)
{
    int     i;
    double  t;

    for (t = 0, i = 0; i < npids; i++) {
        t += proc_cpu(pids[i]);
    }

    return t;
}


static int
add_user(const char *spec)
{
    char     *copy, *bs, *colon;
    long      n;
    user_t   *u;

    if (nusers == MAX_USERS) {
        return -1;
    }

    u = &users[nusers];
    copy = strdup(spec);
    bs = strchr(copy, '\\');
    colon = strchr(copy, ':');

    if (bs == NULL || colon == NULL || colon < bs) {
        free(copy);
        return -1;
    }

    *bs = '\0';
    *colon = '\0';

    n = kcd_ntlm_utf8_to_utf16(copy, strlen(copy), u->domain,
                               sizeof(u->domain));
    if (n < 0) {
        return -1;
    }
    u->domain_len = (size_t) n;

    n = kcd_ntlm_utf8_to_utf16(bs + 1, strlen(bs + 1), u->user,
                               sizeof(u->user));
    if (n <= 0) {
        return -1;
    }
    u->user_len = (size_t) n;

    if (kcd_ntlm_nt_hash(colon + 1, strlen(colon + 1), u->hash) != 0) {
        return -1;
    }

    free(copy);
    nusers++;

    return 0;
}


static void
conn_close(conn_t *c, int reset)
{
    struct linger  l;

    if (c->fd < 0) {
        return;
    }

    if (reset) {
        l.l_onoff = 1;
        l.l_linger = 0;
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
    }

    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
}


static int
conn_flush(conn_t *c)
{
    ssize_t             w;
    struct epoll_event  ev;

    while (c->out_off < c->out_len) {
        w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EAGAIN) {
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.ptr = c;
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                return 0;
            }
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        c->out_off += (size_t) w;
    }

    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);

    return 0;
}


/* a request with an optional NTLM token */
static int
conn_send(conn_t *c, const char *method, const uint8_t *tok, size_t len)
{
    int     n;
    char    b64[BUF_SIZE / 2];

    if (tok) {
        if (len * 4 / 3 + 8 > sizeof(b64)) {
            return -1;
        }
        EVP_EncodeBlock((unsigned char *) b64, tok, (int) len);
        n = snprintf(c->out, BUF_SIZE,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n"
                     "User-Agent: kcd-handshake\r\n"
                     "Authorization: %s %s\r\n%s\r\n",
                     method, path, host, scheme, b64,
                     strcmp(method, "POST") == 0 ? "Content-Length: 0\r\n"
                                                 : "");
    } else {
        n = snprintf(c->out, BUF_SIZE,
                     "%s %s HTTP/1.1\r\nHost: %s\r\n"
                     "User-Agent: kcd-handshake\r\n\r\n",
                     method, path, host);
    }

    if (n < 0 || n >= BUF_SIZE) {
        return -1;
    }

    c->out_len = (size_t) n;
    c->out_off = 0;
    c->t_req = now();

    return conn_flush(c);
}


static int
conn_open(conn_t *c, int idx)
{
    int                 fd, one;
    struct epoll_event  ev;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }

    one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    if (connect(fd, (struct sockaddr *) &target, sizeof(target)) < 0
        && errno != EINPROGRESS)
    {
        close(fd);
        return -1;
    }

    c->fd = fd;
    c->state = S_CONNECT;
    c->user = idx % nusers;
    c->left = follow;
    c->in_len = 0;
    c->post = 0;
    c->t_start = now();
    c->reauth = reauth_pct && (int) (rand_next() % 100) < reauth_pct;
    c->abort_at = 0;
    if (abort_pct && (int) (rand_next() % 100) < abort_pct) {
        c->abort_at = 1 + (int) (rand_next() % 2);
    }

    ev.events = EPOLLOUT;
    ev.data.ptr = c;

    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}


static int
start_handshake(conn_t *c, const char *method)
{
    long  n;

    n = kcd_ntlmc_negotiate(c->type1, sizeof(c->type1));
    if (n < 0) {
        return -1;
    }

    c->type1_len = (size_t) n;
    c->state = S_TYPE1;

    if (conn_send(c, method, c->type1, c->type1_len) != 0) {
        return -1;
    }

    if (c->abort_at == 1) {
        return 1;
    }

    return 0;
}


/*
 * Length of the first complete response in c->in (0: incomplete, -1:
 * unusable); status, the NTLM token of WWW-Authenticate and whether the
 * server closes.
 */
static long
parse_response(conn_t *c, int *status, char **token, int *close_conn)
{
    char    *end, *line, *p, *v;
    size_t   head;
    long     cl;

    *token = NULL;
    *close_conn = 0;

    end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (end == NULL) {
        return c->in_len == BUF_SIZE ? -1 : 0;
    }

    head = (size_t) (end - c->in) + 4;
    if (head < 12 || strncmp(c->in, "HTTP/1.", 7) != 0) {
        return -1;
    }

    *status = atoi(c->in + 9);
    cl = -1;

    for (line = c->in; line < end; line = p + 2) {
        p = memmem(line, (size_t) (end + 2 - line), "\r\n", 2);
        if (p == NULL) {
            break;
        }
        *p = '\0';

        if (strncasecmp(line, "Content-Length:", 15) == 0) {
            cl = strtol(line + 15, NULL, 10);

        } else if (strncasecmp(line, "Connection:", 11) == 0) {
            if (strcasestr(line + 11, "close")) {
                *close_conn = 1;
            }

        } else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0) {
            return -1;    /* not needed by the benchmark's backends */

        } else if (strncasecmp(line, "WWW-Authenticate:", 17) == 0) {
            v = line + 17;
            while (*v == ' ') {
                v++;
            }
            if ((strncasecmp(v, "NTLM ", 5) == 0 && v[5] != '\0')
                || (strncasecmp(v, "Negotiate ", 10) == 0 && v[10] != '\0'))
            {
                *token = strchr(v, ' ') + 1;
            }
        }

        *p = '\r';
    }

    if (cl < 0) {
        cl = 0;
    }

    if (c->in_len < head + (size_t) cl) {
        return head + (size_t) cl > BUF_SIZE ? -1 : 0;
    }

    /* the token is NUL-terminated where its line ended */
    if (*token) {
        p = strstr(*token, "\r\n");
        if (p) {
            *p = '\0';
        }
    }

    return (long) (head + (size_t) cl);
}


static int
on_type2(conn_t *c, const char *b64)
{
    int                  n, i;
    long                 len;
    uint8_t              type2[BUF_SIZE / 2], type3[4096];
    user_t              *u;
    kcd_ntlmc_params_t   p;

    len = (long) strlen(b64);
    if (len < 64 || len % 4 != 0 || len / 4 * 3 > (long) sizeof(type2)) {
        return -1;
    }

    n = EVP_DecodeBlock(type2, (const unsigned char *) b64, (int) len);
    if (n < 0) {
        return -1;
    }

    /* EVP_DecodeBlock counts the bytes of the padding too */
    n -= (b64[len - 1] == '=') + (b64[len - 2] == '=');

    u = &users[c->user];
    memset(&p, 0, sizeof(p));
    p.nt_hash = u->hash;
    p.user = u->user;
    p.user_len = u->user_len;
    p.domain = u->domain;
    p.domain_len = u->domain_len;
    p.workstation = (const uint8_t *) "K\0C\0D\0L\0O\0A\0D\0";
    p.workstation_len = 14;
    p.mic = 1;
    for (i = 0; i < 8; i++) {
        p.client_challenge[i] = (uint8_t) rand_next();
    }

    len = kcd_ntlmc_authenticate(&p, c->type1, c->type1_len, type2,
                                 (size_t) n, type3, sizeof(type3));
    if (len < 0) {
        return -1;
    }

    c->state = S_TYPE3;

    return conn_send(c, c->post ? "POST" : "GET", type3, (size_t) len);
}


/* 0: go on, 1: connection finished normally, -1: error */
static int
on_response(conn_t *c, int status, char *token, int close_conn)
{
    double  t;

    t = now();
    requests++;
    if (status > 0 && status < 600) {
        status_count[status]++;
    }

    /* a server error ends the connection; the driver judges the count */
    if (status >= 500) {
        return 1;
    }

    switch (c->state) {

    case S_TYPE1:
        if (status == 401 && close_conn) {
            closed++;
            return 1;
        }

        if (status != 401 || token == NULL) {
            return -1;
        }

        if (c->abort_at == 2) {
            aborts++;
            conn_close(c, rand_next() & 1);
            return 1;
        }

        return on_type2(c, token) == 0 ? 0 : -1;

    case S_TYPE3:
        if (status != 200) {
            return -1;
        }

        handshakes++;
        record(&lat_hs, &n_hs, &cap_hs, t - c->t_start);
        break;

    case S_FOLLOW:
        if (status != 200) {
            return -1;
        }

        record(&lat_req, &n_req, &cap_req, t - c->t_req);
        c->left--;
        break;

    default:
        return -1;
    }

    /* "Connection: close" (a worker shutting down after a reload) */
    if (close_conn) {
        if (c->left > 0 || c->reauth) {
            closed++;
        }
        return 1;
    }

    if (c->left > 0) {
        c->state = S_FOLLOW;
        return conn_send(c, "GET", NULL, 0) == 0 ? 0 : -1;
    }

    if (c->reauth) {
        c->reauth = 0;
        c->post = 1;
        c->left = follow;
        c->t_start = t;
        reauths++;
        return start_handshake(c, "POST") == 0 ? 0 : -1;
    }

    if (idle_mode) {
        c->state = S_IDLE;
        return 2;
    }

    return 1;
}


static volatile sig_atomic_t  stop_flag;


static void
on_signal(int sig)
{
    stop_flag = 1;
}


int
main(int argc, char **argv)
{
    int                 opt, i, n, nconns, rc, status, close_conn, open_ok;
    int                 ready, idle_count, err, opened;
    long                maxhs, rl;
    char               *colon, *token;
    ssize_t             r;
    double              secs, t0, t1, cpu0, cpu1 = 0, elapsed;
    conn_t             *conns, *c;
    socklen_t           elen;
    struct rusage       ru0, ru1;
    struct rlimit       rl_nofile;
    struct epoll_event  evs[256];
    struct pollfd       pfd;

    nconns = 1;
    secs = 5;
    maxhs = 0;

    memset(&target, 0, sizeof(target));
    target.sin_family = AF_INET;

    while ((opt = getopt(argc, argv, "t:a:p:H:c:d:n:k:s:w:r:x:iq")) != -1) {
        switch (opt) {
        case 't':
            colon = strrchr(optarg, ':');
            if (colon == NULL) {
                return 2;
            }
            *colon = '\0';
            inet_pton(AF_INET, optarg, &target.sin_addr);
            target.sin_port = htons((uint16_t) atoi(colon + 1));
            break;
        case 'a':
            if (add_user(optarg) != 0) {
                fprintf(stderr, "bad -a %s (DOMAIN\\user:password)\n",
                        optarg);
                return 2;
            }
            break;
        case 'p': path = optarg; break;
        case 'H': host = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'n': maxhs = atol(optarg); break;
        case 'k': follow = atoi(optarg); break;
        case 's': scheme = optarg; break;
        case 'w':
            if (npids < MAX_PIDS) {
                pids[npids++] = (pid_t) atoi(optarg);
            }
            break;
        case 'r': reauth_pct = atoi(optarg); break;
        case 'x': abort_pct = atoi(optarg); break;
        case 'i': idle_mode = 1; break;
        case 'q': quiet = 1; break;
        default:
            fprintf(stderr, "usage: see the comment at the top of %s\n",
                    __FILE__);
            return 2;
        }
    }

    if (nusers == 0 || target.sin_port == 0 || nconns < 1
        || nconns > MAX_CONNS)
    {
        fprintf(stderr, "need -t ip:port, -a DOMAIN\\user:password, "
                        "1 <= -c <= %d\n", MAX_CONNS);
        return 2;
    }

    /* as many descriptors as allowed: -i holds thousands */
    if (getrlimit(RLIMIT_NOFILE, &rl_nofile) == 0) {
        rl_nofile.rlim_cur = rl_nofile.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl_nofile);
    }

    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    conns = calloc((size_t) nconns, sizeof(conn_t));
    ep = epoll_create1(0);
    if (conns == NULL || ep < 0) {
        perror("setup");
        return 1;
    }

    cpu0 = servers_cpu();
    getrusage(RUSAGE_SELF, &ru0);
    t0 = now();
    ready = 0;
    idle_count = 0;
    open_ok = 1;

    /* -i opens its connections 256 at a time: no SYN flood */
    opened = idle_mode && nconns > 256 ? 256 : nconns;

    for (i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        if (i < opened && conn_open(&conns[i], i) != 0) {
            errors++;
        }
    }

    for ( ;; ) {
        t1 = now();

        if (stop_flag || t1 - t0 >= secs
            || (maxhs && (long) handshakes >= maxhs))
        {
            open_ok = 0;
            if (!idle_mode || stop_flag || t1 - t0 >= secs) {
                break;
            }
        }

        if (idle_mode && !ready && idle_count + (int) errors >= nconns) {
            printf("ready connections=%d errors=%lu seconds=%.3f\n",
                   idle_count, errors, t1 - t0);
            fflush(stdout);
            ready = 1;
            cpu1 = servers_cpu();    /* printed at the end */
        }

        if (idle_mode && ready) {
            /* held: wait for stdin to close or the time to pass */
            pfd.fd = 0;
            pfd.events = POLLIN;
            if (poll(&pfd, 1, 200) > 0) {
                char  tmp[256];

                if (read(0, tmp, sizeof(tmp)) <= 0) {
                    break;
                }
            }
            continue;
        }

        n = epoll_wait(ep, evs, 256, 100);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }

        for (i = 0; i < n; i++) {
            c = evs[i].data.ptr;
            if (c->fd < 0) {
                continue;
            }

            rc = 0;

            if (c->state == S_CONNECT) {
                err = 0;
                elen = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
                if (err != 0) {
                    rc = -1;
                } else {
                    rc = start_handshake(c, "GET");
                    if (rc == 1) {
                        aborts++;
                        conn_close(c, rand_next() & 1);
                    }
                }
                goto next;
            }

            if (evs[i].events & EPOLLOUT && c->out_off < c->out_len) {
                if (conn_flush(c) != 0) {
                    rc = -1;
                    goto next;
                }
            }

            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }

            r = read(c->fd, c->in + c->in_len, BUF_SIZE - c->in_len);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                    continue;
                }

                /*
                 * closed by the server before answering (a worker in
                 * graceful shutdown after a reload closes idle
                 * keep-alive connections): counted apart, not an error
                 */
                if (c->in_len == 0 && !idle_mode) {
                    closed++;
                    rc = 1;
                } else {
                    rc = -1;
                }
                goto next;
            }
            c->in_len += (size_t) r;

            while (c->fd >= 0
                   && (rl = parse_response(c, &status, &token, &close_conn))
                      != 0)
            {
                if (rl < 0) {
                    rc = -1;
                    break;
                }

                rc = on_response(c, status, token, close_conn);

                if (c->fd >= 0) {
                    memmove(c->in, c->in + rl, c->in_len - (size_t) rl);
                    c->in_len -= (size_t) rl;
                }

                if (rc != 0) {
                    break;
                }
            }

        next:

            if (rc == 2) {
                idle_count++;
                if (opened < nconns) {
                    if (conn_open(&conns[opened], opened) != 0) {
                        errors++;
                    }
                    opened++;
                }
                continue;
            }

            if (rc == 0) {
                continue;
            }

            if (rc < 0) {
                errors++;
                if (!quiet && errors <= 5) {
                    fprintf(stderr, "kcd-handshake: connection failed in "
                            "state %d (%.200s)\n", c->state, c->in);
                }
            }

            conn_close(c, 0);

            if (idle_mode) {
                if (opened < nconns) {
                    if (conn_open(&conns[opened], opened) != 0) {
                        errors++;
                    }
                    opened++;
                }

            } else if (open_ok
                       && conn_open(c, (int) (c - conns) + (int) rand_next())
                          != 0)
            {
                errors++;
            }
        }
    }

    elapsed = now() - t0;
    if (!idle_mode) {
        cpu1 = servers_cpu();
    }
    getrusage(RUSAGE_SELF, &ru1);

    qsort(lat_hs, n_hs, sizeof(double), cmp_double);
    qsort(lat_req, n_req, sizeof(double), cmp_double);

    printf("handshakes=%lu seconds=%.3f hs_per_sec=%.1f requests=%lu "
           "lat_p50=%.3f lat_p90=%.3f lat_p99=%.3f lat_max=%.3f "
           "req_p50=%.3f req_p99=%.3f errors=%lu aborts=%lu reauths=%lu "
           "closed=%lu",
           handshakes, elapsed, handshakes / elapsed, requests,
           pct(lat_hs, n_hs, 50), pct(lat_hs, n_hs, 90),
           pct(lat_hs, n_hs, 99), pct(lat_hs, n_hs, 100),
           pct(lat_req, n_req, 50), pct(lat_req, n_req, 99),
           errors, aborts, reauths, closed);

    for (i = 100; i < 600; i++) {
        if (status_count[i]) {
            printf(" status_%d=%lu", i, status_count[i]);
        }
    }

    if (npids) {
        printf(" server_cpu_s=%.3f server_us_per_hs=%.1f", cpu1 - cpu0,
               handshakes ? (cpu1 - cpu0) * 1e6 / handshakes : 0);
    }

    printf(" client_us_per_hs=%.1f\n",
           handshakes
           ? ((ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec)
              + (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec)
              + ((ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec)
                 + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec)) / 1e6)
             * 1e6 / handshakes
           : 0);

    return errors ? 1 : 0;
}
