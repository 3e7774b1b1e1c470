/**
 * Several instances on one Redis behind a round-robin balancer (no stickiness): any instance answers any request.
 * An upload staged on one instance is passed to it by the others; when that instance is gone, the task fails with
 * a message naming it, the same on every instance.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { startBalancer } from '../helpers/balancer';
import { cli, sharedNode, startInstance } from '../helpers/instances';
import { haveRedisServer, startRedis } from '../helpers/redis';
import { tempDir } from '../helpers/tmp';
import { form, images, json, statusCode, type Json } from '../reliability/support';
import { waitUntil } from '../helpers/wait';

assert.ok(haveRedisServer(), 'redis-server is not installed: run scripts/install-test-deps.sh');

const post = (url: string, body: FormData | URLSearchParams): Promise<Json> => json(url, { method: 'POST', body });

test('every NodeODM flow through a round-robin balancer over two instances, chunks uploaded in parallel to both', async (t) => {
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const a = await startInstance(t, redis, path.join(dir, 'a'));
  const b = await startInstance(t, redis, path.join(dir, 'b'));
  await sharedNode(t, [a, b]);
  const lb = await startBalancer(t, [a.proxyPort, b.proxyPort]);

  const init = await post(`${lb.url}/task/new/init`, form({ name: 'chunked', options: '[]' }));
  const uuid = String(init['uuid']);
  assert.match(uuid, /^[0-9a-f-]{36}$/, JSON.stringify(init));
  // Before the commit, as NodeODM: no info yet (the same answer from both instances, passed to the staging one).
  for (const d of [a, b]) assert.match(String((await json(`${d.url}/task/${uuid}/info`))['error']), /no task table entry/);
  const first = lb.hits.length;
  const chunks = await Promise.all(
    [0, 1, 2, 3, 4, 5].map((i) => post(`${lb.url}/task/new/upload/${uuid}`, form({}, images(2, `c${i}-`, 30_000)))),
  );
  for (const c of chunks) assert.equal(c['success'], true, JSON.stringify(c));
  const uploadHits = lb.hits.slice(first);
  assert.ok(uploadHits.includes(0) && uploadHits.includes(1), `chunks went to one instance only: ${uploadHits.join(',')}`);
  const committed = await post(`${lb.url}/task/new/commit/${uuid}`, new FormData());
  assert.equal(committed['uuid'], uuid, JSON.stringify(committed));
  await waitUntil(async () => statusCode(await json(`${lb.url}/task/${uuid}/info`)) === 40, { timeoutMs: 30000, message: 'the task did not complete' });
  for (const d of [a, b]) {
    const info = await json(`${d.url}/task/${uuid}/info`);
    assert.equal(info['imagesCount'], 12, JSON.stringify(info));
    assert.equal(info['name'], 'chunked');
    const zip = await fetch(`${d.url}/task/${uuid}/download/all.zip`);
    assert.equal(zip.status, 200);
    assert.ok((await zip.arrayBuffer()).byteLength > 0);
  }

  // Single-shot creation, listing, output, restart, cancel and remove, each request to the next instance.
  const single = await post(`${lb.url}/task/new`, form({ name: 'single' }, images(3)));
  const other = String(single['uuid']);
  await waitUntil(async () => statusCode(await json(`${lb.url}/task/${other}/info`)) === 40, { timeoutMs: 30000, message: 'the single-shot task did not complete' });
  for (let i = 0; i < 2; i++) {
    const list = (await json(`${lb.url}/task/list`))['list'] as Array<{ uuid: string }>;
    assert.deepEqual(list.map((e) => e.uuid).sort(), [uuid, other].sort());
    assert.ok(Array.isArray((await json(`${lb.url}/task/${other}/output`))['list']));
  }
  assert.equal((await post(`${lb.url}/task/restart`, new URLSearchParams({ uuid: other })))['success'], true);
  assert.equal((await post(`${lb.url}/task/cancel`, new URLSearchParams({ uuid: other })))['success'], true);
  assert.equal((await post(`${lb.url}/task/remove`, new URLSearchParams({ uuid: other })))['success'], true);
  for (const d of [a, b]) {
    await waitUntil(async () => 'error' in (await json(`${d.url}/task/${other}/info`)), { timeoutMs: 1000, message: 'a removed task still answers' });
  }
});

test('an upload whose staging instance is gone: a clear error naming the task, FAILED with that reason on every instance', async (t) => {
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const a = await startInstance(t, redis, path.join(dir, 'a'));
  const b = await startInstance(t, redis, path.join(dir, 'b'));
  await sharedNode(t, [a, b]);

  const uuid = String((await post(`${a.url}/task/new/init`, form({ name: 'orphan' })))['uuid']);
  // Passed from B to A while A lives.
  assert.equal((await post(`${b.url}/task/new/upload/${uuid}`, form({}, images(2))))['success'], true);
  assert.equal(await a.stop('SIGKILL'), null);

  // The leader's sweep notices A's heartbeat expired and fails the task, without any client asking.
  let info: Json = {};
  await waitUntil(async () => statusCode((info = await json(`${b.url}/task/${uuid}/info`))) === 30, { timeoutMs: 10000, message: 'B does not answer FAILED' });
  const reason = (info['status'] as { errorMessage?: string }).errorMessage ?? '';
  assert.match(reason, new RegExp(`Task ${uuid} .*gone.*upload the task again`, 'i'));
  const upload = await post(`${b.url}/task/new/upload/${uuid}`, form({}, images(1)));
  assert.equal(upload['error'], reason, JSON.stringify(upload));
  const commit = await post(`${b.url}/task/new/commit/${uuid}`, new FormData());
  assert.equal(commit['error'], reason);
  assert.deepEqual((await json(`${b.url}/task/${uuid}/output`))['list'], [reason]);
  // An instance started later answers the same.
  const c = await startInstance(t, redis, path.join(dir, 'c'));
  const later = await json(`${c.url}/task/${uuid}/info`);
  assert.equal(statusCode(later), 30);
  assert.equal((later['status'] as { errorMessage?: string }).errorMessage, reason);
});

test('health polling is shared: three instances poll a node about once per interval, and all see it go offline', async (t) => {
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const interval = 300;
  const all = await Promise.all(['a', 'b', 'c'].map((n) => startInstance(t, redis, path.join(dir, n), [], process.env, { healthIntervalMs: interval })));
  const node = await sharedNode(t, all);
  const infos = (): number => node.requests.filter((r) => r.method === 'GET' && r.path.startsWith('/info')).length;
  // Every instance shows it online from the shared findings.
  for (const d of all) {
    await waitUntil(async () => /\[online\]/.test(await cli(t, d, 'NODE LIST')), { message: 'an instance does not show the node online' });
  }
  // 10 polls take about 10 intervals when shared (about 3.3 if each of the 3 instances polled on its own).
  const from = infos();
  const started = Date.now();
  await waitUntil(() => infos() >= from + 10, { timeoutMs: 30 * interval, message: 'the node is not polled' });
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 10 * interval * 0.6, `10 polls in ${elapsed} ms with a ${interval} ms interval: not shared`);
  t.diagnostic(`10 polls of one node by 3 instances in ${elapsed} ms (interval ${interval} ms)`);
  await node.close();
  for (const d of all) {
    await waitUntil(async () => /\[offline\]/.test(await cli(t, d, 'NODE LIST')), { timeoutMs: 20 * interval, message: 'an instance still shows the node online' });
  }
});
