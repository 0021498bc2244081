/*
 * cli/cmd_serve.c - `road serve`: an OpenAI-compatible HTTP server for a model and its RoAd
 * adapters (road/serve.h; the API is docs/serve.md).
 *
 * SIGINT and SIGTERM are blocked in every thread before the server starts its threads and
 * taken by sigwait here, so no signal handler ever runs inside the server: the main thread then
 * drains (running requests finish, new ones get 503) and stops.
 */
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

#define CMD "serve"
#define MAX_ADAPTERS 256

typedef struct serve_opts {
    const char *model, *host, *api_key, *served_model_name;
    cli_chat chat_opts;
    cli_list adapters;
    int64_t port, max_batch, max_seq_len, step_tokens, max_waiting, max_tokens_limit;
    int64_t max_body_bytes, threads, max_connections, max_connections_per_client;
    int64_t request_timeout;
    cli_quant qz;
    road_dtype kv_dtype;
    bool no_adapter_loading, quiet;
    uint64_t given;
} serve_opts;

/* Defaults not given here are road_server_default_params()'s (docs/serve.md). */
static const cli_flag flags[] = {
    {CLI_STR("--model", serve_opts, model, "DIR", NULL, "the model folder"), .flags = CLI_REQUIRED},
    {CLI_LST("--adapter", serve_opts, adapters, "NAME=DIR", MAX_ADAPTERS,
             "serve an adapter folder under NAME (more can be loaded at run time)")},
    {CLI_STR("--host", serve_opts, host, "HOST", "127.0.0.1", "address to listen on")},
    {CLI_INT("--port", serve_opts, port, "PORT", 0, 65535, NULL, "(default 8080; 0: a free port)")},
    {CLI_INT("--max-batch", serve_opts, max_batch, "N", 1, 4096, NULL,
             "sequences decoded together")},
    {CLI_INT("--max-seq-len", serve_opts, max_seq_len, "L", 2, 1 << 24, NULL,
             "longest sequence (prompt and completion)")},
    {CLI_STR("--api-key", serve_opts, api_key, "KEY", NULL,
             "require this bearer key (default: ROAD_API_KEY from the environment)")},
    {CLI_STR("--served-model-name", serve_opts, served_model_name, "NAME", NULL,
             "the base model's name in the API (default: the folder's name)")},
    CLI_CHAT_FLAGS(serve_opts),
    {CLI_INT("--step-tokens", serve_opts, step_tokens, "N", 1, 1 << 24, NULL,
             "tokens one engine step runs (prefill chunks and decodes)")},
    {CLI_INT("--max-waiting", serve_opts, max_waiting, "N", 1, 1 << 20, NULL,
             "requests queued before new ones get 503")},
    {CLI_INT("--max-tokens-limit", serve_opts, max_tokens_limit, "N", 1, 1 << 24, NULL,
             "the largest max_tokens a request may ask")},
    {CLI_INT("--max-body-bytes", serve_opts, max_body_bytes, "N", 64, 1LL << 32, NULL,
             "the largest request body")},
    {CLI_INT("--max-connections", serve_opts, max_connections, "N", 1, 1 << 20, NULL,
             "(default 4096, lowered to fit the open-file limit)")},
    {CLI_INT("--max-connections-per-client", serve_opts, max_connections_per_client, "N", 0,
             1 << 20, NULL, "per client address (default 256; 0: no cap)")},
    {CLI_INT("--request-timeout", serve_opts, request_timeout, "S", 1, 86400, NULL,
             "seconds from connecting to the request's last byte (default 60)")},
    {CLI_SW("--no-adapter-loading", serve_opts, no_adapter_loading,
            "refuse /v1/load_lora_adapter and /v1/unload_lora_adapter")},
    CLI_THREADS_FLAG(serve_opts),
    {CLI_SW("--quiet", serve_opts, quiet, "log warnings and errors only")},
    CLI_QUANT_FLAGS(serve_opts),
    CLI_KV_DTYPE_FLAG(serve_opts),
};

static const cli_spec spec = {
    .name = CMD,
    .about =
        "Serves the model and its adapters over OpenAI's API: POST /v1/completions and\n"
        "/v1/chat/completions (\"model\" names an adapter, or the base model by its served name),\n"
        "streaming or not; GET /v1/models; POST /v1/load_lora_adapter {lora_name, lora_path} and\n"
        "/v1/unload_lora_adapter {lora_name}; GET /health and /metrics (Prometheus).\n"
        "Requests for different adapters share one batch (continuous batching).\n"
        "Ctrl-C (SIGINT) or SIGTERM: finish the running requests, then stop. docs/serve.md has\n"
        "the details and the limits.\n",
    CLI_TABLE(flags, serve_opts),
};

static bool quiet;

static void log_stderr(road_log_level level, const char *message, void *user) {
    (void)user;
    if (quiet && level < ROAD_LOG_WARN) return;
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s %s\n", when, message);
}

int cmd_serve(int argc, char **argv) {
    serve_opts o = {0};
    const char *names[MAX_ADAPTERS], *dirs[MAX_ADAPTERS];
    char *specs[MAX_ADAPTERS];
    int n_ad = 0;
    road_server *srv = NULL;
    int rc = cli_parse(&spec, argc, argv, &o);
    if (rc != CLI_CONTINUE) return rc;
    rc = CLI_EXIT_USAGE;
    const char *host = o.host, *key = o.api_key ? o.api_key : getenv("ROAD_API_KEY");
    quiet = o.quiet;
    for (; n_ad < o.adapters.n; n_ad++) {
        const char *v = o.adapters.v[n_ad], *eq = strchr(v, '=');
        if (!eq || eq == v || !eq[1]) {
            cli_error(
                CMD,
                "--adapter takes NAME=DIR (for example --adapter math=adapters/math), got '%s'", v);
            goto done;
        }
        if (!(specs[n_ad] = malloc((size_t)(eq - v) + 1))) {
            rc = CLI_EXIT_FAIL;
            goto done;
        }
        memcpy(specs[n_ad], v, (size_t)(eq - v));
        specs[n_ad][eq - v] = '\0';
        if (road_engine_check_adapter_name(specs[n_ad]) != ROAD_OK) { /* the load endpoint's rule */
            free(specs[n_ad]);
            cli_error(CMD, "--adapter: %s", road_last_error());
            goto done;
        }
        names[n_ad] = specs[n_ad];
        dirs[n_ad] = eq + 1;
    }
    road_server_params p = road_server_default_params();
    p.model_dir = o.model;
    p.host = host;
    p.adapter_names = names;
    p.adapter_dirs = dirs;
    p.n_adapters = n_ad;
    p.served_model_name = o.served_model_name;
    p.api_key = key && key[0] ? key : NULL;
    p.allow_adapter_loading = !o.no_adapter_loading;
    /* a flag not given keeps road_server_default_params()'s value */
#define SET_IF_GIVEN(flag, field, value)                                                           \
    if (cli_given(&spec, &o, flag)) field = value
    SET_IF_GIVEN("--port", p.port, (int)o.port);
    SET_IF_GIVEN("--max-batch", p.engine.max_batch, (int32_t)o.max_batch);
    SET_IF_GIVEN("--max-seq-len", p.engine.max_seq_len, o.max_seq_len);
    SET_IF_GIVEN("--step-tokens", p.engine.step_tokens, o.step_tokens);
    SET_IF_GIVEN("--max-waiting", p.engine.max_waiting, (int32_t)o.max_waiting);
    SET_IF_GIVEN("--max-tokens-limit", p.engine.max_tokens_limit, o.max_tokens_limit);
    p.engine.kv_dtype = o.kv_dtype; /* --kv-dtype has a default */
    SET_IF_GIVEN("--max-body-bytes", p.max_body_bytes, (size_t)o.max_body_bytes);
    SET_IF_GIVEN("--max-connections", p.max_connections, (int32_t)o.max_connections);
    SET_IF_GIVEN("--max-connections-per-client", p.max_connections_per_client,
                 (int32_t)o.max_connections_per_client);
    SET_IF_GIVEN("--request-timeout", p.request_timeout_s, (double)o.request_timeout);
#undef SET_IF_GIVEN
    p.model.n_threads = cli_threads(o.threads);
    const bool mb = cli_given(&spec, &o, "--max-batch"), st = cli_given(&spec, &o, "--step-tokens");
    const cli_quant qz = o.qz;
    p.chat_template = o.chat_opts.template_spec;
    p.chat_template_kwargs = o.chat_opts.kwargs; /* checked by road_server_create */
    if (mb && !st && p.engine.step_tokens < p.engine.max_batch)
        p.engine.step_tokens = p.engine.max_batch;
    if (cli_quant_apply(CMD, &qz, &p.model) != 0) goto done;

    /* Signals: blocked here, inherited by every thread the server starts, taken by sigwait. */
    sigset_t sigs;
    /* a shell starts background jobs with SIGINT ignored: an ignored signal never reaches
     * sigwait, so restore the default disposition (the signals stay blocked) */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* every connection is a descriptor: take the hard open-file limit (the soft one is often
     * 1024), as servers do; the server then fits --max-connections within it */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
    road_log_set_callback(log_stderr, NULL);

    rc = CLI_EXIT_FAIL;
    road_status s = road_server_create(&p, &srv);
    if (s != ROAD_OK) {
        rc = cli_fail(CMD, "loading", s);
        goto done;
    }
    if ((s = road_server_start(srv)) != ROAD_OK) {
        rc = cli_fail(CMD, "starting the server", s);
        goto done;
    }
    /* one line on stdout that scripts can wait for (the port matters with --port 0) */
    printf("road serve: listening on http://%s%s%s:%d\n", strchr(host, ':') ? "[" : "", host,
           strchr(host, ':') ? "]" : "", road_server_port(srv));
    fflush(stdout);
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "road serve: %s: finishing the running requests, then stopping\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    road_server_stop(srv);
    rc = CLI_EXIT_OK;
done:
    road_server_free(srv);
    road_log_set_callback(NULL, NULL);
    for (int i = 0; i < n_ad; i++) free(specs[i]);
    return rc;
}
