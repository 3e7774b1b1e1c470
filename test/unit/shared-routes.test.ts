import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { NodeRegistry, parseNodesFile, type ClusterNode, type NodeRecord } from '../../src/nodes';
import { RouteMap, RouteTable, SharedRouteStore, type LazyRoutes, type RemoteRouteChange, type RouteStore, type StoredRoute } from '../../src/routing';
import { JsonStateFile, type SharedTable, type TableChange } from '../../src/store';
import { tempDir } from '../helpers/tmp';

/** A shared route store whose remote changes the test sends by hand. */
function fakeSharedStore(): { store: RouteStore; send: (c: RemoteRouteChange) => void } {
  let listener: (c: RemoteRouteChange) => void = () => undefined;
  const store: RouteStore = {
    load: () => Promise.resolve({ routes: new RouteMap(), dropped: [] }),
    setEntriesSource: () => undefined,
    put: () => Promise.resolve(),
    delete: () => Promise.resolve(),
    touch: () => undefined,
    flush: () => Promise.resolve(),
    onRemoteChange: (l) => {
      listener = l;
    },
  };
  return { store, send: (c) => listener(c) };
}

test('a route another instance made on a node this one has not merged yet is found once the node arrives', async (t) => {
  const clock = new FakeClock(1_000_000);
  const logger = new MemoryLogger();
  const registry = new NodeRegistry({
    store: new JsonStateFile<NodeRecord[]>({ file: path.join(tempDir(t), 'nodes.json'), parse: parseNodesFile, logger, clock }),
    clock,
    logger,
  });
  await registry.load();
  const { store, send } = fakeSharedStore();
  const routes = new RouteTable({ store, clock, logger });
  // A change that arrives while the table is still loading waits for the load.
  send({ op: 'put', routes: [['early', { nodeKey: '127.0.0.1:4002', token: undefined, accessed: clock.now() }]] });
  await routes.load(registry);

  // The node list notification and the route notification come in that order, but the node list is reloaded with a
  // round trip to the store: the route can come first.
  send({ op: 'put', routes: [['u1', { nodeKey: '127.0.0.1:4001', token: 'tok', accessed: clock.now() }]] });
  assert.equal(routes.peek('u1'), undefined);
  const node = await registry.addUnique('127.0.0.1', 4001);
  assert.ok(node);
  assert.equal(routes.lookup('u1')?.node, node);
  assert.equal(routes.peek('u1')?.token, 'tok');
  assert.equal(routes.has('u1'), true);

  const node2 = await registry.addUnique('127.0.0.1', 4002);
  assert.equal(routes.peek('early')?.node, node2);

  // Removed elsewhere before its node arrived: never found.
  send({ op: 'put', routes: [['u2', { nodeKey: '127.0.0.1:4003', token: undefined, accessed: clock.now() }]] });
  send({ op: 'del', uuids: ['u2'] });
  await registry.addUnique('127.0.0.1', 4003);
  assert.equal(routes.peek('u2'), undefined);
});

/** A shared store read lazily: its batches come when the test releases them; single reads answer at once. */
function lazyStore(stored: Map<string, StoredRoute>): {
  store: RouteStore;
  send: (c: RemoteRouteChange) => void;
  release: () => void;
  deleted: string[];
  gets: string[];
} {
  const { store, send } = fakeSharedStore();
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const deleted: string[] = [];
  const gets: string[] = [];
  const lazy: LazyRoutes = {
    async *batches() {
      await gate;
      yield [...stored];
    },
    get: (uuid) => {
      gets.push(uuid);
      return Promise.resolve(stored.get(uuid) ?? null);
    },
  };
  return {
    store: {
      ...store,
      openLazy: () => Promise.resolve(lazy),
      delete: (uuids) => {
        deleted.push(...uuids);
        return Promise.resolve();
      },
    },
    send,
    release: () => release(),
    deleted,
    gets,
  };
}

/** A registry holding one node (127.0.0.1:4001), on a fake clock. */
async function oneNode(t: TestContext): Promise<{ clock: FakeClock; logger: MemoryLogger; registry: NodeRegistry; node: ClusterNode }> {
  const clock = new FakeClock(1_000_000);
  const logger = new MemoryLogger();
  const registry = new NodeRegistry({
    store: new JsonStateFile<NodeRecord[]>({ file: path.join(tempDir(t), 'nodes.json'), parse: parseNodesFile, logger, clock }),
    clock,
    logger,
  });
  await registry.load();
  const node = await registry.addUnique('127.0.0.1', 4001);
  assert.ok(node);
  return { clock, logger, registry, node };
}

test('a lazily read table: lookups before the fill read one route; changes meanwhile win over what the fill reads', async (t) => {
  const { clock, logger, registry, node } = await oneNode(t);
  const r = (token: string | undefined): StoredRoute => ({ nodeKey: '127.0.0.1:4001', token, accessed: clock.now() });
  const stored = new Map<string, StoredRoute>([
    ['a', r('ta')],
    ['b', r('tb')],
    ['c', r('tc')],
    ['d', r('td')],
    ['orphan', { nodeKey: '10.0.0.1:3000', token: undefined, accessed: clock.now() }],
  ]);
  const { store, send, release, deleted, gets } = lazyStore(stored);
  const routes = new RouteTable({ store, clock, logger });
  assert.equal(await routes.load(registry), 0);
  assert.equal(routes.complete(), false);

  // Not read yet: fetch() reads it, then the lookup finds it.
  assert.equal(routes.peek('a'), undefined);
  await routes.fetch('a');
  assert.equal(routes.lookup('a')?.token, 'ta');
  assert.deepEqual(gets, ['a']);
  assert.equal(routes.fetch('a'), null, 'a route already here costs no read');
  // Changes before the fill: removed here, removed elsewhere, changed elsewhere, added here.
  await routes.remove('b');
  send({ op: 'del', uuids: ['c'] });
  send({ op: 'put', routes: [['d', { nodeKey: '127.0.0.1:4001', token: 'td', accessed: clock.now() + 5 }]] });
  await routes.add('e', node, 'te');

  let done = false;
  const loaded = routes.loaded().then(() => (done = true));
  // Nothing is read until the daemon asks (once its listeners are up).
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(done, false);
  routes.readInBackground();
  release();
  await loaded;
  assert.equal(routes.complete(), true);
  assert.deepEqual([...routes.entries()].map(([u]) => u).sort(), ['a', 'd', 'e']);
  assert.equal(routes.peek('d')?.accessed, clock.now() + 5);
  assert.deepEqual(routes.ownedBy('te').map(([u]) => u), ['e']);
  // The route of an unknown node is dropped from the store, as a full load does.
  assert.ok(deleted.includes('orphan'));
  assert.ok(deleted.includes('b'));
  // Steady state: no reads.
  assert.equal(routes.fetch('zzz'), null);
  assert.match(logger.lines.join('\n'), /Loaded 3 routes \(read in the background in \d+ ms\)/);
});

/** A shared table in memory that records each write, with remote changes the test sends by hand. */
function memoryTable(): { table: SharedTable; writes: Array<Array<[string, string]>>; data: Map<string, string>; send: (c: TableChange) => void } {
  const data = new Map<string, string>();
  const writes: Array<Array<[string, string]>> = [];
  let listener: (c: TableChange) => void = () => undefined;
  const table: SharedTable = {
    async *scan() {
      yield [...data];
    },
    get: (key) => Promise.resolve(data.get(key) ?? null),
    put: (entries) => {
      writes.push(entries);
      for (const [k, v] of entries) data.set(k, v);
      return Promise.resolve();
    },
    delete: (keys) => {
      for (const k of keys) data.delete(k);
      return Promise.resolve();
    },
    putIfUnchanged: () => Promise.resolve(new Set<string>()),
    onRemoteChange: (l) => {
      listener = l;
    },
    imported: () => Promise.resolve(true),
    importEntries: () => Promise.resolve(),
    markImported: () => Promise.resolve(),
  };
  // A change another instance made: in the table already when its notification comes.
  const send = (c: TableChange): void => {
    if (c.op === 'del') for (const k of c.keys) data.delete(k);
    else for (const [k, v] of c.entries) data.set(k, v);
    listener(c);
  };
  return { table, writes, data, send };
}

test('shared routes: lookups write their access time in one batch per flush, with the latest time, never for a removed route', async (t) => {
  const { clock, logger, registry, node } = await oneNode(t);
  const { table, writes, data, send } = memoryTable();
  const store = new SharedRouteStore({ table, clock, logger, touchFlushMs: 60_000 });
  const routes = new RouteTable({ store, clock, logger });
  await routes.load(registry);
  routes.readInBackground();
  await routes.loaded();
  await routes.add('a', node, 'tok');
  await routes.add('b', node, undefined);
  await routes.add('gone', node, undefined);
  await routes.add('elsewhere', node, undefined);
  const added = writes.length;

  // Many lookups, no write until the flush.
  for (let i = 0; i < 5; i++) {
    clock.advance(1000);
    routes.lookup('a');
  }
  routes.lookup('b');
  routes.lookup('gone');
  routes.lookup('elsewhere');
  await routes.remove('gone');
  send({ op: 'del', keys: ['elsewhere'] });
  assert.equal(writes.length, added);

  clock.advance(60_000);
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(writes.length, added + 1);
  const batch = new Map(writes[added]);
  assert.deepEqual([...batch.keys()].sort(), ['a', 'b']);
  assert.deepEqual(JSON.parse(data.get('a') ?? ''), { node: '127.0.0.1:4001', token: 'tok', accessed: 1_005_000 });
  assert.deepEqual(JSON.parse(data.get('b') ?? ''), { node: '127.0.0.1:4001', accessed: 1_005_000 });
  assert.equal(data.has('gone'), false);
  assert.equal(data.has('elsewhere'), false);

  // Nothing looked up since: the next flush writes nothing; a lookup after it is written at shutdown.
  clock.advance(60_000);
  await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(writes.length, added + 1);
  clock.advance(500);
  routes.lookup('b');
  await routes.flush();
  assert.deepEqual(JSON.parse(data.get('b') ?? ''), { node: '127.0.0.1:4001', accessed: 1_125_500 });
});
