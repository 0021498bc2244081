/*
 * serve/server_internal.h - the HTTP server's state, shared by serve/server.c (life, routing,
 * small endpoints) and serve/completions.c (the two generation endpoints). Private to serve/.
 */
#ifndef ROAD_SERVE_SERVER_INTERNAL_H
#define ROAD_SERVE_SERVER_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>

#include "road/serve.h"
#include "serve/api.h"

#include <cjson/cJSON.h>

/* HTTP status codes counted for /metrics (others go to "other"). */
#define SERVER_N_CODES 16
extern const int road__server_codes[SERVER_N_CODES];

struct road_server {
    road_server_params p;  /* strings below are the server's copies */
    char *model_dir, *served_name, *host, *api_key;
    road_model *m;
    road_tokenizer *tok;   /* NULL: the model folder has no tokenizer.json */
    bool has_template;
    struct cJSON *chat_kwargs; /* --chat-kwargs: defaults for chat_template_kwargs, or NULL */
    char tmpl_err[512];    /* why chat is unavailable */
    road_engine *e;
    struct MHD_Daemon *d;
    struct door *door;     /* the listening socket and the connections still sending heads */
    int port;
    long long created;     /* unix time of start (the models' "created") */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool started, draining, stopped;
    uint64_t next_id;
    int64_t responses[SERVER_N_CODES + 1];
};

/* Queue a JSON error reply (and count it). */
enum MHD_Result road__server_send_error(road_server *s, struct MHD_Connection *c,
                                        const api_error *err);
/* Queue a reply with this body (copied) and content type (and count it). */
enum MHD_Result road__server_send(road_server *s, struct MHD_Connection *c, int code,
                                  const char *type, const char *body, size_t len);
void road__server_count(road_server *s, int code);
/* A fresh id number for replies and default seeds. */
uint64_t road__server_next_id(road_server *s);
/* True when the peer of this socket has closed it. */
bool road__server_client_gone(int fd);

/* POST /v1/completions and /v1/chat/completions. */
enum MHD_Result road__completions_generate(road_server *s, struct MHD_Connection *c, api_kind kind,
                                           const char *body, size_t len);

#endif
