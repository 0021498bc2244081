// tools/tokref/make_synth.js - writes small tokenizer.json files for the pre-tokenizers,
// behaviors and decoders that no real tokenizer file road can copy uses, so that
// tests/test_tokenizer_ref.c checks them against Hugging Face's `tokenizers` too.
//
// Each is a real vocabulary cut down to its first MERGES merges (the tokens those merges use and
// make, the 256 byte tokens, the single characters of SentencePiece files; ids renumbered in
// their original order, a few special tokens kept), with the pipeline parts swapped for the
// component under test:
//   bl_* from tests/fixtures/tokenizers/llama3 (byte-level BPE), sp_* from .../llama2
//   (SentencePiece-style BPE with byte fallback).
// Writes tests/fixtures/tokenizers/synth/<name>.json; gen.js then writes ref_<name>.json.
// usage: node make_synth.js [FIXTURES_DIR]
'use strict';
const fs = require('fs');
const path = require('path');

const fixtures = path.resolve(process.argv[2] || path.join(__dirname, '../../tests/fixtures/tokenizers'));
const MERGES = 3000; // enough for common English words to merge; small files (~100 KB)

function trim(file, keepAdded, keepChar) {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  const m = j.model;
  const merges = m.merges.slice(0, MERGES).map((x) => (Array.isArray(x) ? x : x.split(' ')));
  const keep = new Set();
  for (const [tok, id] of Object.entries(m.vocab)) if (keepChar(tok, id)) keep.add(tok);
  for (const [a, b] of merges) keep.add(a), keep.add(b), keep.add(a + b);
  const old = Object.entries(m.vocab).filter(([t]) => keep.has(t)).sort((x, y) => x[1] - y[1]);
  const vocab = {};
  old.forEach(([t], i) => { vocab[t] = i; });
  let next = old.length;
  const added = j.added_tokens.filter((a) => keepAdded.includes(a.content))
    .map((a) => ({ ...a, id: vocab[a.content] !== undefined ? vocab[a.content] : next++ }));
  const idOf = (s) => (vocab[s] !== undefined ? vocab[s] : added.find((a) => a.content === s).id);
  return { base: { ...j, added_tokens: added, model: { ...m, vocab, merges } }, idOf };
}

const bl = trim(path.join(fixtures, 'llama3/tokenizer.json'), ['<|begin_of_text|>', '<|end_of_text|>', '<|eot_id|>'],
  (t, id) => id < 256);
const sp = trim(path.join(fixtures, 'llama2/tokenizer.json'), ['<unk>', '<s>', '</s>'],
  (t) => /^<0x[0-9A-F]{2}>$/.test(t) || [...t].length === 1 || ['<unk>', '<s>', '</s>'].includes(t));

const BL = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
const split = (pattern, behavior, invert = false) => ({ type: 'Split', pattern, behavior, invert });
const seq = (...pretokenizers) => ({ type: 'Sequence', pretokenizers });
const template = (t, pre, post) => ({
  type: 'TemplateProcessing',
  single: [...pre.map((id) => ({ SpecialToken: { id, type_id: 0 } })), { Sequence: { id: 'A', type_id: 0 } },
    ...post.map((id) => ({ SpecialToken: { id, type_id: 0 } }))],
  pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
  special_tokens: Object.fromEntries([...pre, ...post].map((id) => [id, { id, ids: [t.idOf(id)], tokens: [id] }])),
});
const blDec = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };

const variants = {
  // a match joins what follows it; MergedWithPrevious on punctuation; an inverted regex
  bl_merged: { t: bl, pre: seq(split({ String: ' ' }, 'MergedWithNext'),
    split({ Regex: '[.,!?;:]+' }, 'MergedWithPrevious'), BL) },
  // invert: the runs between whitespace are the matches, and each takes the whitespace after it
  bl_invert_next: { t: bl, pre: seq(split({ Regex: '\\s+' }, 'MergedWithNext', true), BL) },
  // Contiguous, and Removed without invert; empty matches (lookahead, x*) change neighbours
  bl_contiguous: { t: bl, pre: seq(split({ Regex: '\\p{P}' }, 'Contiguous'), split({ String: '\n' }, 'Removed'),
    split({ Regex: '(?=[A-Z])' }, 'MergedWithNext'), split({ Regex: 'x*' }, 'Contiguous'), BL) },
  // empty matches next to non-empty ones: Oniguruma skips an empty match right where the
  // previous match ended, which decides what MergedWithNext / MergedWithPrevious join
  bl_empty: { t: bl, pre: seq(split({ Regex: 'h*' }, 'MergedWithNext'), split({ Regex: 'e*|(?=l)' }, 'MergedWithPrevious'), BL) },
  // WhitespaceSplit, Punctuation (Isolated), Digits one by one; bos + eos template
  bl_classes: { t: bl, pre: seq({ type: 'WhitespaceSplit' }, { type: 'Punctuation', behavior: 'Isolated' },
    { type: 'Digits', individual_digits: true }, BL),
  post: (t) => template(t, ['<|begin_of_text|>'], ['<|end_of_text|>']) },
  // Whitespace (\w+|[^\w\s]+), Digits in runs, Punctuation merged with the text before it
  bl_whitespace: { t: bl, pre: seq({ type: 'Whitespace' }, { type: 'Digits', individual_digits: false },
    { type: 'Punctuation', behavior: 'MergedWithNext' }, BL) },
  // BertPreTokenizer, CharDelimiterSplit, Punctuation Contiguous
  bl_bert: { t: bl, pre: seq({ type: 'CharDelimiterSplit', delimiter: '-' }, { type: 'BertPreTokenizer' },
    { type: 'Punctuation', behavior: 'Contiguous' }, BL) },
  // GPT-2 / Phi-2 / OLMo-1 style: ByteLevel with its own regex and a prefix space
  bl_gpt2: { t: bl, pre: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    post: () => ({ type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true }) },
  // SentencePiece style through Metaspace: prepend always and split (older Llama/Mistral files)
  sp_metaspace_always: { t: sp, norm: null,
    pre: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true },
    dec: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'always', split: true } },
  // never prepend, no split, with a Gemma-like Split on the replacement character
  sp_metaspace_never: { t: sp, norm: null,
    pre: seq({ type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'never', split: false },
      split({ String: '\u2581' }, 'MergedWithPrevious')),
    dec: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'never', split: false } },
};

const outDir = path.join(fixtures, 'synth');
fs.mkdirSync(outDir, { recursive: true });
for (const [name, v] of Object.entries(variants)) {
  const j = JSON.parse(JSON.stringify(v.t.base));
  if ('norm' in v) j.normalizer = v.norm;
  if (v.t === bl) j.normalizer = null;
  j.pre_tokenizer = v.pre;
  j.post_processor = v.post ? v.post(v.t) : template(v.t, [v.t === bl ? '<|begin_of_text|>' : '<s>'], []);
  if (v.dec) j.decoder = v.dec;
  else if (v.t === bl) j.decoder = blDec;
  fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(j) + '\n');
  console.log(`synth/${name}.json`);
}
