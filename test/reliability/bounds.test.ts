/**
 * Memory and disk stay bounded whatever clients send: caches and maps keyed by client input, and upload sessions
 * that are started and never committed. Measured on a real daemon process (its RSS, its tmp/ and tasks.json).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { test } from 'node:test';
import { multiUser, startApp } from '../helpers/app';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const MIB = 1024 * 1024;

/** Resident memory of a process (Linux), in bytes. */
function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m?.[1]) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** GET on a keep-alive agent; resolves to the status and body once the whole answer is read. */
function get(agent: http.Agent, port: number, pathAndQuery: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathAndQuery, agent, timeout: 60_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${pathAndQuery}`)));
    req.on('error', reject);
  });
}

async function daemonWithNode(t: Parameters<typeof startDaemon>[0], args: string[] = [], node?: TestNode): Promise<Daemon> {
  if (!node) {
    node = await startTestNode();
    const n = node;
    t.after(() => n.close());
  }
  const d = await startDaemon(t, tempDir(t), args);
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  cli.socket.destroy();
  return d;
}

test('the /options cache grows without bound: 100,000 random tokens leave the daemon\'s memory flat', { timeout: 900_000 }, async (t) => {
  const d = await daemonWithNode(t);
  const port = d.proxyPort;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  t.after(() => agent.destroy());
  const expected = (await get(agent, port, '/options')).body;
  assert.ok(expected.length > 10_000, 'the node\'s option list is answered');

  // Warm-up on one token: the same requests, so sockets, buffers and compiled code are all in the baseline.
  const run = async (count: number, token: () => string, every?: (done: number) => void): Promise<void> => {
    let next = 0;
    let done = 0;
    const worker = async (): Promise<void> => {
      try {
        while (next < count) {
          next++;
          const r = await get(agent, port, `/options?token=${token()}`);
          assert.equal(r.status, 200);
          assert.equal(r.body, expected);
          done++;
          every?.(done);
        }
      } catch (e: unknown) {
        next = count; // the other workers stop too
        throw e;
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
  };
  await run(3000, () => 'warm-up');
  const baseline = rss(d.proc.pid ?? 0);
  // Generous for GC timing, yet the old cache passed it within ~2,000 tokens (about 40 KB per token).
  const bound = baseline + 64 * MIB;
  let peak = baseline;
  const started = Date.now();
  await run(100_000, () => randomBytes(12).toString('hex'), (done) => {
    if (done % 2000 !== 0) return;
    peak = Math.max(peak, rss(d.proc.pid ?? 0));
    assert.ok(peak <= bound, `RSS ${(peak / MIB).toFixed(0)} MiB after ${done} tokens (baseline ${(baseline / MIB).toFixed(0)} MiB)`);
  });
  const after = rss(d.proc.pid ?? 0);
  process.stdout.write(
    `# /options flood: 100,000 tokens in ${((Date.now() - started) / 1000).toFixed(1)} s, RSS baseline ${(baseline / MIB).toFixed(1)} MiB, peak ${(peak / MIB).toFixed(1)} MiB, after ${(after / MIB).toFixed(1)} MiB\n`,
  );
  assert.ok(after <= bound, `RSS after the flood: ${(after / MIB).toFixed(0)} MiB (baseline ${(baseline / MIB).toFixed(0)} MiB)`);
  assert.equal((await get(agent, port, '/info')).status, 200, 'the daemon still answers');
});

const BOUNDARY = 'bounds-test-boundary';

function multipart(fields: Record<string, string>, files: Array<{ name: string; data: Buffer }> = []): Buffer {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  for (const f of files) {
    parts.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="${f.name}"\r\nContent-Type: image/jpeg\r\n\r\n`));
    parts.push(f.data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(parts);
}

/** A POST from a chosen loopback address (127.0.0.0/8 all reaches the daemon on Linux), answered JSON. */
function postFrom(port: number, localAddress: string, pathAndQuery: string, body: Buffer): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        localAddress,
        method: 'POST',
        path: pathAndQuery,
        agent: false,
        timeout: 60_000,
        headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': body.length, connection: 'close' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => {
          try {
            assert.equal(res.statusCode, 200);
            resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
          } catch (e: unknown) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer to ${pathAndQuery}`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** Runs `jobs` with at most `width` at once; answers in job order. */
async function inParallel<T>(width: number, jobs: Array<() => Promise<T>>): Promise<T[]> {
  const out: T[] = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const i = next++;
        const job = jobs[i];
        if (job) out[i] = await job();
      }
    }),
  );
  return out;
}

const PER_ADDRESS = 'Too many uploads in progress from your address (100). Please commit the uploads you have started, then try again.';
const GLOBAL = 'Too many uploads in progress (1000). Please try again later.';

test('uploads started and never committed have no default cap: open uploads are capped per address and in all, by default', { timeout: 600_000 }, async (t) => {
  const d = await daemonWithNode(t);
  const port = d.proxyPort;
  const init = (from: string, token: string): Promise<Record<string, unknown>> =>
    postFrom(port, from, `/task/new/init?token=${token}`, multipart({ name: 'flood' }));

  // One address, rotating tokens (which walks past the per-token --flood-limit): 100 open uploads, then refused.
  const first = await inParallel(8, Array.from({ length: 120 }, (_, i) => () => init('127.0.0.1', `att${(i % 5) + 1}`)));
  const accepted = first.filter((r) => typeof r['uuid'] === 'string');
  assert.equal(accepted.length, 100, 'open uploads accepted from one address');
  for (const r of first.filter((x) => x['uuid'] === undefined)) assert.deepEqual(r, { error: PER_ADDRESS });

  // Ten more addresses: the daemon-wide cap stops them at 1,000 open uploads in all.
  const others = Array.from({ length: 10 }, (_, a) => `127.0.0.${a + 2}`);
  const rest = await inParallel(8, others.flatMap((from) => Array.from({ length: 100 }, (_, i) => () => init(from, `x${i}`))));
  assert.equal(rest.filter((r) => typeof r['uuid'] === 'string').length, 900);
  for (const r of rest.filter((x) => x['uuid'] === undefined)) assert.deepEqual(r, { error: GLOBAL });

  // tmp/ and tasks.json hold those 1,000 and nothing more.
  const tmp = fs.readdirSync(path.join(d.dir, 'tmp')).filter((n) => n !== '.gitignore');
  assert.equal(tmp.length, 1000);
  const tasksFile = path.join(d.dir, 'data', 'tasks.json');
  assert.equal(Object.keys(JSON.parse(fs.readFileSync(tasksFile, 'utf8')) as object).length, 1000);

  // A committed upload gives its place back: the same address can start another one.
  const uuid = String(accepted[0]?.['uuid']);
  const up = await postFrom(port, '127.0.0.1', `/task/new/upload/${uuid}?token=att1`, multipart({}, [{ name: 'a.jpg', data: Buffer.alloc(1000, 1) }]));
  assert.deepEqual(up, { success: true });
  assert.deepEqual(await postFrom(port, '127.0.0.1', `/task/new/commit/${uuid}?token=att1`, multipart({})), { uuid });
  assert.equal(typeof (await init('127.0.0.1', 'att9'))['uuid'], 'string', 'a place freed by a commit is given again');
  assert.deepEqual(await init('127.0.0.1', 'att9'), { error: PER_ADDRESS });
});

test('--max-open-uploads and --max-open-uploads-per-address set the caps; 0 turns one off', { timeout: 300_000 }, async (t) => {
  const d = await daemonWithNode(t, ['--max-open-uploads', '6', '--max-open-uploads-per-address', '4']);
  const init = (from: string): Promise<Record<string, unknown>> => postFrom(d.proxyPort, from, '/task/new/init', multipart({}));
  const a = await inParallel(4, Array.from({ length: 6 }, () => () => init('127.0.0.1')));
  assert.equal(a.filter((r) => typeof r['uuid'] === 'string').length, 4);
  assert.ok(a.some((r) => r['error'] === 'Too many uploads in progress from your address (4). Please commit the uploads you have started, then try again.'));
  assert.equal(typeof (await init('127.0.0.2'))['uuid'], 'string');
  assert.equal(typeof (await init('127.0.0.2'))['uuid'], 'string');
  assert.deepEqual(await init('127.0.0.3'), { error: 'Too many uploads in progress (6). Please try again later.' });

  // Per-address cap off: one address may take every place.
  const d2 = await daemonWithNode(t, ['--max-open-uploads', '3', '--max-open-uploads-per-address', '0']);
  const b = await inParallel(1, Array.from({ length: 4 }, () => () => postFrom(d2.proxyPort, '127.0.0.1', '/task/new/init', multipart({}))));
  assert.deepEqual(b.map((r) => typeof r['uuid'] === 'string'), [true, true, true, false]);
  assert.deepEqual(b[3], { error: 'Too many uploads in progress (3). Please try again later.' });
});

test('TaskIntake.reservers is never cleared for abandoned uploads: a swept upload leaves nothing behind', { timeout: 120_000 }, async (t) => {
  const node = await startTestNode();
  t.after(() => node.close());
  const { url, app } = await startApp(t, multiUser(['']));
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const uuid = '3f2b8c4e-1d2a-4b5c-8d9e-0f1a2b3c4d5e';
  const post = async (p: string, body: FormData, headers: Record<string, string> = {}): Promise<unknown> =>
    (await fetch(`${url}${p}`, { method: 'POST', body, headers })).json();
  const withImage = (): FormData => {
    const fd = new FormData();
    fd.append('images', new Blob([Buffer.alloc(800, 7)]), 'a.jpg');
    return fd;
  };

  assert.deepEqual(await post('/task/new/init', new FormData(), { 'set-uuid': uuid }), { uuid });
  assert.deepEqual(await post(`/task/new/upload/${uuid}`, withImage()), { success: true });
  // The client goes away. Two days later the sweep removes the upload (its last activity is moved back in time).
  await app.tasks.update(uuid, { updated: Date.now() - 49 * 3600_000 });
  assert.equal(await app.tmpCleanup.sweep(), 1);
  assert.equal(app.tasks.get(uuid), undefined);

  // The same uuid again (set-uuid): a fresh upload, nothing of the old one is remembered.
  assert.deepEqual(await post('/task/new/init', new FormData(), { 'set-uuid': uuid }), { uuid });
  assert.deepEqual(await post(`/task/new/upload/${uuid}`, withImage()), { success: true });
  assert.deepEqual(await post(`/task/new/commit/${uuid}`, new FormData()), { uuid });
  await waitUntil(() => node.tasks().some((x) => x.uuid === uuid), { timeoutMs: 20_000, message: 'the task never reached the node' });
  assert.deepEqual(node.taskFiles(uuid), ['a.jpg']);
});
