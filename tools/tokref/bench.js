// tools/tokref/bench.js - encode throughput of Hugging Face's `tokenizers` (Rust, Node binding)
// on exactly the documents bench/bench_tokenizer.c builds (same fixture cases, same joining),
// one encode call per document, one after the other; best of REPEATS.
// usage: node bench.js [FIXTURES_DIR] [REPEATS]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const DOC_BYTES = 16384;
const TOTAL_BYTES = 4 << 20;
const dir = path.resolve(process.argv[2] || path.join(__dirname, '../../tests/fixtures/tokenizers'));
const repeats = Number(process.argv[3] || 3);
const dec = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

function buildDocs(name) {
  const ref = JSON.parse(fs.readFileSync(path.join(dir, `ref_${name}.json`), 'utf8'));
  const docs = [];
  let cur = [], curLen = 0, total = 0;
  while (total < TOTAL_BYTES) {
    for (const c of ref.cases) {
      if (total >= TOTAL_BYTES) break;
      const b = Buffer.from(c.hex, 'hex');
      if (cur.length) { cur.push(Buffer.from('\n')); curLen++; total++; }
      cur.push(b); curLen += b.length; total += b.length;
      if (curLen >= DOC_BYTES) { docs.push(Buffer.concat(cur)); cur = []; curLen = 0; }
    }
  }
  if (cur.length) docs.push(Buffer.concat(cur));
  return { docs: docs.map((d) => dec.decode(d)), bytes: total };
}

async function main() {
  console.log(`tokenizers ${require('tokenizers/package.json').version}, node ${process.version}`);
  for (const name of ['llama3', 'qwen3', 'llama2']) {
    const t0 = process.hrtime.bigint();
    const tok = Tokenizer.fromFile(path.join(dir, name, 'tokenizer.json'));
    const load = Number(process.hrtime.bigint() - t0) / 1e9;
    const { docs, bytes } = buildDocs(name);
    let best = Infinity, tokens = 0;
    for (let r = 0; r < repeats; r++) {
      tokens = 0;
      const s = process.hrtime.bigint();
      for (const d of docs) tokens += (await tok.encode(d, null, { addSpecialTokens: false })).getIds().length;
      best = Math.min(best, Number(process.hrtime.bigint() - s) / 1e9);
    }
    console.log(`${name.padEnd(8)} ${(bytes / 1e6).toFixed(2).padStart(10)} MB ${String(docs.length).padStart(6)} docs ${String(tokens).padStart(10)} tokens ${(bytes / 1e6 / best).toFixed(2).padStart(8)} MB/s   (load ${load.toFixed(2)} s)`);
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
