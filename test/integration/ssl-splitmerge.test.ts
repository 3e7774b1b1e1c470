import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { makeSelfSignedCert, type SelfSignedCert } from '../helpers/cert';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startTestNode, type TaskOption, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

// ----- helpers -----

interface Answer {
  status: number;
  body: string;
}

/** GET over TLS to 127.0.0.1, trusting only our self-signed certificate (CN=localhost). */
function httpsGet(port: number, urlPath: string, cert: Buffer): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: '127.0.0.1', port, path: urlPath, ca: cert, servername: 'localhost', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error('https request timed out')));
    req.on('error', reject);
  });
}

/** Plain-HTTP GET, without fetch's retries or pooling (so a TLS-only port shows up as an error). */
function httpGet(port: number, urlPath: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error('http request timed out')));
    req.on('error', reject);
  });
}

/** The synthetic /info of ClusterODM (huge capacity; a real NodeODM would answer its own numbers). */
function assertSyntheticInfo(a: Answer): void {
  assert.equal(a.status, 200);
  const info = JSON.parse(a.body) as Record<string, unknown>;
  assert.equal(info['maxParallelTasks'], 99999999999);
  assert.equal(info['cpuCores'], 99999999999);
  assert.ok('engineVersion' in info && 'taskQueueCount' in info);
}

/**
 * startDaemon in a fresh temp dir that is removed only after the daemon is dead. (tempDir() registers its removal
 * before startDaemon registers the kill, and after-hooks run in registration order: the rm can race the daemon's
 * writes, fail with ENOTEMPTY and leave the daemon, and the test process, running.)
 */
async function daemon(t: TestContext, args: string[] = []): Promise<Daemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clusterodm-ssl-sm-'));
  let d: Daemon | undefined;
  t.after(async () => {
    await d?.stop('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  });
  d = await startDaemon(t, dir, args);
  return d;
}

interface Cluster {
  d: Daemon;
  node: TestNode;
}

/** One test node behind a daemon started with `args`; the node is added over the admin CLI. */
async function cluster(t: TestContext, args: string[] = []): Promise<Cluster> {
  const node = await startTestNode({ processingMs: 5000 });
  t.after(() => node.close());
  const d = await daemon(t, args);
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  return { d, node };
}

interface FileSpec {
  name: string;
  data: Buffer;
}

function images(n: number, size = 2000): FileSpec[] {
  return Array.from({ length: n }, (_, i) => ({ name: `IMG_${String(i).padStart(4, '0')}.JPG`, data: Buffer.alloc(size, i + 1) }));
}

function form(fields: Record<string, string>, files: FileSpec[]): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.set(k, v);
  for (const f of files) fd.append('images', new Blob([f.data]), f.name);
  return fd;
}

async function postJson(url: string, body: FormData): Promise<Record<string, unknown>> {
  const res = await fetch(url, { method: 'POST', body });
  assert.equal(res.status, 200);
  return (await res.json()) as Record<string, unknown>;
}

/** Creates a task with /task/new on `baseUrl` and returns the options the node received for it. */
async function optionsOnNode(c: Cluster, options: TaskOption[], baseUrl = c.d.url, query = ''): Promise<TaskOption[]> {
  const answer = await postJson(`${baseUrl}/task/new${query}`, form({ options: JSON.stringify(options) }, images(2)));
  const uuid = answer['uuid'];
  assert.equal(typeof uuid, 'string', `task creation failed: ${JSON.stringify(answer)}`);
  let found: TaskOption[] | undefined;
  await waitUntil(
    () => {
      found = c.node.tasks().find((x) => x.uuid === uuid)?.options;
      return found !== undefined;
    },
    { timeoutMs: 10000, message: `task ${String(uuid)} never reached the node` },
  );
  return found ?? [];
}

function smClusterValues(options: TaskOption[]): unknown[] {
  return options.filter((o) => o.name === 'sm-cluster').map((o) => o.value);
}

function hasOption(options: TaskOption[], name: string): boolean {
  return options.some((o) => o.name === name);
}

// `split` is an int option in the reference node's list (test/fixtures/nodeodm-options.json).
const SPLIT: TaskOption = { name: 'split', value: 50 };

// ----- SSL -----

test('ssl: --ssl-key/--ssl-cert alone serve HTTPS only, on the proxy port', async (t) => {
  const dir = tempDir(t);
  const cert: SelfSignedCert = await makeSelfSignedCert(dir);
  const d = await daemon(t, ['--ssl-key', cert.keyFile, '--ssl-cert', cert.certFile]);
  assert.match(d.output(), /Starting https proxy on \d+/);
  assert.doesNotMatch(d.output(), /Starting http proxy on/, 'no plain HTTP listener without --secure-port');
  assert.ok(d.httpsPort > 0);
  // The certificate served is ours (verified against it as the only CA).
  assertSyntheticInfo(await httpsGet(d.httpsPort, '/info', cert.cert));
  // The port speaks TLS only: a plain HTTP request on it gets no HTTP answer.
  await assert.rejects(httpGet(d.httpsPort, '/info'));
});

test('ssl: with --secure-port both an HTTPS and an HTTP listener answer; sm-cluster uses https (follows use_ssl)', async (t) => {
  const dir = tempDir(t);
  const cert = await makeSelfSignedCert(dir);
  // Any non-zero secure port turns on the second listener; in tests every listener gets an ephemeral port.
  const c = await cluster(t, ['--ssl-key', cert.keyFile, '--ssl-cert', cert.certFile, '--secure-port', '1']);
  const { d } = c;
  assert.match(d.output(), /Starting https proxy on \d+/);
  assert.match(d.output(), /Starting http proxy on \d+/);
  assert.ok(d.httpsPort > 0 && d.proxyPort > 0);
  assert.notEqual(d.httpsPort, d.proxyPort);
  assertSyntheticInfo(await httpsGet(d.httpsPort, '/info', cert.cert));
  assertSyntheticInfo(await httpGet(d.proxyPort, '/info'));
  // A task arriving over the plain listener still advertises https (the scheme follows use_ssl, not the listener).
  const opts = await optionsOnNode(c, [SPLIT]);
  assert.deepEqual(smClusterValues(opts), [`https://127.0.0.1:${d.proxyPort}/`]);
});

test('ssl: an unreadable key or certificate stops the start with exit code 1 and a clear message', async (t) => {
  const dir = tempDir(t);
  const cert = await makeSelfSignedCert(dir);
  const missing = path.join(dir, 'no-such-key.pem');
  await assert.rejects(daemon(t, ['--ssl-key', missing, '--ssl-cert', cert.certFile]), (err: Error) => {
    assert.match(err.message, /daemon exited with 1/);
    assert.match(err.message, /Cannot read the SSL key or certificate/);
    assert.ok(err.message.includes('no-such-key.pem'), 'the message names the file');
    assert.doesNotMatch(err.message, /Starting https? proxy on/);
    return true;
  });
  // A directory cannot be read as a PEM file either (running as root, chmod 000 would still be readable).
  await assert.rejects(daemon(t, ['--ssl-key', cert.keyFile, '--ssl-cert', dir]), (err: Error) => {
    assert.match(err.message, /daemon exited with 1/);
    assert.match(err.message, /Cannot read the SSL key or certificate/);
    return true;
  });
  // A readable file that is not a key.
  const garbage = path.join(dir, 'garbage.pem');
  fs.writeFileSync(garbage, 'this is not a PEM key\n');
  await assert.rejects(daemon(t, ['--ssl-key', garbage, '--ssl-cert', cert.certFile]), (err: Error) => {
    assert.match(err.message, /daemon exited with 1/);
    assert.match(err.message, /Cannot start/);
    return true;
  });
});

// ----- split-merge -----

test('split-merge: sm-cluster is <Host based address>/ for split tasks; a user value is replaced; seed.zip is accepted', async (t) => {
  const c = await cluster(t);
  const expected = `http://127.0.0.1:${c.d.proxyPort}/`;

  const withSplit = await optionsOnNode(c, [SPLIT]);
  assert.ok(hasOption(withSplit, 'split'), 'split reaches the node');
  assert.deepEqual(smClusterValues(withSplit), [expected]);

  const userValue = await optionsOnNode(c, [SPLIT, { name: 'sm-cluster', value: 'http://evil.example.com:3000' }]);
  assert.deepEqual(smClusterValues(userValue), [expected], 'the user-supplied sm-cluster is replaced, not duplicated');

  // As the original: any sm-cluster is pointed at the cluster, split or not.
  assert.deepEqual(smClusterValues(await optionsOnNode(c, [{ name: 'sm-cluster', value: 'http://elsewhere:1' }])), [expected]);

  // No split, no sm-cluster.
  const plain = await optionsOnNode(c, [{ name: 'dsm', value: true }]);
  assert.equal(hasOption(plain, 'sm-cluster'), false);

  // With split-merge on, a sub-model task (with seed.zip) is an ordinary task.
  const seed = await postJson(`${c.d.url}/task/new`, form({}, [...images(1), { name: 'seed.zip', data: Buffer.alloc(100, 7) }]));
  assert.equal(typeof seed['uuid'], 'string', JSON.stringify(seed));
});

test('split-merge: --public-address is the base of sm-cluster', async (t) => {
  const c = await cluster(t, ['--public-address', 'https://cluster.example.com']);
  assert.deepEqual(smClusterValues(await optionsOnNode(c, [SPLIT])), ['https://cluster.example.com/']);
});

test('split-merge: the user token is carried as ?token=', async (t) => {
  const c = await cluster(t, ['--token', 'abc']);
  const opts = await optionsOnNode(c, [SPLIT, { name: 'sm-cluster', value: 'http://x/?token=other' }], c.d.url, '?token=abc');
  assert.deepEqual(smClusterValues(opts), [`http://127.0.0.1:${c.d.proxyPort}/?token=abc`]);
});

test('split-merge: --no-splitmerge strips sm-cluster and refuses tasks with seed.zip', async (t) => {
  const c = await cluster(t, ['--no-splitmerge']);
  const opts = await optionsOnNode(c, [SPLIT, { name: 'sm-cluster', value: 'http://user.example.com:3000/' }]);
  assert.ok(hasOption(opts, 'split'), 'split itself is kept');
  assert.equal(hasOption(opts, 'sm-cluster'), false, 'sm-cluster is stripped');
  assert.equal(hasOption(await optionsOnNode(c, [SPLIT]), 'sm-cluster'), false, 'and never injected');

  const before = c.node.requests.length;
  const seedFiles = [...images(2), { name: 'seed.zip', data: Buffer.alloc(100, 7) }];
  assert.deepEqual(await postJson(`${c.d.url}/task/new`, form({}, seedFiles)), { error: 'Cannot use this node as a split-merge cluster.' });
  // The same through the chunked protocol: refused at commit.
  const init = await postJson(`${c.d.url}/task/new/init`, form({}, []));
  const uuid = String(init['uuid']);
  assert.deepEqual(await postJson(`${c.d.url}/task/new/upload/${uuid}`, form({}, seedFiles)), { success: true });
  assert.deepEqual(await postJson(`${c.d.url}/task/new/commit/${uuid}`, form({}, [])), {
    error: 'Cannot use this node as a split-merge cluster.',
  });
  // Images may have been streamed to the node while the client uploaded; the refused task is never committed
  // there, and what was streamed is cleared from the node.
  const commits = c.node.requests.slice(before).filter((r) => r.path.startsWith('/task/new/commit') || r.path === '/task/new');
  assert.deepEqual(commits, [], 'no refused task is committed on the node');
  await waitUntil(() => c.node.taskFiles(uuid).length === 0, { message: 'the streamed images of the refused task are cleared from the node' });
  assert.equal(c.node.tasks().some((x) => x.uuid === uuid), false, 'the refused task is not on the node');
});

// ----- --upload-max-speed -----

/**
 * Milliseconds from the client's upload until the node holds every image whole. The images go on to the node while
 * the client uploads them (a file whose request is on its way is not sent again at commit), so the time from the
 * commit would hide most of the transfer.
 */
async function forwardTime(t: TestContext, args: string[], files: FileSpec[]): Promise<number> {
  const c = await cluster(t, args);
  const init = await postJson(`${c.d.url}/task/new/init`, form({}, []));
  const uuid = String(init['uuid']);
  const started = Date.now();
  assert.deepEqual(await postJson(`${c.d.url}/task/new/upload/${uuid}`, form({}, files)), { success: true });
  const whole = (): boolean => files.every((f) => c.node.taskImages(uuid).some((x) => x.name === f.name && x.bytes === f.data.length));
  await waitUntil(whole, { timeoutMs: 10000, intervalMs: 5, message: 'the images never reached the node' });
  const elapsed = Date.now() - started;
  assert.deepEqual(await postJson(`${c.d.url}/task/new/commit/${uuid}`, form({}, [])), { uuid });
  await waitUntil(() => c.node.tasks().some((x) => x.uuid === uuid), { timeoutMs: 10000, intervalMs: 5, message: 'task never reached the node' });
  for (const f of files) assert.equal(c.node.taskFileSize(uuid, f.name), f.data.length, 'files arrive whole');
  return elapsed;
}

test('--upload-max-speed throttles each upload connection to the node', async (t) => {
  const files = images(2, 150 * 1024);
  // 2 files go in 2 parallel requests of ~153.8 KB each: at 200000 B/s per connection that is >= ~0.77 s
  // (the total, 307 KB, is not what is limited: a per-task limit would take >= 1.5 s). Generous slack below.
  const throttled = await forwardTime(t, ['--upload-max-speed', '200000'], files);
  assert.ok(throttled >= 650, `throttled forward took only ${throttled} ms`);
  const free = await forwardTime(t, [], files);
  t.diagnostic(`forward of 2 x 150 KiB: ${throttled} ms at 200000 B/s per connection, ${free} ms unthrottled`);
  assert.ok(free < throttled, `unthrottled ${free} ms vs throttled ${throttled} ms`);
});
