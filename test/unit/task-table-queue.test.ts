/** The task table's `queued` phase: the place in line is part of the entry, survives a reload, and never expires. */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { TaskStatus } from '../../src/nodeodm';
import { parseTasksFile, TASK_EXPIRY_MS, TaskTable, type TaskEntryInput } from '../../src/routing/task-table';
import { tempDir } from '../helpers/tmp';

const U = ['b36b80e6-b9ae-4bdd-9c19-07d2ea0dadeb', '4497587f-7ca0-4c6b-9fc8-a92d4012917d', 'd10b340c-5080-43e2-a768-e1e8ea1c5e9e'] as const;

function queued(uuid: string, seq: number): TaskEntryInput {
  return {
    uuid,
    token: undefined,
    phase: 'queued',
    taskInfo: { uuid, name: `t${seq}`, dateCreated: 1, status: { code: TaskStatus.QUEUED }, options: [], imagesCount: 2 },
    output: ['Waiting for a processing node: 0 tasks ahead'],
    queueSeq: seq,
    commitUrl: 'http://cluster.example.com/commit?token=x',
  };
}

test('task table: queued entries keep their place in line across a reload, and never expire while they wait', async (t) => {
  const dir = tempDir(t, 'tasks');
  const clock = new FakeClock();
  const file = path.join(dir, 'tasks.json');
  const table = new TaskTable({ file, clock, logger: new MemoryLogger() });
  await table.load();
  await table.put(queued(U[0], 7));
  await table.put(queued(U[1], 3));
  await table.put(queued(U[2], 12));
  assert.deepEqual(U.map((u) => table.queuedAhead(u)), [1, 0, 2]);

  const again = new TaskTable({ file, clock, logger: new MemoryLogger() });
  await again.load();
  assert.deepEqual(U.map((u) => again.queuedAhead(u)), [1, 0, 2]);
  assert.equal(again.get(U[0])?.commitUrl, 'http://cluster.example.com/commit?token=x');
  clock.advance(TASK_EXPIRY_MS * 3);
  assert.equal(await again.expire(), 0);
  // A failed or canceled task is no longer in line.
  assert.equal(await again.markCanceled(U[1]), true);
  assert.deepEqual(U.map((u) => again.queuedAhead(u)), [0, null, 1]);
  assert.equal(await again.markFailed(U[0], 'gone'), true);
  assert.equal(again.queuedAhead(U[2]), 0);
});

test('task table: a queued entry without its place in line is rejected (the file is kept aside, not guessed at)', () => {
  const { uuid: _u, queueSeq: _s, ...entry } = { ...queued(U[0], 1), accessed: 1, updated: 1 };
  assert.throws(() => parseTasksFile({ [U[0]]: entry }), /queueSeq is missing/);
  assert.throws(() => parseTasksFile({ [U[0]]: { ...entry, queueSeq: 'first' } }), /queueSeq is not a number/);
});
