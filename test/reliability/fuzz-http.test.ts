/**
 * Hostile input on the proxy (:3000): property-based fuzzing with fast-check against the real server, in-process on
 * loopback. Every request gets an answer in time, and that answer is one a NodeODM client understands: HTTP 200
 * with JSON (an `{"error": …}` for anything wrong), a bare 401 for a bad token, 204 for a CORS preflight, or Node's
 * own 400/431 for bytes that are not HTTP at all. No request is dropped, nothing throws, nothing is left unhandled.
 * Seeded: FUZZ_SEED=<n> replays a run; FUZZ_RUNS=<n> changes the number of cases.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { multiUser } from '../helpers/app';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';
import { captureUnhandled, form, images, json, rawRequest, seedFrom, startLoggedApp, type RawAnswer } from './support';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 8000);
const TOKENS = ['alice', 'bob'];
const PUBLIC_ASSET = /^\/(?:(?:css|js|fonts|img)\/(?:[\w.-]+\/)*)?[\w.-]+\.(?:css|js|woff|woff2|ttf|ico)$/;

interface Req {
  method: string;
  target: string;
  headers: Array<[string, string]>;
  body: Buffer;
}

function serialize(r: Req): Buffer {
  const head = [`${r.method} ${r.target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
  for (const [k, v] of r.headers) head.push(`${k}: ${v}`);
  if (!r.headers.some(([k]) => /^(content-length|transfer-encoding)$/i.test(k))) head.push(`Content-Length: ${r.body.length}`);
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`, 'latin1'), r.body]);
}

// ---- arbitraries

const uuidish = fc.oneof(
  fc.uuid().map(String),
  fc.constantFrom('00000000-0000-0000-0000-000000000000', 'a-b-c-d-e', '../../etc/passwd', '%2e%2e', 'x'.repeat(300)),
  fc.stringMatching(/^[\w-]{1,60}$/),
);
const segment = fc.oneof(
  fc.constantFrom('task', 'new', 'init', 'upload', 'commit', 'info', 'output', 'download', 'all.zip', 'cancel', 'remove',
    'restart', 'list', 'options', 'auth', 'cache', 'clear', '..', '.', '%2e%2e', '%00', '', 'css', 'main.css', 'a.js', 'x.ico'),
  fc.string({ maxLength: 20 }).map((s) => encodeURIComponent(s)),
  uuidish,
);
const pathArb = fc.oneof(
  fc.array(segment, { maxLength: 6 }).map((a) => `/${a.join('/')}`),
  fc.constantFrom('/', '/info', '/options', '/auth/info', '/cache/clear', '/task/new', '/task/new/init', '/task/list',
    '/task/cancel', '/task/remove', '/task/restart', '/commit', '/r/info', '//', '/task//info'),
  uuidish.map((u) => `/task/new/upload/${u}`),
  uuidish.map((u) => `/task/new/commit/${u}`),
  fc.tuple(uuidish, fc.constantFrom('info', 'output', 'download/all.zip', 'download/../../x', 'cancel', 'nonsense')).map(
    ([u, a]) => `/task/${u}/${a}`,
  ),
);
const queryArb = fc
  .array(
    fc.tuple(
      fc.oneof(fc.constantFrom('token', 'with_output', 'line', 'uuid', '_debugUnauthorized', 'token[]'), fc.string({ maxLength: 10 })),
      fc.oneof(fc.constantFrom(...TOKENS, '', '-1', '1e309', 'NaN', '999999999999'), fc.string({ maxLength: 30 })),
    ),
    { maxLength: 4 },
  )
  .map((kv) => (kv.length ? `?${kv.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&')}` : ''));
const tokenArb = fc.constantFrom('', '?token=alice', '?token=bob', '?token=eve');

const boundary = 'fuzzBoundary42';
const partArb = fc.record({
  name: fc.oneof(fc.constantFrom('images', 'name', 'options', 'webhook', 'zipurl', 'dateCreated', 'skipPostProcessing', 'outputs'), fc.string({ maxLength: 12 })),
  filename: fc.option(fc.oneof(fc.constantFrom('a.jpg', '../../x.jpg', '.', '..', 'body.json', '', 'a/b.jpg'), fc.string({ maxLength: 20 })), { nil: undefined }),
  value: fc.oneof(fc.string({ maxLength: 200 }), fc.json({ maxDepth: 3 }), fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b).toString('latin1'))),
});
const multipartArb = fc.tuple(fc.array(partArb, { maxLength: 5 }), fc.boolean(), fc.nat(400)).map(([parts, truncate, cut]) => {
  const chunks: Buffer[] = [];
  for (const p of parts) {
    // The 'webhook' field points nowhere: fuzzed tasks never make a node call out.
    const value = p.name === 'webhook' ? 'http://127.0.0.1:9/' : p.value;
    const disp = `form-data; name="${p.name.replace(/["\r\n]/g, '')}"${p.filename !== undefined ? `; filename="${p.filename.replace(/["\r\n]/g, '')}"` : ''}`;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disp}\r\n\r\n`, 'latin1'), Buffer.from(value, 'latin1'), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  const body = Buffer.concat(chunks);
  return truncate ? body.subarray(0, Math.max(0, body.length - cut)) : body;
});
const bodyArb: fc.Arbitrary<{ type: string | null; body: Buffer }> = fc.oneof(
  fc.constant({ type: null, body: Buffer.alloc(0) }),
  multipartArb.map((body) => ({ type: `multipart/form-data; boundary=${boundary}`, body })),
  multipartArb.map((body) => ({ type: 'multipart/form-data', body })),
  fc.json().map((j) => ({ type: 'application/json', body: Buffer.from(j) })),
  fc.string({ maxLength: 300 }).map((s) => ({ type: 'application/json', body: Buffer.from(s) })),
  fc.array(fc.tuple(fc.constantFrom('uuid', 'options', 'x'), fc.oneof(uuidish, fc.string())), { maxLength: 3 }).map((kv) => ({
    type: 'application/x-www-form-urlencoded',
    body: Buffer.from(new URLSearchParams(kv).toString()),
  })),
  fc.uint8Array({ maxLength: 4000 }).map((b) => ({ type: 'application/octet-stream', body: Buffer.from(b) })),
  fc.tuple(fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 500 })).map(([type, b]) => ({ type: type.replace(/[\r\n]/g, ''), body: Buffer.from(b) })),
);
const headerArb = fc.array(
  fc.oneof(
    fc.tuple(fc.constant('set-uuid'), uuidish),
    fc.tuple(fc.constantFrom('Origin', 'Access-Control-Request-Method', 'Access-Control-Request-Headers', 'Accept', 'Range', 'Expect'), fc.stringMatching(/^[\x20-\x7e]{0,40}$/)),
    fc.tuple(fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/), fc.stringMatching(/^[\x20-\x7e]{0,60}$/)),
  ),
  { maxLength: 4 },
);

/** A well-formed HTTP request with fuzzed method, route, query, headers and body. */
const wellFormed: fc.Arbitrary<Req> = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'HEAD', 'PATCH'),
    path: pathArb,
    token: tokenArb,
    query: queryArb,
    headers: headerArb,
    body: bodyArb,
  })
  .map((r) => {
    const headers = r.headers.filter(([k]) => !/^(expect|content-length|transfer-encoding|host|connection|content-type)$/i.test(k));
    if (r.body.type !== null) headers.push(['Content-Type', r.body.type]);
    const q = r.token && r.query ? `${r.token}&${r.query.slice(1)}` : r.token || r.query;
    return { method: r.method, target: `${r.path}${q}`, headers, body: r.body.body };
  });

/** Bytes that are barely (or not) HTTP: bad request lines, bad headers, bad framing. */
const garbage: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 2000 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.string({ maxLength: 30 }), fc.string({ maxLength: 200 })).map(([m, t]) => Buffer.from(`${m} ${t} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 'latin1')),
  fc.tuple(pathArb, fc.stringMatching(/^[^\r\n]{0,40}$/), fc.stringMatching(/^[^\r\n]{0,80}$/)).map(([p, k, v]) => Buffer.from(`POST ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${k}: ${v}\r\n\r\n`, 'latin1')),
  fc.tuple(pathArb, fc.nat(100_000), fc.uint8Array({ maxLength: 300 })).map(([p, len, b]) =>
    Buffer.concat([Buffer.from(`POST ${p}?token=alice HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: ${len}\r\n\r\n`), Buffer.from(b)]),
  ),
  fc.tuple(pathArb, fc.string({ maxLength: 50 })).map(([p, chunk]) => Buffer.from(`POST ${p}?token=alice HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n${chunk}\r\n`, 'latin1')),
);

function describe(a: RawAnswer): string {
  return `${a.status} ${JSON.stringify(a.headers)} ${a.body.subarray(0, 300).toString('utf8')}${a.dropped ? ' [dropped]' : ''}`;
}

/** What a NodeODM client may get back for a well-formed request. */
function checkAnswer(r: Req, a: RawAnswer): string | null {
  const rawPath = r.target.split('?')[0] ?? '';
  const toNode = (r.method === 'GET' || r.method === 'HEAD') && (PUBLIC_ASSET.test(rawPath) && !rawPath.includes('..'));
  if (a.status === 0 || (a.dropped && r.method !== 'HEAD')) return `no complete answer: ${describe(a)}`;
  // A body on a method that carries none: refused on every route (request smuggling), with a JSON error.
  if (r.body.length > 0 && !['POST', 'PUT', 'PATCH'].includes(r.method)) {
    if (a.status !== 400 || a.headers['connection'] !== 'close') return `a ${r.method} with a body was not refused: ${describe(a)}`;
    return r.method === 'HEAD' || /^\{"error":/.test(a.body.toString('utf8')) ? null : `400 without a JSON error: ${describe(a)}`;
  }
  // The UI (`/`, also as `/..` or `//`) and its assets: the reference node's own answer, relayed.
  const root = URL.canParse(r.target, 'http://x') && new URL(r.target, 'http://x').pathname === '/';
  if (toNode || (root && a.headers['x-powered-by'] === 'Express')) return null;
  if (a.status === 401) return a.body.length === 0 ? null : `401 with a body: ${describe(a)}`;
  if (a.status === 204) return r.method === 'OPTIONS' ? null : `204 for ${r.method}`;
  if (a.status === 400 && a.headers['content-type'] === undefined) return null; // Node's parser: a header it refuses
  if (a.status !== 200) return `unexpected status: ${describe(a)}`;
  if (r.method === 'HEAD') return null;
  try {
    JSON.parse(a.body.toString('utf8'));
  } catch {
    return `200 without JSON: ${describe(a)}`;
  }
  if (a.headers['x-powered-by'] === undefined && !/^application\/json/.test(a.headers['content-type'] ?? '')) {
    return `ClusterODM answered without a JSON content type: ${describe(a)}`;
  }
  return null;
}

test('fuzz: the proxy answers every hostile request clearly and keeps working', { timeout: 170_000 }, async (t) => {
  const seed = seedFrom('FUZZ_SEED', 'HTTP fuzz');
  const unhandled = captureUnhandled(t);

  // A node that never finishes a task (so no fuzzed webhook is ever called) and accepts many at once.
  const node = await startTestNode({ processingMs: 3_600_000, maxParallelTasks: 1000, assetSize: 4096 });
  t.after(() => node.close());
  const { url, port, app, dir, logger } = await startLoggedApp(t, [], { cloud: multiUser(TOKENS) });
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  // One real task of Alice's, so fuzzed uuids sometimes hit a live route.
  const real = await json(`${url}/task/new?token=alice`, { method: 'POST', body: form({ name: 'real' }, images(2)) });
  assert.equal(typeof real['uuid'], 'string');
  await waitUntil(() => app.routes.has(String(real['uuid'])), { timeoutMs: 20_000, message: 'the real task never landed' });

  let cases = 0;
  const run = async (r: Req): Promise<void> => {
    cases++;
    const a = await rawRequest(port, serialize(r));
    const problem = checkAnswer(r, a);
    if (problem) {
      process.stdout.write(`# fuzz problem: ${r.method} ${r.target} ${JSON.stringify(r.headers)} body ${r.body.length} B: ${problem}\n`);
      throw new Error(problem);
    }
  };
  await fc.assert(
    fc.asyncProperty(wellFormed, async (r) => {
      await run(r);
    }),
    { seed, numRuns: Math.floor(RUNS * 0.8) },
  );
  await fc.assert(
    fc.asyncProperty(garbage, async (bytes) => {
      cases++;
      const a = await rawRequest(port, bytes, { halfClose: true });
      // Not HTTP: Node's parser refuses it (400/505/431), ClusterODM answers it, or the connection just closes.
      return a.status === 0 || [200, 400, 401, 404, 413, 431, 505].includes(a.status);
    }),
    { seed: seed + 1, numRuns: Math.floor(RUNS * 0.2) },
  );

  // Huge bodies and headers: a clear refusal, never buffered whole.
  const big = Buffer.alloc(3 * 1024 * 1024, 0x61);
  const cancel = await rawRequest(port, serialize({ method: 'POST', target: '/task/cancel?token=alice', headers: [['Content-Type', 'application/x-www-form-urlencoded']], body: big }));
  assert.deepEqual(JSON.parse(cancel.body.toString()), { error: 'Request body too large' });
  const hugeUrl = await rawRequest(port, Buffer.from(`GET /info?token=alice&x=${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
  assert.equal(hugeUrl.status, 431);
  const hugeHeader = await rawRequest(port, Buffer.from(`GET /info?token=alice HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(100_000)}\r\nConnection: close\r\n\r\n`));
  assert.equal(hugeHeader.status, 431);
  cases += 3;

  // Still serving, nothing crashed, nothing unhandled, no stray files.
  assert.deepEqual((await json(`${url}/info?token=bob`))['version'], '1.5.3');
  assert.deepEqual(unhandled, []);
  const crashes = logger.lines.filter((l) => /Uncaught|Unhandled|exception/i.test(l));
  assert.deepEqual(crashes, [], 'no request reached the catch-all');
  await waitUntil(
    () =>
      fs.readdirSync(path.join(dir, 'tmp')).every((n) => app.tasks.get(n)?.phase === 'uploading' || app.tasks.get(n)?.phase === 'forwarding'),
    { timeoutMs: 20_000, message: 'staged files of refused requests were left behind' },
  );
  process.stdout.write(`# HTTP fuzz: ${cases} requests, 0 crashes, 0 unhandled rejections\n`);
});

test('fuzz: a slowloris client and 1,000 idle connections do not stop others from being served', { timeout: 120_000 }, async (t) => {
  const node = await startTestNode();
  t.after(() => node.close());
  const headersMs = 1500;
  const { url, port, app } = await startLoggedApp(t, [], {
    cloud: multiUser(['alice']),
    tuning: { proxyTimeouts: { headersMs, keepAliveMs: 1000, idleMs: 3000 } },
  });
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const sockets: net.Socket[] = [];
  t.after(() => sockets.forEach((s) => s.destroy()));
  const open = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(s));
      s.on('error', reject);
      s.resume(); // read, so the server's close is seen
      sockets.push(s);
    });
  const closed = new Set<net.Socket>();
  // 1,000 connections that never send a byte, and a slowloris that trickles a header line forever.
  for (let i = 0; i < 1000; i++) {
    const s = await open();
    s.on('close', () => closed.add(s));
  }
  const slow = await open();
  let slowAnswer = '';
  slow.on('data', (d: Buffer) => (slowAnswer += d.toString()));
  slow.on('close', () => closed.add(slow));
  slow.write('GET /info?token=alice HTTP/1.1\r\nHost: x\r\n');
  const trickle = setInterval(() => slow.writable && slow.write('X-a: b\r\n'), 200);
  t.after(() => clearInterval(trickle));
  // A slow body: headers complete, then a byte now and then.
  const slowBody = await open();
  slowBody.on('close', () => closed.add(slowBody));
  slowBody.write('POST /task/cancel?token=alice HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{');

  // Meanwhile other clients are served at once.
  for (let i = 0; i < 20; i++) assert.equal((await json(`${url}/info?token=alice`, {}, 5000))['version'], '1.5.3');
  // And the server lets go of them all: the slowloris after headersTimeout, idle ones and the stalled body soon after.
  await waitUntil(() => closed.size === sockets.length, { timeoutMs: 60_000, intervalMs: 50, message: `only ${closed.size} of ${sockets.length} closed` });
  clearInterval(trickle);
  assert.match(slowAnswer, /^HTTP\/1\.1 408/);
  assert.equal((await json(`${url}/info?token=alice`, {}, 5000))['version'], '1.5.3');
});
