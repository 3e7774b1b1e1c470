import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import { ClusterNode, NodeRegistry, parseNodesFile, type NodeRecord } from '../../src/nodes';
import { JsonStateFile, realFs, type StoreFs } from '../../src/store';
import { tempDir } from '../helpers/tmp';

function registryAt(dir: string, clock = new FakeClock(), fsImpl?: StoreFs): NodeRegistry {
  const logger = new MemoryLogger();
  const store = new JsonStateFile<NodeRecord[]>({
    file: path.join(dir, 'nodes.json'),
    parse: parseNodesFile,
    logger,
    clock,
    ...(fsImpl ? { fs: fsImpl } : {}),
  });
  return new NodeRegistry({ store, clock, logger });
}

function markOnline(n: ClusterNode, clock: FakeClock, info: Record<string, unknown> = {}): void {
  n.info = { maxParallelTasks: 1, taskQueueCount: 0, ...info };
  n.lastRefreshed = clock.now();
}

test('registry: a nodes.json from an existing deployment loads unchanged and saves back the same', async (t) => {
  const dir = tempDir(t);
  const original =
    '[{"hostname":"nodeodm-1","port":"3000","token":""},{"hostname":"localhost","port":3999,"token":"abc","locked":true},' +
    '{"hostname":"10.0.0.5","port":3000,"token":"tok","dockerMachine":{"name":"clusterodm-5-xyz","created":1700000000000,"maxRuntime":-1,"maxUploadTime":-1}}]';
  fs.writeFileSync(path.join(dir, 'nodes.json'), original);
  const reg = registryAt(dir);
  assert.equal(await reg.load(), 3);
  assert.equal(reg.nth(1)?.port, '3000');
  assert.equal(reg.nth(2)?.port, 3999);
  assert.equal(reg.nth(2)?.isLocked(), true);
  assert.equal(reg.nth(3)?.isAutoSpawned(), true);
  await reg.save();
  assert.equal(fs.readFileSync(path.join(dir, 'nodes.json'), 'utf8'), original);
});

test('registry: "3000" and 3000 are the same node; 1-based numbering; invalid input refused', async (t) => {
  const dir = tempDir(t);
  const reg = registryAt(dir);
  await reg.load();
  assert.ok(await reg.addUnique('localhost', '3001'));
  assert.equal(await reg.addUnique('localhost', 3001), null);
  assert.equal(await reg.addUnique('LOCALHOST', ' 3001'), null);
  assert.ok(await reg.addUnique('localhost', 3002));
  assert.equal(await reg.addUnique('', 3003), null);
  assert.equal(await reg.addUnique('localhost', 'abc'), null);
  assert.equal(await reg.addUnique('localhost', 70000), null);
  assert.equal(reg.nth(1)?.name, 'localhost:3001');
  assert.equal(reg.nth('2')?.name, 'localhost:3002');
  for (const bad of ['0', '3', '-1', '1abc', '', 'x']) assert.equal(reg.nth(bad), null, bad);
  const first = reg.nth(1);
  assert.ok(first);
  await reg.remove(first);
  assert.equal(reg.nth(1)?.name, 'localhost:3002', 'removing renumbers the rest');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'nodes.json'), 'utf8')), [
    { hostname: 'localhost', port: 3002, token: '' },
  ]);
});

test('registry: lock persists; a failed save rolls back and throws', async (t) => {
  const dir = tempDir(t);
  const reg = registryAt(dir);
  await reg.load();
  const n = await reg.addUnique('localhost', '3001');
  assert.ok(n);
  await reg.setLocked(n, true);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'nodes.json'), 'utf8')), [
    { hostname: 'localhost', port: '3001', token: '', locked: true },
  ]);

  const readOnly: StoreFs = {
    ...realFs,
    open: async () => {
      throw Object.assign(new Error('EROFS: read-only file system'), { code: 'EROFS' });
    },
  };
  const reg2 = registryAt(dir, new FakeClock(), readOnly);
  await reg2.load();
  const n2 = reg2.nth(1);
  assert.ok(n2);
  await assert.rejects(reg2.setLocked(n2, false), /Cannot save nodes: EROFS/);
  assert.equal(n2.isLocked(), true, 'rolled back in memory');
  await assert.rejects(reg2.addUnique('localhost', 4000), /EROFS/);
  assert.equal(reg2.list().length, 1);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'nodes.json'), 'utf8'))[0].locked, true, 'previous state intact');
});

test('registry: reference node is the first online node, locked or not; selection skips locked', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const reg = registryAt(dir, clock);
  await reg.load();
  const a = await reg.addUnique('a', 1);
  const b = await reg.addUnique('b', 2);
  const c = await reg.addUnique('c', 3);
  assert.ok(a && b && c);
  assert.equal(reg.referenceNode(), null);
  markOnline(b, clock);
  markOnline(c, clock);
  await reg.setLocked(b, true);
  assert.equal(reg.referenceNode(), b);
  assert.equal(reg.selectBest(5), c);
  assert.equal(c.turn, 1);
  // Online means refreshed within 2 minutes.
  clock.advance(2 * 60 * 1000 + 1);
  assert.equal(reg.referenceNode(), null);
  assert.equal(reg.selectBest(5), null);
});

test('registry: in-flight forwards (transients) count against free slots', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const reg = registryAt(dir, clock);
  await reg.load();
  const a = await reg.addUnique('a', 1);
  const b = await reg.addUnique('b', 2);
  assert.ok(a && b);
  markOnline(a, clock, { maxParallelTasks: 2 });
  markOnline(b, clock, { maxParallelTasks: 1 });
  assert.equal(reg.selectBest(1), a);
  a.transients = 2;
  assert.equal(a.availableSlots(), 0);
  assert.equal(reg.selectBest(1), b);
});

test('registry: a nodes.json with duplicate entries keeps the first', async (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(
    path.join(dir, 'nodes.json'),
    '[{"hostname":"localhost","port":"3001","token":""},{"hostname":"localhost","port":3001,"token":""}]',
  );
  const reg = registryAt(dir);
  assert.equal(await reg.load(), 1);
});
