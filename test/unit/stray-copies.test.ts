import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { MemoryLogger, systemClock } from '../../src/core';
import { NodeClient } from '../../src/nodeodm';
import { ClusterNode, NodeRegistry, parseNodesFile } from '../../src/nodes';
import { StrayCopies } from '../../src/proxy';
import { FileRouteStore, RouteTable, TaskTable } from '../../src/routing';
import { JsonStateFile } from '../../src/store';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';

async function rig(t: TestContext): Promise<{ dir: string; registry: NodeRegistry; routes: RouteTable; table: TaskTable; strays: () => StrayCopies }> {
  const dir = tempDir(t);
  const clock = systemClock;
  const logger = new MemoryLogger();
  const registry = new NodeRegistry({ store: new JsonStateFile({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }), clock, logger });
  const routes = new RouteTable({ store: new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger }), clock, logger });
  await routes.load(registry);
  const table = new TaskTable({ file: path.join(dir, 'tasks.json'), clock, logger });
  const client = new NodeClient({ timeoutMs: 2000 });
  t.after(async () => {
    await routes.flush().catch(() => undefined);
    await table.flush();
  });
  const strays = (): StrayCopies => new StrayCopies({ file: path.join(dir, 'strays.json'), registry, routes, table, client, clock, logger });
  return { dir, registry, routes, table, strays };
}

/** A node of the registry for a test node. */
async function nodeOf(registry: NodeRegistry, n: TestNode): Promise<ClusterNode> {
  const node = new ClusterNode({ hostname: '127.0.0.1', port: n.port, token: '' });
  await registry.add(node);
  return node;
}

/** Commits a task with that uuid on a test node directly. */
async function commitOn(n: TestNode, uuid: string): Promise<void> {
  const fd = new FormData();
  fd.append('images', new Blob([Buffer.alloc(10)]), 'a.jpg');
  const a = (await (await fetch(`${n.url}/task/new`, { method: 'POST', body: fd, headers: { 'set-uuid': uuid } })).json()) as { uuid?: string };
  assert.equal(a.uuid, uuid);
}

const holds = (n: TestNode, uuid: string): boolean => n.tasks().some((x) => x.uuid === uuid);

test('stray copies: removed from the nodes a task left, never from the node its route points to, kept across restarts while a node is down', async (t) => {
  const r = await rig(t);
  const [a, b, c] = [await startTestNode({ processingMs: 60_000 }), await startTestNode({ processingMs: 60_000 }), await startTestNode({ processingMs: 60_000 })];
  t.after(() => Promise.all([a.close(), b.close(), c.close()]));
  const [na, nb, nc] = [await nodeOf(r.registry, a), await nodeOf(r.registry, b), await nodeOf(r.registry, c)];
  const uuid = randomUUID();
  for (const n of [a, b, c]) await commitOn(n, uuid);
  await r.routes.add(uuid, na, undefined);
  c.setOffline(true);

  const s1 = r.strays();
  await s1.load();
  await s1.add(uuid, na);
  await s1.add(uuid, nb);
  await s1.add(uuid, nc);
  await s1.sweep();
  assert.ok(holds(a, uuid), 'the copy its route points to stays');
  assert.ok(!holds(b, uuid), 'the stray copy on an answering node is removed');
  assert.ok(holds(c, uuid), 'a node that does not answer keeps its copy for now');
  assert.deepEqual(Object.keys(JSON.parse(fs.readFileSync(path.join(r.dir, 'strays.json'), 'utf8'))[uuid] as object), [nc.key]);

  // A restart keeps the record; the node answers again: its copy goes.
  const s2 = r.strays();
  await s2.load();
  c.setOffline(false);
  await s2.sweep();
  assert.ok(!holds(c, uuid));
  assert.ok(holds(a, uuid));
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(r.dir, 'strays.json'), 'utf8')), {});
});

test('stray copies: a task being sent to a node again is not removed from it', async (t) => {
  const r = await rig(t);
  const a = await startTestNode({ processingMs: 60_000 });
  t.after(() => a.close());
  const na = await nodeOf(r.registry, a);
  const uuid = randomUUID();
  await commitOn(a, uuid);
  const s = r.strays();
  await s.load();
  await s.add(uuid, na);
  const now = Date.now();
  await r.table.put({
    uuid,
    token: undefined,
    phase: 'forwarding',
    nodeKey: na.key,
    taskInfo: { uuid, name: 'x', dateCreated: now, status: { code: 20 }, options: [], imagesCount: 1 },
    output: [],
  });
  await s.sweep();
  assert.ok(holds(a, uuid), 'not removed while the task is on its way there');
  await s.forget(uuid, na.key);
  await r.table.delete(uuid);
  await s.sweep();
  assert.ok(holds(a, uuid), 'forgotten: never removed');
});
