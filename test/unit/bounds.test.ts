/** Every cache and map keyed by client input is bounded: the options cache, open uploads, flood and token records. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { test } from 'node:test';
import { TtlCache } from '../../src/cloud/ttl-cache';
import type { CloudProvider, Limits } from '../../src/cloud';
import { ClusterError, FakeClock, MemoryLogger } from '../../src/core';
import { NodeClient } from '../../src/nodeodm';
import { ClusterNode } from '../../src/nodes';
import { addressKey, CommitWindow, FloodMonitor, OpenUploads, OptionsCache, TOO_MANY_FROM_ADDRESS, TOO_MANY_UPLOADS } from '../../src/proxy';
import { TaskTable } from '../../src/routing';
import { startApp } from '../helpers/app';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';

const SPECS = [
  { name: 'a', type: 'int', value: '1', domain: '' },
  { name: 'b', type: 'string', value: 'x', domain: '' },
];

class CountingClient extends NodeClient {
  calls = 0;
  override getJson(): Promise<unknown> {
    this.calls++;
    return Promise.resolve(SPECS);
  }
}

const nodeA = new ClusterNode({ hostname: 'a', port: 3001, token: '' });
const nodeB = new ClusterNode({ hostname: 'b', port: 3002, token: '' });
const removeB = (n: number): Limits => ({ maxImages: n, options: { b: { remove: true } } });

test('options cache: keyed by node and option limits, not by token; the least recently used entry goes past the cap', async () => {
  const client = new CountingClient();
  const cache = new OptionsCache({ client, clock: new FakeClock(), enabled: true, maxEntries: 3 });
  // No option limits (any number of tokens, any maxImages): one entry per node.
  assert.deepEqual(await cache.get(null, nodeA), SPECS);
  assert.deepEqual(await cache.get({ maxImages: 5 }, nodeA), SPECS);
  assert.equal(client.calls, 1);
  assert.equal(cache.size, 1);
  // Limits that differ only outside `options`, or in key order, share an entry.
  assert.deepEqual(await cache.get(removeB(1), nodeA), [{ name: 'a', type: 'int', value: '1', domain: '' }]);
  await cache.get(removeB(2), nodeA);
  await cache.get({ options: { b: { remove: true } } }, nodeA);
  assert.equal(client.calls, 2);
  await cache.get(null, nodeB);
  assert.equal(cache.size, 3);
  await cache.get(null, nodeA); // touched: nodeA/removeB is now the least recently used
  await cache.get({ options: { a: { remove: true } } }, nodeB);
  assert.equal(cache.size, 3);
  const calls = client.calls;
  await cache.get(null, nodeA);
  assert.equal(client.calls, calls, 'a recently used entry stayed');
  await cache.get(removeB(1), nodeA);
  assert.equal(client.calls, calls + 1, 'the least recently used entry went');

  // /cache/clear drops the lists of the caller's limits only.
  const before = client.calls;
  cache.clear({ maxImages: 9 });
  await cache.get(null, nodeA);
  assert.equal(client.calls, before + 1);
  await cache.get(removeB(1), nodeA);
  assert.equal(client.calls, before + 1);

  const off = new OptionsCache({ client, clock: new FakeClock(), enabled: false });
  await off.get(null, nodeA);
  assert.equal(off.size, 0, '--debug caches nothing');
});

test('the /options cache grows without bound: in-process, 3,000 random tokens leave one entry per distinct option limits', async (t) => {
  const node = await startTestNode();
  t.after(() => node.close());
  // Every token is valid (as without --token); a third get option limits, a third only maxImages.
  const cloud: CloudProvider = {
    name: 'AnyToken',
    validate: (token) => {
      const kind = (token.charCodeAt(0) || 0) % 3;
      const limits: Limits | null = kind === 0 ? null : kind === 1 ? removeB(3) : { maxImages: 10 };
      return Promise.resolve({ valid: true, limits });
    },
    approveNewTask: () => Promise.resolve({ approved: true, error: '' }),
    taskFinished: () => Promise.resolve(),
    clearCache: () => undefined,
    authInfo: () => ({ message: 'test', loginUrl: null, registerUrl: null }),
  };
  const { url, app } = await startApp(t, cloud);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next++ < 3000) {
        const r = await fetch(`${url}/options?token=${randomBytes(8).toString('hex')}`);
        assert.ok(Array.isArray(await r.json()));
      }
    }),
  );
  assert.equal(app.options.size, 2);
  assert.equal(node.requests.filter((r) => r.path.startsWith('/options')).length, 2, 'the node was asked once per entry');
});

test('open uploads: caps in all and per address, ended by close or by the task table; reservers go with them', async (t) => {
  const dir = tempDir(t);
  const clock = new FakeClock();
  const table = new TaskTable({ file: path.join(dir, 'tasks.json'), clock, logger: new MemoryLogger() });
  await table.load();
  const uuids = Array.from({ length: 6 }, (_, i) => `0000000${i}-0000-4000-8000-000000000000`);
  const put = (uuid: string): Promise<void> =>
    table.put({ uuid, token: undefined, phase: 'uploading', taskInfo: { uuid, name: 'n', dateCreated: 0, status: { code: 10 }, options: [], imagesCount: 0 }, output: [] });
  const refused = (fn: () => void, message: string): void =>
    assert.throws(fn, (e: unknown) => e instanceof ClusterError && e.code === 'LIMIT_REACHED' && e.message === message);

  const open = new OpenUploads({ table, tmpDir: dir, maxTotal: 4, maxPerAddress: 2 });
  const [u0 = '', u1 = '', u2 = '', u3 = '', u4 = '', u5 = ''] = uuids;
  open.open(u0, '10.0.0.1');
  open.open(u1, '10.0.0.1');
  refused(() => open.open(u2, '10.0.0.1'), TOO_MANY_FROM_ADDRESS(2));
  assert.throws(() => open.open(u1, '10.0.0.2'), /Invalid set-uuid/);
  open.open(u2, '10.0.0.2');
  open.open(u3, '');
  refused(() => open.open(u4, '10.0.0.3'), TOO_MANY_UPLOADS(4));
  // An init that failed before recording its task gives its place back.
  open.close(u3);
  open.open(u4, '10.0.0.3');
  // Recorded sessions end when the table no longer has them uploading (swept, expired, committed).
  for (const u of [u0, u1, u2, u4]) {
    await put(u);
    open.recorded(u);
  }
  const r0 = open.reserver(u0);
  assert.equal(open.reserver(u0), r0, 'one reserver per session');
  assert.equal(r0.reserve('a.jpg'), 'a.jpg');
  await table.delete(u0);
  open.open(u5, '10.0.0.1');
  assert.equal(open.size, 4);
  await put(u0);
  assert.equal(open.reserver(u0).reserve('a.jpg'), 'a.jpg', 'a new session of the same uuid remembers nothing');

  // After a restart the uploads in the table hold their places (their addresses are not known).
  const again = new OpenUploads({ table, tmpDir: dir, maxTotal: 4, maxPerAddress: 2 });
  refused(() => again.open(u3, '10.0.0.1'), TOO_MANY_UPLOADS(4));
  const unlimited = new OpenUploads({ table, tmpDir: dir, maxTotal: 0, maxPerAddress: 0 });
  unlimited.open(u3, '10.0.0.1');
  assert.equal(unlimited.size, 5);
});

test('open uploads: a client is counted by its IPv4 address or its IPv6 /64', () => {
  assert.equal(addressKey('192.0.2.7'), '192.0.2.7');
  assert.equal(addressKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(addressKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(addressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
  assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(addressKey('::1'), '0:0:0:0::/64');
  assert.equal(addressKey('64:ff9b::192.0.2.7'), '64:ff9b:0:0::/64');
  assert.equal(addressKey(''), '');
  assert.equal(addressKey('not an address'), '');
});

test('flood and commit-window records are capped: rotating tokens cannot grow them', () => {
  const clock = new FakeClock();
  const flood = new FloodMonitor({ limit: 3, clock, maxTracked: 100 });
  for (let i = 0; i < 1000; i++) flood.recordInit(`t${i}`);
  assert.equal(flood.size, 100);
  flood.recordInit('t999');
  assert.equal(flood.count('t999'), 2, 'the most recent tokens are kept');
  assert.equal(flood.count('t0'), 0);
  assert.equal(new FloodMonitor({ limit: 3, clock }).size, 0);

  const commits = new CommitWindow({ clock, maxTracked: 100 });
  for (let i = 0; i < 1000; i++) commits.check(5, `t${i}`);
  assert.equal(commits.size, 100);
  assert.equal(commits.count('t999'), 1);
});

test('the token validation cache is capped', () => {
  const clock = new FakeClock();
  const cache = new TtlCache<number>(clock, 60_000, true, 50);
  for (let i = 0; i < 500; i++) cache.set(`k${i}`, i);
  assert.equal(cache.size, 50);
  assert.equal(cache.get('k499'), 499);
  assert.equal(cache.get('k0'), undefined);
});
