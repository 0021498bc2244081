// tools/tokref/make_corpus.js - writes corpus.txt: the hand-written hard cases of
// corpus_hand.txt followed by systematic ones (whitespace runs before words, digit runs of
// every length, contractions in every case pattern, long words, mixed scripts), so the
// reference covers each regex branch at its edges. Usage: node make_corpus.js
'use strict';
const fs = require('fs');
const out = [fs.readFileSync(__dirname + '/corpus_hand.txt', 'utf8').trimEnd(), '# --- systematic cases (make_corpus.js)'];
const ws = [' ', '  ', '   ', '\\t', '\\n', '\\r\\n', ' \\n', '\\n ', '\\n\\n', ' \\t', '\\u{A0}', '\\u{3000}'];
for (const w of ws) {
  out.push(`a${w}b`, `${w}word`, `word${w}`, `x${w}${w}y`, `1${w}2`, `!${w}?`);
}
for (let n = 1; n <= 16; n++) out.push('7'.repeat(n) + ' ' + '0123456789'.repeat(3).slice(0, n) + 'x');
const cons = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"];
for (const c of cons) {
  const variants = new Set([c, c.toUpperCase(), c[0] + c.slice(1, 2).toUpperCase() + c.slice(2)]);
  for (const v of variants) out.push(`word${v} it${v}`, ` ${v} ${v}x`, `${v}`);
}
for (const n of [50, 100, 257, 1000]) out.push('x'.repeat(n), 'ab'.repeat(n >> 1) + 'c', ' ' + 'é'.repeat(n >> 2));
out.push('a'.repeat(3000));
out.push(' '.repeat(40) + 'end', '\\n'.repeat(20) + 'end', '\\t'.repeat(12));
const words = ['hello', 'Hello', 'HELLO', 'naïve', '東京', 'Москва', '🙂', '123', 'x1y2', '__init__'];
for (const a of words) for (const b of ['.', ',', '!', ' ', '\\n', '']) out.push(`${a}${b}${a}`);
// o200k's regex: case runs (CamelCase, ALLCaps), contractions after them, '/' after symbols
for (const w of ['CamelCase', 'HTTPServer', "DON'T", "Don'T", 'iPhone', 'x/y/z', '// a/b\\n', 'snake_case', 'ÉCOLE', 'ǅemal']) {
  out.push(w, ` ${w}.`, `(${w})`);
}
for (const s of ['<|eot_id|>', '<|im_end|>', '</s>', '<s>', '<think>', '<start_of_turn>', '<end_of_turn>',
  '<|endoftext|>', '<\u{FF5C}begin\u{2581}of\u{2581}sentence\u{FF5C}>', '<unused5>', '<mask>']) {
  out.push(` ${s} `, `${s}${s}`, `x${s}y`, `\\n${s}\\n`, ` ${s}`);
}
fs.writeFileSync(__dirname + '/corpus.txt', out.join('\n') + '\n');
console.log(`corpus.txt: ${out.length} lines`);
