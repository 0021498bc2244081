/*
 * tests/test_chat_templates.c - road's Jinja engine (tokenizer/jinja.h) on real chat templates:
 * every case of tests/fixtures/chat/renders.json (26 templates x 16 conversations x flags x
 * kwargs, rendered by @huggingface/jinja as transformers.js applies chat templates; see the
 * fixture README) must render byte for byte the same text, or fail where the reference fails
 * (with the template's own raise_exception message where it raised). Where Python's jinja2 (as
 * transformers runs it) and the JS engine disagree (disagreements.json), Python's outcome is
 * the reference: road follows jinja2's semantics, which is what transformers and TRL produce.
 *
 * The engine alone: continue_final_message cases (apply_chat_template's post-processing, not
 * the engine's) and the wiring through a tokenizer are tests/test_chat_apply.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "io/file.h"
#include "road/json.h"
#include "road/tokenizer.h"
#include "chat_refs.h"
#include "testutil.h"
#include "tokenizer/jinja.h"

/* A fixture file parsed as road parses JSON (numbers keep their text: 1.0 stays a float). */



static void test_reference_renders(void **state) {
    (void)state;
    cJSON *templates = chat_refs_load("chat/templates.json"), *convs = chat_refs_load("chat/conversations.json");
    cJSON *renders = chat_refs_load("chat/renders.json"), *dis = chat_refs_load("chat/disagreements.json");
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
            if (chat_refs_same_case(d, c)) {
                want = cJSON_GetObjectItem(d, "python");
                python++;
                break;
            }
        }
        const cJSON *t = chat_refs_find(tlist, "name", tname), *conv = chat_refs_find(clist, "id", cname);
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

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_reference_renders)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
