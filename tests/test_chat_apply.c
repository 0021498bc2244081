/*
 * tests/test_chat_apply.c - apply_chat_template's own steps around the Jinja engine, through a
 * tokenizer (road_tokenizer_apply_chat_json, road_tokenizer_chat_spans), against references:
 *  - every case of tests/fixtures/chat/renders.json (real templates, tools, content parts,
 *    continue_final_message) through a tokenizer, with transformers' outcome
 *    (transformers.json for continue_final_message, Python's where the engines disagree);
 *  - the {% generation %} spans of transformers.json (return_assistant_tokens_mask);
 *  - the built-in templates against the released templates they stand for;
 *  - the spans found by rendering prefixes against the generation-marked twin of the same
 *    template (Qwen3 and TRL's marked Qwen3), and the loss mask the training loader builds;
 *  - where templates come from (config string, named list, chat_template.jinja,
 *    additional_chat_templates/, --chat-template FILE), the message normalization of
 *    transformers 5 (null keys dropped, reasoning aliases) and the errors.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/file.h"
#include "road/json.h"
#include "road/tokenizer.h"
#include "road/train.h"
#include "chat_refs.h"
#include "testutil.h"

static cJSON *parse(const char *text) {
    cJSON *j = NULL;
    TU_OK(road_json_parse(text, strlen(text), &j));
    return j;
}

/* A tokenizer without tokenizer_config.json: no special-token variables of its own, so the
 * cases' variables come in as kwargs exactly as the manifest lists them. */
static road_tokenizer *bare_tokenizer(void) {
    char *json = NULL;
    size_t len = 0;
    TU_OK(road__file_read(tu_fixture("tokenizers/qwen3/tokenizer.json"), (size_t)64 << 20, &json,
                          &len));
    road_tokenizer *t = NULL;
    TU_OK(road_tokenizer_load_json(json, len, NULL, 0, &t));
    road__free(json);
    return t;
}

typedef struct refs {
    cJSON *templates, *convs, *renders, *dis, *tf;
    const cJSON *tlist, *clist;
    char epoch[32];
} refs;

static void refs_load(refs *r) {
    r->templates = chat_refs_load("chat/templates.json"),
    r->convs = chat_refs_load("chat/conversations.json");
    r->renders = chat_refs_load("chat/renders.json"),
    r->dis = chat_refs_load("chat/disagreements.json");
    r->tf = chat_refs_load("chat/transformers.json");
    r->tlist = cJSON_GetObjectItem(r->templates, "templates");
    r->clist = cJSON_GetObjectItem(r->convs, "conversations");
    snprintf(r->epoch, sizeof r->epoch, "%.0f",
             cJSON_GetObjectItem(r->renders, "source_date_epoch")->valuedouble);
    assert_int_equal(setenv("SOURCE_DATE_EPOCH", r->epoch, 1), 0);
}

static void refs_free(refs *r) {
    cJSON_Delete(r->templates), cJSON_Delete(r->convs), cJSON_Delete(r->renders);
    cJSON_Delete(r->dis), cJSON_Delete(r->tf);
    unsetenv("SOURCE_DATE_EPOCH");
}

static const char *template_path(const refs *r, const char *tname) {
    static char path[4096];
    const cJSON *t = chat_refs_find(r->tlist, "name", tname);
    assert_non_null(t);
    char rel[256];
    snprintf(rel, sizeof rel, "chat/%s", cJSON_GetObjectItem(t, "file")->valuestring);
    snprintf(path, sizeof path, "%s", tu_fixture(rel));
    return path;
}

/* The template's variables and the case's kwargs, as one kwargs object. */
static cJSON *case_kwargs(const refs *r, const char *tname, const cJSON *kwargs) {
    cJSON *kw = cJSON_Duplicate(
        cJSON_GetObjectItem(chat_refs_find(r->tlist, "name", tname), "variables"), true);
    const cJSON *v;
    cJSON_ArrayForEach(v, kwargs) {
        cJSON_DeleteItemFromObjectCaseSensitive(kw, v->string);
        cJSON_AddItemToObject(kw, v->string, cJSON_Duplicate(v, true));
    }
    return kw;
}

/* A message key whose value is null: transformers' apply_chat_template drops it, the engine
 * references (renders.json) keep it, so such conversations are compared at the engine level
 * only (tests/test_chat_templates.c). */
static bool has_null_key(const cJSON *conv) {
    const cJSON *m, *k;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(conv, "messages"))
        cJSON_ArrayForEach(k, m) if (cJSON_IsNull(k)) return true;
    return false;
}

/* The expected outcome of a renders.json case as transformers gives it. */
static const cJSON *expected(const refs *r, const cJSON *c) {
    const cJSON *d;
    if (cJSON_IsTrue(cJSON_GetObjectItem(c, "continue_final_message"))) {
        cJSON_ArrayForEach(
            d, cJSON_GetObjectItem(
                   r->tf, "continue_final_message")) if (chat_refs_same_case(d, c)) return d;
        fail_msg("no transformers.json record for a continue_final_message case");
    }
    cJSON_ArrayForEach(
        d,
        cJSON_GetObjectItem(
            r->dis,
            "disagreements")) if (chat_refs_same_case(d, c)) return cJSON_GetObjectItem(d,
                                                                                        "python");
    return c;
}

static void test_reference_cases(void **state) {
    (void)state;
    refs r;
    refs_load(&r);
    road_tokenizer *tok = bare_tokenizer();
    const char *current = "";
    int checked = 0, cont = 0, bad = 0, skipped = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(r.renders, "cases")) {
        const char *tname = cJSON_GetObjectItem(c, "template")->valuestring;
        const char *cname = cJSON_GetObjectItem(c, "conversation")->valuestring;
        const cJSON *conv = chat_refs_find(r.clist, "id", cname);
        if (has_null_key(conv)) {
            skipped++;
            continue;
        }
        if (strcmp(current, tname) != 0) {
            TU_OK(road_tokenizer_set_chat_template(tok, template_path(&r, tname)));
            current = tname;
        }
        road_chat_params p = road_chat_default_params();
        p.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        p.continue_final_message = cJSON_IsTrue(cJSON_GetObjectItem(c, "continue_final_message"));
        p.tools = cJSON_GetObjectItem(conv, "tools");
        cJSON *kw = case_kwargs(&r, tname, cJSON_GetObjectItem(c, "kwargs"));
        p.kwargs = kw;
        char *text = NULL;
        size_t len = 0;
        road_status st = road_tokenizer_apply_chat_json(
            tok, &p, cJSON_GetObjectItem(conv, "messages"), &text, &len);
        const cJSON *want = expected(&r, c), *out = cJSON_GetObjectItem(want, "output");
        if (out && st != ROAD_OK) {
            print_error("%s + %s (agp %d, cfm %d): fails: %s\n", tname, cname,
                        p.add_generation_prompt, p.continue_final_message, road_last_error());
            bad++;
        } else if (out &&
                   (len != strlen(out->valuestring) || memcmp(text, out->valuestring, len))) {
            print_error("%s + %s (agp %d, cfm %d): gives\n---\n%s\n--- transformers\n%s\n---\n",
                        tname, cname, p.add_generation_prompt, p.continue_final_message, text,
                        out->valuestring);
            bad++;
        } else if (!out && st == ROAD_OK) {
            print_error("%s + %s: renders, transformers fails (%s)\n", tname, cname,
                        cJSON_GetObjectItem(want, "error")->valuestring);
            bad++;
        } else if (!out && cJSON_IsTrue(cJSON_GetObjectItem(want, "raised")) &&
                   !strstr(road_last_error(), cJSON_GetObjectItem(want, "error")->valuestring)) {
            print_error("%s + %s: error \"%s\" lacks the template's message\n", tname, cname,
                        road_last_error());
            bad++;
        }
        cont += p.continue_final_message;
        road_string_free(text);
        cJSON_Delete(kw);
        checked++;
    }
    print_message("apply_chat_json: %d cases (%d continue_final_message), %d with null keys "
                  "left to the engine test; %d wrong\n",
                  checked, cont, skipped, bad);
    assert_int_equal(bad, 0);
    assert_true(checked > 900 && cont >= 30);
    road_tokenizer_free(tok);
    refs_free(&r);
}

/* Adjacent generation blocks are one turn and empty ones none (road's spans). */
static size_t merge_spans(const cJSON *list, size_t *b, size_t *e, size_t cap) {
    size_t n = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, list) {
        size_t x = (size_t)cJSON_GetArrayItem(s, 0)->valuedouble;
        size_t y = (size_t)cJSON_GetArrayItem(s, 1)->valuedouble;
        if (x == y) continue;
        if (n && x == e[n - 1]) {
            e[n - 1] = y;
            continue;
        }
        assert_true(n < cap);
        b[n] = x, e[n] = y;
        n++;
    }
    return n;
}

static void test_generation_spans(void **state) {
    (void)state;
    refs r;
    refs_load(&r);
    road_tokenizer *tok = bare_tokenizer();
    int checked = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(r.tf, "generation")) {
        const cJSON *out = cJSON_GetObjectItem(c, "output");
        const char *tname = cJSON_GetObjectItem(c, "template")->valuestring;
        const cJSON *conv =
            chat_refs_find(r.clist, "id", cJSON_GetObjectItem(c, "conversation")->valuestring);
        if (!out || cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")) ||
            has_null_key(conv))
            continue;
        TU_OK(road_tokenizer_set_chat_template(tok, template_path(&r, tname)));
        road_chat_params p = road_chat_default_params();
        p.tools = cJSON_GetObjectItem(conv, "tools");
        cJSON *kw = case_kwargs(&r, tname, cJSON_GetObjectItem(c, "kwargs"));
        p.kwargs = kw;
        char *text = NULL;
        size_t len = 0, n = 0;
        road_chat_span *spans = NULL;
        TU_OK(road_tokenizer_chat_spans(tok, &p, cJSON_GetObjectItem(conv, "messages"), &text, &len,
                                        &spans, &n));
        assert_int_equal(len, strlen(out->valuestring));
        assert_memory_equal(text, out->valuestring, len);
        size_t b[64], e[64];
        size_t want = merge_spans(cJSON_GetObjectItem(c, "generation_spans"), b, e, 64);
        assert_int_equal(n, want);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(spans[i].begin, b[i]);
            assert_int_equal(spans[i].end, e[i]);
        }
        road_chat_spans_free(spans);
        road_string_free(text);
        cJSON_Delete(kw);
        checked++;
    }
    print_message("generation spans: %d renders as transformers marks them\n", checked);
    assert_true(checked >= 20);
    road_tokenizer_free(tok);
    refs_free(&r);
}

/* Each built-in renders plain chats as the released template it stands for (string contents,
 * no tools): the same text, or the same raise_exception. */
static void test_builtins(void **state) {
    (void)state;
    static const char *const pairs[][2] = {{"chatml", "chatml"},      {"llama3", "llama3_1"},
                                           {"llama2", "llama2_chat"}, {"mistral", "mistral_v0_1"},
                                           {"zephyr", "zephyr"},      {"gemma", "gemma2"}};
    refs r;
    refs_load(&r);
    road_tokenizer *tok = bare_tokenizer();
    int checked = 0;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        TU_OK(road_tokenizer_set_chat_template(tok, pairs[k][0]));
        const cJSON *c;
        cJSON_ArrayForEach(c, cJSON_GetObjectItem(r.renders, "cases")) {
            if (strcmp(cJSON_GetObjectItem(c, "template")->valuestring, pairs[k][1]) != 0 ||
                cJSON_IsTrue(cJSON_GetObjectItem(c, "continue_final_message")))
                continue;
            const cJSON *conv =
                chat_refs_find(r.clist, "id", cJSON_GetObjectItem(c, "conversation")->valuestring);
            bool plain = !cJSON_GetObjectItem(conv, "tools");
            const cJSON *m;
            cJSON_ArrayForEach(m, cJSON_GetObjectItem(conv, "messages")) plain &=
                cJSON_IsString(cJSON_GetObjectItem(m, "content")) && cJSON_GetArraySize(m) == 2;
            if (!plain) continue;
            road_chat_params p = road_chat_default_params();
            p.add_generation_prompt = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
            cJSON *kw = case_kwargs(&r, pairs[k][1], NULL);
            p.kwargs = kw;
            char *text = NULL;
            size_t len = 0;
            road_status st = road_tokenizer_apply_chat_json(
                tok, &p, cJSON_GetObjectItem(conv, "messages"), &text, &len);
            const cJSON *want = expected(&r, c), *out = cJSON_GetObjectItem(want, "output");
            if (out) {
                if (st != ROAD_OK)
                    fail_msg("built-in %s + %s fails: %s", pairs[k][0],
                             cJSON_GetObjectItem(conv, "id")->valuestring, road_last_error());
                if (len != strlen(out->valuestring) || memcmp(text, out->valuestring, len) != 0)
                    fail_msg("built-in %s + %s (agp %d):\n---\n%s\n--- %s\n%s\n---", pairs[k][0],
                             cJSON_GetObjectItem(conv, "id")->valuestring, p.add_generation_prompt,
                             text, pairs[k][1], out->valuestring);
            } else {
                assert_int_not_equal(st, ROAD_OK);
                if (cJSON_IsTrue(cJSON_GetObjectItem(want, "raised")))
                    assert_non_null(
                        strstr(road_last_error(), cJSON_GetObjectItem(want, "error")->valuestring));
            }
            road_string_free(text);
            cJSON_Delete(kw);
            checked++;
        }
    }
    print_message("built-in templates: %d plain chats as the released templates render them\n",
                  checked);
    assert_true(checked >= 60);
    road_tokenizer_free(tok);
    refs_free(&r);
}

static road_chat_span *spans_of(road_tokenizer *tok, const char *tmpl, const cJSON *kwargs,
                                const cJSON *messages, char **text, size_t *n) {
    TU_OK(road_tokenizer_set_chat_template(tok, tmpl));
    road_chat_params p = road_chat_default_params();
    p.kwargs = kwargs;
    road_chat_span *s = NULL;
    size_t len = 0;
    TU_OK(road_tokenizer_chat_spans(tok, &p, messages, text, &len, &s, n));
    return s;
}

/* Without markers the spans come from rendering prefixes. ChatML's released template must give
 * the turns the built-in chatml (the same text, marked with {% generation %}) marks, plus the
 * newline after each end-of-turn. Qwen3's template renders an earlier assistant turn without
 * its reasoning, so the prefix renders do not agree with the whole: each span must still be
 * exactly one assistant turn of the render (after "<|im_start|>assistant\n", through
 * "<|im_end|>\n"), one per assistant message. */
static void test_prefix_spans(void **state) {
    (void)state;
    refs r;
    refs_load(&r);
    road_tokenizer *tok = bare_tokenizer();
    int checked = 0;
    const cJSON *conv;
    cJSON_ArrayForEach(conv, r.clist) {
        const cJSON *msgs = cJSON_GetObjectItem(conv, "messages"), *m;
        bool plain = !cJSON_GetObjectItem(conv, "tools");
        size_t n_assistant = 0;
        cJSON_ArrayForEach(m, msgs) {
            plain &= cJSON_IsString(cJSON_GetObjectItem(m, "content"));
            n_assistant += strcmp(cJSON_GetObjectItem(m, "role")->valuestring, "assistant") == 0;
        }
        if (!plain || !n_assistant) continue;
        cJSON *kw = case_kwargs(&r, "chatml", NULL);
        char *t1 = NULL, *t2 = NULL;
        size_t n1 = 0, n2 = 0;
        road_chat_span *s1 = spans_of(tok, template_path(&r, "chatml"), kw, msgs, &t1, &n1);
        road_chat_span *s2 = spans_of(tok, "chatml", kw, msgs, &t2, &n2);
        assert_string_equal(t1, t2);
        assert_int_equal(n1, n2);
        assert_int_equal(n1, n_assistant);
        for (size_t i = 0; i < n1; i++) {
            assert_int_equal(s1[i].begin, s2[i].begin);
            assert_int_equal(s1[i].end, s2[i].end + 1);
            assert_int_equal(t1[s2[i].end], '\n');
        }
        road_chat_spans_free(s1), road_chat_spans_free(s2);
        road_string_free(t1), road_string_free(t2);
        cJSON_Delete(kw);

        kw = case_kwargs(&r, "qwen3", NULL);
        if (strcmp(cJSON_GetObjectItem(msgs->child, "role")->valuestring, "assistant") == 0) {
            /* Qwen3's template cannot render the empty conversation before such a turn */
            TU_OK(road_tokenizer_set_chat_template(tok, template_path(&r, "qwen3")));
            road_chat_params q = road_chat_default_params();
            q.kwargs = kw;
            road_chat_span *none = NULL;
            TU_FAILS(road_tokenizer_chat_spans(tok, &q, msgs, &t1, NULL, &none, &n1),
                     ROAD_ERR_UNSUPPORTED, "message 0 (assistant)");
            cJSON_Delete(kw);
            continue;
        }
        s1 = spans_of(tok, template_path(&r, "qwen3"), kw, msgs, &t1, &n1);
        assert_int_equal(n1, n_assistant);
        static const char head[] = "<|im_start|>assistant\n", tail[] = "<|im_end|>\n";
        for (size_t i = 0; i < n1; i++) {
            size_t b = s1[i].begin, e = s1[i].end;
            assert_true(b >= sizeof head - 1 && e - b >= sizeof tail - 1);
            assert_memory_equal(t1 + b - (sizeof head - 1), head, sizeof head - 1);
            assert_memory_equal(t1 + e - (sizeof tail - 1), tail, sizeof tail - 1);
            char *turn = strndup(t1 + b, e - b);
            assert_null(strstr(turn, "<|im_start|>"));
            assert_true(strstr(turn, "<|im_end|>") == turn + (e - b) - (sizeof tail - 1));
            free(turn);
        }
        road_chat_spans_free(s1);
        road_string_free(t1);
        cJSON_Delete(kw);
        checked++;
    }
    assert_true(checked >= 5);
    /* a template whose render of a prefix is not the start of the whole: the message named */
    cJSON *msgs =
        parse("[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]");
    char path[4096];
    snprintf(path, sizeof path, "%s", tu_scratch_at("count.jinja"));
    const char *counting =
        "{{ messages | length }}{% for m in messages %}{{ m.content }}{% endfor %}";
    TU_OK(road__file_write_atomic(path, counting, strlen(counting)));
    TU_OK(road_tokenizer_set_chat_template(tok, path));
    road_chat_params p = road_chat_default_params();
    char *text = NULL;
    road_chat_span *sp = NULL;
    size_t n = 0;
    TU_FAILS(road_tokenizer_chat_spans(tok, &p, msgs, &text, NULL, &sp, &n), ROAD_ERR_UNSUPPORTED,
             "message 1 (assistant)");
    TU_FAILS(road_tokenizer_chat_spans(tok, &p, msgs, &text, NULL, &sp, &n), ROAD_ERR_UNSUPPORTED,
             "{% generation %}");
    cJSON_Delete(msgs);
    road_tokenizer_free(tok);
    refs_free(&r);
}

/* The training loader tokenizes the whole render (as TRL does) and marks the tokens that hold a
 * byte of an assistant span, also one that straddles the span's start (Llama 2's " Hello",
 * one SentencePiece token with the space before it). */
static void test_training_mask(void **state) {
    (void)state;
    road_tokenizer *tok = NULL;
    TU_OK(road_tokenizer_load(tu_fixture("tokenizers/llama2"), &tok));
    TU_OK(road_tokenizer_set_chat_template(tok, "llama2"));
    const char *line = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": "
                       "\"assistant\", \"content\": \"Hello there\"}]}\n";
    road_data_params dp = road_data_default_params();
    dp.tok = tok;
    road_dataset *d = NULL;
    TU_OK(road_dataset_parse_jsonl(line, strlen(line), &dp, &d));
    const road_token *ids, *labels;
    int64_t n = 0;
    TU_OK(road_dataset_example(d, 0, &ids, &labels, &n));
    /* the ids are the encoding of the whole render */
    cJSON *msgs = parse("[{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
                        "\"content\": \"Hello there\"}]");
    road_chat_params p = road_chat_default_params();
    p.add_generation_prompt = false;
    char *text = NULL;
    size_t len = 0, m = 0;
    TU_OK(road_tokenizer_apply_chat_json(tok, &p, msgs, &text, &len));
    assert_string_equal(text, "<s>[INST] Hi [/INST] Hello there </s>");
    road_token whole[64];
    TU_OK(road_tokenizer_encode(tok, text, len, false, whole, 64, &m));
    assert_int_equal(m, n);
    assert_memory_equal(whole, ids, m * sizeof(road_token));
    /* the loss tokens decode to the assistant's turn, the space before it included */
    road_token loss[64];
    size_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] != ROAD_LABEL_IGNORE) {
            assert_int_equal(labels[i], ids[i]);
            loss[k++] = ids[i];
        } else {
            assert_int_equal(k, 0); /* one span, at the end */
        }
    }
    char *dec = NULL;
    size_t dl = 0;
    TU_OK(road_tokenizer_decode(tok, loss, k, false, &dec, &dl));
    assert_string_equal(dec, "Hello there </s>");
    road_string_free(dec);
    road_string_free(text);
    cJSON_Delete(msgs);
    road_dataset_free(d);

    /* per-line tools reach the template; a line the template cannot split names the message */
    const char *cfg_line = "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": "
                           "\"assistant\", \"content\": \"Yo\"}], \"tools\": 5}\n";
    TU_FAILS(road_dataset_parse_jsonl(cfg_line, strlen(cfg_line), &dp, &d), ROAD_ERR_FORMAT,
             "tools");
    road_tokenizer_free(tok);
}

/* Where templates come from, transformers 5's message normalization, continue_final_message's
 * whitespace rules and the errors. */
static void test_sources_and_rules(void **state) {
    (void)state;
    road_tokenizer *tok = NULL;
    /* a folder: the config's named list, chat_template.jinja over its default, and
     * additional_chat_templates/NAME.jinja */
    tu_rm_rf(tu_scratch_at("m"));
    TU_OK(road__mkdir_p(tu_scratch_at("m/additional_chat_templates")));
    tu_copy_file(tu_fixture("tokenizers/qwen3/tokenizer.json"), tu_scratch_at("m/tokenizer.json"));
    const char *cfg =
        "{\"eos_token\": \"<|im_end|>\", \"chat_template\": [{\"name\": \"default\", "
        "\"template\": \"config\"}, {\"name\": \"rag\", \"template\": \"R{{ documents "
        "| length }}\"}]}";
    TU_OK(road__file_write_atomic(tu_scratch_at("m/tokenizer_config.json"), cfg, strlen(cfg)));
    TU_OK(
        road__file_write_atomic(tu_scratch_at("m/chat_template.jinja"), "file{{ eos_token }}", 19));
    TU_OK(road__file_write_atomic(tu_scratch_at("m/additional_chat_templates/tool_use.jinja"),
                                  "tools:{{ tools[0].function.name }}", 34));
    TU_OK(road_tokenizer_load(tu_scratch_at("m"), &tok));
    cJSON *msgs = parse("[{\"role\": \"user\", \"content\": \"x\"}]");
    cJSON *tools = parse("[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]");
    cJSON *docs =
        parse("[{\"title\": \"a\", \"text\": \"b\"}, {\"title\": \"c\", \"text\": \"d\"}]");
    road_chat_params p = road_chat_default_params();
    char *text = NULL;
    TU_OK(road_tokenizer_apply_chat_json(tok, &p, msgs, &text, NULL));
    assert_string_equal(text, "file<|im_end|>");
    road_string_free(text);
    p.tools = tools;
    TU_OK(road_tokenizer_apply_chat_json(tok, &p, msgs, &text, NULL));
    assert_string_equal(text, "tools:f");
    road_string_free(text);
    p.tools = NULL, p.documents = docs;
    TU_OK(road_tokenizer_set_chat_template(tok, "rag"));
    TU_OK(road_tokenizer_apply_chat_json(tok, &p, msgs, &text, NULL));
    assert_string_equal(text, "R2");
    road_string_free(text);
    p.documents = NULL;
    TU_OK(road_tokenizer_set_chat_template(tok, NULL));

    /* transformers 5: keys with a null value are dropped; reasoning under both names */
    const char *norm = "{% for m in messages %}{{ m.content is defined }},{{ m.thinking }},"
                       "{{ m.reasoning_content }};{% endfor %}";
    TU_OK(road__file_write_atomic(tu_scratch_at("norm.jinja"), norm, strlen(norm)));
    TU_OK(road_tokenizer_set_chat_template(tok, tu_scratch_at("norm.jinja")));
    cJSON *nm = parse("[{\"role\": \"assistant\", \"content\": null, \"reasoning\": \"r\"},"
                      "{\"role\": \"user\", \"content\": \"c\", \"thinking\": null, "
                      "\"reasoning_content\": \"q\"}]");
    p.add_generation_prompt = false;
    TU_OK(road_tokenizer_apply_chat_json(tok, &p, nm, &text, NULL));
    assert_string_equal(text, "False,r,r;True,q,q;");
    road_string_free(text);
    cJSON_Delete(nm);

    /* continue_final_message: a template that keeps the content's trailing whitespace keeps
     * it, one that trims it loses it; leading whitespace is the template's business */
    const char *keep = "{% for m in messages %}<{{ m.content }}>{% endfor %}";
    const char *trim = "{% for m in messages %}<{{ m.content | trim }}>{% endfor %}";
    TU_OK(road__file_write_atomic(tu_scratch_at("keep.jinja"), keep, strlen(keep)));
    TU_OK(road__file_write_atomic(tu_scratch_at("trim.jinja"), trim, strlen(trim)));
    cJSON *open = parse("[{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", "
                        "\"content\": \" The answer is  \"}]");
    p.continue_final_message = true;
    TU_OK(road_tokenizer_set_chat_template(tok, tu_scratch_at("keep.jinja")));
    TU_OK(road_tokenizer_apply_chat_json(tok, &p, open, &text, NULL));
    assert_string_equal(text, "<q>< The answer is  ");
    road_string_free(text);
    TU_OK(road_tokenizer_set_chat_template(tok, tu_scratch_at("trim.jinja")));
    TU_OK(road_tokenizer_apply_chat_json(tok, &p, open, &text, NULL));
    assert_string_equal(text, "<q><The answer is");
    road_string_free(text);
    /* content parts: the last text part is continued */
    cJSON *parts = parse("[{\"role\": \"assistant\", \"content\": [{\"type\": \"text\", \"text\": "
                         "\"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}]");
    const char *join = "{% for p in messages[0].content %}[{{ p.text }}]{% endfor %}";
    TU_OK(road__file_write_atomic(tu_scratch_at("parts.jinja"), join, strlen(join)));
    TU_OK(road_tokenizer_set_chat_template(tok, tu_scratch_at("parts.jinja")));
    TU_OK(road_tokenizer_apply_chat_json(tok, &p, parts, &text, NULL));
    assert_string_equal(text, "[a][b");
    road_string_free(text);
    /* refusals: both flags; a template that drops the message; nothing to continue */
    p.add_generation_prompt = true;
    TU_FAILS(road_tokenizer_apply_chat_json(tok, &p, open, &text, NULL), ROAD_ERR_INVALID_ARG,
             "cannot both");
    p.add_generation_prompt = false;
    const char *drop = "{% for m in messages %}{{ m.role }}{% endfor %}{{ 'content' }}";
    TU_OK(road__file_write_atomic(tu_scratch_at("drop.jinja"), drop, strlen(drop)));
    TU_OK(road_tokenizer_set_chat_template(tok, tu_scratch_at("drop.jinja")));
    TU_FAILS(road_tokenizer_apply_chat_json(tok, &p, open, &text, NULL), ROAD_ERR_INVALID_ARG,
             "does not appear");
    cJSON *no_content = parse("[{\"role\": \"assistant\", \"content\": null}]");
    TU_FAILS(road_tokenizer_apply_chat_json(tok, &p, no_content, &text, NULL), ROAD_ERR_INVALID_ARG,
             "no \"content\"");
    cJSON *empty = parse("[]");
    TU_FAILS(road_tokenizer_apply_chat_json(tok, &p, empty, &text, NULL), ROAD_ERR_INVALID_ARG,
             "empty");
    /* messages that are not a list of objects with a role */
    p.continue_final_message = false;
    cJSON *no_role = parse("[{\"content\": \"x\"}]");
    TU_FAILS(road_tokenizer_apply_chat_json(tok, &p, no_role, &text, NULL), ROAD_ERR_INVALID_ARG,
             "message 0");
    cJSON_Delete(no_role), cJSON_Delete(empty), cJSON_Delete(no_content), cJSON_Delete(parts);
    cJSON_Delete(open), cJSON_Delete(msgs), cJSON_Delete(tools), cJSON_Delete(docs);
    /* a --chat-template file that does not parse: the line */
    TU_OK(road__file_write_atomic(tu_scratch_at("bad.jinja"), "ok\n{% for %}", 12));
    TU_FAILS(road_tokenizer_set_chat_template(tok, tu_scratch_at("bad.jinja")), ROAD_ERR_FORMAT,
             "line 2");
    road_tokenizer_free(tok);
}

static int setup(void **state) {
    (void)state;
    return tu_scratch_make("test_chat_apply");
}

static int teardown(void **state) {
    (void)state;
    return tu_scratch_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_cases), cmocka_unit_test(test_generation_spans),
        cmocka_unit_test(test_builtins),        cmocka_unit_test(test_prefix_spans),
        cmocka_unit_test(test_training_mask),   cmocka_unit_test(test_sources_and_rules)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
