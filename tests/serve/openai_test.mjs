// tests/serve/openai_test.mjs ROAD_BINARY FIXTURES - `road serve` driven by the official
// `openai` npm client over loopback: completions and chat, streaming and not, several adapters
// at once (a concurrent mix gives exactly what each request gives alone), models, run-time
// adapter load/unload, OpenAI-shaped errors (unknown model, bad values, wrong key, malformed
// JSON through node's http module), and a clean stop on SIGTERM. Run by tests/serve/run.sh.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';

const [road, fixtures] = process.argv.slice(2);
const KEY = 'node-test-key';
let passed = 0, failed = 0;

function check(cond, what) {
  if (cond) passed++;
  else { failed++; console.error(`FAIL: ${what}`); }
}

async function test(name, fn) {
  try { await fn(); console.log(`ok - ${name}`); }
  catch (e) { failed++; console.error(`FAIL: ${name}: ${e.stack || e}`); }
}

// The tiny model with a 260-token byte tokenizer (as tests/testutil.c's tu_make_text_model).
function makeModel() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'road-node-'));
  const llama = path.join(fixtures, 'llama', 'tiny-llama');
  fs.copyFileSync(path.join(llama, 'config.json'), path.join(dir, 'config.json'));
  fs.copyFileSync(path.join(llama, 'model.safetensors'), path.join(dir, 'model.safetensors'));
  const tokdir = path.join(fixtures, 'tokenizers', 'llama2');
  fs.copyFileSync(path.join(tokdir, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  const t = JSON.parse(fs.readFileSync(path.join(tokdir, 'tokenizer.json'), 'utf8'));
  const vocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  vocab['\u2581'] = 259;
  t.model.vocab = vocab;
  t.model.merges = [];
  t.added_tokens = t.added_tokens.slice(0, 3);
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(t));
  return dir;
}

function startServer(modelDir) {
  const ad = path.join(fixtures, 'llama', 'tiny-llama', 'adapters');
  const proc = spawn(road, ['serve', '--model', modelDir, '--port', '0', '--api-key', KEY,
    '--served-model-name', 'tiny', '--chat-template', 'llama2', '--max-batch', '8', '--quiet',
    '--adapter', `A=${path.join(ad, 'A')}`, '--adapter', `B=${path.join(ad, 'B')}`],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('road serve did not start in 30 s')), 30000);
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) { clearTimeout(timer); resolve({ proc, port: Number(m[1]) }); }
    });
    proc.on('exit', (code) => reject(new Error(`road serve exited early (${code})`)));
  });
}

async function waitHealthy(base) {
  for (let i = 0; i < 100; i++) {
    try { const r = await fetch(`${base}/health`); if (r.ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('/health never answered 200');
}

function rawPost(port, pathName, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: pathName, method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${KEY}`, ...headers } }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function isOpenAIError(body) {
  try {
    const e = JSON.parse(body).error;
    return typeof e.message === 'string' && typeof e.type === 'string' && 'param' in e && 'code' in e;
  } catch { return false; }
}

async function collect(stream, chat) {
  let text = '', finish = null, usage = null, chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    text += chat ? (ch.delta.content ?? '') : ch.text;
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  return { text, finish, usage, chunks };
}

const modelDir = makeModel();
const { proc, port } = await startServer(modelDir);
const base = `http://127.0.0.1:${port}`;
const client = new OpenAI({ apiKey: KEY, baseURL: `${base}/v1`, maxRetries: 0 });
let exited = null;
proc.on('exit', (code, sig) => { exited = { code, sig }; });

try {
  await waitHealthy(base);

  await test('models list: base and adapters', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    check(JSON.stringify(ids) === JSON.stringify(['tiny', 'A', 'B']), `models ${ids}`);
  });

  await test('completions, streaming and not, agree', async () => {
    const p = { model: 'A', prompt: 'Hello', max_tokens: 6, temperature: 0, ignore_eos: true };
    const r = await client.completions.create(p);
    check(r.object === 'text_completion', 'object');
    check(r.choices[0].finish_reason === 'length', `finish ${r.choices[0].finish_reason}`);
    check(r.usage.completion_tokens === 6 && r.usage.prompt_tokens > 0, `usage ${JSON.stringify(r.usage)}`);
    check(r.usage.total_tokens === r.usage.prompt_tokens + 6, 'total_tokens');
    const s = await collect(await client.completions.create({ ...p, stream: true,
      stream_options: { include_usage: true } }), false);
    check(s.text === r.choices[0].text, `stream text ${JSON.stringify(s.text)} vs ${JSON.stringify(r.choices[0].text)}`);
    check(s.finish === 'length', 'stream finish');
    check(s.usage && s.usage.completion_tokens === 6, 'stream usage');
  });

  await test('chat, streaming and not, agree', async () => {
    const p = { model: 'B', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi!' }],
      max_tokens: 5, temperature: 0, ignore_eos: true };
    const r = await client.chat.completions.create(p);
    check(r.object === 'chat.completion', 'object');
    check(r.choices[0].message.role === 'assistant', 'role');
    check(r.choices[0].finish_reason === 'length', 'finish');
    const s = await collect(await client.chat.completions.create({ ...p, stream: true }), true);
    check(s.text === r.choices[0].message.content, 'chat stream text');
    check(s.finish === 'length', 'chat stream finish');
  });

  await test('run-time adapter load, then several adapters at once', async () => {
    const ad = path.join(fixtures, 'llama', 'tiny-llama', 'adapters', 'C');
    const lr = await fetch(`${base}/v1/load_lora_adapter`, { method: 'POST',
      headers: { Authorization: `Bearer ${KEY}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ lora_name: 'C', lora_path: ad }) });
    check(lr.status === 200, `load status ${lr.status}`);
    const bad = await rawPost(port, '/v1/load_lora_adapter', JSON.stringify({ lora_name: 'D', lora_path: '/nonexistent' }));
    check(bad.status === 400 && isOpenAIError(bad.body), `broken load ${bad.status} ${bad.body}`);
    const models = ['A', 'B', 'C', 'tiny'];
    const reqs = [];
    for (let i = 0; i < 8; i++) {
      const model = models[i % 4];
      const stream = i % 2 === 1;
      if (i % 3 === 0) reqs.push({ kind: 'chat', stream, p: { model, messages: [{ role: 'user', content: `q${i}` }],
        max_tokens: 8, temperature: 0.8, seed: 100 + i, ignore_eos: true } });
      else reqs.push({ kind: 'cmpl', stream, p: { model, prompt: `prompt ${i}`, max_tokens: 8 + i,
        temperature: 0.8, top_p: 0.95, seed: 100 + i, ignore_eos: true } });
    }
    const run = async (q) => {
      const chat = q.kind === 'chat';
      const api = chat ? client.chat.completions : client.completions;
      if (q.stream) return (await collect(await api.create({ ...q.p, stream: true }), chat)).text;
      const r = await api.create(q.p);
      return chat ? r.choices[0].message.content : r.choices[0].text;
    };
    const alone = [];
    for (const q of reqs) alone.push(await run(q));
    const together = await Promise.all(reqs.map(run));
    for (let i = 0; i < reqs.length; i++)
      check(together[i] === alone[i], `request ${i} (${reqs[i].p.model}): concurrent ${JSON.stringify(together[i])} vs alone ${JSON.stringify(alone[i])}`);
    const ur = await rawPost(port, '/v1/unload_lora_adapter', JSON.stringify({ lora_name: 'C' }));
    check(ur.status === 200, `unload ${ur.status}`);
  });

  await test('errors the client sees', async () => {
    const expect = async (fn, status, what) => {
      try { await fn(); check(false, `${what}: no error`); }
      catch (e) { check(e instanceof OpenAI.APIError && e.status === status, `${what}: ${e.status} ${e}`); }
    };
    await expect(() => client.completions.create({ model: 'nope', prompt: 'x' }), 404, 'unknown model');
    await expect(() => client.completions.create({ model: 'C', prompt: 'x' }), 404, 'unloaded adapter');
    await expect(() => client.completions.create({ model: 'A', prompt: 'x', temperature: 5 }), 400, 'temperature');
    await expect(() => client.completions.create({ model: 'A', prompt: 'x', max_tokens: 100000 }), 400, 'max_tokens');
    await expect(() => client.chat.completions.create({ model: 'A', messages: [{ role: 'user', content: 'x'.repeat(300) }] }),
      400, 'context length');
    const wrong = new OpenAI({ apiKey: 'wrong', baseURL: `${base}/v1`, maxRetries: 0 });
    await expect(() => wrong.completions.create({ model: 'A', prompt: 'x' }), 401, 'wrong key');
    const raw = await rawPost(port, '/v1/completions', '{"model": "A", "prompt": ');
    check(raw.status === 400 && isOpenAIError(raw.body), `malformed JSON ${raw.status} ${raw.body}`);
    const raw2 = await rawPost(port, '/v1/chat/completions', '{"model": "A", "messages": [{"role": 1}]}');
    check(raw2.status === 400 && isOpenAIError(raw2.body), `bad message ${raw2.status}`);
    const ok = await client.completions.create({ model: 'A', prompt: 'still there?', max_tokens: 2 });
    check(ok.choices.length === 1, 'serving after the errors');
  });

  await test('metrics', async () => {
    const m = await (await fetch(`${base}/metrics`)).text();
    check(/road_adapter_requests_total\{adapter="C"\} [1-9]/.test(m), 'per-adapter counts');
    check(/road_generation_tokens_total [1-9]/.test(m), 'generation tokens');
    check(/road_http_responses_total\{code="404"\} [1-9]/.test(m), 'http codes');
  });

  await test('SIGTERM stops cleanly', async () => {
    proc.kill('SIGTERM');
    for (let i = 0; i < 100 && !exited; i++) await new Promise((r) => setTimeout(r, 100));
    check(exited && exited.code === 0, `exit ${JSON.stringify(exited)}`);
  });
} finally {
  if (!exited) proc.kill('SIGKILL');
  fs.rmSync(modelDir, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
