import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { AdminWeb, type AdminWebOptions, type AsrWebView } from '../../src/admin-web';
import { MemoryLogger, systemClock } from '../../src/core';
import { NodeClient } from '../../src/nodeodm';
import { HealthPoller, LoadHistory, NodeRegistry, parseNodesFile, type NodeRecord } from '../../src/nodes';
import { NodeOps, TaskOps } from '../../src/ops';
import type { LocalTasks } from '../../src/proxy/local-tasks';
import { FileRouteStore, RouteTable, TaskTable, type TaskPhase } from '../../src/routing';
import { JsonStateFile } from '../../src/store';
import { startTestNode, type TestNode, type TestNodeOptions } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

// ---------------------------------------------------------------------------------------------
// Harness: the real AdminWeb over real registry / routes / task table / ops, on temp files, port 0.
// ---------------------------------------------------------------------------------------------

interface Harness {
  web: AdminWeb;
  base: string;
  registry: NodeRegistry;
  routes: RouteTable;
  tasks: TaskTable;
  logger: MemoryLogger;
  dir: string;
}

interface HarnessOptions extends Partial<AdminWebOptions> {
  /** Written to nodes.json / routes.json before they are loaded. */
  seedNodes?: NodeRecord[];
  seedRoutes?: Record<string, unknown>;
  /** Written to public/index.html. */
  indexHtml?: string;
}

/** LocalTasks over the task table, as TaskDispatcher implements it (without the forwarding machinery). */
function tableLocalTasks(table: TaskTable): LocalTasks {
  return {
    has: (uuid) => {
      const e = table.get(uuid);
      return e !== undefined && e.phase !== 'uploading';
    },
    owner: (uuid) => table.get(uuid)?.token,
    info: (uuid, withOutput) => table.infoAnswer(uuid, withOutput) ?? null,
    output: (uuid, line) => table.outputAnswer(uuid, line) ?? [],
    inS3: () => false,
    cancel: async (uuid) => {
      await table.markCanceled(uuid);
    },
    remove: async (uuid) => {
      await table.delete(uuid);
    },
    list: (token) => table.entries({ token }).map((e) => e.uuid),
  };
}

async function startWeb(t: TestContext, opts: HarnessOptions = {}): Promise<Harness> {
  const { seedNodes, seedRoutes, indexHtml, ...webOpts } = opts;
  const dir = tempDir(t, 'clusterodm-admin-web-');
  const publicDir = path.join(dir, 'public');
  if (seedNodes) fs.writeFileSync(path.join(dir, 'nodes.json'), JSON.stringify(seedNodes));
  if (seedRoutes) fs.writeFileSync(path.join(dir, 'routes.json'), JSON.stringify(seedRoutes));
  if (indexHtml !== undefined) {
    fs.mkdirSync(publicDir);
    fs.writeFileSync(path.join(publicDir, 'index.html'), indexHtml);
  }
  const logger = new MemoryLogger();
  const clock = systemClock;
  const registry = new NodeRegistry({
    store: new JsonStateFile<NodeRecord[]>({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }),
    clock,
    logger,
  });
  await registry.load();
  const routes = new RouteTable({ store: new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger }), clock, logger });
  await routes.load(registry);
  const tasks = new TaskTable({ file: path.join(dir, 'tasks.json'), clock, logger });
  await tasks.load();
  const client = new NodeClient({ timeoutMs: 3000 });
  const history = new LoadHistory();
  const poller = new HealthPoller({ registry, client, clock, logger, history });
  const nodeOps = new NodeOps({ registry, poller, routes, logger, history });
  const taskOps = new TaskOps({ routes, client });
  const web = new AdminWeb({
    port: 0,
    host: '127.0.0.1',
    password: '',
    version: '1.5.8',
    publicDir,
    nodeOps,
    taskOps,
    registry,
    routes,
    tasks,
    local: tableLocalTasks(tasks),
    history,
    asr: null,
    clock,
    logger,
    loginDelayMs: 50,
    ...webOpts,
  });
  await web.start();
  t.after(async () => {
    await web.stop();
    await routes.flush().catch(() => undefined);
    await tasks.flush().catch(() => undefined);
    await registry.flush();
  });
  const m = /Admin web listening on port (\d+)/.exec(logger.lines.join('\n'));
  assert.ok(m, 'the listening line is logged');
  assert.equal(Number(m[1]), web.port);
  return { web, base: `http://127.0.0.1:${web.port}`, registry, routes, tasks, logger, dir };
}

async function testNode(t: TestContext, opts: Partial<TestNodeOptions> = {}): Promise<TestNode> {
  const node = await startTestNode(opts);
  t.after(() => node.close());
  return node;
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
  json(): unknown;
}

interface CallOptions {
  /** JSON-encoded unless `raw` is given. */
  body?: unknown;
  raw?: string;
  contentType?: string;
  headers?: Record<string, string>;
  auth?: [string, string];
}

async function call(h: Harness, method: string, pathname: string, o: CallOptions = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...o.headers };
  let body: string | undefined;
  if (o.raw !== undefined || o.body !== undefined) {
    body = o.raw ?? JSON.stringify(o.body);
    headers['content-type'] = o.contentType ?? 'application/json';
  }
  if (o.auth) headers['authorization'] = `Basic ${Buffer.from(`${o.auth[0]}:${o.auth[1]}`).toString('base64')}`;
  const res = await fetch(`${h.base}${pathname}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as unknown };
}

async function getJson(h: Harness, pathname: string, o: CallOptions = {}): Promise<unknown> {
  const r = await call(h, 'GET', pathname, o);
  assert.equal(r.status, 200, `${pathname}: ${r.text}`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  return r.json();
}

interface NodeRow {
  number: number;
  name: string;
  isLocked: boolean;
  isOnline: boolean;
  nodeData: Record<string, unknown>;
  [k: string]: unknown;
}

async function nodeList(h: Harness): Promise<NodeRow[]> {
  return (await getJson(h, '/r/node/list')) as NodeRow[];
}

interface TaskRow {
  uuid: string;
  name: string;
  node: string | null;
  status: number | null;
  progress: number | null;
  imagesCount: number | null;
  dateCreated: number | null;
  where: 'node' | 'local';
}

interface TaskPage {
  total: number;
  offset: number;
  limit: number;
  tasks: TaskRow[];
}

async function taskPage(h: Harness, query = ''): Promise<TaskPage> {
  return (await getJson(h, `/r/tasks${query}`)) as TaskPage;
}

/** Creates a task on a test node through its NodeODM API, with the uuid of our choosing. */
async function createNodeTask(node: TestNode, uuid: string, name: string, images = 2): Promise<void> {
  const form = new FormData();
  form.append('name', name);
  for (let i = 0; i < images; i++) form.append('images', new Blob([Buffer.alloc(64, i)]), `img${i}.jpg`);
  const res = await fetch(`${node.url}/task/new`, { method: 'POST', headers: { 'set-uuid': uuid }, body: form });
  assert.deepEqual(await res.json(), { uuid });
}

async function putLocalTask(tasks: TaskTable, uuid: string, name: string, phase: TaskPhase, nodeKey?: string): Promise<void> {
  await tasks.put({
    uuid,
    token: undefined,
    phase,
    taskInfo: { uuid, name, dateCreated: 1_700_000_000_000, status: { code: 20 }, options: [], imagesCount: 3 },
    output: ['Launching... please wait! This can take a few minutes.'],
    ...(nodeKey !== undefined ? { nodeKey } : {}),
  });
}

const CSRF_REFUSED = { error: 'Cross-site request refused' };

// ---------------------------------------------------------------------------------------------
// Auth, signout, info, static files
// ---------------------------------------------------------------------------------------------

test('auth: Basic auth with realm, wrong password slowed and logged, signout is exact and unauthenticated', async (t) => {
  const h = await startWeb(t, { password: 'pa:ss w0rd', indexHtml: '<!DOCTYPE html><title>ClusterODM</title>' });
  const good: [string, string] = ['admin', 'pa:ss w0rd'];
  assert.ok(!h.logger.lines.some((l) => l.includes('No admin password specified')));

  const none = await call(h, 'GET', '/r/info');
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Basic realm="ClusterODM"');
  // A request without credentials is how every browser starts: not a failed login.
  assert.ok(!h.logger.lines.some((l) => l.includes('Failed admin web login')));

  const started = Date.now();
  const wrong = await call(h, 'GET', '/r/info', { auth: ['admin', 'nope'] });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('www-authenticate'), 'Basic realm="ClusterODM"');
  assert.ok(Date.now() - started >= 45, 'a failed login is answered after the delay');
  assert.ok(h.logger.lines.includes('warn: Failed admin web login from 127.0.0.1'));
  assert.ok(!h.logger.lines.some((l) => l.includes('nope')), 'the password is never logged');

  assert.equal((await call(h, 'GET', '/r/info', { auth: ['root', 'pa:ss w0rd'] })).status, 401, 'the user must be admin');
  assert.equal((await call(h, 'GET', '/r/info', { headers: { authorization: 'Bearer x' } })).status, 401);

  assert.deepEqual(await getJson(h, '/r/info', { auth: good }), { name: 'ClusterODM', version: '1.5.8' });
  // Static files are behind the login too.
  assert.equal((await call(h, 'GET', '/')).status, 401);
  const page = await call(h, 'GET', '/', { auth: good });
  assert.equal(page.status, 200);
  assert.match(page.text, /<title>ClusterODM<\/title>/);

  for (const auth of [undefined, good]) {
    const out = await call(h, 'GET', '/signout', auth ? { auth } : {});
    assert.equal(out.status, 401);
    assert.equal(out.text, 'Signed out. <br /> <a href="/">Sign back in</a>');
    assert.match(out.headers.get('content-type') ?? '', /^text\/html/);
  }
});

test('auth: inside the penalty window of an address the right password still works; wrong ones are slow and logged once', async (t) => {
  // The window is the delay: long enough that the three calls below fall in one window on a loaded machine.
  const h = await startWeb(t, { password: 'secret', loginDelayMs: 4000 });
  const wrong = call(h, 'GET', '/r/info', { auth: ['admin', 'guess'] });
  await waitUntil(() => h.logger.lines.some((l) => l.includes('Failed admin web login')));
  // Someone else on the admin's address (NAT, a reverse proxy) cannot lock the admin out.
  assert.equal((await call(h, 'GET', '/r/info', { auth: ['admin', 'secret'] })).status, 200);
  const again = await call(h, 'GET', '/r/info', { auth: ['admin', 'guess2'] });
  assert.equal(again.status, 401);
  assert.equal((await wrong).status, 401);
  assert.equal(h.logger.lines.filter((l) => l.includes('Failed admin web login')).length, 1, 'one log line per window');
});

test('no password: warning with the port, no CORS headers, JSON 404 under /r/, static 404 without a page', async (t) => {
  const h = await startWeb(t);
  assert.ok(h.logger.lines.includes(`warn: No admin password specified, make sure port ${h.web.port} is secured`));
  const info = await call(h, 'GET', '/r/info', { headers: { origin: 'http://evil.example' } });
  assert.equal(info.status, 200);
  assert.equal(info.text, '{"name":"ClusterODM","version":"1.5.8"}');
  for (const [name] of info.headers) assert.ok(!name.startsWith('access-control-'), `unexpected header ${name}`);
  const preflight = await call(h, 'OPTIONS', '/r/node/add', {
    headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST' },
  });
  assert.equal(preflight.headers.get('access-control-allow-origin'), null);

  const missing = await call(h, 'GET', '/r/nonexistent');
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.json(), { error: 'Not found' });
  assert.equal((await call(h, 'GET', '/r/node/add')).status, 404, 'wrong method is an unknown route');
  // The page is written elsewhere: without index.html, / is simply not found.
  assert.equal((await call(h, 'GET', '/')).status, 404);
  assert.deepEqual(await getJson(h, '/r/asr'), { enabled: false });
});

test('asr: the autoscaler status when there is one, documented fields only', async (t) => {
  const status = {
    provider: 'digitalocean',
    pending: 1,
    running: 2,
    limit: 5,
    maxRuntime: -1,
    maxUploadTime: 3600,
    creating: [{ name: 'clusterodm-5-abc', uuid: 'u-1', step: 'Starting NodeODM', since: 5 }],
  };
  // Whatever else the autoscaler's object carries (here a made-up secret) never reaches the page.
  const asr: AsrWebView = { status: () => ({ ...status, accessToken: 'do-secret', creating: [{ ...status.creating[0]!, token: 't' }] }) };
  const h = await startWeb(t, { asr });
  assert.deepEqual(await getJson(h, '/r/asr'), { enabled: true, ...status });
});

// ---------------------------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------------------------

test('nodes: add (number or string port), duplicates and invalid input, list shape with masked tokens, history', async (t) => {
  const a = await testNode(t, { token: 'secret-token' });
  const b = await testNode(t);
  const h = await startWeb(t);
  const add = async (body: unknown): Promise<unknown> => (await call(h, 'POST', '/r/node/add', { body })).json();

  assert.deepEqual(await add({ hostname: '127.0.0.1', port: a.port, token: 'secret-token' }), { success: true });
  assert.deepEqual(await add({ hostname: '127.0.0.1', port: String(b.port) }), { success: true });
  assert.deepEqual(await add({ hostname: '127.0.0.1', port: String(a.port) }), { error: 'Invalid' }, 'duplicate, other port type');
  assert.deepEqual(await add({ hostname: '127.0.0.1', port: b.port }), { error: 'Invalid' }, 'duplicate');
  for (const bad of [
    {},
    { hostname: '127.0.0.1' },
    { port: 3000 },
    { hostname: 'h', port: 'abc' },
    { hostname: 'h', port: 70000 },
    { hostname: 'h', port: 0 },
    { hostname: 'h', port: 3000, token: 5 },
    { hostname: ['h'], port: 3000 },
    [],
  ]) {
    assert.deepEqual(await add(bad), { error: 'Invalid' }, JSON.stringify(bad));
  }
  // A hostname that is not a DNS name or an IP literal gets its own message.
  for (const hostname of ['', 'bad host', '127.0.0.1/', 'http://h']) {
    assert.deepEqual(await add({ hostname, port: 3000 }), { error: 'Invalid hostname: a DNS name or an IP address only (no scheme, port or path)' }, hostname);
  }

  await waitUntil(async () => (await nodeList(h)).every((n) => n.isOnline), { message: 'both nodes polled' });
  const list = await nodeList(h);
  assert.equal(list.length, 2);
  const [first, second] = list;
  assert.ok(first && second);
  assert.deepEqual(Object.keys(first).sort(), [
    'getEngineInfo',
    'getMaxParallelTasks',
    'getTaskQueueCount',
    'getVersion',
    'isAutoSpawned',
    'isLocked',
    'isOnline',
    'name',
    'nodeData',
    'number',
  ]);
  assert.deepEqual(
    { ...first, nodeData: undefined },
    {
      number: 1,
      name: `127.0.0.1:${a.port}`,
      isLocked: false,
      isAutoSpawned: false,
      isOnline: true,
      getTaskQueueCount: 0,
      getMaxParallelTasks: 1,
      getEngineInfo: 'odm ?',
      getVersion: '2.2.4',
      nodeData: undefined,
    },
  );
  assert.equal(second.number, 2);
  assert.equal(second.name, `127.0.0.1:${b.port}`);
  assert.equal(first.nodeData['hostname'], '127.0.0.1');
  assert.equal(first.nodeData['port'], a.port);
  assert.equal(second.nodeData['port'], b.port, 'a string port is stored as a number');
  assert.equal(first.nodeData['token'], '********', 'masked whole');
  assert.equal(typeof first.nodeData['lastRefreshed'], 'number');
  assert.equal((first.nodeData['info'] as Record<string, unknown>)['version'], '2.2.4');
  const raw = await call(h, 'GET', '/r/node/list');
  assert.ok(!raw.text.includes('secret-token'), 'no node token in the list');
  // The real token is still what the node gets (it answered /info, so it is online).
  assert.equal(h.registry.list()[0]?.token, 'secret-token');

  const history = (await getJson(h, '/r/node/history')) as Record<string, Array<Record<string, unknown>>>;
  assert.deepEqual(Object.keys(history).sort(), [`127.0.0.1:${a.port}`, `127.0.0.1:${b.port}`].sort());
  const samples = history[`127.0.0.1:${a.port}`] ?? [];
  assert.ok(samples.length >= 1, 'a poll was recorded');
  assert.deepEqual(Object.keys(samples[0] ?? {}).sort(), ['queue', 'slots', 't']);
  assert.equal(samples[0]?.['slots'], 1);
});

test('nodes: lock, unlock and delete by host:port and by number; mismatch false; nothing named 403', async (t) => {
  const a = await testNode(t);
  const b = await testNode(t);
  const h = await startWeb(t);
  for (const n of [a, b]) assert.deepEqual((await call(h, 'POST', '/r/node/add', { body: { hostname: '127.0.0.1', port: n.port } })).json(), { success: true });
  const act = async (method: string, p: string, body: unknown): Promise<Reply> => call(h, method, p, { body });
  const locked = async (): Promise<boolean[]> => (await nodeList(h)).map((n) => n.isLocked);

  assert.equal((await act('POST', '/r/node/lock', { hostname: '127.0.0.1', port: b.port })).text, 'true');
  assert.deepEqual(await locked(), [false, true]);
  assert.equal((await act('POST', '/r/node/lock', { number: 1 })).text, 'true');
  assert.deepEqual(await locked(), [true, true]);
  assert.equal((await act('POST', '/r/node/unlock', { hostname: '127.0.0.1', port: String(a.port), number: 1 })).text, 'true');
  assert.equal((await act('POST', '/r/node/unlock', { number: '2' })).text, 'true');
  assert.deepEqual(await locked(), [false, false]);
  const nodesFile = (): unknown => JSON.parse(fs.readFileSync(path.join(h.dir, 'nodes.json'), 'utf8'));
  assert.deepEqual(nodesFile(), [
    { hostname: '127.0.0.1', port: a.port, token: '', locked: false },
    { hostname: '127.0.0.1', port: b.port, token: '', locked: false },
  ]);

  // Two names for two different nodes, or for no node: false, nothing changes.
  for (const body of [
    { hostname: '127.0.0.1', port: a.port, number: 2 },
    { number: 99 },
    { number: 1.5 },
    { number: 'x' },
    { hostname: 'nowhere', port: a.port },
    { hostname: '127.0.0.1' },
    { port: a.port },
    { hostname: '127.0.0.1', port: a.port, number: 99 },
  ]) {
    const r = await act('POST', '/r/node/lock', body);
    assert.equal(r.status, 200);
    assert.equal(r.text, 'false', JSON.stringify(body));
  }
  assert.deepEqual(await locked(), [false, false]);
  for (const body of [{}, { number: 0 }, { number: null }, { other: 1 }]) {
    for (const [method, p] of [['POST', '/r/node/lock'], ['POST', '/r/node/unlock'], ['DELETE', '/r/node']] as const) {
      const r = await act(method, p, body);
      assert.equal(r.status, 403, `${method} ${p} ${JSON.stringify(body)}`);
      assert.equal(r.text, '');
    }
  }

  assert.equal((await act('DELETE', '/r/node', { number: 2 })).text, 'true');
  assert.equal((await act('DELETE', '/r/node', { hostname: '127.0.0.1', port: b.port })).text, 'false', 'already gone');
  assert.equal((await act('DELETE', '/r/node', { hostname: '127.0.0.1', port: a.port })).text, 'true');
  assert.deepEqual(await nodeList(h), []);
  assert.deepEqual(nodesFile(), []);
  assert.deepEqual(await getJson(h, '/r/node/history'), {});
});

test('csrf and bodies: non-JSON or foreign-origin writes refused, malformed JSON 400, large bodies 413', async (t) => {
  const a = await testNode(t);
  const h = await startWeb(t);
  const body = JSON.stringify({ hostname: '127.0.0.1', port: a.port });
  for (const contentType of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const r = await call(h, 'POST', '/r/node/add', { raw: body, contentType });
    assert.equal(r.status, 403, contentType);
    assert.deepEqual(r.json(), CSRF_REFUSED);
  }
  const noType = await fetch(`${h.base}/r/node/add`, { method: 'POST', body: new Uint8Array(Buffer.from(body)) });
  assert.equal(noType.status, 403);
  for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${h.web.port + 1}`, 'not a url']) {
    const r = await call(h, 'POST', '/r/node/add', { raw: body, headers: { origin } });
    assert.equal(r.status, 403, origin);
    assert.deepEqual(r.json(), CSRF_REFUSED);
  }
  assert.deepEqual(await nodeList(h), [], 'nothing was added');

  const same = await call(h, 'POST', '/r/node/add', { raw: body, headers: { origin: `http://127.0.0.1:${h.web.port}` } });
  assert.deepEqual(same.json(), { success: true }, 'same-origin JSON is accepted');
  const json = await call(h, 'POST', '/r/node/add', {
    body: { hostname: 'other', port: 1 },
    contentType: 'Application/JSON; charset=utf-8',
  });
  assert.deepEqual(json.json(), { success: true }, 'media type parameters and case do not matter');

  const del = await call(h, 'DELETE', '/r/node', { body: { number: 1 }, headers: { origin: 'http://evil.example' } });
  assert.equal(del.status, 403);
  const lock = await call(h, 'POST', '/r/node/lock', { raw: '{"number":1}', contentType: 'text/plain' });
  assert.equal(lock.status, 403);
  const cancel = await call(h, 'POST', '/r/task/cancel', { raw: '{"uuid":"x"}', contentType: 'text/plain' });
  assert.equal(cancel.status, 403);
  assert.deepEqual((await nodeList(h)).map((n) => [n.name, n.isLocked]), [
    [`127.0.0.1:${a.port}`, false],
    ['other:1', false],
  ]);

  const malformed = await call(h, 'POST', '/r/node/add', { raw: '{bad json' });
  assert.equal(malformed.status, 400);
  assert.match(malformed.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(malformed.json(), { error: 'Malformed JSON' });
  assert.equal((await call(h, 'POST', '/r/node/lock', { raw: '"text"' })).status, 400, 'only objects and arrays');
  const big = await call(h, 'POST', '/r/node/add', { body: { hostname: 'x'.repeat(70 * 1024), port: 1 } });
  assert.equal(big.status, 413);
  assert.deepEqual(big.json(), { error: 'Request body too large' });
  // Keys that exist on every object are not fields of the body.
  assert.equal((await call(h, 'POST', '/r/node/lock', { raw: '{"__proto__":{"number":1}}' })).status, 403);
  assert.deepEqual((await call(h, 'POST', '/r/task/cancel', { body: { constructor: 'x' } })).json(), { error: 'Unknown task' });
});

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

test('tasks: routed tasks enriched from their node, local tasks from the table, paging, limit cap and q', async (t) => {
  const node = await testNode(t, { processingMs: 60_000 });
  const h = await startWeb(t);
  assert.deepEqual((await call(h, 'POST', '/r/node/add', { body: { hostname: '127.0.0.1', port: node.port } })).json(), { success: true });
  const cn = h.registry.list()[0];
  assert.ok(cn);
  const real1 = randomUUID();
  const real2 = randomUUID();
  const unknown = randomUUID();
  const local = randomUUID();
  const uploading = randomUUID();
  await createNodeTask(node, real1, 'Survey North', 3);
  await createNodeTask(node, real2, 'Survey South', 2);
  for (const uuid of [real1, real2, unknown]) await h.routes.add(uuid, cn, undefined);
  await putLocalTask(h.tasks, local, 'Local Forward', 'forwarding', cn.key);
  await putLocalTask(h.tasks, uploading, 'Still Uploading', 'uploading');

  const page = await taskPage(h);
  assert.equal(page.total, 4, 'uploading tasks are not listed');
  assert.equal(page.offset, 0);
  assert.equal(page.limit, 50);
  const byUuid = new Map(page.tasks.map((r) => [r.uuid, r]));
  const r1 = byUuid.get(real1);
  assert.ok(r1);
  assert.equal(r1.name, 'Survey North');
  assert.equal(r1.node, `127.0.0.1:${node.port}`);
  assert.equal(r1.where, 'node');
  assert.equal(r1.imagesCount, 3);
  assert.ok(r1.status === 10 || r1.status === 20, `status ${r1.status}`);
  assert.equal(typeof r1.progress, 'number');
  assert.equal(typeof r1.dateCreated, 'number');
  assert.deepEqual(byUuid.get(unknown), {
    uuid: unknown,
    name: '',
    node: `127.0.0.1:${node.port}`,
    status: null,
    progress: null,
    imagesCount: null,
    dateCreated: null,
    where: 'node',
  });
  assert.deepEqual(byUuid.get(local), {
    uuid: local,
    name: 'Local Forward',
    node: `127.0.0.1:${node.port}`,
    status: 20,
    progress: null,
    imagesCount: 3,
    dateCreated: 1_700_000_000_000,
    where: 'local',
  });

  // Newest accessed first, uuid breaking ties; listing does not count as an access.
  const accessed = (uuid: string): number => h.routes.peek(uuid)?.accessed ?? h.tasks.get(uuid)?.accessed ?? -1;
  const expected = [real1, real2, unknown, local].sort((x, y) => accessed(y) - accessed(x) || (x < y ? -1 : 1));
  assert.deepEqual(page.tasks.map((r) => r.uuid), expected);
  assert.deepEqual((await taskPage(h)).tasks.map((r) => r.uuid), expected, 'the order is stable');

  const p1 = await taskPage(h, '?offset=0&limit=3');
  const p2 = await taskPage(h, '?offset=3&limit=3');
  assert.deepEqual([...p1.tasks, ...p2.tasks].map((r) => r.uuid), expected);
  assert.equal(p2.total, 4);
  assert.equal((await taskPage(h, '?offset=10')).tasks.length, 0);
  assert.equal((await taskPage(h, '?limit=1000')).limit, 200, 'limit is capped');
  for (const q of ['?limit=abc', '?limit=0', '?limit=-5', '?offset=-1', '?limit=1&limit=2']) {
    const p = await taskPage(h, q);
    assert.equal(p.limit, 50, q);
    assert.equal(p.offset, 0, q);
  }

  const byQ = async (q: string): Promise<string[]> =>
    (await taskPage(h, `?q=${encodeURIComponent(q)}`)).tasks.map((r) => r.uuid).sort();
  assert.deepEqual(await byQ(real2.slice(9, 18).toUpperCase()), [real2], 'uuid substring, any case');
  assert.deepEqual(await byQ('local forw'), [local], 'local task name');
  assert.deepEqual(await byQ('survey'), [real1, real2].sort(), 'names of routed tasks already seen');
  assert.deepEqual(await byQ('no such thing'), []);
  assert.equal((await taskPage(h, '?q=no-such')).total, 0);
});

test('tasks: 10,000 routes are listed fast, with one node call per row of the page', async (t) => {
  const node = await testNode(t);
  const record: NodeRecord = { hostname: '127.0.0.1', port: node.port, token: '' };
  const routes: Record<string, unknown> = {};
  const now = Date.now();
  const uuids: string[] = [];
  for (let i = 0; i < 10_000; i++) {
    const uuid = randomUUID();
    uuids.push(uuid);
    routes[uuid] = { node: record, accessed: now - i * 1000 };
  }
  const h = await startWeb(t, { seedNodes: [record], seedRoutes: routes });
  assert.equal(h.routes.size(), 10_000);
  const infoCalls = (): number => node.requests.filter((r) => /^\/task\/[^/]+\/info/.test(r.path)).length;

  const before = infoCalls();
  // Speed is measured by the bench; here: the page costs only `limit` node calls, whatever the table size.
  const page = await taskPage(h, '?limit=50');
  assert.equal(page.total, 10_000);
  assert.deepEqual(page.tasks.map((r) => r.uuid), uuids.slice(0, 50));
  assert.equal(infoCalls() - before, 50, 'only the rows of the page are asked for');

  const last = await taskPage(h, '?offset=9990&limit=200');
  assert.deepEqual(last.tasks.map((r) => r.uuid), uuids.slice(9990));
  const q = await taskPage(h, `?q=${uuids[1234]?.slice(0, 13) ?? ''}`);
  assert.ok(q.tasks.some((r) => r.uuid === uuids[1234]));
});

test('tasks: cancel and remove, on the node for routed tasks and in the table for local ones', async (t) => {
  const node = await testNode(t, { processingMs: 60_000 });
  const h = await startWeb(t);
  assert.deepEqual((await call(h, 'POST', '/r/node/add', { body: { hostname: '127.0.0.1', port: node.port } })).json(), { success: true });
  const cn = h.registry.list()[0];
  assert.ok(cn);
  const routed = randomUUID();
  const ghost = randomUUID();
  const local = randomUUID();
  await createNodeTask(node, routed, 'To cancel');
  await h.routes.add(routed, cn, undefined);
  await h.routes.add(ghost, cn, undefined);
  await putLocalTask(h.tasks, local, 'Local', 'forwarding');
  const post = async (p: string, body: unknown): Promise<unknown> => (await call(h, 'POST', p, { body })).json();
  const statusOn = (uuid: string): number | undefined => node.tasks().find((x) => x.uuid === uuid)?.status;

  assert.deepEqual(await post('/r/task/cancel', { uuid: routed }), { success: true });
  assert.equal(statusOn(routed), 50);
  assert.deepEqual(await post('/r/task/cancel', { uuid: ghost }), { success: false, error: `${ghost} not found` }, "the node's answer");
  assert.deepEqual(await post('/r/task/remove', { uuid: routed }), { success: true });
  assert.equal(statusOn(routed), undefined);
  assert.equal(h.routes.has(routed), false, 'a removed task keeps no route');
  assert.equal(h.routes.has(ghost), true, 'a failed remove keeps the route');

  assert.deepEqual(await post('/r/task/cancel', { uuid: local }), { success: true });
  assert.equal(h.tasks.get(local)?.phase, 'canceled');
  const listed = (await taskPage(h)).tasks.find((r) => r.uuid === local);
  assert.equal(listed?.status, 50);
  assert.deepEqual(await post('/r/task/remove', { uuid: local }), { success: true });
  assert.equal(h.tasks.get(local), undefined);

  for (const body of [{ uuid: randomUUID() }, { uuid: routed }, {}, { uuid: 5 }, { uuid: '' }]) {
    assert.deepEqual(await post('/r/task/remove', body), { error: 'Unknown task' }, JSON.stringify(body));
  }
  assert.ok(h.logger.lines.includes(`info: Task ${local} canceled via the admin web`));
});

test('stop closes the listener and open keep-alive connections', async (t) => {
  const h = await startWeb(t);
  assert.equal((await call(h, 'GET', '/r/info')).status, 200);
  const started = Date.now();
  await h.web.stop();
  assert.ok(Date.now() - started < 1000, 'stop does not wait for idle connections');
  await assert.rejects(fetch(`${h.base}/r/info`));
  await h.web.stop();
});
