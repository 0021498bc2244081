/*
 * fuzz/fuzz_jinja.c - libFuzzer target for the Jinja engine of chat templates
 * (tokenizer/jinja.h).
 *
 * The input is a template. road__jinja_parse refuses it with a message, or the program renders
 * with a small chat (messages, tools, bos_token, add_generation_prompt) under lowered bounds
 * (steps, output, memory, so that a hostile loop costs milliseconds) and either fails with a
 * message or yields text of the length it reports with generation spans inside it, in order.
 * A template that renders is also run through apply_chat_template's steps
 * (road_chat_template_apply with continue_final_message: messages normalized, the final
 * message tagged, the render cut at the tag), which either fails with a message or gives text.
 * The allocation counter is back where it started after each input.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/alloc.h"
#include "road/config.h"
#include "road/tokenizer.h"
#include "tokenizer/jinja.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char VARS[] =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":"
    "\"Hi\"},{\"role\":\"assistant\",\"content\":\"Yo\",\"tool_calls\":[{\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1.5}}}]}],\"tools\":[{\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"parameters\":{}}}],\"bos_token\":\"<s>\",\"eos_token\":\"</"
    "s>\","
    "\"add_generation_prompt\":true}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int64_t live = road__alloc_live_bytes();
    road__jinja *t = NULL;
    road_clear_error();
    if (road__jinja_parse((const char *)data, size, &t) != ROAD_OK) {
        if (t != NULL || road_last_error()[0] == '\0') __builtin_trap();
    } else {
        cJSON *vars = cJSON_Parse(VARS);
        if (vars == NULL) __builtin_trap();
        road__jinja_opts opts = {0};
        opts.now = 1700000000;
        opts.max_steps = 200000;
        opts.max_output = 1 << 20;
        opts.max_memory = 32 << 20;
        road__jinja_result res;
        road_clear_error();
        if (road__jinja_render(t, vars, &opts, &res) != ROAD_OK) {
            if (res.text != NULL || road_last_error()[0] == '\0') __builtin_trap();
        } else {
            if (res.text == NULL || res.text[res.len] != '\0' || res.len > opts.max_output)
                __builtin_trap();
            size_t prev = 0;
            for (size_t i = 0; i < res.n_spans; i++) {
                if (res.spans[i].begin > res.spans[i].end || res.spans[i].end > res.len)
                    __builtin_trap();
                if (res.spans[i].end < prev) __builtin_trap();
                prev = res.spans[i].end;
            }
            road__jinja_result_free(&res);
            /* apply_chat_template's steps on the same chat, continuing its last message */
            road_chat_params p = road_chat_default_params();
            p.add_generation_prompt = false;
            p.continue_final_message = true;
            p.tools = cJSON_GetObjectItem(vars, "tools");
            char *text = NULL;
            size_t len = 0;
            road_clear_error();
            if (road_chat_template_apply((const char *)data, size, NULL, &p,
                                         cJSON_GetObjectItem(vars, "messages"), &text,
                                         &len) != ROAD_OK) {
                if (text != NULL || road_last_error()[0] == '\0') __builtin_trap();
            } else if (text == NULL || text[len] != '\0') {
                __builtin_trap();
            }
            road_string_free(text);
        }
        cJSON_Delete(vars);
        road__jinja_free(t);
    }
    if (road__alloc_live_bytes() != live) __builtin_trap();
    return 0;
}
