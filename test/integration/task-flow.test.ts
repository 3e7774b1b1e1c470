import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { assetSha256, startTestNode, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

interface Cluster {
  d: Daemon;
  nodes: TestNode[];
  cli: CliClient;
  dir: string;
}

async function cluster(t: TestContext, count = 2, nodeOpts = {}, dir = tempDir(t)): Promise<Cluster> {
  const nodes: TestNode[] = [];
  for (let i = 0; i < count; i++) {
    const n = await startTestNode({ processingMs: 300, assetSize: 3 * 1024 * 1024, ...nodeOpts });
    t.after(() => n.close());
    nodes.push(n);
  }
  const d = await startDaemon(t, dir);
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  for (const n of nodes) assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${n.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  return { d, nodes, cli, dir };
}

function images(n: number, prefix = 'IMG_'): Array<{ name: string; data: Buffer }> {
  return Array.from({ length: n }, (_, i) => ({ name: `${prefix}${String(i).padStart(4, '0')}.JPG`, data: Buffer.alloc(20_000 + i, i % 251) }));
}

function form(fields: Record<string, string>, files: Array<{ name: string; data: Buffer }> = []): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.set(k, v);
  for (const f of files) fd.append('images', new Blob([f.data]), f.name);
  return fd;
}

async function postJson(url: string, body: FormData | string, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const res = await fetch(url, { method: 'POST', body, headers });
  assert.equal(res.status, 200);
  return (await res.json()) as Record<string, unknown>;
}

async function waitStatus(d: Daemon, uuid: string, code: number): Promise<Record<string, unknown>> {
  let last: Record<string, unknown> = {};
  await waitUntil(
    async () => {
      last = (await (await fetch(`${d.url}/task/${uuid}/info`)).json()) as Record<string, unknown>;
      return (last['status'] as { code?: number } | undefined)?.code === code;
    },
    { timeoutMs: 20000, intervalMs: 50, message: `task ${uuid} never reached ${code}` },
  );
  return last;
}

test('task flow: init, several uploads, commit, poll until done, download all.zip (the WebODM flow)', async (t) => {
  const { d, nodes, cli, dir } = await cluster(t);
  const imgs = images(12);
  const init = await postJson(`${d.url}/task/new/init`, form({ name: 'flow', options: JSON.stringify([{ name: 'dsm', value: true }]) }));
  const uuid = String(init['uuid']);
  assert.match(uuid, /^[0-9a-f-]{36}$/);
  for (let i = 0; i < 12; i += 4) {
    assert.deepEqual(await postJson(`${d.url}/task/new/upload/${uuid}`, form({}, imgs.slice(i, i + 4))), { success: true });
  }
  assert.deepEqual(await postJson(`${d.url}/task/new/commit/${uuid}`, form({})), { uuid });
  const info = await waitStatus(d, uuid, 40);
  assert.equal(info['name'], 'flow');
  assert.equal(info['imagesCount'], 12);
  const holder = nodes.find((n) => n.tasks().some((x) => x.uuid === uuid));
  assert.ok(holder, 'the task is on a node with the same uuid');
  assert.deepEqual(holder.taskFiles(uuid).sort(), imgs.map((i) => i.name).sort());
  for (const img of imgs) assert.equal(holder.taskFileSize(uuid, img.name), img.data.length);
  const dl = await fetch(`${d.url}/task/${uuid}/download/all.zip`);
  assert.equal(dl.status, 200);
  assert.equal(dl.headers.get('content-type'), 'application/zip');
  const sha = createHash('sha256').update(Buffer.from(await dl.arrayBuffer())).digest('hex');
  assert.equal(sha, assetSha256(3 * 1024 * 1024));
  const out = (await (await fetch(`${d.url}/task/${uuid}/output?line=-1`)).json()) as string[];
  assert.deepEqual(out, ['Compressing all.zip\n']);
  assert.deepEqual(await (await fetch(`${d.url}/task/list`)).json(), [{ uuid }]);
  const routes = JSON.parse(await cli.send('ROUTE LIST')) as Record<string, { node: { port: string } }>;
  assert.equal(routes[uuid]?.node.port, String(holder.port));
  const tasks = JSON.parse(await cli.send('TASK LIST')) as Array<{ uuid: string }>;
  assert.deepEqual(tasks.map((x) => x.uuid), [uuid]);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), [], 'the staged copy is removed once the task is on its node');
});

test('task flow: single-shot /task/new with set-uuid; tasks spread over the nodes', async (t) => {
  const { d, nodes } = await cluster(t, 2, { processingMs: 2000 });
  const ids = ['11111111-2222-4333-8444-000000000001', '11111111-2222-4333-8444-000000000002'];
  for (const id of ids) {
    assert.deepEqual(await postJson(`${d.url}/task/new`, form({ name: id }, images(3)), { 'set-uuid': id }), { uuid: id });
  }
  await waitUntil(() => nodes.every((n) => n.tasks().length === 1), { timeoutMs: 15000, message: 'each node gets one task' });
  assert.deepEqual(await postJson(`${d.url}/task/new/init`, form({}), { 'set-uuid': ids[0] ?? '' }), { error: `Invalid set-uuid: ${ids[0] ?? ''}` });
  assert.deepEqual(await postJson(`${d.url}/task/new/init`, form({}), { 'set-uuid': 'abc' }), { error: 'Invalid set-uuid: abc' });
});

test('task flow: cancel, restart and remove with urlencoded, multipart and JSON bodies; remove drops the route', async (t) => {
  const { d, cli } = await cluster(t, 1, { processingMs: 200 });
  const { uuid } = (await postJson(`${d.url}/task/new`, form({}, images(2)))) as { uuid: string };
  await waitStatus(d, uuid, 40);
  assert.deepEqual(await postJson(`${d.url}/task/restart`, `uuid=${uuid}`, { 'content-type': 'application/x-www-form-urlencoded' }), { success: true });
  await waitStatus(d, uuid, 40);
  assert.deepEqual(await postJson(`${d.url}/task/cancel`, form({ uuid })), { success: true });
  await waitStatus(d, uuid, 50);
  assert.deepEqual(await postJson(`${d.url}/task/remove`, JSON.stringify({ uuid }), { 'content-type': 'application/json' }), { success: true });
  assert.equal(await cli.send(`ROUTE INFO ${uuid}`), 'INVALID\r\n');
  assert.deepEqual(await (await fetch(`${d.url}/task/${uuid}/info`)).json(), {
    error: `Invalid route for taskId ${uuid}:info, no task table entry.`,
  });
});

test('task flow: bad uploads get clear errors and leave nothing behind', async (t) => {
  const { d, dir } = await cluster(t, 1);
  assert.deepEqual(await postJson(`${d.url}/task/new`, form({})), { error: 'Not enough images (0 files uploaded)' });
  const { uuid } = (await postJson(`${d.url}/task/new/init`, form({}))) as { uuid: string };
  assert.deepEqual(await postJson(`${d.url}/task/new/upload/${uuid}`, form({})), { error: 'No files uploaded.' });
  assert.deepEqual(await postJson(`${d.url}/task/new/commit/${uuid}`, form({})), { error: 'Not enough images (0 files uploaded)' });
  assert.deepEqual(await postJson(`${d.url}/task/new/upload/00000000-1111-4222-8333-444444444444`, form({}, images(1))), {
    error: 'Invalid taskId: the task no longer exists.',
  });
  assert.deepEqual(await postJson(`${d.url}/task/new/upload/not-a-uuid`, form({}, images(1))), {
    error: 'No uuid found in /task/new/upload/not-a-uuid',
  });
  assert.deepEqual(await postJson(`${d.url}/task/new/init`, form({ options: 'not json' })), {
    error: `Unexpected token 'o', "not json" is not valid JSON`,
  });
  assert.deepEqual(await postJson(`${d.url}/task/new/init`, form({ options: JSON.stringify([{ name: 'min-num-features', value: 'abc' }]) })), {
    error: '[{"name":"min-num-features","error":"Invalid value NaN (out of range)"}]',
  });
  const fd = new FormData();
  fd.append('other', new Blob([Buffer.alloc(10)]), 'x.jpg');
  const started = Date.now();
  const { uuid: u2 } = (await postJson(`${d.url}/task/new/init`, form({}))) as { uuid: string };
  const odd = await postJson(`${d.url}/task/new/upload/${u2}`, fd);
  assert.match(String(odd['error']), /Unexpected field/);
  assert.ok(Date.now() - started < 5000, 'a non-images file part is refused quickly, not after a 30 s stall');
  const truncated = await fetch(`${d.url}/task/new`, {
    method: 'POST',
    headers: { 'content-type': 'multipart/form-data; boundary=XyZ' },
    body: '--XyZ\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\npartial data',
  });
  assert.deepEqual(await truncated.json(), { error: 'Unexpected end of multipart data' });
  const leftovers = fs.readdirSync(path.join(dir, 'tmp')).filter((e) => e !== uuid && e !== u2);
  assert.deepEqual(leftovers, [], 'failed single-shot uploads leave no tmp dir');
});

test('task flow: a task whose node refuses it moves to another node', async (t) => {
  const { d, nodes } = await cluster(t, 2, { processingMs: 200 });
  const [a, b] = nodes;
  assert.ok(a && b);
  // Node a (first in the list, chosen first) drops every upload.
  a.configure({ dropUploads: 1000 });
  const { uuid } = (await postJson(`${d.url}/task/new`, form({}, images(2)))) as { uuid: string };
  const info = (await (await fetch(`${d.url}/task/${uuid}/info`)).json()) as { status?: { code: number } };
  assert.equal(info.status?.code, 20, 'answered from the task table while forwarding');
  await waitUntil(() => b.tasks().some((x) => x.uuid === uuid), { timeoutMs: 60000, message: 'task never reached node b' });
  await waitStatus(d, uuid, 40);
});

test('task flow: tasks and routes survive a restart of ClusterODM', async (t) => {
  const dir = tempDir(t);
  const first = await cluster(t, 1, { processingMs: 100 }, dir);
  const { uuid } = (await postJson(`${first.d.url}/task/new`, form({}, images(2)))) as { uuid: string };
  await waitStatus(first.d, uuid, 40);
  const init = (await postJson(`${first.d.url}/task/new/init`, form({ name: 'half' }))) as { uuid: string };
  await postJson(`${first.d.url}/task/new/upload/${init.uuid}`, form({}, images(2)));
  assert.equal(await first.d.stop('SIGKILL'), null);
  const d2 = await startDaemon(t, dir);
  await waitStatus(d2, uuid, 40);
  // The upload session continues where it was.
  await postJson(`${d2.url}/task/new/upload/${init.uuid}`, form({}, images(1, 'MORE_')));
  assert.deepEqual(await postJson(`${d2.url}/task/new/commit/${init.uuid}`, form({})), { uuid: init.uuid });
  const info = await waitStatus(d2, init.uuid, 40);
  assert.equal(info['imagesCount'], 3);
});

test('task flow: a node that dies mid-forward: the task moves to the other node', async (t) => {
  const { d, nodes } = await cluster(t, 2, { processingMs: 200 });
  const [a, b] = nodes;
  assert.ok(a && b);
  a.configure({ uploadDelayMs: 3000 });
  const { uuid } = (await postJson(`${d.url}/task/new`, form({}, images(3)))) as { uuid: string };
  await waitUntil(() => a.requests.some((r) => r.path.startsWith(`/task/new/upload/${uuid}`)), {
    timeoutMs: 10000,
    message: 'the upload to node a never started',
  });
  a.setOffline(true);
  await waitUntil(() => b.tasks().some((x) => x.uuid === uuid), { timeoutMs: 30000, message: 'task never reached node b' });
  await waitStatus(d, uuid, 40);
});

test('task flow: a node that dies mid-download ends the client download, it never hangs', async (t) => {
  const { d, nodes } = await cluster(t, 1, { processingMs: 50, assetSize: 200 * 1024 * 1024 });
  const [a] = nodes;
  assert.ok(a);
  const { uuid } = (await postJson(`${d.url}/task/new`, form({}, images(1)))) as { uuid: string };
  await waitStatus(d, uuid, 40);
  const res = await fetch(`${d.url}/task/${uuid}/download/all.zip`);
  assert.equal(res.status, 200);
  const reader = res.body?.getReader();
  assert.ok(reader);
  const first = await reader.read();
  assert.equal(first.done, false);
  a.setOffline(true);
  const started = Date.now();
  await assert.rejects(async () => {
    for (;;) {
      const r = await reader.read();
      if (r.done) throw new Error('the download ended as if complete');
    }
  });
  assert.ok(Date.now() - started < 10000);
  // The proxy still serves other requests.
  assert.equal((await fetch(`${d.url}/info`)).status, 200);
});
