/*
 * kcd-load: a minimal HTTP/1.1 keep-alive load client for the benchmark
 * (bench/kcd-vs-proxy.pl).  It does no connecting and no authentication
 * itself: it inherits connected sockets (already NTLM-authenticated, or
 * plain) from the Perl driver, because after an NTLM handshake the
 * connection is authenticated (B3) and every further request goes without
 * an Authorization header.  On each socket it keeps one request in flight
 * and counts complete responses for a fixed time.
 *
 *   kcd-load SECONDS PATH HOST FD [FD ...]
 *
 * Output, one line: "requests=N seconds=S rps=R non200=M errors=E"
 * (non200: responses with another status; errors: connections lost).
 * Responses must carry Content-Length (the benchmark's backends do).
 */

#define _GNU_SOURCE    /* memmem */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE  65536
#define MAX_CONNS 1024

typedef struct {
    int     fd;
    int     dead;
    size_t  len;
    char    buf[BUF_SIZE];
} conn_t;


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static int
send_all(int fd, const char *p, size_t n)
{
    ssize_t  w;

    while (n) {
        w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;    /* a request is tiny: the buffer has room */
            }
            return -1;
        }
        p += w;
        n -= (size_t) w;
    }

    return 0;
}


/* length of the first complete response in c->buf, 0 if incomplete */
static size_t
response_len(conn_t *c, int *status)
{
    char    *end, *p, *line;
    size_t   head;
    long     cl;

    if (c->len < 12) {
        return 0;
    }

    end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end == NULL) {
        return 0;
    }

    head = (size_t) (end - c->buf) + 4;
    *status = atoi(c->buf + 9);
    cl = 0;

    for (line = c->buf; line < end; line = p + 2) {
        p = memmem(line, (size_t) (end + 2 - line), "\r\n", 2);
        if (p == NULL) {
            break;
        }
        if (p - line > 15 && strncasecmp(line, "Content-Length:", 15) == 0) {
            cl = strtol(line + 15, NULL, 10);
        }
    }

    if (c->len < head + (size_t) cl) {
        return 0;
    }

    return head + (size_t) cl;
}


int
main(int argc, char **argv)
{
    int                 i, n, ep, nconns, status, alive;
    char                req[1024];
    size_t              reqlen, rl;
    ssize_t             r;
    double              secs, t0, t1, deadline;
    conn_t             *conns, *c;
    unsigned long       requests, non200, errors;
    struct epoll_event  ev, evs[64];

    if (argc < 5) {
        fprintf(stderr, "usage: %s SECONDS PATH HOST FD...\n", argv[0]);
        return 2;
    }

    secs = atof(argv[1]);
    nconns = argc - 4;
    if (nconns > MAX_CONNS) {
        fprintf(stderr, "too many connections\n");
        return 2;
    }

    reqlen = (size_t) snprintf(req, sizeof(req),
                               "GET %s HTTP/1.1\r\nHost: %s\r\n"
                               "User-Agent: kcd-load\r\n\r\n",
                               argv[2], argv[3]);
    if (reqlen >= sizeof(req)) {
        return 2;
    }

    conns = calloc((size_t) nconns, sizeof(conn_t));
    ep = epoll_create1(0);
    if (conns == NULL || ep < 0) {
        perror("setup");
        return 1;
    }

    requests = 0;
    non200 = 0;
    errors = 0;

    t0 = now();
    deadline = t0 + secs;

    for (i = 0; i < nconns; i++) {
        c = &conns[i];
        c->fd = atoi(argv[4 + i]);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0
            || send_all(c->fd, req, reqlen) < 0)
        {
            c->dead = 1;
            errors++;
        }
    }

    alive = nconns - (int) errors;

    while (alive > 0) {
        n = epoll_wait(ep, evs, 64, 100);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            return 1;
        }

        t1 = now();

        for (i = 0; i < n; i++) {
            c = evs[i].data.ptr;
            if (c->dead) {
                continue;
            }

            r = read(c->fd, c->buf + c->len, BUF_SIZE - c->len);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
                    continue;
                }
                c->dead = 1;
                errors++;
                alive--;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->len += (size_t) r;

            while ((rl = response_len(c, &status)) > 0) {
                memmove(c->buf, c->buf + rl, c->len - rl);
                c->len -= rl;

                if (t1 < deadline) {
                    requests++;
                    if (status != 200) {
                        non200++;
                    }
                }

                if (t1 >= deadline) {
                    /* stop: this connection has nothing in flight now */
                    c->dead = 1;
                    alive--;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    break;
                }

                if (send_all(c->fd, req, reqlen) < 0) {
                    c->dead = 1;
                    errors++;
                    alive--;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    break;
                }
            }

            if (!c->dead && c->len == BUF_SIZE) {
                c->dead = 1;    /* a response larger than the buffer */
                errors++;
                alive--;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
            }
        }

        if (now() > deadline + 5) {
            break;    /* bounded: a stuck connection must not hang us */
        }
    }

    t1 = (deadline < now()) ? deadline - t0 : now() - t0;

    printf("requests=%lu seconds=%.3f rps=%.1f non200=%lu errors=%lu\n",
           requests, t1, requests / t1, non200, errors);

    return 0;
}
