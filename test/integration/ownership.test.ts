import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test, type TestContext } from 'node:test';
import { multiUser, startApp as startAppWith } from '../helpers/app';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const startApp = (t: TestContext): ReturnType<typeof startAppWith> => startAppWith(t, multiUser(['alice', 'bob']));

function rawGet(url: string, rawPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    http
      .get({ host: u.hostname, port: u.port, path: rawPath }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
}

test('ownership: a task created with one token is invisible to another', async (t) => {
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());
  const { url, app } = await startApp(t);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();

  const fd = new FormData();
  fd.append('images', new Blob([Buffer.alloc(1000)]), 'a.jpg');
  const created = (await (await fetch(`${url}/task/new?token=alice`, { method: 'POST', body: fd })).json()) as { uuid: string };
  const uuid = created.uuid;
  await waitUntil(async () => {
    const info = (await (await fetch(`${url}/task/${uuid}/info?token=alice`)).json()) as { status?: { code: number } };
    return info.status?.code === 40;
  }, { timeoutMs: 15000, message: 'task did not complete' });

  const notFound = (action: string): unknown => ({ error: `Invalid route for taskId ${uuid}:${action}, no task table entry.` });
  assert.deepEqual(await (await fetch(`${url}/task/${uuid}/info?token=bob`)).json(), notFound('info'));
  assert.deepEqual(await (await fetch(`${url}/task/${uuid}/download/all.zip?token=bob`)).json(), notFound('download/all.zip'));
  const noRoute = { error: `Invalid route for taskId ${uuid}, no nodes in routing table.` };
  for (const action of ['cancel', 'remove', 'restart']) {
    const r = await fetch(`${url}/task/${action}?token=bob`, { method: 'POST', body: new URLSearchParams({ uuid }) });
    assert.deepEqual(await r.json(), noRoute, action);
  }
  assert.deepEqual(await (await fetch(`${url}/task/list?token=bob`)).json(), []);
  assert.deepEqual(await (await fetch(`${url}/task/list?token=alice`)).json(), [{ uuid }]);
  // Bob's attempts changed nothing: the task is still there and completed for Alice.
  const info = (await (await fetch(`${url}/task/${uuid}/info?token=alice`)).json()) as { status?: { code: number } };
  assert.equal(info.status?.code, 40);
});

test('ownership: UI assets bypass the token only for plain paths without ".."', async (t) => {
  const node = await startTestNode();
  t.after(() => node.close());
  const { url, app } = await startApp(t);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  assert.equal((await rawGet(url, '/css/main.css')).status, 200);
  assert.equal((await rawGet(url, '/../../../../etc/hosts.js')).status, 401);
  assert.equal((await rawGet(url, '/css/%2e%2e/main.css')).status, 401);
  assert.ok(!node.requests.some((r) => r.path.includes('..') || r.path.includes('%2e')), 'nothing with .. reached the node');
});
