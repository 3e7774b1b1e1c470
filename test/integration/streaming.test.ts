import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appWithInitTask, multiUser, startApp } from '../helpers/app';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

function images(from: number, n: number): FormData {
  const fd = new FormData();
  for (let i = from; i < from + n; i++) fd.append('images', new Blob([Buffer.alloc(50_000 + i, i)]), `img${i}.jpg`);
  return fd;
}

async function json(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  return (await (await fetch(url, init)).json()) as Record<string, unknown>;
}

const fast = { forwardRetryBaseMs: 20, uploadRetrySleepMs: 10 };

test('streaming: images reach the node while the client uploads; commit sends nothing twice', async (t) => {
  const { node, url, app, uuid } = await appWithInitTask(t);
  for (let i = 0; i < 12; i += 4) {
    assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(i, 4) }), { success: true });
  }
  const uploads = (): number => node.requests.filter((r) => r.path.startsWith(`/task/new/upload/${uuid}`)).length;
  // Before the client commits, the node already has the task initialised and images on the way.
  await waitUntil(() => uploads() >= 3, { message: 'images were not streamed before commit' });
  assert.equal(node.requests.filter((r) => r.path.startsWith('/task/new/commit')).length, 0);
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await waitUntil(
    async () => ((await json(`${url}/task/${uuid}/info`))['status'] as { code?: number } | undefined)?.code === 40,
    { timeoutMs: 15000, message: 'task never completed' },
  );
  assert.deepEqual(node.taskFiles(uuid).sort(), Array.from({ length: 12 }, (_, i) => `img${i}.jpg`).sort());
  for (let i = 0; i < 12; i++) assert.equal(node.taskFileSize(uuid, `img${i}.jpg`), 50_000 + i);
  assert.equal(node.requests.filter((r) => r.path.startsWith('/task/new/init')).length, 1, 'initialised once');
  await waitUntil(() => app.registry.nth(1)?.transients === 0, { message: 'the slot is not given back' });
});

test('streaming: when the node chosen at commit is another one, the task is sent there and the partial copy removed', async (t) => {
  const a = await startTestNode({ processingMs: 100 });
  const b = await startTestNode({ processingMs: 100 });
  t.after(() => a.close());
  t.after(() => b.close());
  const { url, app } = await startApp(t, multiUser(['']), [], fast);
  assert.ok(await app.nodeOps.add('127.0.0.1', a.port));
  assert.ok(await app.nodeOps.add('127.0.0.1', b.port));
  await app.nodeOps.updateAll();
  const { uuid } = (await json(`${url}/task/new/init`, { method: 'POST', body: new FormData() })) as { uuid: string };
  await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(0, 3) });
  await waitUntil(() => a.requests.some((r) => r.path.startsWith(`/task/new/upload/${uuid}`)), { message: 'not streamed to a' });
  // The operator locks node a before the client commits.
  const na = app.registry.nth(1);
  assert.ok(na);
  await app.nodeOps.setLocked(na, true);
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await waitUntil(() => b.tasks().some((x) => x.uuid === uuid), { timeoutMs: 15000, message: 'task never reached b' });
  assert.deepEqual(b.taskFiles(uuid).sort(), ['img0.jpg', 'img1.jpg', 'img2.jpg']);
  await waitUntil(() => a.taskFiles(uuid).length === 0, { message: 'partial copy not removed from a' });
  assert.equal(a.tasks().length, 0);
  await waitUntil(() => na.transients === 0 && app.registry.nth(2)?.transients === 0, { message: 'slots not given back' });
});

test('streaming: a node that fails during the upload: the task is re-sent from the staged copy at commit', async (t) => {
  const a = await startTestNode({ processingMs: 100 });
  t.after(() => a.close());
  const { url, app } = await startApp(t, multiUser(['']), [], fast);
  assert.ok(await app.nodeOps.add('127.0.0.1', a.port));
  await app.nodeOps.updateAll();
  a.configure({ dropUploads: 6 }); // every retry of the first streamed batch fails
  const { uuid } = (await json(`${url}/task/new/init`, { method: 'POST', body: new FormData() })) as { uuid: string };
  await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(0, 2) });
  await waitUntil(() => a.options.dropUploads === 0, { message: 'the drops were not hit' });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await waitUntil(
    async () => ((await json(`${url}/task/${uuid}/info`))['status'] as { code?: number } | undefined)?.code === 40,
    { timeoutMs: 15000, message: 'task never completed' },
  );
  assert.deepEqual(a.taskFiles(uuid).sort(), ['img0.jpg', 'img1.jpg']);
});

const initCount = (node: TestNode, uuid: string): number =>
  node.requests.filter((r) => r.path.startsWith('/task/new/init') && r.headers['set-uuid'] === uuid).length;
const touched = (node: TestNode, uuid: string): boolean =>
  node.requests.some((r) => r.path.includes(uuid) || r.headers['set-uuid'] === uuid);

async function completed(url: string, uuid: string): Promise<void> {
  await waitUntil(
    async () => ((await json(`${url}/task/${uuid}/info`))['status'] as { code?: number } | undefined)?.code === 40,
    { timeoutMs: 15000, message: 'task never completed' },
  );
}

test('streaming picks the largest node: a small task is streamed to the node the commit will choose, and is not sent again', async (t) => {
  const small = await startTestNode({ processingMs: 100, maxImages: 5 });
  const big = await startTestNode({ processingMs: 100, maxImages: 100 });
  t.after(() => small.close());
  t.after(() => big.close());
  const { url, app } = await startApp(t, multiUser(['']), [], fast);
  assert.ok(await app.nodeOps.add('127.0.0.1', big.port));
  assert.ok(await app.nodeOps.add('127.0.0.1', small.port));
  await app.nodeOps.updateAll();
  const { uuid } = (await json(`${url}/task/new/init`, { method: 'POST', body: new FormData() })) as { uuid: string };
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(0, 3) }), { success: true });
  // The commit's choice for 3 images is the smallest node that fits: the images go there while they are uploaded.
  await waitUntil(() => small.taskFiles(uuid).length === 3, { message: 'not streamed to the smallest node that fits' });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(small.taskFiles(uuid), ['img0.jpg', 'img1.jpg', 'img2.jpg']);
  assert.equal(initCount(small, uuid), 1, 'sent again in full');
  assert.equal(touched(big, uuid), false, 'the big node got a copy of the task');
});

test('uncommitted uploads take node slots: on a busy cluster a second upload is streamed too', async (t) => {
  const node = await startTestNode({ processingMs: 100, maxParallelTasks: 1 });
  t.after(() => node.close());
  const { url, app } = await startApp(t, multiUser(['']), [], fast);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const a = ((await json(`${url}/task/new/init`, { method: 'POST', body: new FormData() })) as { uuid: string }).uuid;
  await json(`${url}/task/new/upload/${a}`, { method: 'POST', body: images(0, 1) });
  const b = ((await json(`${url}/task/new/init`, { method: 'POST', body: new FormData() })) as { uuid: string }).uuid;
  await json(`${url}/task/new/upload/${b}`, { method: 'POST', body: images(1, 2) });
  await waitUntil(() => node.taskFiles(a).length === 1 && node.taskFiles(b).length === 2, { message: 'not both uploads were streamed' });
  // Uploads nobody committed yet leave the node's slot free.
  assert.equal(app.registry.nth(1)?.availableSlots(), 1);
  for (const uuid of [a, b]) assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, a);
  await completed(url, b);
  assert.equal(initCount(node, a), 1);
  assert.equal(initCount(node, b), 1);
});

test('streaming: a task that outgrows the node it is streamed to moves to a node that fits while it is uploaded', async (t) => {
  const small = await startTestNode({ processingMs: 100, maxImages: 3 });
  const big = await startTestNode({ processingMs: 100, maxImages: 100 });
  t.after(() => small.close());
  t.after(() => big.close());
  const { url, app } = await startApp(t, multiUser(['']), [], fast);
  assert.ok(await app.nodeOps.add('127.0.0.1', small.port));
  assert.ok(await app.nodeOps.add('127.0.0.1', big.port));
  await app.nodeOps.updateAll();
  const { uuid } = (await json(`${url}/task/new/init`, { method: 'POST', body: new FormData() })) as { uuid: string };
  await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(0, 2) });
  await waitUntil(() => small.taskFiles(uuid).length === 2, { message: 'not streamed to the smallest node' });
  await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(2, 3) });
  // Five images do not fit the small node: before the commit, the big one holds them all.
  await waitUntil(() => big.taskFiles(uuid).length === 5, { message: 'the task did not move to the big node' });
  await waitUntil(() => small.taskFiles(uuid).length === 0, { message: 'partial copy not removed from the small node' });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(big.taskFiles(uuid), Array.from({ length: 5 }, (_, i) => `img${i}.jpg`));
  for (let i = 0; i < 5; i++) assert.equal(big.taskFileSize(uuid, `img${i}.jpg`), 50_000 + i);
  assert.equal(initCount(big, uuid), 1, 'sent again at commit');
  assert.equal(small.tasks().length, 0);
  await waitUntil(() => app.registry.list().every((n) => n.uploads === 0 && n.transients === 0), { message: 'counts not given back' });
});
