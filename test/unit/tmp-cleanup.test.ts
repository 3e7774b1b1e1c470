import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { TmpCleanup } from '../../src/proxy';
import { TaskTable, type TaskPhase } from '../../src/routing';
import { tempDir } from '../helpers/tmp';

const HOUR = 3600_000;
const id = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

test('tmp cleanup: stale and old uploads go, forwards and fresh uploads stay, failed tasks stay listed', async (t) => {
  const root = tempDir(t);
  const tmp = path.join(root, 'tmp');
  fs.mkdirSync(tmp);
  const clock = new FakeClock(Date.now());
  const logger = new MemoryLogger();
  const table = new TaskTable({ file: path.join(root, 'tasks.json'), clock, logger });
  await table.load();
  const put = async (n: number, phase: TaskPhase, updatedAgoMs: number): Promise<void> => {
    await table.put({
      uuid: id(n),
      token: undefined,
      phase,
      taskInfo: { uuid: id(n), name: 'x', dateCreated: 0, status: { code: phase === 'failed' ? 30 : 20 }, options: [], imagesCount: 1 },
      output: [],
      accessed: clock.now(),
      updated: clock.now() - updatedAgoMs,
    });
  };
  const dir = (n: number, ageMs = 0): void => {
    const d = path.join(tmp, id(n));
    fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, 'a.jpg'), 'x');
    const when = new Date(clock.now() - ageMs);
    fs.utimesSync(d, when, when);
  };
  await put(1, 'forwarding', 100 * HOUR); // being forwarded for ages: never touched
  dir(1, 100 * HOUR);
  await put(2, 'uploading', 3 * HOUR); // idle 3 h with a 2 h timeout: stale
  dir(2);
  await put(3, 'uploading', HOUR); // idle 1 h: kept
  dir(3);
  await put(4, 'failed', 0); // failed: its files go, the entry stays for info
  dir(4);
  dir(5); // no task behind it, but new (could be an init in progress): kept
  dir(6, 2 * HOUR); // no task behind it, 2 h old: removed
  fs.writeFileSync(path.join(tmp, '.gitignore'), '*');

  const cleanup = new TmpCleanup({ tmpDir: tmp, table, clock, logger, staleUploadsHours: 2 });
  assert.equal(await cleanup.sweep(), 3);
  assert.deepEqual(fs.readdirSync(tmp).sort(), ['.gitignore', id(1), id(3), id(5)]);
  assert.equal(table.has(id(2)), false, 'an abandoned upload session ends');
  assert.equal(table.get(id(4))?.phase, 'failed');
  assert.ok(logger.lines.includes(`info: Cleaning up ${id(2)} [stale]`));

  // Without a stale timeout, uploads idle for more than 48 h still go; forwards still stay.
  clock.advance(48 * HOUR);
  const noTimeout = new TmpCleanup({ tmpDir: tmp, table, clock, logger, staleUploadsHours: 0 });
  assert.equal(await noTimeout.sweep(), 2);
  assert.deepEqual(fs.readdirSync(tmp).sort(), ['.gitignore', id(1)]);
});

test('tmp cleanup: runs at start and every 30 minutes; a missing tmp dir is fine', async (t) => {
  const root = tempDir(t);
  const clock = new FakeClock(Date.now());
  const logger = new MemoryLogger();
  const table = new TaskTable({ file: path.join(root, 'tasks.json'), clock, logger });
  await table.load();
  const tmp = path.join(root, 'tmp');
  const cleanup = new TmpCleanup({ tmpDir: tmp, table, clock, logger, staleUploadsHours: 0 });
  await cleanup.start();
  t.after(() => cleanup.stop());
  assert.equal(await cleanup.sweep(), 0);
  fs.mkdirSync(path.join(tmp, id(9)), { recursive: true });
  clock.advance(2 * HOUR); // the dir's mtime is now 2 h in the past for the cleanup
  await new Promise((r) => setTimeout(r, 50));
  assert.deepEqual(fs.readdirSync(tmp), [], 'the periodic pass removed the orphan');
});

test('tmp cleanup: at start, files a crash cut short are removed from the task dirs it keeps; whole files stay', async (t) => {
  const root = tempDir(t);
  const tmp = path.join(root, 'tmp');
  const clock = new FakeClock(Date.now());
  const logger = new MemoryLogger();
  const table = new TaskTable({ file: path.join(root, 'tasks.json'), clock, logger });
  await table.load();
  await table.put({
    uuid: id(1),
    token: undefined,
    phase: 'uploading',
    taskInfo: { uuid: id(1), name: 'x', dateCreated: 0, status: { code: 10 }, options: [], imagesCount: 0 },
    output: [],
  });
  const dir = path.join(tmp, id(1));
  fs.mkdirSync(dir, { recursive: true });
  const at = (name: string, ms: number): void => {
    fs.writeFileSync(path.join(dir, name), 'x');
    fs.utimesSync(path.join(dir, name), new Date(ms), new Date(ms));
  };
  at('body.json', clock.now() - 60_000);
  at('a.jpg', clock.now() - 60_000);
  at('.partial-0123456789abcdef', clock.now() - 5_000); // being written when the previous run was killed
  at('.partial-fedcba9876543210', clock.now() + 5_000); // an upload of this run, still being written
  const cleanup = new TmpCleanup({ tmpDir: tmp, table, clock, logger, staleUploadsHours: 0 });
  await cleanup.start();
  t.after(() => cleanup.stop());
  assert.equal(await cleanup.sweep(), 0);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['.partial-fedcba9876543210', 'a.jpg', 'body.json']);
  assert.ok(logger.lines.some((l) => l.includes(`.partial-0123456789abcdef of task ${id(1)}`)));
});
