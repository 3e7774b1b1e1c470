/**
 * A task sent again to a node that already holds part (or all) of it: the node ends with exactly the task's images,
 * and a task the node reports as committed is never removed. (The same after a crash of the daemon itself:
 * test/reliability/crash.test.ts.) Nodes here are test nodes that, as NodeODM, keep an uncommitted upload at the next
 * init and store a repeated name as `a_.jpg`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appWithInitTask, multiUser, startApp } from '../helpers/app';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

function images(names: string[], size = 30_000): FormData {
  const fd = new FormData();
  names.forEach((name, i) => fd.append('images', new Blob([Buffer.alloc(size + i, i + 1)]), name));
  return fd;
}

async function json(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  return (await (await fetch(url, init)).json()) as Record<string, unknown>;
}

async function completed(url: string, uuid: string): Promise<void> {
  await waitUntil(
    async () => ((await json(`${url}/task/${uuid}/info`))['status'] as { code?: number } | undefined)?.code === 40,
    { timeoutMs: 20_000, message: 'task never completed' },
  );
}

test('a task sent again to the node that holds its abandoned streamed copy ends there with exactly its images', async (t) => {
  const { node, url, uuid } = await appWithInitTask(t);
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['a.jpg', 'b.jpg']) }), { success: true });
  await waitUntil(() => node.taskFiles(uuid).length === 2, { message: 'the first upload was not streamed' });
  // The copy of the next upload and every retry of it from disk fail: streaming stops, the task is sent at commit.
  node.configure({ dropUploads: 7 });
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['c.jpg'], 40_000) }), { success: true });
  await waitUntil(() => node.options.dropUploads === 0, { timeoutMs: 10_000, message: 'the drops were not hit' });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(node.taskImages(uuid), [
    { name: 'a.jpg', bytes: 30_000 },
    { name: 'b.jpg', bytes: 30_001 },
    { name: 'c.jpg', bytes: 40_000 },
  ]);
  assert.deepEqual(node.tasks().map((x) => [x.uuid, x.imagesCount]), [[uuid, 3]]);
});

test('a commit whose answer is lost: the task is adopted on its node and keeps its route, never removed and sent again', async (t) => {
  const { node, url, app, uuid } = await appWithInitTask(t, { dropCommitAnswers: 1 });
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['a.jpg', 'b.jpg']) }), { success: true });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.equal(String(app.routes.peek(uuid)?.node.port), String(node.port), 'the route points at the node');
  assert.deepEqual(node.requests.filter((r) => r.path.startsWith('/task/remove')), [], 'the committed task was not removed');
  assert.equal(node.requests.filter((r) => r.path.startsWith('/task/new/commit')).length, 1, 'committed once');
  assert.deepEqual(node.taskFiles(uuid), ['a.jpg', 'b.jpg']);
});

test('images whose streamed upload is still on its way at commit are not sent a second time', async (t) => {
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());
  // A speed limit: images go on to the node from disk, one request per batch (not as a copy of the client's upload).
  const { url, app } = await startApp(t, multiUser(['']), ['--upload-max-speed', '100000000'], { forwardRetryBaseMs: 20, uploadRetrySleepMs: 10 });
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const { uuid } = (await json(`${url}/task/new/init`, { method: 'POST', body: new FormData() })) as { uuid: string };
  node.configure({ uploadDelayMs: 1000 }); // the node stores the images, then answers late
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['a.jpg', 'b.jpg']) }), { success: true });
  const uploads = (): number => node.requests.filter((r) => r.path.startsWith(`/task/new/upload/${uuid}`)).length;
  await waitUntil(() => node.taskImages(uuid).length === 2, { message: 'the images were not streamed' });
  const streamed = uploads();
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(node.taskImages(uuid), [
    { name: 'a.jpg', bytes: 30_000 },
    { name: 'b.jpg', bytes: 30_001 },
  ]);
  assert.equal(uploads(), streamed, 'nothing sent again after the commit');
});
