import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ClusterError, FakeClock, MemoryLogger } from '../../src/core';
import { TaskStatus } from '../../src/nodeodm';
import {
  isValidUuid,
  LAUNCHING_OUTPUT,
  parseTasksFile,
  PROGRESS_SAVE_MS,
  TASK_EXPIRY_MS,
  TaskTable,
  TOUCH_SAVE_MS,
  type TaskEntryInput,
  type TaskInfo,
} from '../../src/routing/task-table';
import { realFs, type StoreFs } from '../../src/store';
import { tempDir } from '../helpers/tmp';

const U1 = 'b36b80e6-b9ae-4bdd-9c19-07d2ea0dadeb';
const U2 = '4497587f-7ca0-4c6b-9fc8-a92d4012917d';
const U3 = 'd10b340c-5080-43e2-a768-e1e8ea1c5e9e';
const DAY = 24 * 60 * 60 * 1000;

/** Counts completed atomic writes of `file` (each ends with one rename onto it). */
function countingFs(file: string): { fs: StoreFs; writes: () => number } {
  let n = 0;
  const fsImpl: StoreFs = {
    ...realFs,
    rename: async (from, to) => {
      await realFs.rename(from, to);
      if (to === file) n++;
    },
  };
  return { fs: fsImpl, writes: () => n };
}

interface Opened {
  table: TaskTable;
  logger: MemoryLogger;
  file: string;
}

async function open(dir: string, clock: FakeClock, fsImpl?: StoreFs): Promise<Opened> {
  const logger = new MemoryLogger();
  const file = path.join(dir, 'tasks.json');
  const table = new TaskTable({ file, clock, logger, ...(fsImpl ? { fs: fsImpl } : {}) });
  await table.load();
  return { table, logger, file };
}

function info(uuid: string, over: Partial<TaskInfo> = {}): TaskInfo {
  return {
    uuid,
    name: 'Task of 2026-01-01T00:00:00.000Z',
    dateCreated: 1_700_000_000_000,
    status: { code: TaskStatus.RUNNING },
    options: [{ name: 'fast-orthophoto', value: true }],
    imagesCount: 3,
    ...over,
  };
}

function entry(uuid: string, over: Partial<TaskEntryInput> = {}): TaskEntryInput {
  return { uuid, token: 'tok', phase: 'forwarding', taskInfo: info(uuid), output: [LAUNCHING_OUTPUT], ...over };
}

test('tasks: put/update/delete are durable without flush (simulated restart)', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const a = await open(dir, clock);
  await a.table.put(entry(U1, { nodeKey: 'localhost:3000', uploadedFiles: ['a.jpg'] }));
  await a.table.put(entry(U2, { token: undefined }));
  await a.table.put(entry(U3));
  assert.equal(await a.table.update(U1, { uploadedFiles: ['a.jpg', 'b.jpg'] }), true);
  assert.equal(await a.table.markFailed(U2, 'Failed to forward task to processing node after 5 attempts. Try again later.'), true);
  assert.equal(await a.table.delete(U3), true);
  assert.equal(await a.table.delete(U3), false);
  assert.equal(await a.table.update(U3, { output: ['x'] }), false);

  const b = await open(dir, clock);
  assert.ok(b.logger.lines.includes('info: Loaded 2 tasks'));
  assert.deepEqual(b.table.get(U1), {
    uuid: U1,
    token: 'tok',
    phase: 'forwarding',
    taskInfo: info(U1),
    output: [LAUNCHING_OUTPUT],
    accessed: clock.now(),
    updated: clock.now(),
    nodeKey: 'localhost:3000',
    uploadedFiles: ['a.jpg', 'b.jpg'],
  });
  const failed = b.table.get(U2);
  assert.equal(failed?.phase, 'failed');
  assert.equal(failed?.token, undefined);
  assert.equal(failed?.taskInfo.status.code, TaskStatus.FAILED);
  assert.deepEqual(failed?.output, ['Failed to forward task to processing node after 5 attempts. Try again later.']);
  assert.equal(b.table.has(U3), false);
});

test('tasks: the file is an object keyed by uuid, without the uuid repeated in the value', async (t) => {
  const dir = tempDir(t);
  const { table, file } = await open(dir, new FakeClock(5));
  await table.put(entry(U1, { token: '' }));
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
  assert.deepEqual(Object.keys(raw), [U1]);
  assert.deepEqual(raw[U1], { phase: 'forwarding', taskInfo: info(U1), output: [LAUNCHING_OUTPUT], accessed: 5, updated: 5 });
  assert.deepEqual(parseTasksFile(raw).map((e) => e.uuid), [U1]);
});

test('tasks: stored entries are private copies; callers cannot change them behind the table', async (t) => {
  const { table } = await open(tempDir(t), new FakeClock());
  const mine = entry(U1);
  await table.put(mine);
  mine.taskInfo.name = 'changed by the caller later';
  assert.equal(table.get(U1)?.taskInfo.name, 'Task of 2026-01-01T00:00:00.000Z');
  assert.equal(Object.isFrozen(mine), false);
  const got = table.get(U1);
  assert.ok(got);
  assert.throws(() => {
    (got.output as string[]).push('x');
  }, TypeError);
});

test('tasks: infoAnswer follows the processingTime rule and with_output never mutates the entry', async (t) => {
  const clock = new FakeClock(1_700_000_050_000);
  const { table } = await open(tempDir(t), clock);
  await table.put(entry(U1, { output: ['l0', 'l1', 'l2', 'l3'] }));
  await table.put(entry(U2, { taskInfo: info(U2, { status: { code: TaskStatus.FAILED } }) }));
  await table.put(entry(U3, { phase: 'finished', taskInfo: info(U3, { processingTime: 1234, status: { code: 40 } }) }));

  const running = table.infoAnswer(U1, null);
  assert.equal(running?.processingTime, 50_000);
  assert.equal(running && 'output' in running, false);
  assert.equal(table.infoAnswer(U2, null)?.processingTime, -1);
  assert.equal(table.infoAnswer(U3, null)?.processingTime, 1234);

  assert.deepEqual(table.infoAnswer(U1, 2)?.output, ['l2', 'l3']);
  assert.deepEqual(table.infoAnswer(U1, -1)?.output, ['l3']);
  assert.deepEqual(table.infoAnswer(U1, 0)?.output, ['l0', 'l1', 'l2', 'l3']);
  // The stored info has neither output nor a computed processingTime (the original mutated it).
  assert.equal('output' in (table.get(U1)?.taskInfo ?? {}), false);
  assert.equal(table.get(U1)?.taskInfo.processingTime, undefined);
  assert.equal(table.infoAnswer(U1, null)?.output, undefined);

  const answer = table.infoAnswer(U1, 1);
  assert.ok(answer);
  answer.name = 'mutated answer';
  assert.equal(table.get(U1)?.taskInfo.name, 'Task of 2026-01-01T00:00:00.000Z');

  assert.equal(table.infoAnswer(U1.replace('b36', 'c36'), null), undefined);
});

test('tasks: outputAnswer slices from a line, negative from the end', async (t) => {
  const { table } = await open(tempDir(t), new FakeClock());
  await table.put(entry(U1, { output: ['a', 'b', 'c'] }));
  assert.deepEqual(table.outputAnswer(U1, 0), ['a', 'b', 'c']);
  assert.deepEqual(table.outputAnswer(U1, 2), ['c']);
  assert.deepEqual(table.outputAnswer(U1, 5), []);
  assert.deepEqual(table.outputAnswer(U1, -2), ['b', 'c']);
  assert.equal(table.outputAnswer(U2, 0), undefined);
});

test('tasks: entries filter by token (undefined and empty are one owner) and by phase', async (t) => {
  const { table } = await open(tempDir(t), new FakeClock());
  await table.put(entry(U1, { token: 'alice' }));
  await table.put(entry(U2, { token: '' }));
  await table.put(entry(U3, { token: undefined, phase: 'failed' }));
  const ids = (f?: Parameters<TaskTable['entries']>[0]): string[] => table.entries(f).map((e) => e.uuid).sort();
  assert.deepEqual(ids(), [U1, U2, U3].sort());
  assert.deepEqual(ids({ token: 'alice' }), [U1]);
  assert.deepEqual(ids({ token: undefined }), [U2, U3].sort());
  assert.deepEqual(ids({ token: '' }), [U2, U3].sort());
  assert.deepEqual(ids({ token: 'bob' }), []);
  assert.deepEqual(ids({ phase: 'failed' }), [U3]);
  assert.deepEqual(ids({ token: '', phase: 'forwarding' }), [U2]);
});

test('tasks: expiry drops idle entries, keeps recently looked-up ones and moving uploads', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const { table } = await open(dir, clock);
  await table.put(entry(U1, { phase: 'failed' })); // idle: goes
  await table.put(entry(U2, { phase: 'finished' })); // looked up later: stays
  await table.put(entry(U3, { phase: 'uploading' })); // still making progress: stays
  clock.advance(TASK_EXPIRY_MS - 1000);
  table.lookup(U2);
  await table.update(U3, { uploadedFiles: ['a.jpg'] }, { durable: false });
  clock.advance(2000);
  assert.equal(await table.expire(), 1);
  assert.deepEqual(table.entries().map((e) => e.uuid).sort(), [U2, U3].sort());

  // An upload that stopped moving and that nobody asks about expires too.
  clock.advance(TASK_EXPIRY_MS + 1);
  assert.equal(await table.expire(), 2);
  assert.equal(table.size(), 0);
  assert.equal((await open(dir, clock)).table.size(), 0);
});

test('tasks: exactly expiryMs idle is kept (more than, not at least)', async (t) => {
  const clock = new FakeClock();
  const { table } = await open(tempDir(t), clock);
  await table.put(entry(U1, { phase: 'failed' }));
  clock.advance(TASK_EXPIRY_MS);
  assert.equal(await table.expire(), 0);
  clock.advance(1);
  assert.equal(await table.expire(), 1);
});

test('tasks: load drops entries that expired while the process was down', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  await (await open(dir, clock)).table.put(entry(U1, { phase: 'failed' }));
  clock.advance(3 * DAY);
  const b = await open(dir, clock);
  assert.equal(b.table.size(), 0);
  assert.ok(b.logger.lines.includes('info: Loaded 0 tasks'));
});

test('tasks: progress updates coalesce into one write within a second; phase changes are durable at once', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const counter = countingFs(path.join(dir, 'tasks.json'));
  const { table } = await open(dir, clock, counter.fs);
  await table.put(entry(U1, { phase: 'uploading' }));
  assert.equal(counter.writes(), 1);

  const files: string[] = [];
  for (let i = 0; i < 50; i++) {
    files.push(`img${i}.jpg`);
    await table.update(U1, { uploadedFiles: [...files] }, { durable: false });
  }
  assert.equal(counter.writes(), 1);
  assert.deepEqual(table.get(U1)?.uploadedFiles?.length, 50);
  clock.advance(PROGRESS_SAVE_MS - 1);
  assert.equal(counter.writes(), 1);
  clock.advance(1);
  await table.flush();
  assert.equal(counter.writes(), 2);
  assert.equal((await open(dir, clock)).table.get(U1)?.uploadedFiles?.length, 50);

  // durable:false is ignored for a phase change: it is on disk when the promise resolves.
  await table.update(U1, { phase: 'forwarding', nodeKey: 'n1:3000' }, { durable: false });
  assert.equal(counter.writes(), 3);
  assert.equal((await open(dir, clock)).table.get(U1)?.phase, 'forwarding');
  assert.equal(clock.pendingTimers(), 0);
});

test('tasks: lookups bump accessed in memory and are saved lazily, never one write per lookup', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const counter = countingFs(path.join(dir, 'tasks.json'));
  const { table } = await open(dir, clock, counter.fs);
  await table.put(entry(U1));
  const before = counter.writes();
  for (let i = 0; i < 100; i++) {
    clock.advance(10);
    assert.equal(table.lookup(U1)?.accessed, clock.now());
  }
  assert.equal(table.get(U1)?.accessed, clock.now()); // get does not bump, but sees the bump
  assert.equal(counter.writes(), before);
  clock.advance(TOUCH_SAVE_MS);
  await table.flush();
  assert.equal(counter.writes(), before + 1);
  assert.equal((await open(dir, clock)).table.get(U1)?.accessed, clock.now() - TOUCH_SAVE_MS);

  // flush() writes a pending bump at once (shutdown) and leaves no timer behind.
  table.lookup(U1);
  await table.flush();
  assert.equal(counter.writes(), before + 2);
  assert.equal(clock.pendingTimers(), 0);
});

test('tasks: cancel keeps the entry as CANCELED; a late failure does not overwrite it', async (t) => {
  const { table } = await open(tempDir(t), new FakeClock());
  await table.put(entry(U1));
  assert.equal(await table.markCanceled(U1), true);
  assert.equal(await table.markFailed(U1, 'Aborted'), false);
  const e = table.get(U1);
  assert.equal(e?.phase, 'canceled');
  assert.equal(e?.taskInfo.status.code, TaskStatus.CANCELED);
  assert.deepEqual(e?.output, [LAUNCHING_OUTPUT]);
  assert.equal(table.infoAnswer(U1, null)?.processingTime, -1);
  assert.equal(await table.markCanceled(U2), false);
});

test("tasks: a forward that lands after its task's webhook keeps the final record (it deleted it, and the task vanished with its machine)", async (t) => {
  const { table, file } = await open(tempDir(t), new FakeClock());
  // The webhook of a task that finished on its machine before the forward dropped its entry.
  await table.put(entry(U1, { phase: 'finished', taskInfo: info(U1, { status: { code: TaskStatus.COMPLETED } }) }));
  await table.put(entry(U2));
  assert.equal(await table.deleteActive(U1), false);
  assert.equal(await table.deleteActive(U2), true);
  assert.equal(await table.deleteActive(U3), false);
  assert.equal(table.get(U1)?.taskInfo.status.code, TaskStatus.COMPLETED);
  assert.equal(table.get(U2), undefined);
  const reopened = await open(path.dirname(file), new FakeClock());
  assert.equal(reopened.table.get(U1)?.phase, 'finished');
  assert.equal(reopened.table.get(U2), undefined);
});

test('tasks: a corrupt tasks.json is kept aside and the table starts empty', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(4242);
  const file = path.join(dir, 'tasks.json');
  fs.writeFileSync(file, '{"b36b80e6-b9ae-4bdd-9c19-07d2ea0dadeb": {"pha');
  const { table, logger } = await open(dir, clock);
  assert.equal(table.size(), 0);
  assert.equal(fs.readFileSync(`${file}.corrupt-4242`, 'utf8'), '{"b36b80e6-b9ae-4bdd-9c19-07d2ea0dadeb": {"pha');
  assert.ok(logger.lines.some((l) => l.startsWith('error: tasks.json is corrupt')));
  assert.ok(logger.lines.includes('info: Loaded 0 tasks'));
  await table.put(entry(U1));
  assert.equal((await open(dir, clock)).table.size(), 1);
});

test('tasks: a valid JSON file of the wrong shape is rejected with a clear message', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'tasks.json');
  fs.writeFileSync(file, JSON.stringify({ [U1]: { phase: 'flying' } }));
  const { table, logger } = await open(dir, new FakeClock(7));
  assert.equal(table.size(), 0);
  assert.ok(fs.existsSync(`${file}.corrupt-7`));
  assert.ok(logger.lines.some((l) => l.includes(`task ${U1}.phase is not one of uploading`)));
});

test('tasks: parseTasksFile rejects bad shapes', () => {
  const ok = { phase: 'failed', taskInfo: info(U1), output: ['x'], accessed: 1, updated: 1 };
  assert.equal(parseTasksFile({ [U1]: ok }).length, 1);
  assert.deepEqual(parseTasksFile({}), []);
  const bad: Array<[unknown, RegExp]> = [
    [[], /not a JSON object keyed by task uuid/],
    [null, /not a JSON object/],
    [{ 'not-a-uuid': ok }, /task key "not-a-uuid" is not a valid uuid/],
    [JSON.parse(`{"__proto__": ${JSON.stringify(ok)}}`), /task key "__proto__" is not a valid uuid/],
    [{ [U1]: { ...ok, taskInfo: info(U2) } }, /taskInfo.uuid does not match/],
    [{ [U1]: { ...ok, output: [1] } }, /output is not an array of strings/],
    [{ [U1]: { ...ok, accessed: '1' } }, /accessed is not a number/],
    [{ [U1]: { ...ok, token: 5 } }, /token is not a string/],
    [{ [U1]: { ...ok, uploadedFiles: 'a.jpg' } }, /uploadedFiles is not an array of strings/],
    [{ [U1]: { ...ok, taskInfo: { ...info(U1), status: {} } } }, /status.code is not a number/],
    [{ [U1]: { ...ok, taskInfo: { ...info(U1), options: {} } } }, /options is not an array/],
  ];
  for (const [raw, msg] of bad) assert.throws(() => parseTasksFile(raw), msg);
});

test('tasks: invalid uuids are rejected by writes and never found by reads', async (t) => {
  const { table } = await open(tempDir(t), new FakeClock());
  const isInvalid = (e: unknown): boolean => e instanceof ClusterError && e.code === 'INVALID_INPUT';
  for (const bad of ['', '__proto__', 'constructor', '../etc', `${U1}x`, U1.replace('-4bdd', '-6bdd')]) {
    await assert.rejects(table.put(entry(bad)), isInvalid);
    await assert.rejects(table.update(bad, { phase: 'failed' }), isInvalid);
    await assert.rejects(table.delete(bad), isInvalid);
    assert.equal(table.get(bad), undefined);
    assert.equal(table.lookup(bad), undefined);
    assert.equal(table.has(bad), false);
    assert.equal(table.infoAnswer(bad, 0), undefined);
    assert.equal(table.outputAnswer(bad, 0), undefined);
  }
  // Upper case is a valid uuid (case-insensitive regex), kept exactly as given, like the route table.
  const upper = U1.toUpperCase();
  assert.equal(isValidUuid(upper), true);
  await table.put(entry(upper));
  assert.equal(table.has(upper), true);
  assert.equal(table.has(U1), false);
  // A put whose taskInfo names another task is refused rather than stored inconsistently.
  await assert.rejects(table.put({ ...entry(U2), taskInfo: info(U3) }), isInvalid);
  assert.equal(table.size(), 1);
});
