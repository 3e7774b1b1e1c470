import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { assetSha256, startTestNode, TaskStatus, type TestNode, type TestNodeOptions } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

// ----- helpers -----

interface TaskInfo {
  uuid: string;
  name: string;
  dateCreated: number;
  processingTime: number;
  status: { code: number };
  options: { name: string; value: unknown }[];
  imagesCount: number;
  progress: number;
  output?: string[];
}

const FIXTURE = path.resolve(__dirname, '../../../test/fixtures/nodeodm-options.json');

async function startNode(t: TestContext, opts: Partial<TestNodeOptions> = {}): Promise<TestNode> {
  const node = await startTestNode({ processingMs: 20, ...opts });
  t.after(() => node.close());
  return node;
}

/** Fetches and decodes a JSON answer, checking NodeODM's "always 200 + CORS" convention. */
async function call<T>(url: string, init?: RequestInit): Promise<T> {
  const res = await fetch(url, init);
  assert.equal(res.status, 200, `${init?.method ?? 'GET'} ${url}`);
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  assert.equal(res.headers.get('content-type'), 'application/json; charset=utf-8');
  return (await res.json()) as T;
}

function post<T>(url: string, body?: FormData | string | URLSearchParams, headers: Record<string, string> = {}): Promise<T> {
  return call<T>(url, { method: 'POST', body: body ?? null, headers });
}

function imagesForm(names: string[], fields: Record<string, string> = {}): FormData {
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  for (const name of names) form.append('images', new Blob([`jpeg bytes of ${name}`]), name);
  return form;
}

async function newTask(node: TestNode, names = ['a.jpg', 'b.jpg'], fields: Record<string, string> = {}, headers: Record<string, string> = {}): Promise<string> {
  const body = await post<{ uuid: string }>(`${node.url}/task/new`, imagesForm(names, fields), headers);
  assert.match(body.uuid, /^[0-9a-f-]{36}$/);
  return body.uuid;
}

function info(node: TestNode, uuid: string, query = ''): Promise<TaskInfo> {
  return call<TaskInfo>(`${node.url}/task/${uuid}/info${query}`);
}

async function waitForStatus(node: TestNode, uuid: string, code: number): Promise<void> {
  await waitUntil(async () => (await info(node, uuid)).status.code === code, {
    message: `task ${uuid} never reached status ${code}`,
  });
}

function command(node: TestNode, name: 'cancel' | 'remove' | 'restart', fields: Record<string, string>): Promise<Record<string, unknown>> {
  return post(`${node.url}/task/${name}`, new URLSearchParams(fields));
}

// ----- server routes -----

test('GET /info reports NodeODM 2.2.4 fields and the knobs', async (t) => {
  const node = await startNode(t, { maxImages: 7, maxParallelTasks: 3 });
  const body = await call<Record<string, unknown>>(`${node.url}/info`);
  assert.deepEqual(Object.keys(body), [
    'version', 'taskQueueCount', 'totalMemory', 'availableMemory', 'cpuCores',
    'maxImages', 'maxParallelTasks', 'engineVersion', 'engine',
  ]);
  assert.equal(body['version'], '2.2.4');
  assert.equal(body['taskQueueCount'], 0);
  assert.equal(body['maxImages'], 7);
  assert.equal(body['maxParallelTasks'], 3);
  assert.equal(body['engineVersion'], '?');
  assert.equal(body['engine'], 'odm');
  const defaults = await startNode(t);
  assert.equal((await call<Record<string, unknown>>(`${defaults.url}/info`))['maxImages'], null);
});

test('GET /options serves the fixture byte for byte; /auth/info answers like NodeODM', async (t) => {
  const node = await startNode(t);
  const res = await fetch(`${node.url}/options`);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), fs.readFileSync(FIXTURE));
  assert.deepEqual(await call(`${node.url}/auth/info`), {
    message: 'Authentication not available on this node',
    loginUrl: null,
    registerUrl: null,
  });
});

test('unknown routes get the Express 404 page', async (t) => {
  const node = await startNode(t);
  const res = await fetch(`${node.url}/foo`);
  assert.equal(res.status, 404);
  assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  const expected =
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n' +
    '<body>\n<pre>Cannot GET /foo</pre>\n</body>\n</html>\n';
  assert.equal(await res.text(), expected);
  assert.equal(expected.length, 142); // the size the real node answered
  const del = await fetch(`${node.url}/task/new/init`, { method: 'DELETE' });
  assert.equal(del.status, 404);
  assert.match(await del.text(), /<pre>Cannot DELETE \/task\/new\/init<\/pre>/);
  const noAsset = await fetch(`${node.url}/task/00000000-1111-4222-8333-444444444444/download`);
  assert.equal(noAsset.status, 404);
  await noAsset.arrayBuffer();
});

test('web UI and preflight', async (t) => {
  const node = await startNode(t, { token: 'secret' });
  const page = await fetch(`${node.url}/`);
  const html = await page.text();
  assert.match(html, /<title>NodeODM - Web UI<\/title>/);
  assert.match(html, /\/css\/main\.css/);
  assert.match(html, /\/js\/main\.js/);
  for (const asset of ['/css/main.css', '/js/main.js']) {
    const res = await fetch(`${node.url}${asset}`);
    assert.equal(res.status, 200, asset);
    assert.ok((await res.text()).length > 0);
  }
  const preflight = await fetch(`${node.url}/task/new`, { method: 'OPTIONS' });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-methods'), 'GET,HEAD,PUT,PATCH,POST,DELETE');
});

// ----- task lifecycle -----

test('init / upload / commit: files land on disk, the task completes, all.zip downloads', async (t) => {
  const node = await startNode(t, { assetSize: 200_000 });
  const init = await post<{ uuid: string }>(`${node.url}/task/new/init`, imagesForm([], {
    name: 'anchor-init',
    options: JSON.stringify([{ name: 'dsm', value: true }, { name: 'not-an-option', value: 1 }]),
  }));
  const uuid = init.uuid;
  assert.deepEqual(await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['IMG_1.JPG', '../../evil.JPG'])), { success: true });
  assert.deepEqual(await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['IMG_2.JPG', 'body.json'])), { success: true });
  assert.deepEqual(node.taskFiles(uuid), ['IMG_1.JPG', 'IMG_2.JPG', '_body.json', 'evil.JPG']);
  assert.equal(node.taskFileSize(uuid, 'IMG_1.JPG'), 'jpeg bytes of IMG_1.JPG'.length);
  assert.deepEqual(await call(`${node.url}/task/list`), []);

  assert.deepEqual(await post(`${node.url}/task/new/commit/${uuid}`), { uuid });
  assert.deepEqual(await call(`${node.url}/task/list`), [{ uuid }]);
  await waitForStatus(node, uuid, TaskStatus.COMPLETED);

  const done = await info(node, uuid);
  assert.deepEqual(Object.keys(done), ['uuid', 'name', 'dateCreated', 'processingTime', 'status', 'options', 'imagesCount', 'progress']);
  assert.equal(done.name, 'anchor-init');
  assert.deepEqual(done.options, [{ name: 'dsm', value: true }]); // unknown option names are dropped
  assert.equal(done.imagesCount, 4);
  assert.equal(done.progress, 100);
  assert.ok(done.processingTime >= 0);
  const output = await call<string[]>(`${node.url}/task/${uuid}/output`);
  assert.equal(output.at(-1), 'Compressing all.zip\n');

  const zip = await fetch(`${node.url}/task/${uuid}/download/all.zip`);
  assert.equal(zip.headers.get('content-type'), 'application/zip');
  assert.equal(zip.headers.get('content-disposition'), 'attachment; filename=all.zip');
  assert.equal(zip.headers.get('content-length'), '200000');
  const bytes = Buffer.from(await zip.arrayBuffer());
  assert.equal(bytes.length, 200_000);
  assert.equal(createHash('sha256').update(bytes).digest('hex'), assetSha256(200_000));
  const head = await fetch(`${node.url}/task/${uuid}/download/all.zip`, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), '200000');
  assert.deepEqual(await call(`${node.url}/task/${uuid}/download/orthophoto.tif`), { error: 'Invalid asset' });
});

test('/task/new with set-uuid, fields and a webhook', async (t) => {
  const hooks: unknown[] = [];
  const hookServer = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hooks.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => hookServer.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => hookServer.close(() => resolve())));
  const address = hookServer.address();
  assert.ok(address !== null && typeof address === 'object');

  const node = await startNode(t);
  const wanted = '11111111-2222-4333-8444-000000004178';
  const uuid = await newTask(node, ['a.jpg'], { name: 'single', webhook: `http://127.0.0.1:${address.port}/hook`, dateCreated: '1795824804940' }, { 'set-uuid': wanted.toUpperCase() });
  assert.equal(uuid, wanted.toUpperCase());
  assert.deepEqual(node.tasks().map((task) => [task.uuid, task.name, task.imagesCount]), [[uuid, 'single', 1]]);
  await waitUntil(() => hooks.length === 1, { message: 'webhook not called' });
  const hook = hooks[0] as TaskInfo;
  assert.equal(hook.uuid, uuid);
  assert.equal(hook.status.code, TaskStatus.COMPLETED);
  assert.equal(hook.dateCreated, 1795824804940);
  // The same uuid cannot be used twice.
  assert.deepEqual(await post(`${node.url}/task/new/init`, undefined, { 'set-uuid': uuid }), { error: `Invalid set-uuid: ${uuid}` });
});

test('output slicing and with_output', async (t) => {
  const node = await startNode(t);
  const uuid = await newTask(node);
  await waitForStatus(node, uuid, TaskStatus.COMPLETED);
  const all = await call<string[]>(`${node.url}/task/${uuid}/output`);
  assert.ok(all.length >= 3);
  assert.deepEqual(await call(`${node.url}/task/${uuid}/output?line=-2`), all.slice(-2));
  assert.deepEqual(await call(`${node.url}/task/${uuid}/output?line=1`), all.slice(1));
  assert.deepEqual((await info(node, uuid, '?with_output=-1')).output, all.slice(-1));
  assert.equal((await info(node, uuid)).output, undefined);
});

test('cancel, restart (urlencoded and JSON, with options) and remove', async (t) => {
  const node = await startNode(t, { processingMs: 10_000 });
  const uuid = await newTask(node);
  assert.equal((await info(node, uuid)).status.code, TaskStatus.RUNNING);
  assert.deepEqual(await call(`${node.url}/task/${uuid}/download/all.zip`), { error: 'Asset not ready' });
  assert.deepEqual(await command(node, 'restart', { uuid }), { success: false, error: 'Task cannot be restarted' });

  assert.deepEqual(await command(node, 'cancel', { uuid }), { success: true });
  const canceled = await info(node, uuid);
  assert.equal(canceled.status.code, TaskStatus.CANCELED);
  assert.equal(canceled.processingTime, -1);
  assert.deepEqual(await command(node, 'cancel', { uuid }), { success: true }); // again: still a success

  node.configure({ processingMs: 10 });
  const options = JSON.stringify([{ name: 'fast-orthophoto', value: true }]);
  assert.deepEqual(await command(node, 'restart', { uuid, options }), { success: true });
  await waitForStatus(node, uuid, TaskStatus.COMPLETED);
  assert.deepEqual((await info(node, uuid)).options, [{ name: 'fast-orthophoto', value: true }]);

  const json = JSON.stringify({ uuid });
  assert.deepEqual(await post(`${node.url}/task/restart`, json, { 'content-type': 'application/json' }), { success: true });
  await waitForStatus(node, uuid, TaskStatus.COMPLETED);

  assert.deepEqual(await command(node, 'remove', { uuid }), { success: true });
  assert.deepEqual(await info(node, uuid), { error: `${uuid} not found` });
  assert.deepEqual(await command(node, 'remove', { uuid }), { success: false, error: `${uuid} not found` });
  assert.deepEqual(node.taskFiles(uuid), []);
});

test('failTasks ends tasks FAILED', async (t) => {
  const node = await startNode(t, { failTasks: true });
  const uuid = await newTask(node);
  await waitForStatus(node, uuid, TaskStatus.FAILED);
  assert.equal((await info(node, uuid)).progress, 100);
  assert.deepEqual(await call(`${node.url}/task/${uuid}/download/all.zip`), { error: 'Asset not ready' });
});

test('maxParallelTasks queues the extra tasks; taskQueueCount counts QUEUED and RUNNING', async (t) => {
  const node = await startNode(t, { processingMs: 10_000 });
  const first = await newTask(node);
  const second = await newTask(node);
  assert.deepEqual(node.tasks().map((task) => task.status), [TaskStatus.RUNNING, TaskStatus.QUEUED]);
  assert.equal((await call<{ taskQueueCount: number }>(`${node.url}/info`)).taskQueueCount, 2);
  node.configure({ maxParallelTasks: 2 });
  assert.equal((await info(node, second)).status.code, TaskStatus.RUNNING);
  await command(node, 'cancel', { uuid: first });
  assert.equal((await call<{ taskQueueCount: number }>(`${node.url}/info`)).taskQueueCount, 1);
});

test('maxImages refuses tasks with too many images, at commit and on /task/new', async (t) => {
  const node = await startNode(t, { maxImages: 2 });
  const message = '3 images uploaded, but this node can only process up to 2.';
  assert.deepEqual(await post(`${node.url}/task/new`, imagesForm(['a.jpg', 'b.jpg', 'c.jpg'])), { error: message });
  const { uuid } = await post<{ uuid: string }>(`${node.url}/task/new/init`);
  await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['a.jpg', 'b.jpg', 'c.jpg']));
  assert.deepEqual(await post(`${node.url}/task/new/commit/${uuid}`), { error: message });
  assert.deepEqual(node.tasks(), []);
  assert.deepEqual(await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['a.jpg'])), { error: 'Invalid uuid (not found)' });
});

// ----- bad inputs: NodeODM's exact texts -----

test('bad inputs get NodeODM error texts', async (t) => {
  const node = await startNode(t);
  const unknown = '00000000-1111-4222-8333-444444444444';
  const url = node.url;
  assert.deepEqual(await info(node, unknown), { error: `${unknown} not found` });
  assert.deepEqual(await call(`${url}/task/not-a-uuid/info`), { error: 'not-a-uuid not found' });
  assert.deepEqual(await post(`${url}/task/new/upload/${unknown}`, imagesForm(['a.jpg'])), { error: 'Invalid uuid (not found)' });
  assert.deepEqual(await post(`${url}/task/new/commit/${unknown}`), { error: 'Invalid uuid (not found)' });
  assert.deepEqual(await post(`${url}/task/new/init`, new URLSearchParams({ options: 'not json' })), {
    error: 'Unexpected token \'o\', "not json" is not valid JSON',
  });
  assert.deepEqual(await post(`${url}/task/new/init`, undefined, { 'set-uuid': 'abc' }), { error: 'Invalid set-uuid: abc' });
  assert.deepEqual(await post(`${url}/task/new`, imagesForm([], { name: 'x' })), { error: 'Need at least 1 file or a zip file url.' });
  assert.deepEqual(await post(`${url}/task/new`, 'x', { 'content-type': 'multipart/form-data' }), { error: 'Multipart: Boundary not found' });
  const truncated = '--XyZ\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\nsome bytes';
  assert.deepEqual(await post(`${url}/task/new`, truncated, { 'content-type': 'multipart/form-data; boundary=XyZ' }), {
    error: 'Unexpected end of multipart data',
  });
  const wrongField = new FormData();
  wrongField.append('photos', new Blob(['x']), 'a.jpg');
  assert.deepEqual(await post(`${url}/task/new`, wrongField), { error: 'Unexpected field' });
  assert.deepEqual(await command(node, 'cancel', {}), { error: 'uuid param missing.' });
  assert.deepEqual(await command(node, 'cancel', { uuid: unknown }), { success: false, error: `${unknown} not found` });
  assert.deepEqual(await post(`${url}/task/cancel`, imagesForm([], { uuid: unknown })), { error: 'uuid param missing.' });
  assert.deepEqual(await post(`${url}/task/cancel`, '{"uuid":', { 'content-type': 'application/json' }), {
    error: 'Unexpected end of JSON input',
  });
});

test('init accepts JSON, urlencoded and empty bodies; empty commits are refused', async (t) => {
  const node = await startNode(t);
  const fromJson = await post<{ uuid: string }>(`${node.url}/task/new/init`, JSON.stringify({ name: 'j' }), { 'content-type': 'application/json' });
  const fromForm = await post<{ uuid: string }>(`${node.url}/task/new/init`, new URLSearchParams({ name: 'u' }));
  const empty = await post<{ uuid: string }>(`${node.url}/task/new/init`);
  assert.equal(new Set([fromJson.uuid, fromForm.uuid, empty.uuid]).size, 3);
  assert.deepEqual(await post(`${node.url}/task/new/upload/${empty.uuid}`, imagesForm([])), { error: 'Need at least 1 file.' });
  assert.deepEqual(await post(`${node.url}/task/new/commit/${empty.uuid}`), { error: 'Need at least 1 file.' });
  await post(`${node.url}/task/new/upload/${fromJson.uuid}`, imagesForm(['a.jpg']));
  await post(`${node.url}/task/new/commit/${fromJson.uuid}`);
  assert.equal((await info(node, fromJson.uuid)).name, 'j');
});

// ----- knobs -----

test('token protects the API but not the UI or /auth/info', async (t) => {
  const node = await startNode(t, { token: 'x' });
  const denied = { error: 'Invalid authentication token: token does not match.' };
  assert.deepEqual(await call(`${node.url}/info`), denied);
  assert.deepEqual(await call(`${node.url}/info?token=y`), denied);
  assert.deepEqual(await post(`${node.url}/task/new`, imagesForm(['a.jpg'])), denied);
  assert.deepEqual(await command(node, 'cancel', { uuid: 'u' }), denied);
  assert.equal((await call<{ version: string }>(`${node.url}/info?token=x`)).version, '2.2.4');
  assert.equal((await fetch(`${node.url}/auth/info`)).status, 200);
  assert.equal((await fetch(`${node.url}/`)).status, 200);
  const uuid = (await post<{ uuid: string }>(`${node.url}/task/new?token=x`, imagesForm(['a.jpg']))).uuid;
  assert.equal((await call<TaskInfo>(`${node.url}/task/${uuid}/info?token=x`)).uuid, uuid);
});

test('offline nodes drop every connection until back online', async (t) => {
  const node = await startNode(t);
  node.setOffline(true);
  await assert.rejects(fetch(`${node.url}/info`));
  node.setOffline(false);
  assert.equal((await call<{ engine: string }>(`${node.url}/info`)).engine, 'odm');
  // Refused connections never carry a request, so only the last /info was received.
  assert.equal(node.requests.filter((r) => r.path === '/info').length, 1);
});

test('dropUploads destroys the next upload requests; the following one succeeds', async (t) => {
  const node = await startNode(t, { dropUploads: 1 });
  const { uuid } = await post<{ uuid: string }>(`${node.url}/task/new/init`);
  await assert.rejects(fetch(`${node.url}/task/new/upload/${uuid}`, { method: 'POST', body: imagesForm(['a.jpg']) }));
  assert.equal(node.options.dropUploads, 0);
  assert.deepEqual(await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['a.jpg'])), { success: true });
  assert.deepEqual(node.taskFiles(uuid), ['a.jpg']);
});

test('stallUploads: the next upload stops reading its socket; the following one is not stalled', async (t) => {
  const node = await startNode(t, { stallUploads: 1 });
  const { uuid } = await post<{ uuid: string }>(`${node.url}/task/new/init`);
  const u = new URL(`${node.url}/task/new/upload/${uuid}`);
  const boundary = 'stallboundary';
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const size = 64 * 1024 * 1024;
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': head.length + size + tail.length },
  });
  req.on('error', () => undefined);
  req.write(head);
  // Writes until the node's socket (and the kernel buffers in between) no longer take data: a healthy node would
  // drain every write and take the whole body.
  const chunk = Buffer.alloc(1024 * 1024, 1);
  let written = 0;
  for (;;) {
    let ok: boolean;
    do {
      ok = req.write(chunk);
      written += chunk.length;
    } while (ok && written < size);
    if (written >= size) break;
    const drained = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 1000);
      req.once('drain', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    if (!drained) break;
  }
  assert.ok(written < size, 'the node read the whole body');
  assert.equal(node.options.stallUploads, 0);
  req.destroy();
  assert.deepEqual(await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['a.jpg'])), { success: true });
  assert.ok(node.taskFiles(uuid).includes('a.jpg'));
});

test('infoDelayMs and uploadDelayMs slow the answers down', async (t) => {
  const node = await startNode(t, { infoDelayMs: 120, uploadDelayMs: 120 });
  let started = Date.now();
  await call(`${node.url}/info`);
  assert.ok(Date.now() - started >= 100, 'info answered too fast');
  started = Date.now();
  await newTask(node, ['a.jpg']);
  assert.ok(Date.now() - started >= 100, 'upload answered too fast');
});

test('requests are recorded; close() removes the temp dir and stops listening', async (t) => {
  const node = await startTestNode({ processingMs: 60_000 });
  t.after(() => node.close());
  const uuid = await newTask(node, ['a.jpg'], {}, { 'x-probe': '1' });
  const recorded = node.requests.find((r) => r.method === 'POST' && r.path === '/task/new');
  assert.equal(recorded?.headers['x-probe'], '1');
  assert.ok(fs.existsSync(path.join(node.dataDir, uuid, 'a.jpg')));
  await node.close();
  assert.equal(fs.existsSync(node.dataDir), false);
  await assert.rejects(fetch(`${node.url}/info`));
  await node.close(); // idempotent
});

test('as NodeODM: a repeated name is stored as a_.jpg, an init keeps an uncommitted upload (unless told otherwise), a refused one removes it', async (t) => {
  const node = await startNode(t);
  const uuid = '00000000-1111-4222-8333-555555555555';
  assert.deepEqual(await post(`${node.url}/task/new/init`, undefined, { 'set-uuid': uuid }), { uuid });
  await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['a.jpg', 'b']));
  assert.deepEqual(await post(`${node.url}/task/new/init`, undefined, { 'set-uuid': uuid }), { uuid });
  await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['a.jpg', 'a.jpg', 'b']));
  assert.deepEqual(
    node.taskImages(uuid).map((f) => f.name),
    ['a.jpg', 'a_.jpg', 'a__.jpg', 'b', 'b_'],
  );
  assert.equal(node.taskImages(uuid)[0]?.bytes, 'jpeg bytes of a.jpg'.length);
  // An upload without files tells whether the node holds an uncommitted upload.
  assert.deepEqual(await post(`${node.url}/task/new/upload/${uuid}`), { error: 'Need at least 1 file.' });
  // An init refused for its options removes the upload dir of its set-uuid (NodeODM's die()).
  const refused = await post<{ error?: string }>(`${node.url}/task/new/init`, new URLSearchParams({ options: 'not json' }), { 'set-uuid': uuid });
  assert.match(refused.error ?? '', /not valid JSON/);
  assert.deepEqual(node.taskFiles(uuid), []);
  assert.deepEqual(await post(`${node.url}/task/new/upload/${uuid}`), { error: 'Invalid uuid (not found)' });

  const older = await startNode(t, { uniqueUploadNames: false, initKeepsUpload: false });
  assert.deepEqual(await post(`${older.url}/task/new/init`, undefined, { 'set-uuid': uuid }), { uuid });
  await post(`${older.url}/task/new/upload/${uuid}`, imagesForm(['a.jpg', 'a.jpg']));
  assert.deepEqual(older.taskFiles(uuid), ['a.jpg']);
  assert.deepEqual(await post(`${older.url}/task/new/init`, undefined, { 'set-uuid': uuid }), { error: 'Directory exists' });
  assert.deepEqual(older.taskFiles(uuid), []);
});

test('dropCommitAnswers commits the task but loses the answer; keepPartialUploads keeps a file cut by a dropped upload', async (t) => {
  const node = await startNode(t, { dropCommitAnswers: 1, keepPartialUploads: true, processingMs: 60_000 });
  const { uuid } = await post<{ uuid: string }>(`${node.url}/task/new/init`);
  await post(`${node.url}/task/new/upload/${uuid}`, imagesForm(['a.jpg']));
  await assert.rejects(fetch(`${node.url}/task/new/commit/${uuid}`, { method: 'POST' }));
  assert.equal(node.options.dropCommitAnswers, 0);
  assert.equal((await info(node, uuid)).imagesCount, 1);

  const cut = (await post<{ uuid: string }>(`${node.url}/task/new/init`)).uuid;
  const boundary = 'CutBoundary';
  const head = `--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="cut.jpg"\r\n\r\n`;
  const u = new URL(`${node.url}/task/new/upload/${cut}`);
  const req = http.request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': head.length + 100_000 },
  });
  req.on('error', () => undefined);
  req.write(head);
  req.write(Buffer.alloc(50_000, 1));
  await waitUntil(() => node.taskImages(cut).some((f) => f.name === 'cut.jpg' && f.bytes > 0), { message: 'nothing written' });
  req.destroy();
  // Committed after the drop, the task has the cut file as its image.
  assert.deepEqual(await post(`${node.url}/task/new/commit/${cut}`), { uuid: cut });
  assert.equal((await info(node, cut)).imagesCount, 1);
  assert.ok((node.taskImages(cut)[0]?.bytes ?? 0) < 100_000);
});
