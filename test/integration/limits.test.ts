import assert from 'node:assert/strict';
import { test } from 'node:test';
import { multiUser, startApp } from '../helpers/app';
import { startTestNode } from '../helpers/test-node';

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
  // One task is RUNNING on its node: the next one is refused at init and on /task/new.
  await new Promise((r) => setTimeout(r, 300));
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
