import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { ClusterNode, NodeRegistry, parseNodesFile, type NodeRecord } from '../../src/nodes';
import { ExpiryService, FileRouteStore, parseRoutesFile, parseRoutesBuffer, ROUTE_EXPIRY_MS, RouteMap, RouteTable, TaskTable, type LoadedRoutes } from '../../src/routing';
import { JsonStateFile } from '../../src/store';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const U1 = 'b36b80e6-b9ae-4bdd-9c19-07d2ea0dadeb';
const U2 = '4497587f-7ca0-4c6b-9fc8-a92d4012917d';
const U3 = 'd10b340c-5080-43e2-a768-e1e8ea1c5e9e';

async function open(dir: string, clock: FakeClock, compactAfter = 10_000): Promise<{ reg: NodeRegistry; routes: RouteTable; store: FileRouteStore }> {
  const logger = new MemoryLogger();
  const reg = new NodeRegistry({
    store: new JsonStateFile<NodeRecord[]>({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }),
    clock,
    logger,
  });
  await reg.load();
  const store = new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger, compactAfter, touchFlushMs: 1000 });
  const routes = new RouteTable({ store, clock, logger });
  await routes.load(reg);
  return { reg, routes, store };
}

test('routes: an existing routes.json loads unchanged (port string or number), unknown nodes dropped', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_795_824_400_000);
  fs.writeFileSync(
    path.join(dir, 'nodes.json'),
    '[{"hostname":"localhost","port":"3001","token":""},{"hostname":"localhost","port":3002,"token":""}]',
  );
  fs.writeFileSync(
    path.join(dir, 'routes.json'),
    JSON.stringify({
      [U1]: { node: { hostname: 'localhost', port: '3002', token: '' }, accessed: 1795824362711 },
      [U2]: { node: { hostname: 'localhost', port: 3001, token: '', locked: false }, token: 'usertok', accessed: 1795824220290 },
      [U3]: { node: { hostname: 'gone', port: '3000', token: '' }, accessed: 1795824220290 },
    }),
  );
  const { reg, routes } = await open(dir, clock);
  assert.equal(routes.size(), 2);
  assert.equal(routes.peek(U1)?.node, reg.nth(2));
  assert.equal(routes.peek(U2)?.node, reg.nth(1));
  assert.equal(routes.peek(U2)?.token, 'usertok');
  assert.equal(routes.peek(U3), undefined);
});

test('routes: one node\'s routes and one token\'s routes, loaded ones and added ones alike, in table order', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_795_824_400_000);
  fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"a","port":3001,"token":""},{"hostname":"b","port":3002,"token":""}]');
  fs.writeFileSync(
    path.join(dir, 'routes.json'),
    JSON.stringify({
      [U1]: { node: { hostname: 'a', port: 3001, token: '' }, token: 'alice', accessed: 1_795_824_300_001 },
      [U2]: { node: { hostname: 'b', port: 3002, token: '' }, accessed: 1_795_824_300_002 },
    }),
  );
  const { reg, routes } = await open(dir, clock);
  const [a, b] = [reg.nth(1), reg.nth(2)];
  assert.ok(a && b);
  await routes.add(U3, a, undefined);
  const U4 = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9';
  await routes.add(U4, b, 'alice');
  const view = (es: Array<[string, { node: ClusterNode; token: string | undefined; accessed: number }]>): unknown[] =>
    es.map(([uuid, r]) => [uuid, r.node.hostname, r.token, r.accessed]);
  assert.deepEqual(view(routes.entries(a)), [
    [U1, 'a', 'alice', 1_795_824_300_001],
    [U3, 'a', undefined, clock.now()],
  ]);
  assert.deepEqual(view(routes.entries(b)), [
    [U2, 'b', undefined, 1_795_824_300_002],
    [U4, 'b', 'alice', clock.now()],
  ]);
  assert.equal(routes.entries().length, 4);
  const owned = (token: string): unknown[] => routes.ownedBy(token).map(([uuid, n]) => [uuid, n.hostname]);
  assert.deepEqual(owned('alice'), [[U1, 'a'], [U4, 'b']]);
  assert.deepEqual(owned(''), [[U2, 'b'], [U3, 'a']], 'no token is the empty token, as the original listed them');
  assert.deepEqual(owned('bob'), []);
});

test('routes: adds are journaled and survive a crash (no flush); removes too', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"localhost","port":"3001","token":""}]');
  {
    const { reg, routes } = await open(dir, clock);
    const node = reg.nth(1);
    assert.ok(node);
    await routes.add(U1, node, 'tok');
    await routes.add(U2, node, undefined);
    await routes.add(U3, node, '');
    await routes.remove(U2);
    // No flush: as if the process was killed here.
  }
  const { routes } = await open(dir, clock);
  assert.deepEqual(
    routes.entries().map(([u]) => u).sort(),
    [U1, U3].sort(),
  );
  assert.equal(routes.peek(U1)?.token, 'tok');
});

test('routes: flush writes routes.json in the original format and empties the journal', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"localhost","port":"3001","token":""}]');
  const { reg, routes } = await open(dir, clock);
  const node = reg.nth(1);
  assert.ok(node);
  await routes.add(U1, node, undefined);
  await routes.add(U2, node, 'abc');
  await routes.flush();
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'routes.json'), 'utf8')), {
    [U1]: { node: { hostname: 'localhost', port: '3001', token: '' }, accessed: 1_800_000_000_000 },
    [U2]: { node: { hostname: 'localhost', port: '3001', token: '' }, token: 'abc', accessed: 1_800_000_000_000 },
  });
  assert.ok(!fs.existsSync(path.join(dir, 'routes.json.journal')));
  assert.ok(!fs.existsSync(path.join(dir, 'routes.json.journal.old')));
});

test('routes: the journal is compacted in the background once it grows', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"localhost","port":"3001","token":""}]');
  const { reg, routes } = await open(dir, clock, 5);
  const node = reg.nth(1);
  assert.ok(node);
  const ids = Array.from({ length: 12 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
  for (const id of ids) await routes.add(id, node, undefined);
  // Compaction runs after the append that crossed the threshold; wait until routes.json holds the routes.
  for (let i = 0; i < 100 && !fs.existsSync(path.join(dir, 'routes.json')); i++) await new Promise((r) => setImmediate(r));
  await routes.flush();
  const reopened = await open(dir, clock);
  assert.equal(reopened.routes.size(), 12);
});

test('routes: lookups bump accessed (persisted in batches); idle routes expire after 5 days', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"localhost","port":"3001","token":""}]');
  {
    const { reg, routes } = await open(dir, clock);
    const node = reg.nth(1);
    assert.ok(node);
    await routes.add(U1, node, undefined);
    await routes.add(U2, node, undefined);
    clock.advance(4 * 24 * 3600 * 1000);
    routes.lookup(U1); // used recently
    clock.advance(1000); // the batched touch is written
    await new Promise((r) => setTimeout(r, 50));
  }
  clock.advance(ROUTE_EXPIRY_MS - 3 * 24 * 3600 * 1000);
  const { routes } = await open(dir, clock);
  assert.deepEqual(routes.entries().map(([u]) => u), [U1]);
});

test('routes: a torn last journal line (crash mid-append) is ignored', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"localhost","port":"3001","token":""}]');
  {
    const { reg, routes } = await open(dir, clock);
    const node = reg.nth(1);
    assert.ok(node);
    await routes.add(U1, node, undefined);
  }
  fs.appendFileSync(path.join(dir, 'routes.json.journal'), '{"op":"put","uuid":"x","no');
  const { routes } = await open(dir, clock);
  assert.equal(routes.size(), 1);
});

test('routes: the hourly expiry service drops idle routes and task entries', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"localhost","port":"3001","token":""}]');
  const { reg, routes } = await open(dir, clock);
  const tasks = new TaskTable({ file: path.join(dir, 'tasks.json'), clock, logger: new MemoryLogger() });
  await tasks.load();
  const node = reg.nth(1);
  assert.ok(node);
  await routes.add(U1, node, undefined);
  await tasks.put({
    uuid: U2,
    token: undefined,
    phase: 'failed',
    taskInfo: { uuid: U2, name: 'x', dateCreated: 0, status: { code: 30 }, options: [], imagesCount: 1 },
    output: ['boom'],
  });
  let sweeps = 0;
  const expiry = new ExpiryService({ routes, tasks, clock, logger: new MemoryLogger(), intervalMs: ROUTE_EXPIRY_MS + 1000 });
  const sweep = expiry.sweep.bind(expiry);
  expiry.sweep = async () => {
    await sweep();
    sweeps++;
  };
  await expiry.start();
  t.after(() => expiry.stop());
  clock.advance(ROUTE_EXPIRY_MS + 1000);
  await waitUntil(() => sweeps === 1, { message: 'the timer did not sweep' });
  await tasks.flush();
  assert.equal(routes.size(), 0);
  assert.equal(tasks.has(U2), false);
});

test('routes: the fast routes.json reader agrees with JSON.parse, and defers to it on anything unusual', () => {
  const files = [
    '{}',
    JSON.stringify({
      [U1]: { node: { hostname: 'localhost', port: '3002', token: '' }, accessed: 1795824362711 },
      [U2]: { node: { hostname: 'localhost', port: 3001, token: 'n"t', locked: false }, token: 'us\\er"tok', accessed: 17 },
      [U3]: {
        node: { hostname: 'h', port: 443, token: '', dockerMachine: { name: 'clusterodm-1-x', created: 1, maxRuntime: -1, maxUploadTime: -1 } },
        accessed: -5.5,
        token: 'after',
      },
    }),
  ];
  const nodes = new Map<string, ClusterNode>();
  const resolve = (key: string): ClusterNode | undefined => {
    if (key.startsWith('h:')) return undefined; // a node that is not registered any more
    const n = nodes.get(key) ?? new ClusterNode({ hostname: key, port: 1, token: '' });
    nodes.set(key, n);
    return n;
  };
  const view = (l: LoadedRoutes): unknown => ({
    routes: [...l.routes].map(([u, r]) => [u, r.node.hostname, r.token, r.accessed]),
    dropped: l.dropped,
  });
  for (const text of files) {
    const fast = parseRoutesBuffer(Buffer.from(text), resolve);
    assert.ok(fast, text);
    assert.deepEqual(view(fast), view(parseRoutesFile(JSON.parse(text), resolve)));
  }
  assert.deepEqual(view(parseRoutesBuffer(Buffer.from(files[1] ?? ''), resolve) ?? { routes: new RouteMap(), dropped: [] }), {
    routes: [
      [U1, 'localhost:3002', undefined, 1795824362711],
      [U2, 'localhost:3001', 'us\\er"tok', 17],
    ],
    dropped: [U3],
  });
  // Whitespace (a hand-edited file), unknown keys, truncation: the fast path declines, the generic path decides.
  for (const text of [
    JSON.stringify({ [U1]: { node: { hostname: 'a', port: 1, token: '' }, accessed: 1 } }, null, 2),
    `{"${U1}":{"node":{"hostname":"a","port":1,"token":""},"accessed":1,"extra":true}}`,
    `{"${U1}":{"node":{"hostname":"a","port":1,"token":""},"accessed":1}`,
  ]) {
    assert.equal(parseRoutesBuffer(Buffer.from(text), resolve), null, text);
  }
  assert.throws(() => parseRoutesBuffer(Buffer.from(`{"${U1}":{"node":{"hostname":"a","port":"x","token":""},"accessed":1}}`), resolve), /port/);
});

test('routes: a compaction in slices writes what JSON.stringify would, and changes made while it runs survive a restart', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"localhost","port":"3001","token":"nt"},{"hostname":"h2","port":3002,"token":""}]');
  const uuid = (i: number): string => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
  {
    const { reg, routes } = await open(dir, clock);
    const [a, b] = [reg.nth(1), reg.nth(2)];
    assert.ok(a && b);
    // More routes than one slice, with and without owner tokens (one needing escapes).
    for (let i = 0; i < 12_000; i++) {
      const token = i % 3 === 0 ? undefined : i % 3 === 1 ? 'tok' : 'q"\\';
      await routes.add(uuid(i), i % 2 ? a : b, token);
    }
    const flushing = routes.flush();
    // Changes while the slices are written: each one is in the new journal as well.
    await new Promise<void>((resolve) => setImmediate(resolve));
    await routes.remove(uuid(11_999));
    await routes.add(uuid(20_000), a, 'late');
    await flushing;
  }
  const { routes } = await open(dir, clock);
  assert.equal(routes.size(), 12_000);
  assert.equal(routes.peek(uuid(11_999)), undefined);
  assert.equal(routes.peek(uuid(20_000))?.token, 'late');
  assert.equal(routes.peek(uuid(2))?.token, 'q"\\');
  // With no change during the compaction, routes.json is byte for byte JSON.stringify of the table.
  await routes.flush();
  const again: Record<string, unknown> = {};
  for (const [u, r] of routes.entries()) {
    again[u] = { node: r.node.toJSON(), ...(r.token !== undefined ? { token: r.token } : {}), accessed: r.accessed };
  }
  assert.equal(fs.readFileSync(path.join(dir, 'routes.json'), 'utf8'), JSON.stringify(again));
});
