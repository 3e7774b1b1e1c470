import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { ClusterError } from '../../src/core';
import {
  isPartialName,
  NameReserver,
  StagingError,
  sanitizeFilename,
  stageMultipart,
  uniqueVariant,
  type StageOptions,
  type StagedFile,
  type StagingResult,
} from '../../src/proxy/upload-staging';

// ---------------------------------------------------------------------------------------------------------------
// Harness: a real HTTP server whose handler stages into a temp dir and answers JSON, and records every outcome
// (some tests kill the connection, so the outcome cannot always travel back in the response).

type Outcome = { ok: true; result: StagingResult } | { ok: false; error: StagingError };

interface Reply {
  fields?: Record<string, string>;
  files?: StagedFile[];
  error?: string;
  kind?: string;
}

interface Harness {
  url: string;
  port: number;
  nextOutcome(): Promise<Outcome>;
}

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upload-staging-'));
  t.after(() => {
    fs.chmodSync(dir, 0o700);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

async function startServer(t: TestContext, options: (req: http.IncomingMessage) => StageOptions): Promise<Harness> {
  const outcomes: Outcome[] = [];
  const waiters: ((o: Outcome) => void)[] = [];
  const record = (o: Outcome): void => {
    const waiter = waiters.shift();
    if (waiter) waiter(o);
    else outcomes.push(o);
  };
  const server = http.createServer((req, res) => {
    res.on('error', () => undefined);
    const answer = (body: Reply): void => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(body));
    };
    stageMultipart(req, options(req)).then(
      (result) => {
        record({ ok: true, result });
        answer({ fields: Object.fromEntries(result.fields), files: result.files });
      },
      (err: unknown) => {
        assert.ok(err instanceof StagingError, `not a StagingError: ${String(err)}`);
        record({ ok: false, error: err });
        answer({ error: err.message, kind: err.kind });
      },
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const address = server.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    url: `http://127.0.0.1:${address.port}/`,
    port: address.port,
    nextOutcome: () => {
      const ready = outcomes.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => waiters.push(resolve));
    },
  };
}

function filesInto(dir: string, extra: Partial<StageOptions> = {}): () => StageOptions {
  return () => ({ dir, acceptFiles: true, ...extra });
}

async function postJson(url: string, init: RequestInit): Promise<Reply> {
  const res = await fetch(url, { method: 'POST', ...init });
  return (await res.json()) as Reply;
}

interface Part {
  name: string;
  value: string | Buffer;
  filename?: string;
}

const BOUNDARY = '----stagingTestBoundary7MA4YWxkTrZu0gW';
const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

/** A hand-made multipart body, so filenames reach the server byte for byte (no client-side escaping). */
function multipartBody(parts: Part[], closed = true): Buffer {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    const filename = p.filename === undefined ? '' : `; filename="${p.filename}"`;
    const type = p.filename === undefined ? '' : '\r\nContent-Type: application/octet-stream';
    const disposition = `Content-Disposition: form-data; name="${p.name}"${filename}`;
    chunks.push(Buffer.from(`--${BOUNDARY}\r\n${disposition}${type}\r\n\r\n`));
    chunks.push(Buffer.from(p.value));
    chunks.push(Buffer.from('\r\n'));
  }
  if (closed) chunks.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(chunks);
}

function postMultipart(url: string, body: Buffer): Promise<Reply> {
  return postJson(url, { headers: { 'content-type': MULTIPART }, body });
}

function listDir(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

/** A raw socket that sent a request head and the start of a multipart file, then does whatever the test wants. */
async function openPartialUpload(port: number, declaredBytes: number, firstBytes: number): Promise<net.Socket> {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  socket.on('error', () => undefined);
  const head = multipartBody([{ name: 'images', filename: 'partial.jpg', value: Buffer.alloc(firstBytes, 120) }]);
  // Drop the part's CRLF and the closing boundary: the file is "still arriving".
  const partial = head.subarray(0, head.length - (`\r\n--${BOUNDARY}--\r\n`.length));
  socket.write(
    `POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${MULTIPART}\r\nContent-Length: ${declaredBytes}\r\n\r\n`,
  );
  socket.write(partial);
  return socket;
}

async function waitFor(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Pure helpers

test('sanitizeFilename: basename on both separators, control chars, dots, body.json, length', () => {
  assert.equal(sanitizeFilename('../../evil.JPG'), 'evil.JPG');
  assert.equal(sanitizeFilename('..\\..\\evil2.JPG'), 'evil2.JPG');
  assert.equal(sanitizeFilename('C:\\photos\\a/b\\IMG_1.jpg'), 'IMG_1.jpg');
  assert.equal(sanitizeFilename('a\u0000b\r\n\u0085.jpg'), 'ab.jpg');
  assert.equal(sanitizeFilename(''), 'file');
  assert.equal(sanitizeFilename(undefined), 'file');
  assert.equal(sanitizeFilename('..'), 'file');
  assert.equal(sanitizeFilename('dir/.'), 'file');
  assert.equal(sanitizeFilename('x/'), 'file');
  assert.equal(sanitizeFilename('body.json'), '_body.json');
  assert.equal(sanitizeFilename('sub/BODY.Json'), '_BODY.Json');
  assert.equal(sanitizeFilename('body.json.jpg'), 'body.json.jpg');
  assert.equal(sanitizeFilename('photo 1 (é).JPG'), 'photo 1 (é).JPG');

  const long = sanitizeFilename(`${'x'.repeat(300)}.jpg`);
  assert.equal(Buffer.byteLength(long), 255);
  assert.ok(long.endsWith('.jpg'));
  const wide = sanitizeFilename(`${'é'.repeat(200)}.tif`);
  assert.ok(Buffer.byteLength(wide) <= 255);
  assert.ok(wide.endsWith('é.tif'), 'no character is split');
});

test('uniqueVariant and NameReserver: a.jpg → a_.jpg → a__.jpg, seeded from the directory', (t) => {
  assert.equal(uniqueVariant('a.jpg', 1), 'a_.jpg');
  assert.equal(uniqueVariant('a.jpg', 2), 'a__.jpg');
  assert.equal(uniqueVariant('README', 1), 'README_');
  const long = `${'x'.repeat(251)}.jpg`;
  assert.equal(Buffer.byteLength(uniqueVariant(long, 3)), 255);
  assert.ok(uniqueVariant(long, 3).endsWith('x___.jpg'));

  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'a.jpg'), '');
  const names = new NameReserver(dir);
  assert.equal(names.reserve('a.jpg'), 'a_.jpg');
  assert.equal(names.reserve('a.jpg'), 'a__.jpg');
  assert.equal(names.reserve('b.jpg'), 'b.jpg');
  names.release('a_.jpg');
  assert.equal(names.reserve('a.jpg'), 'a_.jpg');
});

// ---------------------------------------------------------------------------------------------------------------
// Fields

test('fields only: urlencoded and multipart, last value wins, arbitrary names', async (t) => {
  const h = await startServer(t, () => ({ dir: null, acceptFiles: false }));

  const form = new URLSearchParams([
    ['name', 'first'],
    ['options', '[{"name":"dsm","value":true}]'],
    ['name', 'second'],
    ['__proto__', 'x'],
  ]);
  const url = await postJson(h.url, { body: form });
  assert.deepEqual(url.fields, { name: 'second', options: '[{"name":"dsm","value":true}]', ['__proto__']: 'x' });
  const outcome = await h.nextOutcome();
  assert.ok(outcome.ok);
  assert.equal(outcome.result.fields.get('__proto__'), 'x');

  const fd = new FormData();
  fd.append('skipPostProcessing', 'true');
  fd.append('webhook', 'http://example.com/hook');
  fd.append('skipPostProcessing', 'false');
  const multi = await postJson(h.url, { body: fd });
  assert.deepEqual(multi, { fields: { skipPostProcessing: 'false', webhook: 'http://example.com/hook' }, files: [] });
});

test('empty body without a content type resolves with nothing; a body without one is refused', async (t) => {
  const h = await startServer(t, () => ({ dir: null, acceptFiles: false }));
  assert.deepEqual(await postJson(h.url, {}), { fields: {}, files: [] });

  const reply = await new Promise<Reply>((resolve, reject) => {
    const req = http.request(h.url, { method: 'POST', headers: { 'content-length': '5' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Reply));
    });
    req.on('error', reject);
    req.end('hello');
  });
  assert.deepEqual(reply, { error: 'Missing Content-Type', kind: 'malformed' });
});

test('content type errors: multipart without boundary, unsupported type', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const noBoundary = await postJson(h.url, { headers: { 'content-type': 'multipart/form-data' }, body: 'xyz' });
  assert.deepEqual(noBoundary, { error: 'Multipart: Boundary not found', kind: 'malformed' });
  const json = await postJson(h.url, { headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
  assert.deepEqual(json, { error: 'Unsupported content type: application/json', kind: 'malformed' });
  assert.deepEqual(listDir(dir), []);
});

test('field limits: too many fields, a field too large (exactly the limit is fine)', async (t) => {
  const limits = { maxFields: 2, maxFieldBytes: 10 };
  const h = await startServer(t, () => ({ dir: null, acceptFiles: false, limits }));
  const ok = await postJson(h.url, { body: new URLSearchParams({ a: '0123456789', b: '' }) });
  assert.deepEqual(ok.fields, { a: '0123456789', b: '' });
  const many = await postJson(h.url, { body: new URLSearchParams({ a: '1', b: '2', c: '3' }) });
  assert.deepEqual(many, { error: 'Too many fields', kind: 'limit' });
  const fd = new FormData();
  fd.append('options', '01234567890');
  const big = await postJson(h.url, { body: fd });
  assert.deepEqual(big, { error: 'Field too large: options', kind: 'limit' });
});

// ---------------------------------------------------------------------------------------------------------------
// Files

test('several images: stored in order, same names made unique, existing files never overwritten', async (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'c.jpg'), 'old');
  const reported: string[] = [];
  const h = await startServer(t, filesInto(dir, { onFile: (f) => reported.push(f.name) }));
  const fd = new FormData();
  fd.append('name', 'my task');
  fd.append('images', new Blob(['A']), 'a.jpg');
  fd.append('images', new Blob(['BB']), 'b.jpg');
  fd.append('images', new Blob(['CCC']), 'a.jpg');
  fd.append('images', new Blob(['DDDD']), 'c.jpg');
  const reply = await postJson(h.url, { body: fd });
  assert.deepEqual(reply.fields, { name: 'my task' });
  assert.deepEqual(reply.files, [
    { name: 'a.jpg', originalName: 'a.jpg', bytes: 1 },
    { name: 'b.jpg', originalName: 'b.jpg', bytes: 2 },
    { name: 'a_.jpg', originalName: 'a.jpg', bytes: 3 },
    { name: 'c_.jpg', originalName: 'c.jpg', bytes: 4 },
  ]);
  assert.deepEqual(reported.sort(), ['a.jpg', 'a_.jpg', 'b.jpg', 'c_.jpg']);
  // The reply was sent after the promise resolved: everything is already on disk.
  assert.equal(fs.readFileSync(path.join(dir, 'a_.jpg'), 'utf8'), 'CCC');
  assert.equal(fs.readFileSync(path.join(dir, 'c.jpg'), 'utf8'), 'old');
  assert.equal(fs.readFileSync(path.join(dir, 'c_.jpg'), 'utf8'), 'DDDD');
});

test('two concurrent requests uploading the same name into one dir keep both files', async (t) => {
  // default: a private reserver seeded from the listing; shared: one reserver per dir, as a caller should;
  // blind: reservers that ignore the directory, so both pick same.jpg and only the `wx` open can save the day.
  for (const mode of ['default', 'shared', 'blind'] as const) {
    const dir = tempDir(t);
    const names = new NameReserver(dir);
    const h = await startServer(t, () => {
      const blind = new NameReserver(null);
      const reserveName = { default: undefined, shared: names, blind }[mode];
      return { dir, acceptFiles: true, ...(reserveName ? { reserveName: (w: string) => reserveName.reserve(w) } : {}) };
    });
    const upload = (fill: number): Promise<Reply> => {
      const fd = new FormData();
      fd.append('images', new Blob([Buffer.alloc(512 * 1024, fill)]), 'same.jpg');
      return postJson(h.url, { body: fd });
    };
    const replies = await Promise.all([upload(1), upload(2)]);
    const stored = replies.map((r) => r.files?.[0]?.name).sort();
    assert.deepEqual(stored, ['same.jpg', 'same_.jpg'], mode);
    assert.deepEqual(listDir(dir), ['same.jpg', 'same_.jpg']);
    const fills = listDir(dir).map((n) => new Set(fs.readFileSync(path.join(dir, n))));
    assert.deepEqual(fills.map((s) => [...s]).sort(), [[1], [2]], 'each file holds one request, whole');
  }
});

test('a thousand tiny files in one request are all stored (bounded parallel writes, no EMFILE)', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const count = 1000;
  const parts = Array.from({ length: count }, (_, i) => ({ name: 'images', filename: `img${i}.jpg`, value: `#${i}` }));
  const reply = await postMultipart(h.url, multipartBody(parts));
  assert.equal(reply.files?.length, count);
  const last = `img${count - 1}.jpg`;
  assert.deepEqual(reply.files?.[count - 1], { name: last, originalName: last, bytes: 4 });
  assert.equal(listDir(dir).length, count);
  assert.equal(fs.readFileSync(path.join(dir, 'img123.jpg'), 'utf8'), '#123');
});

test('path tricks and body.json are neutralised', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const body = multipartBody([
    { name: 'images', filename: '../../evil.JPG', value: 'e1' },
    { name: 'images', filename: '..\\..\\evil2.JPG', value: 'e2' },
    { name: 'images', filename: 'body.json', value: '{}' },
    { name: 'images', filename: '..', value: 'dots' },
  ]);
  const reply = await postMultipart(h.url, body);
  assert.deepEqual(
    reply.files?.map((f) => f.name),
    ['evil.JPG', 'evil2.JPG', '_body.json', 'file'],
  );
  assert.equal(reply.files?.[1]?.originalName, '..\\..\\evil2.JPG');
  assert.deepEqual(listDir(dir), ['_body.json', 'evil.JPG', 'evil2.JPG', 'file']);
  assert.ok(!fs.existsSync(path.join(dir, '..', 'evil.JPG')));
});

test('a non-images file field is drained and reported at once, and nothing is kept', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const fd = new FormData();
  fd.append('images', new Blob(['ok']), 'a.jpg');
  fd.append('file', new Blob([Buffer.alloc(256 * 1024)]), 'x.txt');
  fd.append('images', new Blob(['ok']), 'b.jpg');
  const started = Date.now();
  const reply = await postJson(h.url, { body: fd });
  assert.deepEqual(reply, { error: 'Unexpected field file', kind: 'unexpected-field' });
  assert.ok(Date.now() - started < 3000, 'no stall until a timeout');
  assert.deepEqual(listDir(dir), []);
});

test('parts without a name do not crash the server: a nameless file is unexpected, a nameless field ignored', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const part = (disposition: string, value: string): string =>
    `--${BOUNDARY}\r\nContent-Disposition: form-data${disposition}\r\n\r\n${value}\r\n`;
  const field = Buffer.from(`${part('', 'v')}${part('; name="a"', '1')}--${BOUNDARY}--\r\n`);
  assert.deepEqual(await postMultipart(h.url, field), { fields: { a: '1' }, files: [] });
  const file = Buffer.from(`${part('; filename="x.jpg"', 'data')}--${BOUNDARY}--\r\n`);
  const reply = await postMultipart(h.url, file);
  assert.deepEqual(reply, { error: 'Unexpected field (unnamed)', kind: 'unexpected-field' });
  assert.deepEqual(listDir(dir), []);
});

test('files sent where none are accepted are reported as unexpected', async (t) => {
  const h = await startServer(t, () => ({ dir: null, acceptFiles: false }));
  const fd = new FormData();
  fd.append('options', '[]');
  fd.append('images', new Blob(['x']), 'a.jpg');
  assert.deepEqual(await postJson(h.url, { body: fd }), { error: 'Unexpected field images', kind: 'unexpected-field' });
});

test('truncated multipart: the NodeODM error, and no partial file left', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const body = multipartBody([{ name: 'images', filename: 'a.jpg', value: Buffer.alloc(100_000, 7) }], false);
  const reply = await postMultipart(h.url, body.subarray(0, 50_000));
  assert.deepEqual(reply, { error: 'Unexpected end of multipart data', kind: 'malformed' });
  assert.deepEqual(listDir(dir), []);
});

test('a malformed part header is answered at once, not after the idle timeout', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const started = Date.now();
  const body = Buffer.from(`--${BOUNDARY}\r\nNot a header line\r\n\r\nxx\r\n--${BOUNDARY}--\r\n`);
  assert.deepEqual(await postMultipart(h.url, body), { error: 'Malformed part header', kind: 'malformed' });
  assert.ok(Date.now() - started < 3000);
});

test('maxImages counts files already staged; a failed request keeps none of its files', async (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'body.json'), '{}');
  fs.writeFileSync(path.join(dir, 'one.jpg'), '1');
  fs.writeFileSync(path.join(dir, 'two.jpg'), '2');
  const h = await startServer(t, filesInto(dir, { maxImages: 3, existingFiles: 2 }));
  const two = multipartBody([
    { name: 'images', filename: 'three.jpg', value: '3' },
    { name: 'images', filename: 'four.jpg', value: '4' },
  ]);
  assert.deepEqual(await postMultipart(h.url, two), { error: 'Max images count exceeded.', kind: 'limit' });
  assert.deepEqual(listDir(dir), ['body.json', 'one.jpg', 'two.jpg']);

  const one = multipartBody([{ name: 'images', filename: 'three.jpg', value: '3' }]);
  assert.deepEqual((await postMultipart(h.url, one)).files?.map((f) => f.name), ['three.jpg']);
});

test('byte limits: per file and per request', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir, { limits: { maxFileBytes: 1000, maxTotalBytes: 1500 } }));
  const exact = multipartBody([{ name: 'images', filename: 'a.jpg', value: Buffer.alloc(1000) }]);
  assert.equal((await postMultipart(h.url, exact)).files?.[0]?.bytes, 1000);
  fs.rmSync(path.join(dir, 'a.jpg'));

  const tooBig = multipartBody([{ name: 'images', filename: 'a.jpg', value: Buffer.alloc(5000) }]);
  assert.deepEqual(await postMultipart(h.url, tooBig), { error: 'File too large', kind: 'limit' });
  const tooMuch = multipartBody([
    { name: 'images', filename: 'a.jpg', value: Buffer.alloc(1000) },
    { name: 'images', filename: 'b.jpg', value: Buffer.alloc(1000) },
  ]);
  assert.deepEqual(await postMultipart(h.url, tooMuch), { error: 'Upload too large', kind: 'limit' });
  assert.deepEqual(listDir(dir), []);
});

test('a client aborting mid-file: the promise rejects and the partial file is removed', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const socket = await openPartialUpload(h.port, 10_000_000, 200_000);
  await waitFor(() => listDir(dir).length === 1); // the server really was writing the file
  socket.destroy();
  const outcome = await h.nextOutcome();
  assert.ok(!outcome.ok);
  assert.equal(outcome.error.kind, 'aborted');
  assert.deepEqual(listDir(dir), []);
});

test('a file is written under a temporary name and gets its own name only once complete', async (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'partial.jpg'), 'an earlier image');
  const h = await startServer(t, filesInto(dir));
  const declared = multipartBody([{ name: 'images', filename: 'partial.jpg', value: Buffer.alloc(300_000, 120) }]).length;
  const socket = await openPartialUpload(h.port, declared, 200_000);
  // Mid-file, as a crash would find it: the cut file is under a temporary name, never under an image's name.
  await waitFor(() => listDir(dir).some(isPartialName));
  assert.deepEqual(listDir(dir).filter((n) => !isPartialName(n)), ['partial.jpg']);
  assert.equal(fs.readFileSync(path.join(dir, 'partial.jpg'), 'utf8'), 'an earlier image');
  socket.end(Buffer.concat([Buffer.alloc(100_000, 120), Buffer.from(`\r\n--${BOUNDARY}--\r\n`)]));
  const outcome = await h.nextOutcome();
  assert.ok(outcome.ok);
  assert.deepEqual(outcome.result.files, [{ name: 'partial_.jpg', originalName: 'partial.jpg', bytes: 300_000 }]);
  assert.deepEqual(listDir(dir), ['partial.jpg', 'partial_.jpg']);
  assert.equal(fs.statSync(path.join(dir, 'partial_.jpg')).size, 300_000);
  // A client's file can never pass for a file being written.
  assert.equal(isPartialName(sanitizeFilename('.partial-0123456789abcdef')), false);
});

test('staging errors carry stable codes', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir, { limits: { maxFileBytes: 10 } }));
  await postMultipart(h.url, multipartBody([{ name: 'images', filename: 'a.jpg', value: Buffer.alloc(11) }]));
  const limit = await h.nextOutcome();
  assert.ok(!limit.ok);
  assert.equal(limit.error.code, 'LIMIT_REACHED');
  assert.ok(limit.error instanceof ClusterError);
  await postMultipart(h.url, multipartBody([{ name: 'images', filename: 'a.jpg', value: Buffer.alloc(5) }], false));
  const truncated = await h.nextOutcome();
  assert.ok(!truncated.ok);
  assert.equal(truncated.error.code, 'INVALID_INPUT');
  assert.equal(truncated.error.message, 'Unexpected end of multipart data');
});

test('an idle upload times out: rejected, connection dropped, partial file removed', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir, { limits: { idleTimeoutMs: 200 } }));
  const started = Date.now();
  const socket = await openPartialUpload(h.port, 10_000_000, 10_000);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const outcome = await h.nextOutcome();
  assert.ok(!outcome.ok);
  assert.equal(outcome.error.kind, 'aborted');
  assert.equal(outcome.error.message, 'Upload timed out');
  await closed;
  assert.ok(Date.now() - started < 3000);
  assert.deepEqual(listDir(dir), []);
});

test('disk errors are reported as io and the request is still answered', async (t) => {
  const dir = tempDir(t);
  const readOnly = path.join(dir, 'ro');
  fs.mkdirSync(readOnly, { mode: 0o555 });
  let target = readOnly;
  try {
    fs.writeFileSync(path.join(readOnly, 'probe'), '');
    // Running as root: permission bits are not enforced, so use a path whose parent is a regular file instead.
    fs.rmSync(path.join(readOnly, 'probe'));
    fs.writeFileSync(path.join(dir, 'not-a-dir'), '');
    target = path.join(dir, 'not-a-dir');
  } catch {
    // EACCES: the read-only directory itself is the test case.
  }
  const h = await startServer(t, () => ({ dir: target, acceptFiles: true }));
  const body = multipartBody([
    { name: 'images', filename: 'a.jpg', value: Buffer.alloc(100_000) },
    { name: 'images', filename: 'b.jpg', value: Buffer.alloc(100_000) },
  ]);
  const reply = await postMultipart(h.url, body);
  assert.equal(reply.kind, 'io');
  assert.match(reply.error ?? '', /EACCES|ENOTDIR/);
});

test('a 200 MB streamed upload goes to disk without growing memory', async (t) => {
  const dir = tempDir(t);
  const h = await startServer(t, filesInto(dir));
  const size = 200 * 1024 * 1024;
  const chunk = Buffer.alloc(256 * 1024, 'x');
  const head = Buffer.from(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="big.tif"\r\n` +
      'Content-Type: application/octet-stream\r\n\r\n',
  );
  const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  function* generate(): Generator<Buffer> {
    yield head;
    for (let sent = 0; sent < size; sent += chunk.length) yield chunk;
    yield tail;
  }

  const baseline = process.memoryUsage.rss();
  let peak = baseline;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 20);
  t.after(() => clearInterval(sampler));

  const reply = await new Promise<Reply>((resolve, reject) => {
    const req = http.request(h.url, {
      method: 'POST',
      headers: { 'content-type': MULTIPART, 'content-length': String(head.length + size + tail.length) },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Reply));
    });
    req.on('error', reject);
    Readable.from(generate()).pipe(req);
  });
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage.rss());

  assert.deepEqual(reply.files, [{ name: 'big.tif', originalName: 'big.tif', bytes: size }]);
  assert.equal(fs.statSync(path.join(dir, 'big.tif')).size, size);
  const grewMb = (peak - baseline) / 1024 / 1024;
  assert.ok(grewMb < 60, `RSS grew by ${grewMb.toFixed(1)} MB`);
});
