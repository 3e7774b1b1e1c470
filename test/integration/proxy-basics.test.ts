import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';

const UNKNOWN = '00000000-1111-4222-8333-444444444444';
const OPTIONS_FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'nodeodm-options.json');

async function cluster(t: TestContext, args: string[] = [], nodeOpts = {}): Promise<{ d: Daemon; a: TestNode; cli: CliClient }> {
  const a = await startTestNode(nodeOpts);
  t.after(() => a.close());
  const d = await startDaemon(t, tempDir(t), args);
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  if (args.includes('--admin-pass')) await cli.send(`LOGIN ${args[args.indexOf('--admin-pass') + 1] ?? ''}`);
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${a.port}${'token' in nodeOpts ? ` ${String(nodeOpts.token)}` : ''}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  return { d, a, cli };
}

test('proxy: /info is synthetic, with the reference node engine', async (t) => {
  const { d } = await cluster(t);
  const res = await fetch(`${d.url}/info`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/json');
  assert.deepEqual(await res.json(), {
    version: '1.5.3',
    taskQueueCount: 0,
    totalMemory: 99999999999,
    availableMemory: 99999999999,
    cpuCores: 99999999999,
    maxImages: null,
    maxParallelTasks: 99999999999,
    engineVersion: '?',
    engine: 'odm',
  });
});

test('proxy: /options is the reference node list, byte for byte; /auth/info; /cache/clear; unknown paths', async (t) => {
  const { d } = await cluster(t);
  const opts = await (await fetch(`${d.url}/options`)).text();
  assert.deepEqual(JSON.parse(opts), JSON.parse(fs.readFileSync(OPTIONS_FIXTURE, 'utf8')));
  assert.deepEqual(await (await fetch(`${d.url}/auth/info`)).json(), {
    message: 'Authentication not available on this node',
    loginUrl: null,
    registerUrl: null,
  });
  assert.deepEqual(await (await fetch(`${d.url}/cache/clear`)).json(), { ok: true });
  assert.deepEqual(await (await fetch(`${d.url}/foo`)).json(), { error: 'Cannot handle /foo' });
  assert.deepEqual(await (await fetch(`${d.url}/swagger.json`)).json(), { error: 'Cannot handle /swagger.json' });
  assert.deepEqual(await (await fetch(`${d.url}/task/new/init`)).json(), { error: 'Cannot handle /task/new/init' });
  assert.deepEqual(await (await fetch(`${d.url}/task/not-a-uuid/info`)).json(), { error: 'Cannot handle /task/not-a-uuid/info' });
});

test('proxy: unknown tasks get the original error texts', async (t) => {
  const { d } = await cluster(t);
  assert.deepEqual(await (await fetch(`${d.url}/task/${UNKNOWN}/info`)).json(), {
    error: `Invalid route for taskId ${UNKNOWN}:info, no task table entry.`,
  });
  assert.deepEqual(await (await fetch(`${d.url}/task/${UNKNOWN}/download/all.zip`)).json(), {
    error: `Invalid route for taskId ${UNKNOWN}:download/all.zip, no task table entry.`,
  });
  assert.deepEqual(await (await fetch(`${d.url}/task/list`)).json(), []);
  const post = (p: string, body: string | FormData, type?: string): Promise<unknown> =>
    fetch(`${d.url}${p}`, { method: 'POST', body, ...(type ? { headers: { 'content-type': type } } : {}) }).then((r) => r.json());
  assert.deepEqual(await post('/task/cancel', 'foo=bar', 'application/x-www-form-urlencoded'), { error: 'No uuid found in /task/cancel' });
  const noRoute = { error: `Invalid route for taskId ${UNKNOWN}, no nodes in routing table.` };
  assert.deepEqual(await post('/task/cancel', `uuid=${UNKNOWN}`, 'application/x-www-form-urlencoded'), noRoute);
  assert.deepEqual(await post('/task/remove', JSON.stringify({ uuid: UNKNOWN }), 'application/json'), noRoute);
  const fd = new FormData();
  fd.set('uuid', UNKNOWN);
  assert.deepEqual(await post('/task/restart', fd), noRoute);
  assert.deepEqual(await post('/task/cancel', '{"uuid": ', 'application/json'), { error: 'Unexpected end of JSON input' });
  const big = await fetch(`${d.url}/task/cancel`, { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024) });
  assert.deepEqual(await big.json(), { error: 'Request body too large' });
});

test('proxy: with --token every client route needs it (bare 401), the UI assets do not', async (t) => {
  const { d, a } = await cluster(t, ['--token', 'user-secret'], { token: 'node-secret' });
  const r401 = await fetch(`${d.url}/info`);
  assert.equal(r401.status, 401);
  assert.equal(r401.statusText, 'unauthorized');
  assert.equal(await r401.text(), '');
  assert.equal((await fetch(`${d.url}/info?token=wrong`)).status, 401);
  assert.equal((await fetch(`${d.url}/task/list`)).status, 401);
  assert.equal((await fetch(`${d.url}/info?token=user-secret&_debugUnauthorized=1`)).status, 401);
  assert.equal((await fetch(`${d.url}/info?token=user-secret`)).status, 200);
  const opts = await (await fetch(`${d.url}/options?token=user-secret`)).json();
  assert.ok(Array.isArray(opts), 'the node token is used towards the node');
  // The NodeODM web UI through the proxy: the page needs the token, its assets load without it.
  assert.equal((await fetch(`${d.url}/`)).status, 401);
  const page = await fetch(`${d.url}/?token=user-secret`);
  assert.match(await page.text(), /<title>NodeODM - Web UI<\/title>/);
  const css = await fetch(`${d.url}/css/main.css`);
  assert.equal(css.status, 200);
  assert.match(css.headers.get('content-type') ?? '', /text\/css/);
  // Neither token ever reaches a client, and the user token is not sent to the node.
  for (const r of a.requests) assert.ok(!r.path.includes('user-secret'), r.path);
  assert.ok(!d.output().includes('node-secret') && !d.output().includes('user-secret'));
});

test('proxy: CORS without credentials; preflight gets 204', async (t) => {
  const { d } = await cluster(t);
  const res = await fetch(`${d.url}/info`, { headers: { origin: 'http://example.test' } });
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  assert.equal(res.headers.get('access-control-allow-credentials'), null);
  const pre = await fetch(`${d.url}/task/new`, {
    method: 'OPTIONS',
    headers: { origin: 'http://example.test', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-methods'), 'POST');
  assert.equal(pre.headers.get('access-control-allow-headers'), 'content-type');
});

test('proxy: no online node gives clear errors, never a hanging request', async (t) => {
  const d = await startDaemon(t, tempDir(t));
  assert.deepEqual(await (await fetch(`${d.url}/options`)).json(), { error: 'Cannot compute /options, no nodes are online.' });
  assert.deepEqual(await (await fetch(`${d.url}/`)).json(), { error: 'No nodes available' });
  assert.equal((await (await fetch(`${d.url}/info`)).json() as { engine: string }).engine, '?');
});

test('proxy: /options from a node that fails answers an error instead of hanging', async (t) => {
  const { d, a } = await cluster(t);
  a.configure({ infoDelayMs: 0 });
  await a.close();
  const res = await fetch(`${d.url}/options`, { signal: AbortSignal.timeout(15000) });
  const body = (await res.json()) as { error?: string };
  assert.match(body.error ?? '', /Cannot get options for 127\.0\.0\.1:\d+/);
});
