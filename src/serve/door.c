/*
 * serve/door.c - the front door of `road serve`: the listening socket, and every connection
 * until its request head has arrived and is sound; then it goes to libmicrohttpd.
 *
 * Why a door in front of libmicrohttpd (0.9.75):
 *  - A client that trickles its head one byte at a time keeps libmicrohttpd's idle timeout
 *    from ever firing, and in thread-per-connection mode holds a thread and a connection slot
 *    for good: 512 of them locked everyone out. At the door a connection still sending its
 *    head is an epoll entry (no thread), and the whole request (head and body) has a deadline
 *    from accept on, whatever the pace of its bytes (--request-timeout).
 *  - Connections are counted per client address and in all (--max-connections-per-client,
 *    --max-connections); when every slot is taken, the connection that has waited longest for
 *    its head gives its slot to the newcomer, so slow heads cannot starve prompt ones.
 *  - libmicrohttpd answers a too long URI (414), too large headers (431) and a malformed or
 *    overflowing Content-Length (400, 413) itself, with HTML bodies nothing can change at run
 *    time. The door reads the head with MSG_PEEK (nothing is consumed: libmicrohttpd reads the
 *    same bytes again) and refuses all of those first, in the documented JSON error shape,
 *    with limits below libmicrohttpd's own (its connection memory is sized above them).
 *
 * Every reply goes out with "Connection: close" (server.c), so each connection carries one
 * request and every request passes the door. A refusal from the door is sent, then the
 * connection lingers (reading and dropping what the client still sends, at most
 * DOOR_LINGER_S) so that closing it does not reset the reply away.
 *
 * Threads: one door thread (accept, peek, hand-off, deadlines); libmicrohttpd's threads
 * report the start and end of the connections they own (road__door_notify) and the router reports
 * its progress (road__door_set_phase). d->mu guards everything below. libmicrohttpd announces a
 * connection's end before closing its socket, so a socket found in by_fd under the lock is
 * still that connection's: the deadline may shut it down safely.
 */
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/error.h"
#include "serve/api.h"
#include "serve/door.h"

/* The head (request line and headers) at most: nginx's default large header buffers are 4 x
 * 8 KiB; libmicrohttpd's connection memory is set to 4x this (server.c), so it never runs out
 * before the door has refused. */
#define DOOR_HEAD_MAX (16 * 1024)
#define DOOR_URI_MAX (8 * 1024)  /* request target; longer: 414 */
#define DOOR_HEADERS_MAX 100      /* header lines; each costs libmicrohttpd pool memory */
#define DOOR_FD_RESERVE 64        /* descriptors kept for model files, logs and the engine */
#define DOOR_FD_TABLE_MAX (1 << 20) /* by_fd entries at most, whatever RLIMIT_NOFILE says */
#define DOOR_TICK_MS 100          /* deadline resolution */
#define DOOR_LINGER_S 2.0         /* a refused connection drains this long at most */
#define DOOR_BACKLOG 4096         /* listen() backlog (the kernel caps it at somaxconn) */
#define DOOR_EVENTS 64

typedef enum cstate {
    C_HEAD,   /* at the door, head not complete */
    C_LINGER, /* refused: reply sent, draining until the client closes or DOOR_LINGER_S */
    C_HANDED, /* given to libmicrohttpd, not yet announced by it */
    C_MHD     /* libmicrohttpd's */
} cstate;

typedef struct dconn {
    door *d;
    int fd;
    cstate state;
    door_phase phase;
    bool expired;    /* the deadline already shut it down */
    bool peer_done;  /* the client shut down its side: a head not complete now never will be */
    uint64_t seq;    /* accept order (times tie within one batch of accepts) */
    double deadline; /* head/body deadline, or the end of lingering */
    struct sockaddr_storage addr;
    socklen_t alen;
} dconn;

typedef struct client {
    int family;
    unsigned char key[16];
    int32_t n;
} client;

struct door {
    door_params p;
    int lfd, ep, wake;
    pthread_t thread;
    bool running, stopping;
    struct MHD_Daemon *mhd;
    pthread_mutex_t mu;
    dconn **by_fd; /* [cap_fd] */
    int cap_fd, hi_fd;
    client *cl;
    int32_t n_cl, cap_cl;
    int32_t n_open;
    uint64_t n_accepted;
    bool accept_paused; /* out of descriptors: listening paused until resume_at */
    double resume_at;
    char buf[DOOR_HEAD_MAX + 2];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- client addresses ------------------------------------------------------------------- */

static void addr_key(const struct sockaddr_storage *a, int *family, unsigned char key[16]) {
    memset(key, 0, 16);
    *family = a->ss_family;
    if (a->ss_family == AF_INET) memcpy(key, &((const struct sockaddr_in *)a)->sin_addr, 4);
    else if (a->ss_family == AF_INET6) memcpy(key, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
}

/* A linear scan: a few thousand connections at most, a few microseconds per accept. */
static int32_t client_find(const door *d, const struct sockaddr_storage *a) {
    int fam;
    unsigned char key[16];
    addr_key(a, &fam, key);
    for (int32_t i = 0; i < d->n_cl; i++)
        if (d->cl[i].family == fam && memcmp(d->cl[i].key, key, 16) == 0) return i;
    return -1;
}

static bool client_add(door *d, const struct sockaddr_storage *a) {
    int32_t i = client_find(d, a);
    if (i < 0) {
        if (d->n_cl == d->cap_cl) {
            int32_t cap = d->cap_cl ? 2 * d->cap_cl : 64;
            client *nc = road__realloc(d->cl, sizeof *nc * (size_t)cap);
            if (!nc) return false;
            d->cl = nc;
            d->cap_cl = cap;
        }
        i = d->n_cl++;
        addr_key(a, &d->cl[i].family, d->cl[i].key);
        d->cl[i].n = 0;
    }
    d->cl[i].n++;
    return true;
}

static void client_remove(door *d, const struct sockaddr_storage *a) {
    int32_t i = client_find(d, a);
    if (i < 0) return;
    if (--d->cl[i].n == 0) d->cl[i] = d->cl[--d->n_cl];
}

static int32_t client_count(const door *d, const struct sockaddr_storage *a) {
    int32_t i = client_find(d, a);
    return i < 0 ? 0 : d->cl[i].n;
}

/* ---- replies written by the door ---------------------------------------------------------- */

static const char *reason(int code) {
    switch (code) {
    case 400: return "Bad Request";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* Best effort: one non-blocking send of the whole reply (a few hundred bytes always fit an
 * empty socket buffer). */
static void send_error(door *d, int fd, const api_error *e) {
    char *j = road__api_error_json(e);
    if (!j) return;
    char head[256];
    size_t jl = strlen(j);
    int hl = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n\r\n", e->http, reason(e->http), jl);
    struct iovec iov[2] = {{head, (size_t)hl}, {j, jl}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    (void)!sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    free(j);
    road__log(ROAD_LOG_INFO, "road serve: %d %s", e->http, e->message);
    if (d->p.count) d->p.count(d->p.user, e->http);
}

static void drain(door *d, int fd) {
    while (recv(fd, d->buf, sizeof d->buf, MSG_DONTWAIT) > 0) {
    }
}

/* ---- connection records (d->mu held) ------------------------------------------------------- */

static void conn_release(door *d, dconn *x) {
    if (x->fd >= 0 && x->fd < d->cap_fd && d->by_fd[x->fd] == x) d->by_fd[x->fd] = NULL;
    client_remove(d, &x->addr);
    d->n_open--;
    road__free(x);
}

static void conn_close(door *d, dconn *x) {
    close(x->fd); /* also leaves the epoll set */
    conn_release(d, x);
}

/* Refuse a connection at the door: reply, then linger. */
static void conn_refuse(door *d, dconn *x, const api_error *e, double now) {
    send_error(d, x->fd, e);
    shutdown(x->fd, SHUT_WR);
    drain(d, x->fd);
    x->state = C_LINGER;
    x->deadline = now + DOOR_LINGER_S;
}

/* Refuse before a record exists (over a limit): reply, drop what already arrived, close. */
static void refuse_now(door *d, int fd, const api_error *e) {
    send_error(d, fd, e);
    shutdown(fd, SHUT_WR);
    drain(d, fd);
    close(fd);
}

/* ---- the head -------------------------------------------------------------------------------- */

typedef enum head_verdict { HEAD_INCOMPLETE, HEAD_OK, HEAD_BAD } head_verdict;

static bool ieq(const char *a, size_t n, const char *lit) {
    return strlen(lit) == n && strncasecmp(a, lit, n) == 0;
}

/* Parse a Content-Length value: 1..20 digits and nothing else. 1: ok, 0: malformed,
 * -1: overflows 64 bits. */
static int parse_length(const char *v, size_t n, unsigned long long *out) {
    if (n == 0) return 0;
    unsigned long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return 0;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (~0ULL - d) / 10) return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 1;
}

#define BAD(code, ...)                                                                             \
    do {                                                                                           \
        road__api_error_set(err, code, "invalid_request_error", NULL, NULL, __VA_ARGS__);          \
        return HEAD_BAD;                                                                           \
    } while (0)

/* Everything libmicrohttpd would refuse with its own HTML body, refused here first. n: bytes
 * peeked (at most DOOR_HEAD_MAX + 1). */
static head_verdict check_head(const char *b, size_t n, api_error *err) {
    size_t i = 0;
    while (i < n && (b[i] == '\r' || b[i] == '\n')) i++; /* empty lines before the request */
    if (memchr(b, '\0', n)) BAD(400, "the request head holds a NUL byte");
    const char *eol = memchr(b + i, '\n', n - i);
    if (!eol) {
        if (n - i > DOOR_URI_MAX + 64 || n > DOOR_HEAD_MAX)
            BAD(414, "the request line is longer than %d bytes", DOOR_URI_MAX);
        return HEAD_INCOMPLETE;
    }
    /* request line: METHOD SP target SP HTTP/x.y */
    const char *line = b + i;
    size_t ll = (size_t)(eol - line);
    if (ll && line[ll - 1] == '\r') ll--;
    const char *sp1 = memchr(line, ' ', ll);
    const char *sp2 = NULL;
    for (const char *p = line + ll; p > line; p--)
        if (p[-1] == ' ') {
            sp2 = p - 1;
            break;
        }
    if (!sp1 || sp1 == line || sp2 == sp1)
        BAD(400, "the request line is malformed: expected METHOD TARGET HTTP/1.1");
    const char *tgt = sp1 + 1;
    while (tgt < sp2 && *tgt == ' ') tgt++;
    size_t tl = (size_t)(sp2 - tgt);
    if (tl == 0) BAD(400, "the request line has no target");
    if (tl > DOOR_URI_MAX) BAD(414, "the request target is %zu bytes, more than the %d allowed", tl, DOOR_URI_MAX);
    const char *ver = sp2 + 1;
    size_t vl = (size_t)(line + ll - ver);
    if (vl != 8 || strncmp(ver, "HTTP/", 5) != 0 || ver[6] != '.' || ver[5] < '0' || ver[5] > '9' ||
        ver[7] < '0' || ver[7] > '9')
        BAD(400, "the request line is malformed: expected METHOD TARGET HTTP/1.1");
    if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1')) {
        road__api_error_set(err, 505, "invalid_request_error", NULL, NULL,
                            "HTTP/%c.%c is not supported: use HTTP/1.1 or HTTP/1.0", ver[5],
                            ver[7]);
        return HEAD_BAD;
    }
    /* header lines, up to the empty line */
    int headers = 0;
    bool has_cl = false, has_te = false;
    unsigned long long cl = 0;
    const char *p = eol + 1;
    for (;;) {
        const char *e = memchr(p, '\n', (size_t)(b + n - p));
        if (!e) {
            if (n > DOOR_HEAD_MAX)
                BAD(431, "the request headers are larger than %d bytes", DOOR_HEAD_MAX);
            return HEAD_INCOMPLETE;
        }
        size_t hl = (size_t)(e - p);
        if (hl && p[hl - 1] == '\r') hl--;
        if (hl == 0) break; /* end of the head */
        if ((size_t)(e + 1 - b) > DOOR_HEAD_MAX)
            BAD(431, "the request headers are larger than %d bytes", DOOR_HEAD_MAX);
        if (++headers > DOOR_HEADERS_MAX) BAD(431, "more than %d request headers", DOOR_HEADERS_MAX);
        if (p[0] == ' ' || p[0] == '\t')
            BAD(400, "folded header lines (a line starting with a space) are not accepted");
        const char *colon = memchr(p, ':', hl);
        if (!colon || colon == p) BAD(400, "header line %d has no 'name:'", headers);
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < p + hl && (*v == ' ' || *v == '\t')) v++;
        size_t vlen = (size_t)(p + hl - v);
        if (ieq(p, nl, "Content-Length")) {
            unsigned long long x = 0;
            int r = parse_length(v, vlen, &x);
            if (r < 0) BAD(413, "Content-Length %.*s is too large", (int)(vlen > 40 ? 40 : vlen), v);
            if (r == 0 || (has_cl && x != cl))
                BAD(400, "Content-Length must be one decimal number of bytes, got '%.*s'",
                    (int)(vlen > 40 ? 40 : vlen), v);
            has_cl = true;
            cl = x;
        } else if (ieq(p, nl, "Transfer-Encoding")) {
            has_te = true;
        }
        p = e + 1;
    }
    /* A chunked body's framing is parsed by libmicrohttpd, which answers its errors with HTML
     * that cannot be changed: require Content-Length instead (RFC 9110 15.5.12), as every
     * OpenAI client sends it. */
    if (has_te) {
        road__api_error_set(err, 411, "invalid_request_error", "length_required", NULL,
                            "send the body with a Content-Length header (Transfer-Encoding is not "
                            "accepted by this server)");
        return HEAD_BAD;
    }
    return HEAD_OK;
}

#undef BAD

/* ---- the door thread --------------------------------------------------------------------------- */

/* The connection that has waited longest for its head, or NULL. */
static dconn *oldest_head(door *d) {
    dconn *o = NULL;
    for (int fd = 0; fd <= d->hi_fd; fd++) {
        dconn *x = d->by_fd[fd];
        if (x && x->state == C_HEAD && (!o || x->seq < o->seq)) o = x;
    }
    return o;
}

static void admit(door *d, int fd, const struct sockaddr_storage *a, socklen_t alen, double now) {
    api_error e;
    if (fd >= d->cap_fd) {
        close(fd);
        return;
    }
    dconn *stale = d->by_fd[fd];
    if (stale) conn_release(d, stale); /* libmicrohttpd dropped it without a word */
    if (d->p.max_per_client > 0 && client_count(d, a) >= d->p.max_per_client) {
        road__api_error_set(
            &e, 429, "invalid_request_error", "too_many_connections", NULL,
            "this client address has %d connections open, the most this server allows "
            "(--max-connections-per-client)",
            (int)d->p.max_per_client);
        refuse_now(d, fd, &e);
        return;
    }
    if (d->n_open >= d->p.max_connections) {
        dconn *o = oldest_head(d);
        if (!o) {
            road__api_error_set(&e, 503, "server_error", "too_many_connections", NULL,
                                "the server has %d connections open, its limit; retry later",
                                (int)d->p.max_connections);
            refuse_now(d, fd, &e);
            return;
        }
        road__api_error_set(&e, 408, "invalid_request_error", "request_timeout", NULL,
                            "the server is full and this connection had not sent its request yet");
        send_error(d, o->fd, &e);
        conn_close(d, o);
    }
    dconn *x = road__calloc(1, sizeof *x);
    if (!x || !client_add(d, a)) {
        road__free(x);
        close(fd);
        return;
    }
    x->d = d;
    x->fd = fd;
    x->state = C_HEAD;
    x->seq = ++d->n_accepted;
    x->deadline = now + d->p.request_timeout_s;
    memcpy(&x->addr, a, sizeof *a);
    x->alen = alen;
    d->by_fd[fd] = x;
    if (fd > d->hi_fd) d->hi_fd = fd;
    d->n_open++;
    /* edge-triggered: every new segment wakes the door, though peeked bytes stay unread */
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.fd = fd};
    if (epoll_ctl(d->ep, EPOLL_CTL_ADD, fd, &ev) != 0) conn_close(d, x);
}

static void hand_off(door *d, dconn *x) {
    epoll_ctl(d->ep, EPOLL_CTL_DEL, x->fd, NULL);
    x->state = C_HANDED;
    x->phase = DOOR_RECEIVING;
    int fd = x->fd;
    struct sockaddr_storage a = x->addr;
    socklen_t alen = x->alen;
    /* libmicrohttpd announces the connection from its own thread (road__door_notify takes mu) */
    pthread_mutex_unlock(&d->mu);
    enum MHD_Result r = MHD_add_connection(d->mhd, fd, (const struct sockaddr *)&a, alen);
    pthread_mutex_lock(&d->mu);
    /* refused: libmicrohttpd closed the socket without announcing it */
    if (r != MHD_YES && d->by_fd[fd] == x && x->state == C_HANDED) conn_release(d, x);
}

static void examine(door *d, int fd, uint32_t events, double now) {
    dconn *x = fd >= 0 && fd < d->cap_fd ? d->by_fd[fd] : NULL;
    if (!x) return;
    if (events & (EPOLLRDHUP | EPOLLHUP)) x->peer_done = true;
    if (x->state == C_LINGER) {
        ssize_t k;
        while ((k = recv(fd, d->buf, sizeof d->buf, MSG_DONTWAIT)) > 0) {
        }
        if (k == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) conn_close(d, x);
        return;
    }
    if (x->state != C_HEAD) return;
    ssize_t k = recv(fd, d->buf, DOOR_HEAD_MAX + 1, MSG_PEEK | MSG_DONTWAIT);
    if (k == 0) {
        conn_close(d, x); /* left before finishing its head */
        return;
    }
    if (k < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) conn_close(d, x);
        return;
    }
    api_error e;
    head_verdict v = check_head(d->buf, (size_t)k, &e);
    if (v == HEAD_INCOMPLETE && x->peer_done)
        road__api_error_set(&e, 400, "invalid_request_error", NULL, NULL,
                            "the connection was half-closed before the end of the request head");
    if (v == HEAD_OK) hand_off(d, x);
    else if (v == HEAD_BAD || x->peer_done) conn_refuse(d, x, &e, now);
}

/* Deadlines: heads still at the door, lingering refusals, requests at libmicrohttpd whose body
 * is late. */
static void sweep(door *d, double now) {
    api_error e;
    for (int fd = 0; fd <= d->hi_fd; fd++) {
        dconn *x = d->by_fd[fd];
        if (!x || now < x->deadline) continue;
        if (x->state == C_HEAD) {
            road__api_error_set(&e, 408, "invalid_request_error", "request_timeout", NULL,
                                "the request head did not arrive within %g s (--request-timeout)",
                                d->p.request_timeout_s);
            conn_refuse(d, x, &e, now);
        } else if (x->state == C_LINGER) {
            conn_close(d, x);
        } else if (x->state == C_MHD && !x->expired && x->phase != DOOR_RECEIVED) {
            /* libmicrohttpd writes nothing while it still reads a request, unless a reply was
             * queued early (DOOR_ANSWERED): then only close */
            if (x->phase == DOOR_RECEIVING) {
                road__api_error_set(
                    &e, 408, "invalid_request_error", "request_timeout", NULL,
                    "the request body did not arrive within %g s (--request-timeout)",
                    d->p.request_timeout_s);
                send_error(d, fd, &e);
            }
            shutdown(fd, SHUT_RDWR); /* its thread sees the end and closes the connection */
            x->expired = true;
        }
    }
}

static void accept_all(door *d, double now) {
    for (;;) {
        struct sockaddr_storage a;
        socklen_t alen = sizeof a;
        int fd = accept4(d->lfd, (struct sockaddr *)&a, &alen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            admit(d, fd, &a, alen, now);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* out of descriptors: the listening socket stays readable; pause it a tick rather
             * than spin */
            road__log(ROAD_LOG_WARN,
                      "road serve: cannot accept a connection: %s (raise ulimit -n, "
                      "or lower --max-connections)",
                      strerror(errno));
            struct epoll_event ev = {.events = 0, .data.fd = d->lfd};
            epoll_ctl(d->ep, EPOLL_CTL_MOD, d->lfd, &ev);
            d->accept_paused = true;
            d->resume_at = now + 0.001 * DOOR_TICK_MS;
        }
        return;
    }
}

static void *door_main(void *arg) {
    door *d = arg;
    struct epoll_event ev[DOOR_EVENTS];
    double last_sweep = 0;
    for (;;) {
        int n = epoll_wait(d->ep, ev, DOOR_EVENTS, DOOR_TICK_MS);
        pthread_mutex_lock(&d->mu);
        if (d->stopping) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        double now = now_s();
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (fd == d->lfd) accept_all(d, now);
            else if (fd == d->wake) drain(d, fd);
            else examine(d, fd, ev[i].events, now);
        }
        if (d->accept_paused && now >= d->resume_at) {
            struct epoll_event lev = {.events = EPOLLIN, .data.fd = d->lfd};
            epoll_ctl(d->ep, EPOLL_CTL_MOD, d->lfd, &lev);
            d->accept_paused = false;
        }
        if (now - last_sweep >= 0.001 * DOOR_TICK_MS) {
            sweep(d, now);
            last_sweep = now;
        }
        pthread_mutex_unlock(&d->mu);
    }
    return NULL;
}

/* ---- life ------------------------------------------------------------------------------------ */

road_status road__door_open(const door_params *p, door **out, int *port) {
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    socklen_t sl;
    if (inet_pton(AF_INET, p->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p->port);
        sl = sizeof *v4;
    } else if (inet_pton(AF_INET6, p->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p->port);
        sl = sizeof *v6;
    } else {
        return road__error(ROAD_ERR_INVALID_ARG,
                           "host '%s' is not an IPv4 or IPv6 address "
                           "(for example 127.0.0.1, 0.0.0.0 or ::1)",
                           p->host);
    }
    door *d = road__calloc(1, sizeof *d);
    if (!d) return ROAD_ERR_NO_MEMORY;
    d->p = *p;
    d->lfd = d->ep = d->wake = -1;
    pthread_mutex_init(&d->mu, NULL);
    /* every connection is a descriptor: keep the limit within RLIMIT_NOFILE */
    struct rlimit rl;
    rlim_t nofile = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 1024;
    if (nofile == RLIM_INFINITY || nofile > DOOR_FD_TABLE_MAX) nofile = DOOR_FD_TABLE_MAX;
    long room = (long)nofile - DOOR_FD_RESERVE;
    if (room < 16) room = 16;
    if (d->p.max_connections > room) {
        road__log(ROAD_LOG_WARN,
                  "road serve: %d connections asked for, but the open-file limit "
                  "(ulimit -n) is %ld: serving at most %ld at once",
                  (int)d->p.max_connections, (long)nofile, room);
        d->p.max_connections = (int32_t)room;
    }
    d->cap_fd = (int)nofile;
    d->by_fd = road__calloc((size_t)d->cap_fd, sizeof *d->by_fd);
    road_status st = d->by_fd ? ROAD_OK : ROAD_ERR_NO_MEMORY;
    if (st == ROAD_OK) {
        d->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (d->lfd < 0 || setsockopt(d->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            (ss.ss_family == AF_INET6 &&
             setsockopt(d->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) ||
            bind(d->lfd, (struct sockaddr *)&ss, sl) != 0 || listen(d->lfd, DOOR_BACKLOG) != 0)
            st = road__error(ROAD_ERR_IO,
                             "cannot listen on %s port %d: %s (in use, or not an "
                             "address of this machine?)",
                             p->host, p->port, strerror(errno));
    }
    if (st == ROAD_OK) {
        d->ep = epoll_create1(EPOLL_CLOEXEC);
        d->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        struct epoll_event a = {.events = EPOLLIN, .data.fd = d->lfd};
        struct epoll_event b = {.events = EPOLLIN, .data.fd = d->wake};
        if (d->ep < 0 || d->wake < 0 || epoll_ctl(d->ep, EPOLL_CTL_ADD, d->lfd, &a) != 0 ||
            epoll_ctl(d->ep, EPOLL_CTL_ADD, d->wake, &b) != 0)
            st = road__error(ROAD_ERR_IO, "cannot set up epoll: %s", strerror(errno));
    }
    if (st == ROAD_OK) {
        struct sockaddr_storage got;
        socklen_t gl = sizeof got;
        getsockname(d->lfd, (struct sockaddr *)&got, &gl);
        *port = ntohs(got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                               : ((struct sockaddr_in6 *)&got)->sin6_port);
    }
    if (st != ROAD_OK) {
        road__door_free(d);
        return st;
    }
    *out = d;
    return ROAD_OK;
}

int32_t road__door_max_connections(const door *d) {
    return d ? d->p.max_connections : 0;
}

road_status road__door_start(door *d, struct MHD_Daemon *mhd) {
    d->mhd = mhd;
    d->stopping = false;
    int rc = pthread_create(&d->thread, NULL, door_main, d);
    if (rc != 0)
        return road__error(ROAD_ERR_INTERNAL, "cannot start the door thread (error %d)", rc);
    d->running = true;
    return ROAD_OK;
}

void road__door_stop(door *d) {
    if (!d) return;
    pthread_mutex_lock(&d->mu);
    d->stopping = true;
    pthread_mutex_unlock(&d->mu);
    if (d->running) {
        uint64_t one = 1;
        (void)!write(d->wake, &one, sizeof one);
        pthread_join(d->thread, NULL);
        d->running = false;
    }
    pthread_mutex_lock(&d->mu);
    if (d->lfd >= 0) close(d->lfd);
    d->lfd = -1;
    for (int fd = 0; fd <= d->hi_fd && d->by_fd; fd++) {
        dconn *x = d->by_fd[fd];
        if (x && (x->state == C_HEAD || x->state == C_LINGER)) conn_close(d, x);
    }
    pthread_mutex_unlock(&d->mu);
}

void road__door_free(door *d) {
    if (!d) return;
    road__door_stop(d);
    for (int fd = 0; fd <= d->hi_fd && d->by_fd; fd++)
        if (d->by_fd[fd]) conn_release(d, d->by_fd[fd]); /* announced-less leftovers */
    if (d->ep >= 0) close(d->ep);
    if (d->wake >= 0) close(d->wake);
    pthread_mutex_destroy(&d->mu);
    road__free(d->by_fd);
    road__free(d->cl);
    road__free(d);
}

/* ---- libmicrohttpd's side ------------------------------------------------------------------------ */

void road__door_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code) {
    door *d = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!ci) return;
        int fd = ci->connect_fd;
        pthread_mutex_lock(&d->mu);
        dconn *x = fd >= 0 && fd < d->cap_fd ? d->by_fd[fd] : NULL;
        if (x && x->state == C_HANDED) {
            x->state = C_MHD;
            *socket_context = x;
        }
        pthread_mutex_unlock(&d->mu);
    } else if (*socket_context) {
        pthread_mutex_lock(&d->mu);
        conn_release(d, *socket_context); /* libmicrohttpd closes the socket right after */
        *socket_context = NULL;
        pthread_mutex_unlock(&d->mu);
    }
}

void road__door_set_phase(struct MHD_Connection *c, door_phase phase) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    dconn *x = ci ? ci->socket_context : NULL;
    if (!x) return;
    pthread_mutex_lock(&x->d->mu);
    if (x->phase != DOOR_RECEIVED) x->phase = phase;
    pthread_mutex_unlock(&x->d->mu);
}
