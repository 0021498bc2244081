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

static void help(void) {
    printf("usage: road serve --model DIR [--adapter NAME=DIR]... [--host 127.0.0.1] [--port 8080]\n"
           "                  [--max-batch N] [--max-seq-len L] [--api-key KEY]\n"
           "                  [--served-model-name NAME] [--chat-template llama3|llama2|mistral|chatml|qwen3]\n"
           "                  [--step-tokens N] [--max-waiting N] [--max-tokens-limit N]\n"
           "                  [--max-body-bytes N] [--max-connections N]\n"
           "                  [--max-connections-per-client N] [--request-timeout S]\n"
           "                  [--no-adapter-loading] [--threads N] [--quiet]\n"
           "                  [--quantize int8|nf4|fp4 [--quantize-lm-head] [--double-quant]]\n"
           "\n"
           "Serves the model and its adapters over OpenAI's API: POST /v1/completions and\n"
           "/v1/chat/completions (\"model\" names an adapter, or the base model by its served name),\n"
           "streaming or not; GET /v1/models; POST /v1/load_lora_adapter {lora_name, lora_path} and\n"
           "/v1/unload_lora_adapter {lora_name}; GET /health and /metrics (Prometheus).\n"
           "Requests for different adapters share one batch (continuous batching). --port 0 picks a\n"
           "free port. The API key may also come from the ROAD_API_KEY environment variable.\n"
           "Ctrl-C (SIGINT) or SIGTERM: finish the running requests, then stop. docs/serve.md has\n"
           "the details and the limits.\n");
}

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
    const char *model = NULL, *host = "127.0.0.1", *port = NULL, *mb = NULL, *msl = NULL;
    const char *key = getenv("ROAD_API_KEY"), *name = NULL, *tmpl = NULL, *st = NULL, *mw = NULL;
    const char *mtl = NULL, *mbb = NULL, *thr = NULL, *mc = NULL, *mpc = NULL, *rto = NULL;
    bool no_loading = false;
    cli_quant qz = {NULL, false, false};
    const char *names[MAX_ADAPTERS], *dirs[MAX_ADAPTERS];
    char *specs[MAX_ADAPTERS];
    int n_ad = 0;
    quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        int r;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            help();
            return CLI_EXIT_OK;
        }
        if (strcmp(argv[i], "--no-adapter-loading") == 0) {
            no_loading = true;
            continue;
        }
        if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
            continue;
        }
        if ((r = cli_quant_flag(CMD, argc, argv, &i, &qz)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            continue;
        }
        CLI_FLAG("--model", model)
        CLI_FLAG("--host", host)
        CLI_FLAG("--port", port)
        CLI_FLAG("--max-batch", mb)
        CLI_FLAG("--max-seq-len", msl)
        CLI_FLAG("--api-key", key)
        CLI_FLAG("--served-model-name", name)
        CLI_FLAG("--chat-template", tmpl)
        CLI_FLAG("--step-tokens", st)
        CLI_FLAG("--max-waiting", mw)
        CLI_FLAG("--max-tokens-limit", mtl)
        CLI_FLAG("--max-body-bytes", mbb)
        CLI_FLAG("--threads", thr)
        CLI_FLAG("--max-connections", mc)
        CLI_FLAG("--max-connections-per-client", mpc)
        CLI_FLAG("--request-timeout", rto)
        if ((r = cli_flag_value(CMD, argc, argv, &i, "--adapter", &v)) != 0) {
            if (r < 0) return CLI_EXIT_USAGE;
            if (n_ad == MAX_ADAPTERS) {
                cli_error(CMD, "at most %d --adapter flags (load more at run time)", MAX_ADAPTERS);
                return CLI_EXIT_USAGE;
            }
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1]) {
                cli_error(CMD, "--adapter takes NAME=DIR (for example --adapter math=adapters/math), got '%s'", v);
                return CLI_EXIT_USAGE;
            }
            specs[n_ad] = malloc((size_t)(eq - v) + 1);
            if (!specs[n_ad]) return CLI_EXIT_FAIL;
            memcpy(specs[n_ad], v, (size_t)(eq - v));
            specs[n_ad][eq - v] = '\0';
            if (road_engine_check_adapter_name(specs[n_ad]) != ROAD_OK) { /* the load endpoint's rule */
                free(specs[n_ad]);
                for (int k = 0; k < n_ad; k++) free(specs[k]);
                cli_error(CMD, "--adapter: %s", road_last_error());
                return CLI_EXIT_USAGE;
            }
            names[n_ad] = specs[n_ad];
            dirs[n_ad++] = eq + 1;
            continue;
        }
        cli_error(CMD, "unknown option '%s' (see road serve --help)", argv[i]);
        return CLI_EXIT_USAGE;
    }
    int rc = CLI_EXIT_USAGE;
    road_server *srv = NULL;
    road_server_params p = road_server_default_params();
    long long x;
    if (!model) {
        cli_error(CMD, "--model DIR is required (see road serve --help)");
        goto done;
    }
    p.model_dir = model;
    p.host = host;
    p.adapter_names = names;
    p.adapter_dirs = dirs;
    p.n_adapters = n_ad;
    p.served_model_name = name;
    p.api_key = key && key[0] ? key : NULL;
    p.allow_adapter_loading = !no_loading;
#define INT_FLAG(s, flag, lo, hi, field, type)                                                     \
    if (s) {                                                                                       \
        if (cli_parse_int(CMD, flag, s, lo, hi, &x) != 0) goto done;                               \
        field = (type)x;                                                                           \
    }
    INT_FLAG(port, "--port", 0, 65535, p.port, int)
    INT_FLAG(mb, "--max-batch", 1, 4096, p.engine.max_batch, int32_t)
    INT_FLAG(msl, "--max-seq-len", 2, 1 << 24, p.engine.max_seq_len, int64_t)
    INT_FLAG(st, "--step-tokens", 1, 1 << 24, p.engine.step_tokens, int64_t)
    INT_FLAG(mw, "--max-waiting", 1, 1 << 20, p.engine.max_waiting, int32_t)
    INT_FLAG(mtl, "--max-tokens-limit", 1, 1 << 24, p.engine.max_tokens_limit, int64_t)
    INT_FLAG(mbb, "--max-body-bytes", 64, 1LL << 32, p.max_body_bytes, size_t)
    INT_FLAG(thr, "--threads", 0, 1024, p.model.n_threads, int)
    INT_FLAG(mc, "--max-connections", 1, 1 << 20, p.max_connections, int32_t)
    INT_FLAG(mpc, "--max-connections-per-client", 0, 1 << 20, p.max_connections_per_client, int32_t)
    INT_FLAG(rto, "--request-timeout", 1, 86400, p.request_timeout_s, double)
#undef INT_FLAG
    if (mb && !st && p.engine.step_tokens < p.engine.max_batch) p.engine.step_tokens = p.engine.max_batch;
    if (tmpl && road_chat_template_from_name(tmpl, &p.chat_template) != ROAD_OK) {
        rc = cli_fail(CMD, "--chat-template", ROAD_ERR_INVALID_ARG);
        goto done;
    }
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
