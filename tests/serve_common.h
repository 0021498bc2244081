/*
 * tests/serve_common.h - helpers shared by test_serve_api.c and test_serve_http.c: an in-process
 * road_server on the tiny text model (tu_make_text_model) listening on an ephemeral loopback
 * port, and raw HTTP/1.1 over a loopback socket (send bytes, read the reply to its end, split
 * off the status code and the body). Raw sockets rather than an HTTP client library so a test
 * can send exactly the malformed or cut-short bytes it means to. Header-only (static inline)
 * because each test is its own executable.
 */
#ifndef ROAD_TEST_SERVE_COMMON_H
#define ROAD_TEST_SERVE_COMMON_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testutil.h"

/* One test file's server: the model folder it made, the server, the port it listens on. */
typedef struct serve_fixture {
    char dir[64];
    road_server *srv;
    int port;
} serve_fixture;

/* Make the text model in f->dir and start a server on it with p (the caller's settings; its
 * model_dir and port are set here: f->dir and 0, an ephemeral port). 0 on success, -1 with the
 * reason on stderr: a cmocka group setup's return value. */
static inline int serve_fixture_start(serve_fixture *f, const road_server_params *p) {
    tu_make_text_model(f->dir, sizeof f->dir);
    road_server_params q = *p;
    q.model_dir = f->dir;
    q.port = 0;
    if (road_server_create(&q, &f->srv) != ROAD_OK || road_server_start(f->srv) != ROAD_OK) {
        fprintf(stderr, "server: %s\n", road_last_error());
        return -1;
    }
    f->port = road_server_port(f->srv);
    return f->port > 0 ? 0 : -1;
}

/* Free the server and remove its model folder. */
static inline void serve_fixture_stop(serve_fixture *f) {
    road_server_free(f->srv);
    f->srv = NULL;
    tu_rm_rf(f->dir);
}

/* A TCP connection to 127.0.0.1:port (fails the test if it cannot connect). */
static inline int serve_dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Send n bytes, stopping quietly if the server closes first (it may, on oversize bodies). */
static inline void serve_send_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        s += k;
        n -= (size_t)k;
    }
}

/* out holds a raw HTTP reply: returns its status code (0: not an HTTP reply, out unchanged) and
 * moves its body (after the blank line) to the front of out. */
static inline int serve_reply_split(char *out) {
    int code = 0;
    if (sscanf(out, "HTTP/1.%*d %d", &code) != 1) return 0;
    char *body = strstr(out, "\r\n\r\n");
    if (body) memmove(out, body + 4, strlen(body + 4) + 1);
    return code;
}

/* Read fd to its end (up to cap - 1 bytes, NUL-terminated), close it, and split the reply:
 * returns the status code (0: none), the body in out. */
static inline int serve_read_reply(int fd, char *out, size_t cap) {
    size_t got = 0;
    ssize_t k;
    while (got + 1 < cap && (k = recv(fd, out + got, cap - 1 - got, 0)) > 0) got += (size_t)k;
    out[got] = '\0';
    close(fd);
    return serve_reply_split(out);
}

/* Send n raw bytes to port on a new connection and read the whole reply (the request should
 * say Connection: close); returns the status code (0: none), the body in out. */
static inline int serve_exchange(int port, const char *raw, size_t n, char *out, size_t cap) {
    int fd = serve_dial(port);
    serve_send_all(fd, raw, n);
    return serve_read_reply(fd, out, cap);
}

#endif
