import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ClusterError, FakeClock, MemoryLogger, systemClock, type Clock } from '../../src/core';
import { buildMultipart } from '../../src/proxy/multipart-writer';
import {
  NodeUploader,
  type NodeUploaderDeps,
  type TaskParams,
  type UploadFile,
  type UploadNode,
  type UploadProgress,
} from '../../src/proxy/node-uploader';
import { startTestNode, type TestNode, type TestNodeOptions } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

// ----- helpers -----

async function startNode(t: TestContext, opts: Partial<TestNodeOptions> = {}): Promise<TestNode> {
  const node = await startTestNode({ processingMs: 60_000, ...opts });
  t.after(() => node.close());
  return node;
}

function endpoint(node: TestNode, token = ''): UploadNode {
  return { baseUrl: node.url, token, name: `node:${node.port}` };
}

function makeUploader(t: TestContext, deps: Partial<NodeUploaderDeps> = {}): { uploader: NodeUploader; logger: MemoryLogger } {
  const logger = new MemoryLogger();
  const uploader = new NodeUploader({ clock: systemClock, logger, retrySleepMs: 10, ...deps });
  t.after(() => uploader.close());
  return { uploader, logger };
}

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'node-uploader-test-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Files with distinct sizes and contents; stored under safe names, sent under `names`. */
function makeFiles(t: TestContext, names: readonly string[], sizeOf = (i: number) => 100 + i * 37): UploadFile[] {
  const dir = tempDir(t);
  return names.map((name, i) => {
    const file = path.join(dir, `f${i}`);
    fs.writeFileSync(file, Buffer.alloc(sizeOf(i), `${i}:${name}|`));
    return { path: file, name };
  });
}

function params(over: Partial<TaskParams> = {}): TaskParams {
  return {
    name: 'Uploader test',
    options: [{ name: 'min-num-features', value: 9000 }],
    dateCreated: 1_700_000_000_000,
    skipPostProcessing: true,
    webhook: null,
    outputs: null,
    ...over,
  };
}

function requestsTo(node: TestNode, prefix: string): string[] {
  return node.requests.filter((r) => r.path.startsWith(prefix)).map((r) => r.path);
}

/** Every file arrived under its name with its size. */
function assertStored(node: TestNode, uuid: string, files: readonly UploadFile[]): void {
  assert.deepEqual(node.taskFiles(uuid), files.map((f) => f.name).sort());
  for (const f of files) assert.equal(node.taskFileSize(uuid, f.name), fs.statSync(f.path).size, f.name);
}

function send(uploader: NodeUploader, node: UploadNode, uuid: string, files: UploadFile[], signal = new AbortController().signal): Promise<void> {
  return uploader.sendTask(node, uuid, params(), files, { signal });
}

const names = (n: number, ext = 'JPG'): string[] => Array.from({ length: n }, (_, i) => `IMG_${String(i).padStart(4, '0')}.${ext}`);

// ----- multipart writer -----

test('multipart: exact Content-Length, replayable stream, safe headers', async (t) => {
  const [file] = makeFiles(t, ['x'], () => 70_000);
  assert.ok(file);
  const body = await buildMultipart([
    { name: 'name', value: 'Täsk' },
    { name: 'images', filePath: file.path, fileName: 'a "b"\r\nc ü.jpg' },
  ]);
  const read = async (): Promise<Buffer> => Buffer.concat(await body.stream().toArray());
  const first = await read();
  assert.equal(first.length, body.contentLength);
  assert.deepEqual(await read(), first, 'a retry sends the same bytes');
  const boundary = /boundary=(.+)$/.exec(body.contentType)?.[1] ?? '';
  assert.match(boundary, /^-+ClusterODMFormBoundary[0-9a-f]{32}$/);
  const text = first.toString('latin1');
  assert.ok(text.includes(`filename="a %22b%22c \u00c3\u00bc.jpg"; filename*=UTF-8''a%20%22b%22c%20%C3%BC.jpg\r\n`), text.slice(0, 400));
  assert.ok(text.includes('Content-Type: application/octet-stream\r\n\r\n'));
  assert.ok(text.endsWith(`--${boundary}--\r\n`));
});

test('multipart: a file that changes size after the body was built fails instead of corrupting the upload', async (t) => {
  const [file] = makeFiles(t, ['x'], () => 1000);
  assert.ok(file);
  const body = await buildMultipart([{ name: 'images', filePath: file.path, fileName: 'x' }]);
  fs.appendFileSync(file.path, 'more');
  await assert.rejects(body.stream().toArray(), /changed size while being uploaded \(1000 → 1001 bytes\)/);
});

// ----- sendTask -----

test('sendTask: 45 files arrive intact in at most 20 upload requests, committed under the same uuid', async (t) => {
  const node = await startNode(t);
  const { uploader, logger } = makeUploader(t);
  const files = makeFiles(t, names(45));
  const uuid = randomUUID();
  const progress: UploadProgress[] = [];
  await uploader.sendTask(endpoint(node), uuid, params({ webhook: 'http://127.0.0.1:1/hook' }), files, {
    signal: new AbortController().signal,
    onProgress: (p) => progress.push(p),
  });

  const [task, ...others] = node.tasks();
  assert.equal(others.length, 0);
  assert.equal(task?.uuid, uuid);
  assert.equal(task?.imagesCount, 45);
  assert.equal(task?.name, 'Uploader test');
  assert.equal(task?.webhook, 'http://127.0.0.1:1/hook');
  assert.deepEqual(task?.options, [{ name: 'min-num-features', value: 9000 }]);
  assertStored(node, uuid, files);

  const uploads = requestsTo(node, `/task/new/upload/${uuid}`);
  assert.equal(uploads.length, 15, 'ceil(45/20) = 3 files per request');
  const init = node.requests.find((r) => r.path.startsWith('/task/new/init'));
  assert.equal(init?.headers['set-uuid'], uuid);
  assert.equal(init?.headers['transfer-encoding'], undefined, 'Content-Length, not chunked');
  assert.deepEqual(requestsTo(node, '/task/new/commit/'), [`/task/new/commit/${uuid}`]);

  const last = progress.at(-1);
  assert.equal(last?.filesSent, 45);
  assert.equal(last?.bytesSent, last?.bytesTotal);
  assert.ok(logger.lines.some((l) => l.includes(`Uploading 45 files to node:${node.port} for ${uuid}`)));
});

test('sendTask: the node token is sent on every request', async (t) => {
  const node = await startNode(t, { token: 's3cr&t' });
  const { uploader } = makeUploader(t);
  const uuid = randomUUID();
  await send(uploader, endpoint(node, 's3cr&t'), uuid, makeFiles(t, names(3)));
  assert.equal(node.tasks()[0]?.uuid, uuid);
  assert.ok(node.requests.length >= 5);
  for (const r of node.requests) assert.ok(r.path.endsWith('?token=s3cr%26t'), r.path);
});

test('sendTask: a wrong token is a clear rejection', async (t) => {
  const node = await startNode(t, { token: 'right' });
  const { uploader } = makeUploader(t);
  await assert.rejects(send(uploader, endpoint(node, 'wrong'), randomUUID(), makeFiles(t, names(1))), {
    message: 'Invalid authentication token: token does not match.',
  });
});

test('sendTask: odd file names (spaces, quotes, unicode) arrive intact', async (t) => {
  const node = await startNode(t);
  const { uploader } = makeUploader(t);
  const odd = ['with space.jpg', 'quote"d.jpg', "it's (1).JPG", 'ünïcødé 日本語 📷.jpg', 'semi;colon=x.tif', 'percent%22.png', 'geo.txt'];
  const files = makeFiles(t, odd);
  const uuid = randomUUID();
  await send(uploader, endpoint(node), uuid, files);
  assertStored(node, uuid, files);
});

test('sendTask: dropped uploads are retried and succeed', async (t) => {
  const node = await startNode(t, { dropUploads: 2 });
  const { uploader, logger } = makeUploader(t);
  const files = makeFiles(t, names(5));
  const uuid = randomUUID();
  await send(uploader, endpoint(node), uuid, files);
  assertStored(node, uuid, files);
  assert.equal(node.tasks()[0]?.imagesCount, 5);
  assert.equal(requestsTo(node, '/task/new/upload/').length, 7, '5 chunks + 2 retries');
  const retries = logger.lines.filter((l) => l.includes(`File upload to node:${node.port} failed, retrying... (1)`));
  assert.equal(retries.length, 2);
  assert.ok(retries.every((l) => l.startsWith('warn: ') && l.includes(uuid)));
});

test('sendTask: 5 retries per chunk; the 6th failure rejects with "maximum upload retries (5) exceeded"', async (t) => {
  const node = await startNode(t, { dropUploads: 6 });
  const { uploader, logger } = makeUploader(t);
  const uuid = randomUUID();
  await assert.rejects(send(uploader, endpoint(node), uuid, makeFiles(t, names(1))), (e: Error) => {
    assert.match(e.message, /^POST \/task\/new\/upload\/[0-9a-f-]+ to node:\d+ failed: .+: maximum upload retries \(5\) exceeded$/);
    return true;
  });
  assert.equal(requestsTo(node, '/task/new/upload/').length, 6);
  assert.deepEqual(requestsTo(node, '/task/new/commit/'), []);
  assert.equal(logger.lines.filter((l) => l.includes('retrying...')).length, 5);

  node.configure({ dropUploads: 5 });
  const second = randomUUID();
  await send(uploader, endpoint(node), second, makeFiles(t, names(1)));
  assert.equal(node.tasks()[0]?.uuid, second, 'five drops are still survivable');
});

test('init never removes a task that a node reports as committed: it is kept and the send fails clearly', async (t) => {
  const node = await startNode(t);
  const { uploader } = makeUploader(t);
  const uuid = randomUUID();
  // A task committed on the node under this uuid that this send did not commit (a set-uuid taken by someone else).
  const committed = makeFiles(t, ['a.jpg', 'theirs.jpg']);
  await send(uploader, endpoint(node), uuid, committed);
  const files = makeFiles(t, ['a.jpg', 'b.jpg', 'c.jpg'], (i) => 5000 + i);

  await assert.rejects(send(uploader, endpoint(node), uuid, files), (e: unknown) => {
    assert.ok(e instanceof ClusterError);
    assert.equal(e.code, 'NODE_TASK_EXISTS');
    assert.match(e.message, new RegExp(`task ${uuid} is already committed on node:${node.port}`));
    return true;
  });
  assert.deepEqual(node.tasks().map((task) => [task.uuid, task.imagesCount]), [[uuid, 2]]);
  assertStored(node, uuid, committed);
  assert.deepEqual(requestsTo(node, '/task/remove'), []);
});

test('a commit whose answer is lost is adopted: the task stays committed on its node and is never removed', async (t) => {
  const node = await startNode(t, { dropCommitAnswers: 1 });
  const { uploader, logger } = makeUploader(t);
  const uuid = randomUUID();
  const files = makeFiles(t, names(3));
  await send(uploader, endpoint(node), uuid, files);
  assert.deepEqual(node.tasks().map((task) => [task.uuid, task.imagesCount]), [[uuid, 3]]);
  assertStored(node, uuid, files);
  assert.deepEqual(requestsTo(node, '/task/remove'), []);
  assert.equal(requestsTo(node, '/task/new/commit/').length, 1, 'committed once');
  assert.ok(logger.lines.some((l) => l.includes(`Task ${uuid} is committed on node:${node.port}`)));
});

test('a node holding an uncommitted upload of the task from an earlier attempt ends with exactly the images sent again', async (t) => {
  const node = await startNode(t);
  const { uploader } = makeUploader(t);
  const uuid = randomUUID();
  const signal = new AbortController().signal;
  // An earlier attempt: initialised, one image sent, never committed (NodeODM keeps such an upload at the next init).
  const earlier = makeFiles(t, ['a.jpg'], () => 777);
  await uploader.init(endpoint(node), uuid, params(), signal);
  await uploader.upload(endpoint(node), uuid, earlier, signal);
  assert.deepEqual(node.taskFiles(uuid), ['a.jpg']);

  const files = makeFiles(t, ['a.jpg', 'b.jpg'], (i) => 1000 + i);
  await send(uploader, endpoint(node), uuid, files);
  assert.deepEqual(node.tasks().map((task) => [task.uuid, task.imagesCount]), [[uuid, 2]]);
  assertStored(node, uuid, files);
});

/** A scripted node: answers each request with `answer(path)` as JSON, after reading the body. */
async function startScripted(t: TestContext, answer: (path: string) => unknown): Promise<{ node: UploadNode; paths: string[] }> {
  const paths: string[] = [];
  const server = http.createServer((req, res) => {
    paths.push(req.url ?? '');
    req.resume();
    req.on('end', () => res.end(JSON.stringify(answer(req.url ?? ''))));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  return { node: { baseUrl: `http://127.0.0.1:${port}`, token: '', name: 'scripted' }, paths };
}

test('sendTask: init answering another uuid is rejected', async (t) => {
  const { node } = await startScripted(t, () => ({ uuid: 'not-mine' }));
  const { uploader } = makeUploader(t);
  const uuid = randomUUID();
  await assert.rejects(send(uploader, node, uuid, makeFiles(t, names(1))), { message: `set-uuid did not match, not-mine !== ${uuid}` });
});

test('init: older NodeODM\'s "Directory exists" (it removed an uncommitted earlier upload) leads to init again', async (t) => {
  const uuid = randomUUID();
  let inits = 0;
  const { node, paths } = await startScripted(t, (p) => {
    if (!p.startsWith('/task/new/init')) return { success: false, error: `${uuid} not found` };
    inits += 1;
    return inits === 1 ? { error: 'Directory exists (should not have happened: undefined)' } : { uuid };
  });
  const { uploader } = makeUploader(t);
  await uploader.init(node, uuid, params(), new AbortController().signal);
  assert.deepEqual(paths, ['/task/new/init', '/task/new/init']);
});

test('an idle request times out and counts as a failed attempt', async (t) => {
  const node = await startNode(t, { uploadDelayMs: 30_000 });
  const { uploader } = makeUploader(t, { requestTimeoutMs: 150, chunkRetries: 1 });
  await assert.rejects(send(uploader, endpoint(node), randomUUID(), makeFiles(t, names(1))), {
    message: /failed: no data moved for 0.15 s: maximum upload retries \(1\) exceeded$/,
  });
  assert.equal(requestsTo(node, '/task/new/upload/').length, 2);
});

// ----- abort -----

test('abort mid-upload rejects promptly with Aborted and sends nothing more', async (t) => {
  const node = await startNode(t, { uploadDelayMs: 30_000 });
  const { uploader } = makeUploader(t);
  const uuid = randomUUID();
  const abort = new AbortController();
  const sending = send(uploader, endpoint(node), uuid, makeFiles(t, names(10)), abort.signal);
  sending.catch(() => undefined); // asserted below
  await waitUntil(() => requestsTo(node, '/task/new/upload/').length === 10);

  const abortedAt = Date.now();
  abort.abort();
  await assert.rejects(sending, { message: 'Aborted' });
  const took = Date.now() - abortedAt;
  t.diagnostic(`rejected ${took} ms after abort`);
  assert.ok(took < 1000, `rejected ${took} ms after abort`);
  const seen = node.requests.length;
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.equal(node.requests.length, seen, 'no retries, no commit, no cleanup after abort');
  assert.deepEqual(node.tasks(), []);
});

/** Descriptors of this process open on files under `dir` (Linux), or null where /proc is missing. */
function openFilesUnder(dir: string): number | null {
  if (!fs.existsSync('/proc/self/fd')) return null;
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith(dir);
    } catch {
      return false;
    }
  }).length;
}

test('abort mid-body (throttled uploads) closes every file and timer', async (t) => {
  const node = await startNode(t);
  const clock = new FakeClock();
  // 8 KB/s on a fake clock moved by hand: each request sends one slice, then stalls.
  const { uploader } = makeUploader(t, { clock, maxSendBytesPerSec: 8 * 1024 });
  const files = makeFiles(t, names(4), () => 256 * 1024);
  const dir = path.dirname(files[0]?.path ?? '');
  const abort = new AbortController();
  const sending = send(uploader, endpoint(node), randomUUID(), files, abort.signal);
  sending.catch(() => undefined);
  await waitUntil(() => clock.pendingTimers() === 4);
  clock.advance(100);
  await waitUntil(() => requestsTo(node, '/task/new/upload/').length === 4 && clock.pendingTimers() === 4);
  if (openFilesUnder(dir) !== null) assert.equal(openFilesUnder(dir), 4, 'each request is reading its file');
  abort.abort();
  await assert.rejects(sending, { message: 'Aborted' });
  assert.equal(clock.pendingTimers(), 0, 'pacing timers cleared');
  if (openFilesUnder(dir) !== null) await waitUntil(() => openFilesUnder(dir) === 0, { message: 'files still open' });
});

test('abort during the retry pause settles at once and leaves no timer behind', async (t) => {
  const node = await startNode(t, { dropUploads: 1 });
  const clock = new FakeClock();
  const { uploader, logger } = makeUploader(t, { clock, retrySleepMs: 2000 });
  const abort = new AbortController();
  const sending = send(uploader, endpoint(node), randomUUID(), makeFiles(t, names(1)), abort.signal);
  sending.catch(() => undefined);
  await waitUntil(() => logger.lines.some((l) => l.includes('retrying... (1)')));
  assert.equal(clock.pendingTimers(), 1, 'waiting 2 s on the injected clock');
  abort.abort();
  await assert.rejects(sending, { message: 'Aborted' });
  assert.equal(clock.pendingTimers(), 0);
  assert.equal(requestsTo(node, '/task/new/upload/').length, 1);
});

test('an already aborted signal sends nothing', async (t) => {
  const node = await startNode(t);
  const { uploader } = makeUploader(t);
  await assert.rejects(send(uploader, endpoint(node), randomUUID(), makeFiles(t, names(2)), AbortSignal.abort()), { message: 'Aborted' });
  assert.deepEqual(node.requests, []);
});

// ----- streaming and throttling -----

test('a 100 MB file streams from disk with flat memory', async (t) => {
  const node = await startNode(t);
  const { uploader } = makeUploader(t);
  const dir = tempDir(t);
  const big = path.join(dir, 'big.tif');
  const size = 100 * 1024 * 1024;
  fs.writeFileSync(big, '');
  fs.truncateSync(big, size); // sparse: no 100 MB buffer in the test either
  const uuid = randomUUID();

  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 5);
  const started = Date.now();
  try {
    await send(uploader, endpoint(node), uuid, [{ path: big, name: 'big.tif' }]);
  } finally {
    clearInterval(sampler);
  }
  const growthMb = (peak - baseline) / 1024 / 1024;
  t.diagnostic(`100 MB in ${Date.now() - started} ms, RSS growth ${growthMb.toFixed(1)} MB`);
  assert.equal(node.taskFileSize(uuid, 'big.tif'), size);
  assert.ok(growthMb < 60, `RSS grew ${growthMb.toFixed(1)} MB`);
});

test('maxSendBytesPerSec paces the body (200 KB at 400 KB/s takes at least 0.4 s)', async (t) => {
  const node = await startNode(t);
  const clock: Clock = systemClock;
  const { uploader } = makeUploader(t, { clock, maxSendBytesPerSec: 400 * 1024 });
  const files = makeFiles(t, ['slow.jpg'], () => 200 * 1024);
  const uuid = randomUUID();
  await uploader.init(endpoint(node), uuid, params(), new AbortController().signal);
  const started = Date.now();
  await uploader.upload(endpoint(node), uuid, files, new AbortController().signal);
  const took = Date.now() - started;
  t.diagnostic(`200 KB at 400 KB/s: ${took} ms`);
  assert.ok(took >= 400, `took ${took} ms`);
  assert.ok(took < 2000, `took ${took} ms`);
  assert.equal(node.taskFileSize(uuid, 'slow.jpg'), 200 * 1024);
});
