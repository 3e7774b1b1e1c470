import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { JsonStateFile, realFs, writeFileAtomic, type StoreFs } from '../../src/store';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

function arrayFile(file: string, logger = new MemoryLogger(), fsImpl?: StoreFs): JsonStateFile<unknown[]> {
  return new JsonStateFile<unknown[]>({
    file,
    parse: (v) => {
      if (!Array.isArray(v)) throw new Error('not an array');
      return v;
    },
    logger,
    clock: new FakeClock(1000),
    ...(fsImpl ? { fs: fsImpl } : {}),
  });
}

test('state file: missing file loads as null; save then load round-trips', async (t) => {
  const dir = tempDir(t);
  const s = arrayFile(path.join(dir, 'nodes.json'));
  assert.equal(await s.load(), null);
  await s.save(() => JSON.stringify([{ a: 1 }]));
  assert.deepEqual(await s.load(), [{ a: 1 }]);
  // Only the file and its last good copy are left: no temp files.
  assert.deepEqual(fs.readdirSync(dir).sort(), ['nodes.json']);
  await s.save(() => JSON.stringify([{ a: 2 }]));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['nodes.json', 'nodes.json.bak']);
});

test('state file: a corrupt file is kept aside, logged, and the last good copy is used', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'nodes.json');
  const logger = new MemoryLogger();
  const s = arrayFile(file, logger);
  await s.save(() => JSON.stringify([1]));
  await s.save(() => JSON.stringify([1, 2]));
  fs.writeFileSync(file, '[{"hostname": "trunc'); // truncated by some outside accident
  assert.deepEqual(await s.load(), [1]);
  assert.ok(fs.existsSync(path.join(dir, 'nodes.json.corrupt-1000')));
  assert.equal(fs.readFileSync(path.join(dir, 'nodes.json.corrupt-1000'), 'utf8'), '[{"hostname": "trunc');
  assert.ok(logger.lines.some((l) => l.startsWith('error: nodes.json is corrupt')));
});

test('state file: corrupt with no good copy starts empty, never throws', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'nodes.json');
  fs.writeFileSync(file, '');
  const logger = new MemoryLogger();
  assert.equal(await arrayFile(file, logger).load(), null);
  assert.ok(logger.lines.some((l) => l.includes('No good copy')));
  fs.writeFileSync(file, '{"not": "an array"}');
  assert.equal(await arrayFile(file, logger).load(), null);
});

test('state file: a write that fails midway leaves the previous file intact', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'nodes.json');
  const good = arrayFile(file);
  await good.save(() => JSON.stringify(['old']));
  const failing: StoreFs = {
    ...realFs,
    rename: async () => {
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    },
  };
  const s = arrayFile(file, new MemoryLogger(), failing);
  await assert.rejects(s.save(() => JSON.stringify(['new'])), /ENOSPC/);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), ['old']);
  assert.deepEqual(
    fs.readdirSync(dir).filter((f) => f.includes('.tmp-')),
    [],
    'the temp file is removed',
  );
});

test('state file: saves run one at a time and coalesce to the newest state', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'nodes.json');
  let writes = 0;
  const counting: StoreFs = {
    ...realFs,
    rename: async (a, b) => {
      writes++;
      await realFs.rename(a, b);
    },
  };
  const s = arrayFile(file, new MemoryLogger(), counting);
  let state = 0;
  const saves = Array.from({ length: 20 }, () => {
    state++;
    return s.save(() => JSON.stringify([state]));
  });
  await Promise.all(saves);
  assert.deepEqual(JSON.parse(fs.readFileSync(file, 'utf8')), [20]);
  assert.ok(writes <= 2, `expected the 20 saves to coalesce, got ${writes} writes`);
});

test('writeFileAtomic: the file is private (0600)', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'x.json');
  await writeFileAtomic(file, '{}');
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
});

test('state file: killing the writer at any moment never leaves a broken file', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'nodes.json');
  const script = path.join(__dirname, '..', 'helpers', 'state-writer-main.js');
  for (let round = 0; round < 5; round++) {
    const child = spawn(process.execPath, [script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let saved = 0;
    child.stdout.on('data', (d: Buffer) => {
      const m = /saved (\d+)\n$/.exec(d.toString());
      if (m) saved = Number(m[1]);
    });
    const target = 2 + round * 3;
    await waitUntil(() => saved >= target, { timeoutMs: 20000, message: 'writer did not save' });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const loaded = await arrayFile(file).load();
    assert.ok(Array.isArray(loaded), `round ${round}: the file parses after SIGKILL`);
    assert.equal(loaded.length, 2000);
  }
});
