/**
 * A short run of `npm run load` (bench/load.ts): 50 clients doing full task flows for 10 s through a real daemon
 * against 3 test nodes. Zero errors, zero lost tasks; no speed assertions (the figures are printed).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { report, runLoad } from '../../bench/load';

test('load: 50 clients doing full task flows for 10 s: zero errors, zero lost tasks', { timeout: 170_000 }, async () => {
  const r = await runLoad({ durationS: Number(process.env['LOAD_SECONDS'] ?? 10), clients: 50, log: () => undefined });
  process.stdout.write(`${report(r, 50).replace(/^/gm, '# ')}\n`);
  assert.deepEqual(r.errorSamples, []);
  assert.equal(r.errors, 0);
  assert.equal(r.lost, 0);
  assert.ok(r.flows > 0 && r.committed >= r.flows, 'flows completed');
});
