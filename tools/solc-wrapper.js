#!/usr/bin/env node
// A native-solc-compatible front end over solc-js (the official compiler built
// to WebAssembly, from npm). py-solc-x (and so ape-solidity) only needs:
//   solc --version
//   solc --standard-json [--base-path P] [--allow-paths A,B] [--include-path P]
// Installed by tools/install-solc.sh as $SOLCX_BINARY_PATH/solc-v<version>.
'use strict';
const fs = require('fs');
const path = require('path');

// The project's node_modules is found through SOLC_JS_HOME (set in the
// installed copy) or next to this file.
const home = process.env.SOLC_JS_HOME || path.resolve(__dirname, '..');
let solc;
try {
  solc = require(require.resolve('solc', { paths: [home, __dirname, process.cwd()] }));
} catch (e) {
  process.stderr.write(`solc-wrapper: cannot load the npm package 'solc' from ${home}: ${e.message}\n` +
    `Run 'make setup' (npm ci) in the project folder.\n`);
  process.exit(2);
}

function writeAllSync(fd, text) {
  // Synchronous writes: an async process.stdout.write followed by exit truncates
  // pipes at 64 KiB.
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code === 'EAGAIN') continue;
      throw e;
    }
  }
}

const args = process.argv.slice(2);
if (args.includes('--version')) {
  writeAllSync(1, `solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  process.stderr.write('solc-wrapper: only --version and --standard-json are supported\n');
  process.exit(2);
}

function optionValues(name) {
  const out = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name && i + 1 < args.length) out.push(args[i + 1]);
    else if (args[i].startsWith(name + '=')) out.push(args[i].slice(name.length + 1));
  }
  return out;
}

const basePath = optionValues('--base-path')[0] || process.cwd();
const roots = [basePath, ...optionValues('--include-path')];
for (const a of optionValues('--allow-paths')) roots.push(...a.split(',').filter(Boolean));

function findImport(p) {
  const candidates = path.isAbsolute(p) ? [p] : roots.map((r) => path.resolve(r, p));
  for (const c of candidates) {
    try {
      return { contents: fs.readFileSync(c, 'utf8') };
    } catch (_) { /* try the next root */ }
  }
  return { error: `File not found: ${p} (searched ${roots.join(', ')})` };
}

const input = fs.readFileSync(0, 'utf8');
const output = solc.compile(input, { import: findImport });
writeAllSync(1, output);
process.exit(0);
