import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { SharedTaskStore, TaskTable, TOUCH_SAVE_MS, type TaskEntryInput } from '../../src/routing';
import type { SharedTable, TableChange } from '../../src/store';
import { tempDir } from '../helpers/tmp';

const U1 = 'b36b80e6-b9ae-4bdd-9c19-07d2ea0dadeb';
const U2 = '4497587f-7ca0-4c6b-9fc8-a92d4012917d';

/** One shared table in memory, with a handle per instance (a change is announced to the other handles). */
class MemoryShared {
  readonly data = new Map<string, string>();
  private readonly handles: Array<{ listeners: Array<(c: TableChange) => void> }> = [];
  readonly casAttempts: string[] = [];

  handle(): SharedTable {
    const me = { listeners: [] as Array<(c: TableChange) => void> };
    this.handles.push(me);
    const announce = (c: TableChange): void => {
      for (const h of this.handles) if (h !== me) for (const l of h.listeners) l(c);
    };
    const data = this.data;
    return {
      async *scan() {
        yield [...data];
      },
      get: (k) => Promise.resolve(data.get(k) ?? null),
      put: (entries) => {
        for (const [k, v] of entries) data.set(k, v);
        announce({ op: 'put', entries });
        return Promise.resolve();
      },
      delete: (keys) => {
        for (const k of keys) data.delete(k);
        announce({ op: 'del', keys });
        return Promise.resolve();
      },
      putIfUnchanged: (entries) => {
        const done = new Set<string>();
        const applied: Array<[string, string]> = [];
        for (const [k, expected, next] of entries) {
          this.casAttempts.push(k);
          if (data.get(k) === expected) {
            data.set(k, next);
            done.add(k);
            applied.push([k, next]);
          }
        }
        if (applied.length) announce({ op: 'put', entries: applied });
        return Promise.resolve(done);
      },
      onRemoteChange: (l) => {
        me.listeners.push(l);
      },
      imported: () => Promise.resolve(true),
      importEntries: () => Promise.resolve(),
      markImported: () => Promise.resolve(),
    };
  }
}

function entry(uuid: string): TaskEntryInput {
  return {
    uuid,
    token: 'tok',
    phase: 'forwarding',
    taskInfo: { uuid, name: 'n', dateCreated: 1, status: { code: 20 }, options: [], imagesCount: 2 },
    output: ['Launching... please wait! This can take a few minutes.'],
  };
}

async function instance(t: test.TestContext, shared: MemoryShared, name: string, clock: FakeClock): Promise<TaskTable> {
  const logger = new MemoryLogger();
  const table = new TaskTable({
    file: path.join(tempDir(t), 'tasks.json'),
    clock,
    logger,
    instance: name,
    store: (codec) => new SharedTaskStore({ table: shared.handle(), codec, logger }),
  });
  await table.load();
  return table;
}

test('shared task table: entries show on every instance; only its own staged tasks are an instance\'s to resume', async (t) => {
  const clock = new FakeClock(1_000_000);
  const shared = new MemoryShared();
  const a = await instance(t, shared, 'A', clock);
  const b = await instance(t, shared, 'B', clock);
  await a.put(entry(U1));
  await b.put(entry(U2));
  assert.equal(JSON.parse(shared.data.get(U1) ?? '{}').stagedBy, 'A');
  assert.deepEqual(b.get(U1)?.taskInfo.status, { code: 20 });
  assert.deepEqual(a.entries({ phase: 'forwarding' }).map((e) => e.uuid).sort(), [U1, U2].sort());
  assert.deepEqual(a.entries({ phase: 'forwarding', stagedHere: true }).map((e) => e.uuid), [U1]);
  assert.deepEqual(b.entries({ stagedHere: true }).map((e) => e.uuid), [U2]);

  // B cancels A's task: A sees it, and A's later access-time bump does not bring the old state back.
  a.lookup(U1);
  assert.equal(await b.markCanceled(U1), true);
  assert.equal(a.get(U1)?.phase, 'canceled');
  clock.advance(TOUCH_SAVE_MS);
  await a.flush();
  assert.equal(JSON.parse(shared.data.get(U1) ?? '{}').phase, 'canceled');

  // A bump of an unchanged entry is written (compare and set), and reaches the other instance.
  const before = b.get(U2)?.accessed ?? 0;
  clock.advance(1000);
  a.lookup(U2);
  clock.advance(TOUCH_SAVE_MS);
  await a.flush();
  assert.ok(shared.casAttempts.includes(U2));
  assert.ok((b.get(U2)?.accessed ?? 0) > before);

  await b.delete(U2);
  assert.equal(a.get(U2), undefined);
  assert.equal(shared.data.has(U2), false);
});
