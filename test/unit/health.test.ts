import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { NodeClient, type FetchLike } from '../../src/nodeodm';
import { HealthPoller, LoadHistory, NodeRegistry, parseNodesFile, type NodeRecord } from '../../src/nodes';
import { JsonStateFile } from '../../src/store';
import { tempDir } from '../helpers/tmp';

const INFO = { version: '2.2.4', taskQueueCount: 0, maxParallelTasks: 2, engine: 'odm', engineVersion: '3.5.4', maxImages: null };

async function setup(
  t: Parameters<typeof tempDir>[0],
  fetchImpl: FetchLike,
  count: number,
  concurrency = 16,
): Promise<{ reg: NodeRegistry; poller: HealthPoller; logger: MemoryLogger; clock: FakeClock }> {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const logger = new MemoryLogger();
  const reg = new NodeRegistry({
    store: new JsonStateFile<NodeRecord[]>({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }),
    clock,
    logger,
  });
  await reg.load();
  for (let i = 0; i < count; i++) await reg.addUnique(`node${i}`, 3000 + i);
  const poller = new HealthPoller({ registry: reg, client: new NodeClient({ fetch: fetchImpl, timeoutMs: 200 }), clock, logger, concurrency });
  return { reg, poller, logger, clock };
}

const ok = (): Response => new Response(JSON.stringify(INFO), { status: 200 });

test('health: a good /info marks the node online with its info; a failure marks it offline at once', async (t) => {
  let fail = false;
  const { reg, poller, logger, clock } = await setup(t, async () => {
    if (fail) throw new Error('connect ECONNREFUSED');
    return ok();
  }, 1);
  const node = reg.nth(1);
  assert.ok(node);
  assert.equal(await poller.refresh(node), true);
  assert.equal(node.isOnline(clock.now()), true);
  assert.equal(node.getEngineInfo(), 'odm 3.5.4');
  assert.equal(node.getVersion(), '2.2.4');
  const seen = node.lastSeenOnline;
  fail = true;
  clock.advance(1000);
  assert.equal(await poller.refresh(node), false);
  assert.equal(node.isOnline(clock.now()), false);
  assert.equal(node.lastRefreshed, 0);
  assert.equal(node.lastSeenOnline, seen, 'when it was last seen online is kept');
  assert.equal(node.getVersion(), '2.2.4', 'last known info is kept');
  // Logged once when it flips, not on every failed poll.
  await poller.refresh(node);
  assert.equal(logger.lines.filter((l) => l.includes('node is now offline')).length, 1);
  fail = false;
  await poller.refresh(node);
  assert.equal(logger.lines.filter((l) => l.endsWith(`Node ${node.name} is online`)).length, 2);
});

test('health: answers that are not NodeODM info count as failures', async (t) => {
  const answers = [
    new Response('<html>', { status: 200 }),
    new Response(JSON.stringify(INFO), { status: 500 }),
    new Response(JSON.stringify({ error: 'Invalid authentication token' }), { status: 200 }),
    new Response(JSON.stringify({ ...INFO, taskQueueCount: 'many' }), { status: 200 }),
  ];
  const { reg, poller, clock } = await setup(t, async () => answers.shift() ?? ok(), 1);
  const node = reg.nth(1);
  assert.ok(node);
  for (let i = 0; i < 4; i++) assert.equal(await poller.refresh(node), false, `answer ${i}`);
  assert.equal(await poller.refresh(node), true);
  assert.equal(node.isOnline(clock.now()), true);
});

test('health: polls run with bounded concurrency, and a node that never answers does not stall the rest', async (t) => {
  let active = 0;
  let peak = 0;
  const { reg, poller, clock } = await setup(
    t,
    async (url, init) => {
      active++;
      peak = Math.max(peak, active);
      try {
        if (url.includes('node0:')) {
          // Never answers: only the timeout ends it.
          await new Promise((_, reject) => init?.signal?.addEventListener('abort', () => reject(new Error('timeout'))));
        }
        await new Promise((r) => setTimeout(r, 5));
        return ok();
      } finally {
        active--;
      }
    },
    40,
    4,
  );
  const started = Date.now();
  // AbortSignal.timeout's timer does not keep the process alive; in the daemon the listeners do.
  const keepAlive = setInterval(() => undefined, 50);
  await poller.refreshAll();
  clearInterval(keepAlive);
  assert.ok(peak <= 4, `at most 4 requests at once, saw ${peak}`);
  assert.equal(reg.online().length, 39);
  assert.equal(reg.nth(1)?.isOnline(clock.now()), false);
  assert.ok(Date.now() - started < 5000);
});

test('health: concurrent refreshes of one node share one request', async (t) => {
  let calls = 0;
  const { reg, poller } = await setup(t, async () => {
    calls++;
    await new Promise((r) => setTimeout(r, 10));
    return ok();
  }, 1);
  const node = reg.nth(1);
  assert.ok(node);
  await Promise.all([poller.refresh(node), poller.refresh(node), poller.refreshAll()]);
  assert.equal(calls, 1);
});

test('health: start polls at once and then every interval; stop ends it', async (t) => {
  let calls = 0;
  const { poller, clock } = await setup(t, async () => {
    calls++;
    return ok();
  }, 2);
  await poller.start();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(calls, 2);
  clock.advance(60_000);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(calls, 4);
  await poller.stop();
  clock.advance(120_000);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(calls, 4);
});

test('health: a node unreachable from its first poll is logged once, at warn', async (t) => {
  const { reg, poller, logger } = await setup(t, async () => {
    throw new Error('connect ECONNREFUSED');
  }, 1);
  const node = reg.nth(1);
  assert.ok(node);
  await poller.refresh(node);
  await poller.refresh(node);
  assert.deepEqual(
    logger.lines.filter((l) => l.includes('Cannot update info')).map((l) => l.split(':')[0]),
    ['warn', 'debug'],
  );
});

test('health: each successful poll is recorded in the load history (last hour only)', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const logger = new MemoryLogger();
  const reg = new NodeRegistry({
    store: new JsonStateFile<NodeRecord[]>({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }),
    clock,
    logger,
  });
  await reg.load();
  await reg.addUnique('a', 1);
  const history = new LoadHistory();
  let queue = 0;
  const poller = new HealthPoller({
    registry: reg,
    client: new NodeClient({ fetch: async () => new Response(JSON.stringify({ ...INFO, taskQueueCount: queue++ })) }),
    clock,
    logger,
    history,
  });
  const node = reg.nth(1);
  assert.ok(node);
  for (let i = 0; i < 3; i++) {
    await poller.refresh(node);
    clock.advance(30 * 60 * 1000);
  }
  // Three polls 30 minutes apart, read 30 minutes after the last: the first one has left the one-hour window.
  assert.deepEqual(history.series(node, clock.now()).map((s) => [s.queue, s.slots]), [
    [1, 2],
    [2, 2],
  ]);
});
