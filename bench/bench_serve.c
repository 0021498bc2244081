/*
 * bench/bench_serve.c - `road serve` under loopback load: 16 client threads (C sockets), each
 * sending streaming /v1/completions requests back to back, against an in-process road_server.
 *
 * Model: random float32 weights written to a temporary folder at start (llama, hidden 512,
 * 4 layers, 8 heads / 4 KV heads, MLP 1408, vocabulary 4096): big enough that the forward,
 * not HTTP, dominates on 2 cores. Eight RoAd adapters (road_1, group 64, every linear layer but
 * the head, PEFT's random init) are saved next to it and served.
 *
 * Modes, alternated round by round (A, B, A, B, ...) so both see the same machine phases:
 *   base      every request on the base model (no adapter)
 *   road-1    every request on adapter a0
 *   road-8    client i on adapter a(i % 8): eight adapters in every batch
 *   lora-1/8  the LoRA-style baseline: requests run on the base model and the engine's step hook
 *             adds, for every linear layer and every row of the step, the low-rank update a LoRA
 *             serving engine does (rank 16, per-adapter A [16 x in] and B [out x 16]): rows are
 *             grouped by adapter (gathered), x A^T then (x A^T) B^T added to y (scattered back),
 *             two sgemm per layer per adapter present. It runs after each forward on stand-in
 *             activations of the right shapes, so it measures LoRA's extra arithmetic and weight
 *             traffic, not a full LoRA engine (no fused kernels, which would do better with 1
 *             adapter than with 8 - the point of the comparison).
 * Which LoRA adapter a row belongs to: every prompt token is 100 + adapter index, and the hook
 * remembers each request's adapter from its prefill rows.
 *
 * Reports generated tokens/s (tokens of finished requests / wall time of the round), time to
 * first token (request sent -> first SSE event) and per-token latency (gaps between SSE events)
 * at p50 / p99, and the ratio road-8 / road-1 (target >= 0.95).
 *
 * usage: bench_serve [--quick] [--clients N] [--requests N] [--rounds N] [--tokens N] [--threads N]
 */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/blas.h"
#include "road/road.h"

#define BENCH_NAME "bench_serve"
#include "bench_util.h"

#define HIDDEN 512
#define INTER 1408
#define LAYERS 4
#define N_HEADS 8
#define N_KV 4
#define HEAD_DIM 64
#define VOCAB 4096
#define N_ADAPTERS 8
#define LORA_RANK 16
#define PROMPT 64
#define MAX_CLIENTS 64
#define MAX_ROWS 1024 /* the engine's step budget (256) fits */




static const struct {
    const char *name;
    int64_t out, in;
} linear[7] = {{"self_attn.q_proj", N_HEADS * HEAD_DIM, HIDDEN}, {"self_attn.k_proj", N_KV * HEAD_DIM, HIDDEN},
               {"self_attn.v_proj", N_KV * HEAD_DIM, HIDDEN},    {"self_attn.o_proj", HIDDEN, N_HEADS * HEAD_DIM},
               {"mlp.gate_proj", INTER, HIDDEN},                 {"mlp.up_proj", INTER, HIDDEN},
               {"mlp.down_proj", HIDDEN, INTER}};

static void write_model(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) exit(1);
    fprintf(f, "{\"model_type\": \"llama\", \"hidden_size\": %d, \"intermediate_size\": %d, "
               "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
               "\"head_dim\": %d, \"vocab_size\": %d, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
               "\"max_position_embeddings\": 512, \"tie_word_embeddings\": false, \"hidden_act\": \"silu\", "
               "\"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"float32\"}\n",
            HIDDEN, INTER, LAYERS, N_HEADS, N_KV, HEAD_DIM, VOCAB);
    fclose(f);
    road_st_writer *w;
    die(road_st_writer_create(&w), "writer");
    add_random(w, "model.embed_tokens.weight", ROAD_DTYPE_F32, VOCAB, HIDDEN, 0.04f, 0);
    add_random(w, "lm_head.weight", ROAD_DTYPE_F32, VOCAB, HIDDEN, 2.0f / sqrtf(HIDDEN), 0);
    add_random(w, "model.norm.weight", ROAD_DTYPE_F32, HIDDEN, 0, 0.1f, 1.0f);
    const bench_llama_shape shape = {HIDDEN, INTER, LAYERS, N_HEADS, N_KV, HEAD_DIM, VOCAB};
    for (int l = 0; l < LAYERS; l++) add_llama_layer(w, ROAD_DTYPE_F32, &shape, l, 0);
    save_model(w, dir);
}

/* Eight RoAd adapters with PEFT's random init on every linear layer, saved as PEFT folders. */
static void write_adapters(const char *dir) {
    road_model *m;
    road_model_params mp = road_model_default_params();
    die(road_model_load(dir, &mp, &m), "load model for adapters");
    const char *cfg_json = "{\"peft_type\": \"ROAD\", \"variant\": \"road_1\", \"group_size\": 64, "
                           "\"init_weights\": false, \"target_modules\": \"all-linear\", "
                           "\"task_type\": \"CAUSAL_LM\"}";
    road_config *cfg;
    die(road_config_parse(cfg_json, strlen(cfg_json), &cfg), "adapter config");
    road_adapter_set *set = road_model_adapters(m);
    const char *names[N_ADAPTERS];
    char buf[N_ADAPTERS][8];
    for (int a = 0; a < N_ADAPTERS; a++) {
        snprintf(buf[a], sizeof buf[a], "a%d", a);
        names[a] = buf[a];
        die(road_adapter_set_add(set, buf[a], cfg, 7 + (uint64_t)a), "add adapter");
    }
    char out[1024];
    snprintf(out, sizeof out, "%s/adapters", dir);
    die(road_adapter_set_save(set, out, names, N_ADAPTERS), "save adapters");
    road_config_free(cfg);
    road_model_free(m);
}

/* ---- the LoRA-style baseline (the engine's step hook) -------------------------------------- */

typedef enum mode { M_BASE, M_ROAD1, M_ROAD8, M_LORA1, M_LORA8, M_COUNT } mode;
static const char *const mode_name[M_COUNT] = {"base", "road-1", "road-8", "lora-1", "lora-8"};

typedef struct lora_state {
    volatile int on;                  /* the current mode is a LoRA one */
    float *A[N_ADAPTERS][LAYERS][7];  /* [16 x in] */
    float *B[N_ADAPTERS][LAYERS][7];  /* [out x 16] */
    float *x, *y, *xg, *t, *yg;       /* stand-in activations */
    int8_t adapter_of[65536];         /* request id % 65536 -> adapter, from its prefill */
    int64_t rows_done;
} lora_state;

static lora_state lora;

static void lora_init(void) {
    for (int a = 0; a < N_ADAPTERS; a++)
        for (int l = 0; l < LAYERS; l++)
            for (int k = 0; k < 7; k++) {
                size_t na = (size_t)(LORA_RANK * linear[k].in), nb = (size_t)(linear[k].out * LORA_RANK);
                lora.A[a][l][k] = malloc(sizeof(float) * na);
                lora.B[a][l][k] = malloc(sizeof(float) * nb);
                if (!lora.A[a][l][k] || !lora.B[a][l][k]) exit(1);
                for (size_t i = 0; i < na; i++) lora.A[a][l][k][i] = 0.01f * rnd();
                for (size_t i = 0; i < nb; i++) lora.B[a][l][k][i] = 0.01f * rnd();
            }
    size_t big = (size_t)MAX_ROWS * INTER;
    lora.x = calloc(big, sizeof(float));
    lora.y = calloc(big, sizeof(float));
    lora.xg = calloc(big, sizeof(float));
    lora.yg = calloc(big, sizeof(float));
    lora.t = calloc((size_t)MAX_ROWS * LORA_RANK, sizeof(float));
    if (!lora.x || !lora.y || !lora.xg || !lora.yg || !lora.t) exit(1);
    for (size_t i = 0; i < big; i++) lora.x[i] = rnd();
}

static void lora_step(const road_engine_step_info *info, void *user) {
    (void)user;
    if (!lora.on) return;
    int row_ad[MAX_ROWS];
    int64_t rows = 0;
    for (int64_t i = 0; i < info->n_seq; i++) {
        const road_seq *s = &info->seqs[i];
        int slot = (int)(info->request_ids[i] % 65536);
        if (s->n_tokens > 1 && s->tokens[0] >= 100 && s->tokens[0] < 100 + N_ADAPTERS)
            lora.adapter_of[slot] = (int8_t)(s->tokens[0] - 100); /* a prompt chunk: the mark */
        for (int64_t k = 0; k < s->n_tokens && rows < MAX_ROWS; k++) row_ad[rows++] = lora.adapter_of[slot];
    }
    for (int l = 0; l < LAYERS; l++)
        for (int k = 0; k < 7; k++) {
            int64_t in = linear[k].in, out = linear[k].out;
            for (int a = 0; a < N_ADAPTERS; a++) {
                int64_t n = 0; /* gather this adapter's rows */
                for (int64_t r = 0; r < rows; r++)
                    if (row_ad[r] == a) memcpy(lora.xg + n++ * in, lora.x + r * in, sizeof(float) * (size_t)in);
                if (n == 0) continue;
                /* t = xg A^T [n x 16]; yg = t B^T [n x out] */
                road__sgemm(false, true, n, LORA_RANK, in, 1.0f, lora.xg, in, lora.A[a][l][k], in,
                            0.0f, lora.t, LORA_RANK);
                road__sgemm(false, true, n, out, LORA_RANK, 1.0f, lora.t, LORA_RANK,
                            lora.B[a][l][k], LORA_RANK, 0.0f, lora.yg, out);
                n = 0; /* scatter-add into y */
                for (int64_t r = 0; r < rows; r++)
                    if (row_ad[r] == a) {
                        float *yr = lora.y + r * out;
                        const float *g = lora.yg + n++ * out;
                        for (int64_t j = 0; j < out; j++) yr[j] += g[j];
                    }
            }
        }
    lora.rows_done += rows;
}

/* ---- clients ------------------------------------------------------------------------------- */

typedef struct client {
    int id, port, requests, max_tokens;
    mode m;
    int64_t tokens;
    double *ttft, *gaps;
    int n_ttft, n_gaps, cap_gaps;
    int errors;
} client;

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static void one_request(client *c, int seq) {
    int ad = c->m == M_ROAD1 || c->m == M_LORA1 ? 0 : c->id % N_ADAPTERS;
    char model[16];
    snprintf(model, sizeof model, "%s", c->m == M_ROAD1 || c->m == M_ROAD8 ? "" : "bench");
    if (!model[0]) snprintf(model, sizeof model, "a%d", ad);
    char body[2048];
    int n = snprintf(body, sizeof body, "{\"model\":\"%s\",\"prompt\":[", model);
    for (int i = 0; i < PROMPT; i++) n += snprintf(body + n, sizeof body - (size_t)n, "%s%d", i ? "," : "", 100 + ad);
    n += snprintf(body + n, sizeof body - (size_t)n,
                  "],\"max_tokens\":%d,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"ignore_eos\":true,\"temperature\":0.8,\"seed\":%d}",
                  c->max_tokens, c->id * 1000 + seq);
    char req[4096];
    int rl = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", n, body);
    int fd = dial(c->port);
    if (fd < 0) {
        c->errors++;
        return;
    }
    double t0 = now_s(), last = 0;
    if (send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) c->errors++;
    char buf[16384 + 1];
    size_t len = 0;
    int events = 0, completion = -1;
    bool done = false;
    for (;;) { /* SSE events end with a blank line; chunked-encoding sizes sit between them */
        ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (k <= 0) break;
        double t = now_s();
        len += (size_t)k;
        buf[len] = '\0';
        char *p = buf, *end;
        while ((end = strstr(p, "\n\n")) != NULL) {
            *end = '\0';
            char *d = strstr(p, "data: ");
            if (d && d[6] == '[') done = true;
            else if (d && strstr(d, "\"completion_tokens\":"))
                completion = atoi(strstr(d, "\"completion_tokens\":") + 20); /* the usage chunk */
            else if (d && d[6] == '{') { /* a token chunk (may carry several tokens) */
                if (events == 0) c->ttft[c->n_ttft++] = t - t0;
                else if (c->n_gaps < c->cap_gaps) c->gaps[c->n_gaps++] = t - last;
                last = t;
                events++;
            }
            p = end + 2;
        }
        len -= (size_t)(p - buf);
        memmove(buf, p, len);
        if (len == sizeof buf - 1) len = 0; /* not SSE: give up on this buffer */
    }
    close(fd);
    if (!done || completion != c->max_tokens) {
        c->errors++;
        fprintf(stderr, "bench_serve: client %d: %d tokens of %d%s\n", c->id, completion, c->max_tokens,
                done ? "" : ", no [DONE]");
    } else {
        c->tokens += completion;
    }
}

static void *client_main(void *arg) {
    client *c = arg;
    for (int i = 0; i < c->requests; i++) one_request(c, i);
    return NULL;
}

static double pct(double *v, int n, double p) {
    if (n == 0) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)ceil(p * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

typedef struct result {
    double tps[16];
    int rounds;
    double *ttft, *gaps;
    int n_ttft, n_gaps;
    int errors;
} result;

static void run_round(int port, mode m, int n_clients, int requests, int max_tokens, result *res) {
    client cl[MAX_CLIENTS];
    pthread_t th[MAX_CLIENTS];
    lora.on = m == M_LORA1 || m == M_LORA8;
    double t0 = now_s();
    for (int i = 0; i < n_clients; i++) {
        cl[i] = (client){.id = i, .port = port, .requests = requests, .max_tokens = max_tokens, .m = m};
        cl[i].ttft = malloc(sizeof(double) * (size_t)requests);
        cl[i].cap_gaps = requests * max_tokens;
        cl[i].gaps = malloc(sizeof(double) * (size_t)cl[i].cap_gaps);
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    }
    int64_t tokens = 0;
    for (int i = 0; i < n_clients; i++) {
        pthread_join(th[i], NULL);
        tokens += cl[i].tokens;
    }
    double dt = now_s() - t0;
    res->tps[res->rounds++] = (double)tokens / dt;
    for (int i = 0; i < n_clients; i++) {
        res->ttft = realloc(res->ttft, sizeof(double) * (size_t)(res->n_ttft + cl[i].n_ttft));
        memcpy(res->ttft + res->n_ttft, cl[i].ttft, sizeof(double) * (size_t)cl[i].n_ttft);
        res->n_ttft += cl[i].n_ttft;
        res->gaps = realloc(res->gaps, sizeof(double) * (size_t)(res->n_gaps + cl[i].n_gaps));
        memcpy(res->gaps + res->n_gaps, cl[i].gaps, sizeof(double) * (size_t)cl[i].n_gaps);
        res->n_gaps += cl[i].n_gaps;
        res->errors += cl[i].errors;
        free(cl[i].ttft);
        free(cl[i].gaps);
    }
    lora.on = 0;
}

static double median(const double *v, int n) {
    double s[16];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

int main(int argc, char **argv) {
    int n_clients = 16, requests = 4, rounds = 3, max_tokens = 64, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) requests = 1, rounds = 1, max_tokens = 16;
        else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc) n_clients = atoi(argv[++i]);
        else if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc) requests = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) max_tokens = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_serve [--quick] [--clients N] [--requests N] [--rounds N] [--tokens N] [--threads N]\n");
            return 2;
        }
    }
    if (n_clients < 1 || n_clients > MAX_CLIENTS || rounds < 1 || rounds > 16 || requests < 1 ||
        max_tokens < 2 || max_tokens > 400) {
        fprintf(stderr, "bench_serve: clients 1..64, rounds 1..16, tokens 2..400\n");
        return 2;
    }
    char dir[] = "/tmp/road-bench-serve-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    if (threads > 0) road_set_num_threads(threads);
    write_model(dir);
    write_adapters(dir);
    lora_init();
    road_server_params p = road_server_default_params();
    const char *names[N_ADAPTERS];
    char nb[N_ADAPTERS][8], db[N_ADAPTERS][1100];
    const char *dirs[N_ADAPTERS];
    for (int a = 0; a < N_ADAPTERS; a++) {
        snprintf(nb[a], sizeof nb[a], "a%d", a);
        snprintf(db[a], sizeof db[a], "%s/adapters/a%d", dir, a);
        names[a] = nb[a];
        dirs[a] = db[a];
    }
    p.model_dir = dir;
    p.served_model_name = "bench";
    p.adapter_names = names;
    p.adapter_dirs = dirs;
    p.n_adapters = N_ADAPTERS;
    p.port = 0;
    p.model.n_threads = threads;
    p.engine.max_batch = 16;
    p.engine.on_step = lora_step;
    road_server *srv;
    die(road_server_create(&p, &srv), "server");
    die(road_server_start(srv), "start");
    int port = road_server_port(srv);
    printf("bench_serve: model hidden %d, %d layers, MLP %d, vocab %d, f32; 8 RoAd adapters on all "
           "linear layers (road_1, g 64); %d threads\n", HIDDEN, LAYERS, INTER, VOCAB, road_get_num_threads());
    printf("load: %d clients x %d streaming requests per round, prompt %d ids, %d tokens each; "
           "%d rounds per mode, alternated\n\n", n_clients, requests, PROMPT, max_tokens, rounds);
    run_round(port, M_ROAD1, n_clients, 1, 4, &(result){0}); /* warm-up */
    result res[M_COUNT];
    memset(res, 0, sizeof res);
    const mode order[] = {M_ROAD1, M_ROAD8, M_BASE, M_LORA1, M_LORA8};
    for (int r = 0; r < rounds; r++)
        for (size_t k = 0; k < sizeof order / sizeof *order; k++) {
            mode m = r % 2 ? order[sizeof order / sizeof *order - 1 - k] : order[k];
            run_round(port, m, n_clients, requests, max_tokens, &res[m]);
        }
    printf("%-8s %12s %10s %10s %10s %10s %7s\n", "mode", "tokens/s", "TTFT p50", "TTFT p99", "tok p50",
           "tok p99", "errors");
    for (int m = 0; m < M_COUNT; m++) {
        result *x = &res[m];
        printf("%-8s %12.1f %8.1fms %8.1fms %8.2fms %8.2fms %7d\n", mode_name[m], median(x->tps, x->rounds),
               1e3 * pct(x->ttft, x->n_ttft, 0.5), 1e3 * pct(x->ttft, x->n_ttft, 0.99),
               1e3 * pct(x->gaps, x->n_gaps, 0.5), 1e3 * pct(x->gaps, x->n_gaps, 0.99), x->errors);
    }
    double r81 = median(res[M_ROAD8].tps, rounds) / median(res[M_ROAD1].tps, rounds);
    double rb = median(res[M_ROAD8].tps, rounds) / median(res[M_BASE].tps, rounds);
    double l81 = median(res[M_LORA8].tps, rounds) / median(res[M_LORA1].tps, rounds);
    double lr = median(res[M_LORA8].tps, rounds) / median(res[M_ROAD8].tps, rounds);
    printf("\nroad-8 / road-1 throughput: %.3f (target >= 0.95: %s)\n", r81, r81 >= 0.95 ? "met" : "MISSED");
    printf("road-8 / base:               %.3f\n", rb);
    printf("lora-8 / lora-1:             %.3f\n", l81);
    printf("lora-8 / road-8:             %.3f\n", lr);
    printf("{\"road8_over_road1\": %.4f, \"road8_over_base\": %.4f, \"lora8_over_lora1\": %.4f, "
           "\"lora8_over_road8\": %.4f}\n", r81, rb, l81, lr);
    road_server_free(srv);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_serve: could not remove %s\n", dir);
    int errors = 0;
    for (int m = 0; m < M_COUNT; m++) errors += res[m].errors;
    return errors ? 1 : 0;
}
