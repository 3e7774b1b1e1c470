import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { LightningCloudProvider } from '../../src/cloud';
import { MemoryLogger, systemClock } from '../../src/core';
import { multiUser, startApp } from '../helpers/app';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const UPLOAD = 'application/x-www-form-urlencoded';

function images(n: number): FormData {
  const fd = new FormData();
  for (let i = 0; i < n; i++) fd.append('images', new Blob([Buffer.alloc(500)]), `img${i}.jpg`);
  return fd;
}

async function post(url: string, body: FormData | string, type?: string): Promise<Record<string, unknown>> {
  const r = await fetch(url, { method: 'POST', body, ...(type ? { headers: { 'content-type': type } } : {}) });
  return (await r.json()) as Record<string, unknown>;
}

test('limits: maxConcurrentTasks and maxImages of a cloud provider apply to init, commit and /task/new', async (t) => {
  const node = await startTestNode({ processingMs: 60_000, maxParallelTasks: 4 });
  t.after(() => node.close());
  const { url, app } = await startApp(t, multiUser(['limited', 'free'], (tok) => (tok === 'limited' ? { maxConcurrentTasks: 1, maxImages: 3 } : null)));
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();

  const info = (await (await fetch(`${url}/info?token=limited`)).json()) as Record<string, unknown>;
  assert.equal(info['maxImages'], 3);
  assert.equal(info['maxParallelTasks'], 1);

  // Too many images, counted during the upload.
  assert.deepEqual(await post(`${url}/task/new?token=limited`, images(4)), { error: 'Max images count exceeded.' });
  const first = await post(`${url}/task/new?token=limited`, images(2));
  assert.match(String(first['uuid']), /^[0-9a-f-]{36}$/);
  // One task is RUNNING on its node (counted once it is there, as the original): the next one is refused at init
  // and on /task/new.
  await waitUntil(() => app.routes.has(String(first['uuid'])), { timeoutMs: 10000, message: 'the first task never reached its node' });
  assert.deepEqual(await post(`${url}/task/new/init?token=limited`, new FormData()), {
    error: 'Reached maximum number of concurrent tasks: 1. Please wait until other tasks have finished, then restart the task.',
  });
  assert.match(String((await post(`${url}/task/new?token=limited`, images(1)))['error']), /Reached maximum number of concurrent tasks/);
  // Another user is not limited by it.
  assert.match(String((await post(`${url}/task/new?token=free`, images(4)))['uuid']), /^[0-9a-f-]{36}$/);
  // Cancelling frees the slot.
  assert.deepEqual(await post(`${url}/task/cancel?token=limited`, `uuid=${String(first['uuid'])}`, UPLOAD), { success: true });
  assert.match(String((await post(`${url}/task/new?token=limited`, images(1)))['uuid']), /^[0-9a-f-]{36}$/);
});

test('limits: --flood-limit refuses a token that opens too many uploads, and /task/new too', async (t) => {
  const node = await startTestNode();
  t.after(() => node.close());
  const { url, app } = await startApp(t, multiUser(['a', 'b']), ['--flood-limit', '2']);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const flood = 'Uuh, slow down! It seems like you are sending a lot of tasks. Check that your connection is not dropping, or wait 15 minutes and try again.';
  assert.ok((await post(`${url}/task/new/init?token=a`, new FormData()))['uuid']);
  assert.ok((await post(`${url}/task/new/init?token=a`, new FormData()))['uuid']);
  assert.deepEqual(await post(`${url}/task/new/init?token=a`, new FormData()), { error: flood });
  assert.deepEqual(await post(`${url}/task/new?token=a`, images(1)), { error: flood });
  assert.ok((await post(`${url}/task/new/init?token=b`, new FormData()))['uuid'], 'other tokens are not affected');
});

test('limits: the lightning provider against a fake webodm.net API, end to end through the proxy', async (t) => {
  const calls: string[] = [];
  const api = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const data = JSON.parse(body || '{}') as { token?: string; imagesCount?: number };
      calls.push(`${req.url ?? ''} ${data.token ?? ''}`);
      res.setHeader('content-type', 'application/json');
      if (req.url === '/r/tokens/validate') {
        res.end(JSON.stringify(data.token === 'good' ? { valid: true, limits: { maxImages: 5 } } : { valid: false }));
      } else if (req.url === '/r/tasks/approve') {
        res.end(JSON.stringify(data.imagesCount === 1 ? { approved: false, error: 'Not enough credits' } : { approved: true, error: '' }));
      } else {
        res.end('{}');
      }
    });
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => api.close(() => r())));
  const port = (api.address() as AddressInfo).port;
  const logger = new MemoryLogger();
  const cloud = new LightningCloudProvider({ urlBase: `http://127.0.0.1:${port}/r`, clock: systemClock, logger, cacheEnabled: true, dev: false });
  const node = await startTestNode();
  t.after(() => node.close());
  const { url, app } = await startApp(t, cloud);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();

  assert.equal((await fetch(`${url}/info?token=bad`)).status, 401);
  assert.equal((await fetch(`${url}/info?token=bad`)).status, 401);
  assert.equal(calls.filter((c) => c === '/r/tokens/validate bad').length, 2, 'an invalid token is not cached');
  const info = (await (await fetch(`${url}/info?token=good`)).json()) as { maxImages: number };
  assert.equal(info.maxImages, 5);
  await fetch(`${url}/info?token=good`);
  assert.equal(calls.filter((c) => c === '/r/tokens/validate good').length, 1, 'a valid token is cached');
  assert.deepEqual(await post(`${url}/task/new?token=good`, images(1)), { error: 'Not enough credits' });
  assert.match(String((await post(`${url}/task/new?token=good`, images(2)))['uuid']), /^[0-9a-f-]{36}$/);
  assert.deepEqual(await post(`${url}/task/new?token=good`, images(6)), { error: 'Max images count exceeded.' });
  const auth = (await (await fetch(`${url}/auth/info`)).json()) as { loginUrl: string };
  assert.equal(auth.loginUrl, `http://127.0.0.1:${port}/r/auth/getToken`);
  assert.ok(!logger.lines.some((l) => l.includes('good')), 'tokens never appear in logs');
});
