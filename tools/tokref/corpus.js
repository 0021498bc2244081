// tools/tokref/corpus.js - reads corpus.txt into byte strings (Buffers). Shared by gen.js and
// bench.js. The escape format is road's own (see the header of corpus_hand.txt); road's C test
// does not parse it: the fixtures carry each case's bytes as hex.
'use strict';
const fs = require('fs');

function unescapeLine(line) {
  if (line === '<<EMPTY>>') return Buffer.alloc(0);
  const parts = [];
  let lit = '';
  const flush = () => { if (lit) { parts.push(Buffer.from(lit, 'utf8')); lit = ''; } };
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c !== '\\') { lit += c; continue; }
    const n = line[++i];
    if (n === 'n') lit += '\n';
    else if (n === 'r') lit += '\r';
    else if (n === 't') lit += '\t';
    else if (n === '\\') lit += '\\';
    else if (n === 'x') { flush(); parts.push(Buffer.from([parseInt(line.substr(i + 1, 2), 16)])); i += 2; }
    else if (n === 'u' && line[i + 1] === '{') {
      const end = line.indexOf('}', i);
      lit += String.fromCodePoint(parseInt(line.slice(i + 2, end), 16));
      i = end;
    } else throw new Error(`bad escape \\${n} in: ${line}`);
  }
  flush();
  return Buffer.concat(parts);
}

function readCorpus(path) {
  return fs.readFileSync(path, 'utf8').split('\n')
    .filter((l) => l.length && !l.startsWith('# '))
    .map(unescapeLine);
}

module.exports = { readCorpus };
