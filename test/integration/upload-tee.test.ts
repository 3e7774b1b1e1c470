import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test } from 'node:test';
import { appWithInitTask } from '../helpers/app';
import { waitUntil } from '../helpers/wait';

function images(names: string[], size = 40_000): FormData {
  const fd = new FormData();
  names.forEach((name, i) => fd.append('images', new Blob([Buffer.alloc(size + i, i)]), name));
  return fd;
}

async function json(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  return (await (await fetch(url, init)).json()) as Record<string, unknown>;
}

async function completed(url: string, uuid: string): Promise<void> {
  await waitUntil(
    async () => ((await json(`${url}/task/${uuid}/info`))['status'] as { code?: number } | undefined)?.code === 40,
    { timeoutMs: 15000, message: 'task never completed' },
  );
}

const range = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => `img${from + i}.jpg`);

test('upload tee: each client upload reaches the node as one request, copied as it arrives; nothing is sent twice', async (t) => {
  const { node, url, uuid } = await appWithInitTask(t);
  // 5 files per upload: read back from disk they would go in batches of 4 (two node requests per upload).
  for (let i = 0; i < 15; i += 5) {
    assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(range(i, 5)) }), { success: true });
  }
  const uploads = (): number => node.requests.filter((r) => r.path.startsWith(`/task/new/upload/${uuid}`)).length;
  await waitUntil(() => node.taskFiles(uuid).length === 15, { message: 'images did not reach the node before commit' });
  assert.equal(uploads(), 3);
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.equal(uploads(), 3, 'no file sent twice');
  assert.deepEqual(node.taskFiles(uuid), range(0, 15).sort());
  for (let i = 0; i < 15; i++) assert.equal(node.taskFileSize(uuid, `img${i}.jpg`), 40_000 + (i % 5));
});

test('upload tee: a name the staging changes (a repeated file name, non-ASCII) ends with the staged names on the node', async (t) => {
  const { node, url, uuid } = await appWithInitTask(t);
  await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['a.jpg', 'b.jpg']) });
  await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['a.jpg', 'é.jpg'], 30_000) });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(node.taskFiles(uuid), ['a.jpg', 'a_.jpg', 'b.jpg', 'é.jpg'].sort());
  assert.equal(node.taskFileSize(uuid, 'a.jpg'), 40_000);
  assert.equal(node.taskFileSize(uuid, 'a_.jpg'), 30_000);
});

test('upload tee: a client that goes away mid-upload leaves no partial file on the node; the task still completes', async (t) => {
  const { node, url, uuid } = await appWithInitTask(t);
  await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['ok.jpg']) });
  // Half of a multipart body of announced length, then the connection drops.
  const boundary = 'XyZboundary';
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="cut.jpg"\r\nContent-Type: image/jpeg\r\n\r\n`;
  const u = new URL(`${url}/task/new/upload/${uuid}`);
  await new Promise<void>((resolve) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': head.length + 200_000 + 40 } });
    req.on('error', () => resolve());
    req.write(head);
    req.write(Buffer.alloc(100_000, 7), () => setTimeout(() => { req.destroy(); resolve(); }, 100));
  });
  // The session was dropped with the failed upload; the rest of the task is sent at commit.
  await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['more.jpg']) });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(node.taskFiles(uuid), ['more.jpg', 'ok.jpg']);
});

test('upload tee: a node that drops the copied upload gets those files from the staged copy', async (t) => {
  const { node, url, uuid } = await appWithInitTask(t);
  node.configure({ dropUploads: 1 });
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(range(0, 3)) }), { success: true });
  // Sent again from disk before the commit: the node holds them while the client has not committed yet.
  await waitUntil(() => node.taskFiles(uuid).length === 3, { message: 'the dropped files were not sent again' });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(node.taskFiles(uuid), range(0, 3).sort());
  assert.equal(node.requests.filter((r) => r.path.startsWith('/task/new/init')).length, 1, 'not re-sent whole');
});

test('a node that stalls kills the client\'s upload: the upload completes and the task reaches the node whole from the staged copy', async (t) => {
  // The client's idle timeout made short: a node that holds the client up for longer would cost the client its upload.
  const { node, url, uuid } = await appWithInitTask(t, {}, { uploadIdleMs: 5000 });
  node.configure({ stallUploads: 1 });
  // Far more than the socket buffers between ClusterODM and the node hold, and than ClusterODM keeps for a slow node.
  const names = range(0, 8);
  const size = 4 * 1024 * 1024;
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(names, size) }), { success: true });
  assert.equal(node.options.stallUploads, 0, 'the node never stalled');
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(node.taskFiles(uuid), [...names].sort());
  names.forEach((name, i) => assert.equal(node.taskFileSize(uuid, name), size + i));
  // The stalled connection may still hold a cut img0.jpg on the node: the task went again from nothing, committed once.
  assert.equal(node.requests.filter((r) => r.path.startsWith('/task/new/commit')).length, 1, 'committed once');
  assert.equal(node.tasks().filter((x) => x.uuid === uuid).length, 1);
});

test('files on their way to the node at commit are sent a second time', async (t) => {
  // The node answers each upload late, so the file sent from disk is still on its way when the client commits.
  const { node, url, uuid } = await appWithInitTask(t, { uploadDelayMs: 2000 });
  node.configure({ dropUploads: 1 });
  const uploads = (): number => node.requests.filter((r) => r.path.startsWith(`/task/new/upload/${uuid}`)).length;
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['a.jpg']) }), { success: true });
  // The copy of the client's request was dropped; the file goes again from disk.
  await waitUntil(() => uploads() === 2, { message: 'the file was not sent from disk' });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  await completed(url, uuid);
  assert.deepEqual(node.taskFiles(uuid), ['a.jpg']);
  assert.equal(uploads(), 2, 'a.jpg was sent again at commit');
});
