/*
 * tools/bitcheck/bitcheck.c - fingerprints of road's model numerics, for refactors that must
 * not move a bit. Build it against two builds of road (old and new), run both, and diff
 * (each build also makes it as <build>/bitcheck):
 *
 *   cc -std=c11 -O1 -I<src>/include tools/bitcheck/bitcheck.c <build>/libroad.a \
 *      <build>/libroad-core.a -lopenblas -lcjson -lpcre2-8 -lgomp -lm -o /tmp/bitcheck
 *   /tmp/bitcheck tests/fixtures/llama [THREADS] > new.txt   (the old build's > old.txt)
 *   diff old.txt new.txt
 *
 * Every line is one scenario and a 64-bit FNV-1a hash of the bytes it produced: logits of
 * prefill (short, GEMM-path and > 64-token sequences) and decode steps with KV caches, a mixed
 * batch (two adapters and the base), a padded forward, the loss and every adapter gradient of
 * a padded training batch (with and without recomputation), full fine-tuning gradients, and
 * the same on a 4-bit base, for each fixture model and a generated sliding-window mistral.
 * Uses the public API only, so any two versions of it can be compared.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "road/road.h"

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}
#define FNV0 14695981039346656037ull

static void die(const char *what) {
    fprintf(stderr, "bitcheck: %s: %s\n", what, road_last_error());
    exit(1);
}
#define CK(x, what)                                                                          \
    do {                                                                                     \
        if ((x) != ROAD_OK) die(what);                                                       \
    } while (0)

static uint64_t rng = 88172645463325252ull;
static uint32_t next(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* Adapter gradients of `name` over every layer that has it. */
static uint64_t grads_hash(road_adapter_set *s, const char *name) {
    uint64_t h = FNV0;
    for (int32_t i = 0; i < road_adapter_set_layer_count(s); i++) {
        road_linear *l = road_adapter_set_layer(s, i);
        if (!l || !road_linear_has_adapter(l, name)) continue;
        float *dt, *da;
        int64_t n;
        CK(road_linear_adapter_grads(l, name, &dt, &da, &n), "grads");
        h = fnv(h, dt, sizeof(float) * (size_t)n);
        h = fnv(h, da, sizeof(float) * (size_t)n);
    }
    return h;
}

static void zero_grads(road_adapter_set *s) {
    for (int32_t i = 0; i < road_adapter_set_layer_count(s); i++) {
        road_linear *l = road_adapter_set_layer(s, i);
        if (l) road_linear_zero_grads(l);
    }
}

static void add_adapter(road_adapter_set *s, const char *name, road_variant v, int gs,
                        uint64_t seed, bool mts) {
    road_config *c;
    CK(road_config_create(&c), "config");
    CK(road_config_set_variant(c, v), "variant");
    CK(road_config_set_group_size(c, gs), "group");
    road_config_set_init_weights(c, false);
    CK(road_config_set_target_all_linear(c), "targets");
    if (mts) {
        const char *m[] = {"lm_head"};
        CK(road_config_set_modules_to_save(c, m, 1), "mts");
    }
    CK(road_adapter_set_add(s, name, c, seed), "add");
    road_config_free(c);
}

static void run_model(const char *label, const char *dir, road_qformat q) {
    road_model_params p = road_model_default_params();
    p.quantize = q;
    road_model *m;
    CK(road_model_load(dir, &p, &m), "load");
    const road_llm_config *cfg = road_model_config(m);
    const int64_t V = cfg->vocab_size;
    road_adapter_set *s = road_model_adapters(m);
    add_adapter(s, "a", ROAD_VARIANT_2, 8, 11, false);
    add_adapter(s, "b", ROAD_VARIANT_4, 16, 12, true);
    const char *act[] = {"a"};
    CK(road_adapter_set_set_active(s, act, 1), "active");

    /* prefill 3, 20, 100 tokens (with caches), then 2 decode steps each */
    enum { NS = 3 };
    const int64_t lens[NS] = {3, 20, 100};
    road_token *tok = malloc(sizeof(road_token) * 200);
    for (int i = 0; i < 200; i++) tok[i] = (road_token)(next() % (uint32_t)V);
    float *logits = malloc(sizeof(float) * (size_t)(200 * V));
    for (int mixed = 0; mixed < 2; mixed++) {
        road_kv_cache *kv[NS];
        road_seq seqs[NS];
        const char *names[NS] = {"a", "__base__", "b"};
        int64_t off = 0;
        for (int i = 0; i < NS; i++) {
            CK(road_kv_cache_create(m, 110, &kv[i]), "cache");
            seqs[i] = (road_seq){tok + off, lens[i], kv[i], mixed ? names[i] : NULL, true};
            off += lens[i];
        }
        uint64_t h = FNV0;
        CK(road_model_forward(m, seqs, NS, logits), "prefill");
        h = fnv(h, logits, sizeof(float) * (size_t)(123 * V));
        for (int step = 0; step < 2; step++) {
            for (int i = 0; i < NS; i++) {
                seqs[i].tokens = tok + 150 + step * NS + i;
                seqs[i].n_tokens = 1;
                seqs[i].all_logits = false;
            }
            CK(road_model_forward(m, seqs, NS, logits), "decode");
            h = fnv(h, logits, sizeof(float) * (size_t)(NS * V));
        }
        printf("%s %s forward %016llx\n", label, mixed ? "mixed" : "active-a",
               (unsigned long long)h);
        for (int i = 0; i < NS; i++) road_kv_cache_free(kv[i]);
    }

    /* padded batch: left and right padding */
    enum { B = 3, T = 90 };
    int64_t *ids = malloc(sizeof(int64_t) * B * T), *mask = malloc(sizeof(int64_t) * B * T);
    int64_t *labels = malloc(sizeof(int64_t) * B * T);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int valid = b == 0 ? 1 : b == 1 ? t >= 30 : t < 50;
            ids[b * T + t] = valid ? (int64_t)(next() % (uint32_t)V) : 0;
            mask[b * T + t] = valid;
            int after = t > 0 && mask[b * T + t - 1]; /* predicted from a valid position */
            labels[b * T + t] = valid && after && next() % 4 ? ids[b * T + t] : ROAD_LABEL_IGNORE;
        }
    float *pl = malloc(sizeof(float) * (size_t)(B * T * V));
    CK(road_model_forward_padded(m, ids, mask, B, T, NULL, pl), "padded");
    double eloss;
    CK(road_causal_lm_loss(pl, labels, mask, B, T, V, &eloss), "eval loss");
    uint64_t h = fnv(fnv(FNV0, pl, sizeof(float) * (size_t)(B * T * V)), &eloss, sizeof eloss);
    printf("%s padded-forward+eval-loss %016llx\n", label, (unsigned long long)h);

    road_adapter_set_train(s, true);
    for (int rc = 0; rc < 2; rc++) {
        for (int ad = 0; ad < 2; ad++) {
            const char *n1[] = {ad ? "b" : "a"};
            CK(road_adapter_set_set_active(s, n1, 1), "active");
            zero_grads(s);
            road_model_set_recompute(m, rc);
            double loss;
            CK(road_model_loss_backward(m, ids, mask, labels, B, T, &loss), "loss_backward");
            h = fnv(grads_hash(s, n1[0]), &loss, sizeof loss);
            if (ad) {
                road_module_copy cp;
                int32_t li = road_adapter_set_find_layer(s, "lm_head");
                if (li >= 0 && road_adapter_set_active_copy(s, li, &cp) && cp.dweight)
                    h = fnv(h, cp.dweight, sizeof(float) * (size_t)(V * cfg->hidden_size));
            }
            printf("%s train adapter-%s recompute=%d %016llx loss=%.17g\n", label, n1[0], rc,
                   (unsigned long long)h, loss);
        }
    }
    road_adapter_set_train(s, false);
    if (q == ROAD_QFORMAT_NONE) {
        road_adapter_set_enable(s, false);
        CK(road_model_set_full_training(m, true), "full on");
        double loss;
        CK(road_model_loss_backward(m, ids, mask, labels, B, T, &loss), "full loss_backward");
        h = fnv(FNV0, &loss, sizeof loss);
        for (int32_t i = 0; i < road_model_tensor_count(m); i++) {
            road_model_tensor t;
            CK(road_model_tensor_get(m, i, &t), "tensor");
            if (t.grad) h = fnv(h, t.grad, sizeof(float) * (size_t)t.n);
        }
        printf("%s full-ft %016llx loss=%.17g\n", label, (unsigned long long)h, loss);
    }
    free(ids), free(mask), free(labels), free(pl), free(tok), free(logits);
    road_model_free(m);
}

int main(int argc, char **argv) {
    const char *fx = argc > 1 ? argv[1] : "tests/fixtures/llama";
    road_set_num_threads(argc > 2 ? atoi(argv[2]) : 2);
    static const char *models[] = {"tiny-llama", "tiny-qwen2", "tiny-llama3-rope"};
    char path[4096];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", fx, models[i]);
        run_model(models[i], path, ROAD_QFORMAT_NONE);
    }
    snprintf(path, sizeof path, "%s/tiny-llama", fx);
    run_model("tiny-llama-nf4", path, ROAD_QFORMAT_NF4);
    /* a generated mistral with a sliding window of 7 */
    char tmpl[] = "/tmp/bitcheck-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    char cfgp[4200], out[4200];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", tmpl);
    FILE *f = fopen(cfgp, "w");
    fputs("{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\","
          "\"hidden_size\":64,\"intermediate_size\":96,\"num_attention_heads\":4,"
          "\"num_key_value_heads\":1,\"head_dim\":16,\"num_hidden_layers\":2,"
          "\"vocab_size\":300,\"max_position_embeddings\":256,\"rms_norm_eps\":1e-5,"
          "\"rope_theta\":10000.0,\"sliding_window\":7,\"tie_word_embeddings\":true,"
          "\"torch_dtype\":\"float32\"}",
          f);
    fclose(f);
    snprintf(out, sizeof out, "%s/model", tmpl);
    CK(road_model_init_folder(cfgp, NULL, 7, ROAD_DTYPE_F32, out), "init");
    run_model("gen-mistral-window7", out, ROAD_QFORMAT_NONE);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    return system(cmd) != 0;
}
