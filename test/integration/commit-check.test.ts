/**
 * Issue 13: every task reaches its node whole, once. Whatever made a node lose part of an upload, a task it committed
 * with another image count than was sent is removed there and sent again from the staged files, so that the task
 * users see holds exactly their images. The test node's `loseFilesAtCommit` knob makes the node lose files silently.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appWithInitTask } from '../helpers/app';
import { waitUntil } from '../helpers/wait';

function images(names: string[], size = 30_000): FormData {
  const fd = new FormData();
  names.forEach((name, i) => fd.append('images', new Blob([Buffer.alloc(size + i, i + 1)]), name));
  return fd;
}

async function json(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  return (await (await fetch(url, init)).json()) as Record<string, unknown>;
}

async function completed(url: string, uuid: string): Promise<Record<string, unknown>> {
  let info: Record<string, unknown> = {};
  await waitUntil(
    async () => {
      info = await json(`${url}/task/${uuid}/info`);
      return (info['status'] as { code?: number } | undefined)?.code === 40;
    },
    { timeoutMs: 20_000, message: 'task never completed' },
  );
  return info;
}

const EXPECTED = [
  { name: 'a.jpg', bytes: 30_000 },
  { name: 'b.jpg', bytes: 30_001 },
  { name: 'c.jpg', bytes: 30_002 },
];

test('a streamed task that its node commits with fewer images than were uploaded is sent again and ends there whole', async (t) => {
  const { node, url, uuid } = await appWithInitTask(t);
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['a.jpg', 'b.jpg', 'c.jpg']) }), { success: true });
  await waitUntil(() => node.taskFiles(uuid).length === 3, { message: 'the upload was not streamed' });
  node.configure({ loseFilesAtCommit: 2 });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  const info = await completed(url, uuid);
  assert.equal(info['imagesCount'], 3);
  assert.deepEqual(node.taskImages(uuid), EXPECTED);
  assert.deepEqual(node.tasks().map((x) => [x.uuid, x.imagesCount]), [[uuid, 3]]);
  assert.equal(node.options.loseFilesAtCommit, 0, 'the node lost files at the first commit');
  assert.equal(node.requests.filter((r) => r.path.startsWith('/task/new/commit')).length, 2, 'committed again after the loss');
});

test('a task sent from its staged files that its node commits with fewer images is sent again and ends there whole', async (t) => {
  const { node, url, uuid } = await appWithInitTask(t);
  // Every copy of the upload to the node, and each retry from disk, fails: the task is sent from disk at commit.
  node.configure({ dropUploads: 7 });
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(['a.jpg', 'b.jpg', 'c.jpg']) }), { success: true });
  await waitUntil(() => node.options.dropUploads === 0, { timeoutMs: 10_000, message: 'the drops were not hit' });
  node.configure({ loseFilesAtCommit: 1 });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  const info = await completed(url, uuid);
  assert.equal(info['imagesCount'], 3);
  assert.deepEqual(node.taskImages(uuid), EXPECTED);
  assert.deepEqual(node.tasks().map((x) => [x.uuid, x.imagesCount]), [[uuid, 3]]);
  assert.equal(node.options.loseFilesAtCommit, 0, 'the node lost a file at the first commit');
});

test('a node that sees late that a stalled upload went away, and removes its files then, still ends with the task whole', async (t) => {
  // The client's idle timeout made short: the copy for a stalled node is dropped after a third of it.
  const { node, url, uuid } = await appWithInitTask(t, { releaseStalledAtCommit: true }, { uploadIdleMs: 3000 });
  node.configure({ stallUploads: 1 });
  // More than the socket buffers between ClusterODM and the node hold: the copy for the node is dropped, the task
  // goes again from nothing at commit, to the same dir on the node (its uuid), under the same names.
  const names = ['a.jpg', 'b.jpg', 'c.jpg'];
  const size = 4 * 1024 * 1024;
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: images(names, size) }), { success: true });
  assert.equal(node.options.stallUploads, 0, 'the node never stalled');
  // At the commit the node reads the stalled request on, finds it cut, and removes the a.jpg it had started: by its
  // path, where the a.jpg sent again now is.
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST' }), { uuid });
  const info = await completed(url, uuid);
  assert.equal(info['imagesCount'], 3);
  assert.deepEqual(node.taskFiles(uuid), names);
  names.forEach((name, i) => assert.equal(node.taskFileSize(uuid, name), size + i));
  assert.deepEqual(node.tasks().map((x) => [x.uuid, x.imagesCount]), [[uuid, 3]]);
});
