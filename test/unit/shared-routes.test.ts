import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { NodeRegistry, parseNodesFile, type NodeRecord } from '../../src/nodes';
import { RouteMap, RouteTable, type RemoteRouteChange, type RouteStore } from '../../src/routing';
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
