// bench/llamacpp/bench.mjs - llama.cpp's side of the road vs llama.cpp comparison, through
// node-llama-cpp's JS API and its prebuilt CPU binaries (which pick their CPU variant, e.g.
// haswell / zen4, at run time). Token ids only: the GGUF's vocabulary is never used to
// tokenize (tools/gguf/hf_to_gguf.py writes a placeholder for random models).
//
//   node bench.mjs time MODEL.gguf [--threads N]
//       one sample of every figure, the protocol of bench/bench_llamacpp.c step for step
//       (warm-up 8 tokens; prefill 512; decode 1 after 128 tokens, 8 steps; decode 8
//       sequences after 64 tokens each, 8 batched steps; decode figures from the median step
//       time), printed as one JSON line. Every step asks for the logits of its last token (a
//       step without them would skip lm_head).
//   node bench.mjs probs MODEL.gguf OUT.f64 --ids "1 2 3" [--threads N]
//       the next-token probabilities (softmax of the raw logits: greedy sampler, nothing
//       else in the chain) after every prefix of the ids, float64 [T, V] to OUT.f64.
//       node-llama-cpp gives no raw logits; log(p) is the logits minus a constant per
//       position, which tools/gguf/compare_logits.py removes on both sides.
import fs from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";

const WARMUP_TOKENS = 8, PREFILL_TOKENS = 512, DECODE_CONTEXT = 128, DECODE_STEPS = 8;
const N_SEQS = 8, SEQ_CONTEXT = 64;

// ggml type id -> [elements per block, bytes per block], for the bytes read per token
const GGML_SIZES = { 0: [1, 4], 1: [1, 2], 2: [32, 18], 8: [32, 34], 30: [1, 2] };

function args(argv) {
    const a = { threads: 0, ids: null, positional: [] };
    for (let i = 0; i < argv.length; i++) {
        if (argv[i] === "--threads") a.threads = Number(argv[++i]);
        else if (argv[i] === "--ids") a.ids = argv[++i].trim().split(/[\s,]+/).map(Number);
        else a.positional.push(argv[i]);
    }
    return a;
}

// road keeps its KV cache in float32; llama.cpp's default is F16 (1e-3 differences in the
// logits, and less KV traffic). F32 here: the same arithmetic and bytes on both sides.
const KV = { experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32" };

const now = () => Number(process.hrtime.bigint()) / 1e9;
// decode figures use the median step time, as bench_llamacpp.c does
const median = (t) => {
    const s = [...t].sort((a, b) => a - b);
    return s.length % 2 ? s[s.length >> 1] : 0.5 * (s[s.length / 2 - 1] + s[s.length / 2]);
};

async function open(path, threads) {
    const llama = await getLlama({
        gpu: false,
        build: "never",
        maxThreads: threads,
        logLevel: LlamaLogLevel.info,
        logger: (level, message) => {
            if (process.env.LLAMA_LOG) process.stderr.write(message); // LLAMA_LOG=1: llama.cpp's log
        },
    });
    const t0 = now();
    const model = await llama.loadModel({ modelPath: path, gpuLayers: 0, useMmap: true });
    return { llama, model, loadS: now() - t0 };
}

// the ggml CPU variant the prebuilt binaries loaded (libggml-cpu-<variant>.so in our maps)
function cpuVariant() {
    const m = fs.readFileSync("/proc/self/maps", "utf8").match(/libggml-cpu-([\w-]+)\.so/);
    return m ? m[1] : "unknown";
}

function weightBytes(model) {
    let bytes = 0;
    for (const t of model.fileInfo.tensorInfo) {
        const [blk, size] = GGML_SIZES[t.ggmlType] ?? [NaN, NaN];
        const n = t.dimensions.reduce((p, d) => p * Number(d), 1);
        bytes += (n / blk) * size;
    }
    return bytes;
}

// evaluate toks into seq, the logits of the last one sampled greedily (a real decode step)
function step(seq, toks) {
    const input = toks.map((t, i) => (i === toks.length - 1 ? [t, { generateNext: { token: true } }] : t));
    return seq.controlledEvaluate(input);
}

async function time(path, threads) {
    const { llama, model, loadS } = await open(path, threads);
    const V = model.fileInfo.metadata.llama.vocab_size;
    const ids = Array.from({ length: PREFILL_TOKENS }, (_, i) => (i * 7919) % V);

    let ctx = await model.createContext({
        contextSize: 1024, batchSize: PREFILL_TOKENS, sequences: 1, threads, flashAttention: false, ...KV,
    });
    let seq = ctx.getSequence();
    await step(seq, ids.slice(0, WARMUP_TOKENS));
    await seq.clearHistory();
    let t0 = now();
    await step(seq, ids);
    const tPrefill = now() - t0;

    await seq.clearHistory();
    await step(seq, ids.slice(0, DECODE_CONTEXT));
    const steps1 = [];
    for (let s = 0; s < DECODE_STEPS; s++) {
        t0 = now();
        await step(seq, [1]);
        steps1.push(now() - t0);
    }
    const tDec1 = median(steps1);
    await ctx.dispose();

    ctx = await model.createContext({
        contextSize: N_SEQS * (SEQ_CONTEXT + DECODE_STEPS + 48), batchSize: PREFILL_TOKENS,
        sequences: N_SEQS, threads, flashAttention: false, ...KV,
    });
    const seqs = Array.from({ length: N_SEQS }, () => ctx.getSequence());
    // the same calls in one tick: node-llama-cpp's dispatcher puts them in one llama_decode
    await Promise.all(seqs.map((q, i) => step(q, ids.slice(i, i + SEQ_CONTEXT))));
    const steps8 = [];
    for (let s = 0; s < DECODE_STEPS; s++) {
        t0 = now();
        await Promise.all(seqs.map((q, i) => step(q, [100 + i])));
        steps8.push(now() - t0);
    }
    const tDec8 = median(steps8);
    await ctx.dispose();

    const out = {
        engine: "llama.cpp",
        node_llama_cpp: JSON.parse(fs.readFileSync(new URL("./node_modules/node-llama-cpp/package.json", import.meta.url))).version,
        threads,
        load_s: +loadS.toFixed(3),
        prefill_tps: +(PREFILL_TOKENS / tPrefill).toFixed(3),
        decode1_tps: +(1 / tDec1).toFixed(4),
        decode8_tps: +(N_SEQS / tDec8).toFixed(4),
        bytes_per_token: weightBytes(model),
        peak_rss_mb: +(process.resourceUsage().maxRSS / 1024).toFixed(1),
        cpu: cpuVariant(),
    };
    await model.dispose();
    await llama.dispose();
    console.log(JSON.stringify(out));
}

async function probs(path, outPath, ids, threads) {
    const { llama, model } = await open(path, threads);
    const V = model.fileInfo.metadata.llama.vocab_size;
    const ctx = await model.createContext({ contextSize: 256, batchSize: 256, sequences: 1, threads, flashAttention: false, ...KV });
    const seq = ctx.getSequence();
    const res = await seq.controlledEvaluate(
        ids.map((t) => [t, { generateNext: { probabilities: true, options: { temperature: 0 } } }]));
    const out = new Float64Array(ids.length * V);
    res.forEach((r, i) => {
        if (r.next.probabilities.size !== V) throw new Error(`position ${i}: ${r.next.probabilities.size} probabilities, expected ${V}`);
        for (const [tok, p] of r.next.probabilities) out[i * V + tok] = p;
    });
    fs.writeFileSync(outPath, Buffer.from(out.buffer));
    await ctx.dispose();
    await model.dispose();
    await llama.dispose();
}

const a = args(process.argv.slice(2));
const [mode, model, outPath] = a.positional;
if (mode === "time" && model) await time(model, a.threads);
else if (mode === "probs" && model && outPath && a.ids) await probs(model, outPath, a.ids, a.threads);
else {
    console.error("usage: node bench.mjs time MODEL.gguf [--threads N]\n" +
        "       node bench.mjs probs MODEL.gguf OUT.f64 --ids \"1 2 3\" [--threads N]");
    process.exit(2);
}
