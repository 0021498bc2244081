/*
 * tests/test_chat_templates.c - road's Jinja engine (tokenizer/jinja.h) on real chat templates:
 * every case of tests/fixtures/chat/renders.json (26 templates x 16 conversations x flags x
 * kwargs, rendered by @huggingface/jinja as transformers.js applies chat templates; see the
 * fixture README) must render byte for byte the same text, or fail where the reference fails
 * (with the template's own raise_exception message where it raised). Where Python's jinja2 (as
 * transformers runs it) and the JS engine disagree (disagreements.json), Python's outcome is
 * the reference: road follows jinja2's semantics, which is what transformers and TRL produce.
 *
 * The wiring: road_tokenizer_apply_chat (ROAD_CHAT_AUTO) on tokenizers whose folder holds a
 * real template (tokenizer_config.json's chat_template as a string or a named list, or a
 * chat_template.jinja beside it) gives the reference render of the same case.
 *
 * Not here yet: continue_final_message cases, which transformers makes by cutting a render
 * after the last message (apply_chat_template's post-processing, not the engine's).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/file.h"
#include "road/json.h"
#include "road/tokenizer.h"
#include "testutil.h"
#include "tokenizer/jinja.h"

/* A fixture file parsed as road parses JSON (numbers keep their text: 1.0 stays a float). */
static cJSON *load(const char *rel) {
    char *text = NULL;
    size_t len = 0;
    TU_OK(road__file_read(tu_fixture(rel), (size_t)64 << 20, &text, &len));
    cJSON *j = NULL;
    TU_OK(road_json_parse(text, len, &j));
    road__free(text);
    return j;
}

static const cJSON *find_named(const cJSON *list, const char *key, const char *value) {
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        const cJSON *v = cJSON_GetObjectItem(e, key);
        if (cJSON_IsString(v) && strcmp(v->valuestring, value) == 0) return e;
    }
    return NULL;
}

static bool same_case(const cJSON *a, const cJSON *b) {
    static const char *const keys[] = {"template", "conversation", "add_generation_prompt",
                                       "continue_final_message", "kwargs"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!cJSON_Compare(cJSON_GetObjectItem(a, keys[i]), cJSON_GetObjectItem(b, keys[i]), true))
            return false;
    return true;
}

static void test_reference_renders(void **state) {
    (void)state;
    cJSON *templates = load("chat/templates.json"), *convs = load("chat/conversations.json");
    cJSON *renders = load("chat/renders.json"), *dis = load("chat/disagreements.json");
    const cJSON *tlist = cJSON_GetObjectItem(templates, "templates");
    const cJSON *clist = cJSON_GetObjectItem(convs, "conversations");
    const cJSON *dlist = cJSON_GetObjectItem(dis, "disagreements");
    const cJSON *epoch = cJSON_GetObjectItem(renders, "source_date_epoch");
    assert_true(cJSON_IsNumber(epoch));
    road__jinja_opts opts = {.now = (int64_t)epoch->valuedouble};
    int checked = 0, outputs = 0, failures = 0, python = 0, skipped = 0, bad = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(renders, "cases")) {
        const char *tname = cJSON_GetObjectItem(c, "template")->valuestring;
        const char *cname = cJSON_GetObjectItem(c, "conversation")->valuestring;
        if (cJSON_IsTrue(cJSON_GetObjectItem(c, "continue_final_message"))) {
            skipped++;
            continue;
        }
        /* the expected outcome: Python's where the two engines disagree */
        const cJSON *want = c;
        const cJSON *d;
        cJSON_ArrayForEach(d, dlist) {
            if (same_case(d, c)) {
                want = cJSON_GetObjectItem(d, "python");
                python++;
                break;
            }
        }
        const cJSON *t = find_named(tlist, "name", tname), *conv = find_named(clist, "id", cname);
        assert_non_null(t);
        assert_non_null(conv);
        char rel[256];
        snprintf(rel, sizeof rel, "chat/%s", cJSON_GetObjectItem(t, "file")->valuestring);
        char *src = NULL;
        size_t len = 0;
        TU_OK(road__file_read(tu_fixture(rel), (size_t)1 << 20, &src, &len));
        road__jinja *prog = NULL;
        TU_OK(road__jinja_parse(src, len, &prog));
        road__free(src);
        /* apply_chat_template's variables: messages, add_generation_prompt, tools (or null),
         * documents null, the special tokens, the kwargs */
        cJSON *vars = cJSON_CreateObject();
        cJSON_AddItemToObject(vars, "messages",
                              cJSON_Duplicate(cJSON_GetObjectItem(conv, "messages"), true));
        cJSON_AddBoolToObject(vars, "add_generation_prompt",
                              cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")));
        const cJSON *tools = cJSON_GetObjectItem(conv, "tools");
        cJSON_AddItemToObject(vars, "tools",
                              tools ? cJSON_Duplicate(tools, true) : cJSON_CreateNull());
        cJSON_AddNullToObject(vars, "documents");
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(t, "variables"))
            cJSON_AddItemToObject(vars, v->string, cJSON_Duplicate(v, true));
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(c, "kwargs"))
            cJSON_AddItemToObject(vars, v->string, cJSON_Duplicate(v, true));
        road__jinja_result r;
        road_status st = road__jinja_render(prog, vars, &opts, &r);
        const cJSON *out = cJSON_GetObjectItem(want, "output");
        if (out) {
            if (st != ROAD_OK) {
                print_error("%s + %s (agp %d, kwargs %s): road fails: %s\n", tname, cname,
                            cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")),
                            cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "kwargs")),
                            road_last_error());
                bad++;
            } else if (r.len != strlen(out->valuestring) ||
                       memcmp(r.text, out->valuestring, r.len) != 0) {
                print_error("%s + %s (agp %d): road renders\n---\n%s\n--- the reference\n%s\n---\n",
                            tname, cname,
                            cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")), r.text,
                            out->valuestring);
                bad++;
            }
            outputs++;
        } else {
            const cJSON *raised = cJSON_GetObjectItem(want, "raised");
            const char *msg = cJSON_GetObjectItem(want, "error")->valuestring;
            if (st == ROAD_OK) {
                print_error("%s + %s: road renders, the reference fails (%s)\n", tname, cname, msg);
                bad++;
            } else if (cJSON_IsTrue(raised) && !strstr(road_last_error(), msg)) {
                print_error("%s + %s: road's error \"%s\" does not carry the template's "
                            "message \"%s\"\n",
                            tname, cname, road_last_error(), msg);
                bad++;
            }
            failures++;
        }
        if (st == ROAD_OK) road__jinja_result_free(&r);
        cJSON_Delete(vars);
        road__jinja_free(prog);
        checked++;
    }
    print_message("chat templates: %d cases checked (%d texts, %d failures; %d with Python's "
                  "outcome), %d continue_final_message cases left for the wiring; %d wrong\n",
                  checked, outputs, failures, python, skipped, bad);
    assert_int_equal(bad, 0);
    assert_true(checked > 700);
    cJSON_Delete(templates), cJSON_Delete(convs), cJSON_Delete(renders), cJSON_Delete(dis);
}

/* ---- road_tokenizer_apply_chat on real templates ------------------------------------------ */

typedef enum where { IN_CONFIG, IN_NAMED_LIST, IN_JINJA_FILE } where;

/* A tokenizer folder in the scratch folder: `tokenizer_dir`'s tokenizer.json, and a
 * tokenizer_config.json with the manifest's special tokens for `tname` and its template where
 * `w` says (for IN_JINJA_FILE the config's own chat_template is a decoy the file must win
 * over; for IN_NAMED_LIST "default" sits after another named template). */
static road_tokenizer *load_with_template(const cJSON *tlist, const char *tname,
                                          const char *tokenizer_dir, where w) {
    const cJSON *t = find_named(tlist, "name", tname);
    assert_non_null(t);
    char rel[256], *src = NULL;
    size_t len = 0;
    snprintf(rel, sizeof rel, "chat/%s", cJSON_GetObjectItem(t, "file")->valuestring);
    TU_OK(road__file_read(tu_fixture(rel), (size_t)1 << 20, &src, &len));
    tu_rm_rf(tu_scratch_at("tok"));
    TU_OK(road__mkdir_p(tu_scratch_at("tok")));
    snprintf(rel, sizeof rel, "tokenizers/%s/tokenizer.json", tokenizer_dir);
    tu_copy_file(tu_fixture(rel), tu_scratch_at("tok/tokenizer.json"));
    cJSON *cfg = cJSON_Duplicate(cJSON_GetObjectItem(t, "variables"), true);
    if (w == IN_CONFIG) {
        cJSON_AddStringToObject(cfg, "chat_template", src);
    } else if (w == IN_NAMED_LIST) {
        cJSON *list = cJSON_AddArrayToObject(cfg, "chat_template"), *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", "tool_use");
        cJSON_AddStringToObject(e, "template", "not this one");
        cJSON_AddItemToArray(list, e);
        e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", "default");
        cJSON_AddStringToObject(e, "template", src);
        cJSON_AddItemToArray(list, e);
    } else {
        cJSON_AddStringToObject(cfg, "chat_template", "not this one");
        TU_OK(road__file_write_atomic(tu_scratch_at("tok/chat_template.jinja"), src, len));
    }
    char *text = cJSON_PrintUnformatted(cfg);
    TU_OK(road__file_write_atomic(tu_scratch_at("tok/tokenizer_config.json"), text, strlen(text)));
    cJSON_free(text);
    cJSON_Delete(cfg);
    road__free(src);
    road_tokenizer *tok = NULL;
    TU_OK(road_tokenizer_load(tu_scratch_at("tok"), &tok));
    return tok;
}

/* apply_chat's text for one case of renders.json (string contents only: road_chat_message has
 * no parts or tool calls) must be the reference output byte for byte. */
static void check_apply(const road_tokenizer *tok, const cJSON *clist, const cJSON *renders,
                        const char *tname, const char *cname, bool agp, bool thinking) {
    const cJSON *conv = find_named(clist, "id", cname), *c, *want = NULL;
    assert_non_null(conv);
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(renders, "cases")) {
        const cJSON *kw = cJSON_GetObjectItem(c, "kwargs");
        bool kw_ok = thinking ? cJSON_GetArraySize(kw) == 0
                              : cJSON_IsFalse(cJSON_GetObjectItem(kw, "enable_thinking"));
        if (strcmp(cJSON_GetObjectItem(c, "template")->valuestring, tname) == 0 &&
            strcmp(cJSON_GetObjectItem(c, "conversation")->valuestring, cname) == 0 &&
            cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt")) == agp &&
            !cJSON_IsTrue(cJSON_GetObjectItem(c, "continue_final_message")) && kw_ok)
            want = cJSON_GetObjectItem(c, "output");
    }
    assert_non_null(want);
    road_chat_message m[16];
    size_t n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(conv, "messages")) {
        assert_true(n < sizeof m / sizeof m[0]);
        m[n].role = cJSON_GetObjectItem(e, "role")->valuestring;
        m[n++].content = cJSON_GetObjectItem(e, "content")->valuestring;
    }
    road_chat_params p = road_chat_default_params();
    p.add_generation_prompt = agp, p.enable_thinking = thinking;
    char *text = NULL;
    size_t len = 0;
    TU_OK(road_tokenizer_apply_chat(tok, &p, m, n, &text, &len));
    if (len != strlen(want->valuestring) || memcmp(text, want->valuestring, len) != 0)
        fail_msg("%s + %s (agp %d): apply_chat gives\n---\n%s\n--- the reference\n%s\n---", tname,
                 cname, agp, text, want->valuestring);
    road_string_free(text);
}

static void test_apply_chat_real(void **state) {
    (void)state;
    cJSON *templates = load("chat/templates.json"), *convs = load("chat/conversations.json");
    cJSON *renders = load("chat/renders.json");
    const cJSON *tlist = cJSON_GetObjectItem(templates, "templates");
    const cJSON *clist = cJSON_GetObjectItem(convs, "conversations");
    /* templates that print today's date print the fixture's */
    char epoch[32];
    snprintf(epoch, sizeof epoch, "%.0f",
             cJSON_GetObjectItem(renders, "source_date_epoch")->valuedouble);
    assert_int_equal(setenv("SOURCE_DATE_EPOCH", epoch, 1), 0);
    assert_int_equal(tu_scratch_make("test_chat_templates"), 0);

    road_tokenizer *tok = load_with_template(tlist, "qwen3", "qwen3", IN_CONFIG);
    road_chat_template k;
    TU_OK(road_tokenizer_chat_template(tok, &k));
    assert_int_equal(k, ROAD_CHAT_AUTO);
    check_apply(tok, clist, renders, "qwen3", "single_user", true, true);
    check_apply(tok, clist, renders, "qwen3", "single_user", true, false);
    check_apply(tok, clist, renders, "qwen3", "multi_turn", false, true);
    road_tokenizer_free(tok);

    /* Llama 3.2's system block (knowledge cutoff, today's date) that the built-in left out */
    tok = load_with_template(tlist, "llama3_2", "llama3", IN_CONFIG);
    check_apply(tok, clist, renders, "llama3_2", "system_user", true, true);
    check_apply(tok, clist, renders, "llama3_2", "single_user", false, true);
    road_tokenizer_free(tok);

    /* Zephyr's markers (<|user|>), refused before, from chat_template.jinja over the config */
    tok = load_with_template(tlist, "zephyr", "llama2", IN_JINJA_FILE);
    check_apply(tok, clist, renders, "zephyr", "system_user", true, true);
    road_tokenizer_free(tok);

    /* Qwen2.5's default system turn, from the "default" entry of a named list */
    tok = load_with_template(tlist, "qwen2_5", "qwen3", IN_NAMED_LIST);
    check_apply(tok, clist, renders, "qwen2_5", "single_user", true, true);
    road_tokenizer_free(tok);

    /* the template's own raise_exception reaches the caller with its message */
    tok = load_with_template(tlist, "mistral_v0_1", "llama2", IN_CONFIG);
    road_chat_message two_users[] = {{"user", "a"}, {"user", "b"}};
    road_chat_params p = road_chat_default_params();
    char *text = NULL;
    TU_FAILS(road_tokenizer_apply_chat(tok, &p, two_users, 2, &text, NULL), ROAD_ERR_INVALID_ARG,
             "alternate");
    road_tokenizer_free(tok);

    unsetenv("SOURCE_DATE_EPOCH");
    assert_int_equal(tu_scratch_remove(), 0);
    cJSON_Delete(templates), cJSON_Delete(convs), cJSON_Delete(renders);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_reference_renders),
                                       cmocka_unit_test(test_apply_chat_real)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
