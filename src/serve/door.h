/*
 * serve/door.h - the front door of `road serve` (private to serve/): the listening socket, and
 * every connection until its request head is complete and sound. See serve/door.c.
 */
#ifndef ROAD_SERVE_DOOR_H
#define ROAD_SERVE_DOOR_H

#include <microhttpd.h>
#include <stddef.h>

#include "road/core.h"

typedef struct door door;

typedef struct door_params {
    const char *host;         /* IPv4 or IPv6 address */
    int port;                 /* 0: any free port */
    int32_t max_connections;  /* open connections at most, door and libmicrohttpd together */
    int32_t max_per_client;   /* per client address; 0: no cap */
    double request_timeout_s; /* accept -> whole request (head and body) received */
    size_t max_body_bytes;    /* a declared Content-Length above it is not refused here (the
                                 router answers 413 after routing), only malformed ones */
    void (*count)(void *user, int code); /* a reply the door sent itself (for /metrics) */
    void *user;
} door_params;

/* Bind and listen (no thread yet). *port: the port bound. max_connections is lowered to what
 * RLIMIT_NOFILE allows (logged). */
road_status road__door_open(const door_params *p, door **out, int *port);
/* The connection limit in force (after road__door_open's RLIMIT_NOFILE check). */
int32_t road__door_max_connections(const door *d);
/* Start accepting: sound requests go to `mhd` (started with MHD_USE_NO_LISTEN_SOCKET and
 * road__door_notify as its MHD_OPTION_NOTIFY_CONNECTION). */
road_status road__door_start(door *d, struct MHD_Daemon *mhd);
/* Stop accepting: the thread ends, the listening socket and the connections still at the door
 * close. Connections handed to libmicrohttpd stay (MHD_stop_daemon closes them). */
void road__door_stop(door *d);
/* After MHD_stop_daemon. NULL is a no-op. */
void road__door_free(door *d);

/* MHD_OPTION_NOTIFY_CONNECTION callback (cls: the door). */
void road__door_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode code);

/* The router's progress on a connection's request, for the deadline. */
typedef enum door_phase {
    DOOR_RECEIVING = 0, /* head in, body arriving: past the deadline the door answers 408 */
    DOOR_ANSWERED,      /* a reply was queued before the body was in (413): past the deadline
                           the connection is closed without another reply */
    DOOR_RECEIVED       /* the whole request is in: no deadline (the reply has its own idle
                           timeout) */
} door_phase;
void road__door_set_phase(struct MHD_Connection *c, door_phase phase);

#endif
