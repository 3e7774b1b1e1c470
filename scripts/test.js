#!/usr/bin/env node
// `npm test`: type-check and build everything (src, tests), then run every test file with node:test.
// Extra arguments are passed to node --test (e.g. `npm test -- --test-name-pattern=cli`).
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], {
  cwd: root,
  stdio: 'inherit',
});
if (tsc.status !== 0) {
  console.error('Type check failed');
  process.exit(tsc.status ?? 1);
}

function findTests(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) return findTests(p);
      return e.name.endsWith('.test.js') ? [p] : [];
    })
    .sort();
}

// Only test files that still have a TypeScript source (dist/ may hold outputs of deleted files).
const files = findTests(path.join(root, 'dist', 'test')).filter((f) => {
  const rel = path.relative(path.join(root, 'dist'), f).replace(/\.js$/, '.ts');
  return fs.existsSync(path.join(root, rel));
});
if (files.length === 0) {
  console.error('No test files found');
  process.exit(1);
}
// Node 20 times a whole file against --test-timeout: 5 min leaves room for the crash and bounds files on a loaded
// 2-core machine (about 2.5 min each there); a hung test still fails.
const extra = process.argv.slice(2);
const run = spawnSync(
  process.execPath,
  ['--test', '--test-concurrency=2', '--test-timeout=300000', ...extra, ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(run.status ?? 1);
