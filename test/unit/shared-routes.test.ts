import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { NodeRegistry, parseNodesFile, type NodeRecord } from '../../src/nodes';
import { RouteMap, RouteTable, type LazyRoutes, type RemoteRouteChange, type RouteStore, type StoredRoute } from '../../src/routing';
import { JsonStateFile } from '../../src/store';
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

test('a lazily read table: lookups before the fill read one route; changes meanwhile win over what the fill reads', async (t) => {
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
