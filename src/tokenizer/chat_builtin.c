/*
 * tokenizer/chat_builtin.c - chat templates for base models that have none of their own.
 *
 * Each is a Jinja template run by the same engine as a model's own: it renders a plain chat
 * (string contents, the roles the family knows) exactly as the family's released template
 * does (tests/test_chat_builtin.c compares them with the reference renders of those templates
 * in tests/fixtures/chat), and it marks each assistant turn with {% generation %} so training
 * masks come from the template itself. Tools and content parts are the families' own
 * templates' business: a model that uses them ships its template.
 */
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

typedef struct builtin {
    const char *name, *text;
} builtin;

/* "Conversation roles must alternate ..." is the message the released templates raise. */
#define ALTERNATE                                                                                  \
    "{%- if (m.role == 'user') != (loop.index0 % 2 == 0) -%}"                                      \
    "{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') "  \
    "-}}{%- endif -%}"

static const builtin BUILTINS[] = {
    /* ChatML (Qwen, Hermes, many fine-tunes). */
    {"chatml", "{%- for m in messages -%}"
               "{%- if m.role == 'assistant' -%}"
               "{{- '<|im_start|>assistant\\n' -}}"
               "{%- generation -%}{{- m.content + '<|im_end|>' -}}{%- endgeneration -%}"
               "{{- '\\n' -}}"
               "{%- else -%}"
               "{{- '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' -}}"
               "{%- endif -%}"
               "{%- endfor -%}"
               "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"},
    /* Llama 3 Instruct (without 3.1's date block and tools). */
    {"llama3", "{%- for m in messages -%}"
               "{%- if loop.first -%}{{- bos_token -}}{%- endif -%}"
               "{{- '<|start_header_id|>' + m.role + '<|end_header_id|>\\n\\n' -}}"
               "{%- if m.role == 'assistant' -%}"
               "{%- generation -%}{{- m.content | trim + '<|eot_id|>' -}}{%- endgeneration -%}"
               "{%- else -%}{{- m.content | trim + '<|eot_id|>' -}}{%- endif -%}"
               "{%- endfor -%}"
               "{%- if add_generation_prompt -%}"
               "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"},
    /* Llama 2 chat: the system prompt folded into the first user turn, bos before each [INST]. */
    {"llama2",
     "{%- if messages and messages[0].role == 'system' -%}"
     "{%- set system = messages[0].content -%}{%- set turns = messages[1:] -%}"
     "{%- else -%}{%- set system = none -%}{%- set turns = messages -%}{%- endif -%}"
     "{%- for m in turns -%}" ALTERNATE "{%- if m.role == 'user' -%}"
     "{%- if loop.first and system is not none -%}"
     "{%- set text = '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + m.content -%}"
     "{%- else -%}{%- set text = m.content -%}{%- endif -%}"
     "{{- bos_token + '[INST] ' + text | trim + ' [/INST]' -}}"
     "{%- elif m.role == 'assistant' -%}"
     "{{- ' ' -}}{%- generation -%}{{- m.content | trim + ' ' + eos_token -}}{%- endgeneration -%}"
     "{%- endif -%}"
     "{%- endfor -%}"},
    /* Mistral Instruct v0.1/v0.2: user/assistant only, one bos. */
    {"mistral",
     "{{- bos_token -}}"
     "{%- for m in messages -%}" ALTERNATE "{%- if m.role == 'user' -%}"
     "{{- '[INST] ' + m.content + ' [/INST]' -}}"
     "{%- elif m.role == 'assistant' -%}"
     "{%- generation -%}{{- m.content + eos_token -}}{%- endgeneration -%}"
     "{%- else -%}{{- raise_exception('Only user and assistant roles are supported!') -}}"
     "{%- endif -%}"
     "{%- endfor -%}"},
    /* Zephyr: <|role|> headers, eos after every message. */
    {"zephyr", "{%- for m in messages -%}"
               "{%- if m.role == 'assistant' -%}"
               "{{- '<|assistant|>\\n' -}}"
               "{%- generation -%}{{- m.content + eos_token -}}{%- endgeneration -%}"
               "{{- '\\n' -}}"
               "{%- elif m.role == 'user' or m.role == 'system' -%}"
               "{{- '<|' + m.role + '|>\\n' + m.content + eos_token + '\\n' -}}"
               "{%- endif -%}"
               "{%- if loop.last and add_generation_prompt -%}{{- '<|assistant|>\\n' -}}"
               "{%- endif -%}"
               "{%- endfor -%}"},
    /* Gemma / Gemma 2 it: no system role, the assistant is "model". */
    {"gemma", "{{- bos_token -}}"
              "{%- if messages and messages[0].role == 'system' -%}"
              "{{- raise_exception('System role not supported') -}}{%- endif -%}"
              "{%- for m in messages -%}" ALTERNATE "{%- if m.role == 'assistant' -%}"
              "{{- '<start_of_turn>model\\n' -}}"
              "{%- generation -%}{{- m.content | trim + '<end_of_turn>\\n' -}}{%- endgeneration -%}"
              "{%- else -%}{{- '<start_of_turn>' + m.role + '\\n' + m.content | trim + "
              "'<end_of_turn>\\n' -}}"
              "{%- endif -%}"
              "{%- endfor -%}"
              "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\\n' -}}{%- endif -%}"},
};

#define N_BUILTINS (sizeof BUILTINS / sizeof BUILTINS[0])

static const char *const NAMES[N_BUILTINS + 1] = {"chatml", "llama3", "llama2", "mistral",
                                                  "zephyr", "gemma",  NULL};

const char *const *road_chat_builtin_names(void) {
    return NAMES;
}

const char *road__chat_builtin(const char *name) {
    for (size_t i = 0; name && i < N_BUILTINS; i++)
        if (strcmp(BUILTINS[i].name, name) == 0) return BUILTINS[i].text;
    return NULL;
}
