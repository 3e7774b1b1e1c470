/**
 * Authorization and secrets. With --token no proxy route answers without it (only the NodeODM UI's static assets
 * do); tasks are private to the token that created them in every phase (uploading, forwarding/failed, on a node);
 * the admin CLI and web refuse without the password and slow failures down; and no secret (node token, user
 * token, admin password) appears in the daemon's log, a CLI answer or an admin web answer.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { multiUser } from '../helpers/app';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { findSecrets, form, images, json, rawRequest, startLoggedApp, statusCode } from './support';

const USER_TOKEN = 'user-tok-51c2e8aa';
const NODE_TOKEN = 'node-tok-7f3a9c01';
const ADMIN_PASS = 'admin-pw-9d77b1ee';
const SECRETS = [USER_TOKEN, NODE_TOKEN, ADMIN_PASS];

const UUID = '3f1c7a52-9b1e-4c3a-8d2f-6a5b4c3d2e1f';
/** Every proxy route, with each method a client might use. */
const ROUTES: Array<[string, string]> = [
  ['GET', '/'],
  ['GET', '/info'],
  ['GET', '/options'],
  ['POST', '/cache/clear'],
  ['GET', '/cache/clear'],
  ['POST', '/task/new/init'],
  ['POST', `/task/new/upload/${UUID}`],
  ['POST', `/task/new/commit/${UUID}`],
  ['POST', '/task/new'],
  ['GET', '/task/list'],
  ['GET', `/task/${UUID}/info`],
  ['GET', `/task/${UUID}/output`],
  ['GET', `/task/${UUID}/download/all.zip`],
  ['POST', '/task/cancel'],
  ['POST', '/task/remove'],
  ['POST', '/task/restart'],
  ['GET', '/nonexistent'],
  ['POST', '/css/main.css'], // an asset path, but not a GET: not public
  ['PUT', '/js/app.js'],
  ['GET', '/../index.html'],
  ['HEAD', '/info'],
  ['DELETE', `/task/${UUID}/info`],
];

test('auth: with --token no proxy route answers without it, except the UI assets', async (t) => {
  const node = await startTestNode({ token: NODE_TOKEN });
  t.after(() => node.close());
  const { url, port, app } = await startLoggedApp(t, ['--token', USER_TOKEN]);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port, NODE_TOKEN));
  await app.nodeOps.updateAll();
  const req = (method: string, target: string): Buffer =>
    Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  for (const [method, p] of ROUTES) {
    for (const q of ['', '?token=', '?token=wrong', `?token=${USER_TOKEN.toUpperCase()}`, `?tok=${USER_TOKEN}`]) {
      const a = await rawRequest(port, req(method, `${p}${q}`));
      assert.equal(a.status, 401, `${method} ${p}${q} answered ${a.status}`);
      assert.equal(a.body.length, 0);
    }
  }
  const before = node.requests.length;
  // The UI's assets load without a token (the NodeODM UI needs them before it knows one), and only them.
  for (const asset of ['/css/main.css', '/js/main.js', '/fonts/x.woff', '/fonts/x.ttf', '/favicon.ico']) {
    assert.notEqual((await rawRequest(port, req('GET', asset))).status, 401, asset);
  }
  assert.ok(node.requests.slice(before).every((r) => !r.path.includes(USER_TOKEN)), 'the user token never reaches a node');
  // Single-token setups keep working: the token's holder does everything.
  const created = await json(`${url}/task/new?token=${USER_TOKEN}`, { method: 'POST', body: form({}, images(2)) });
  const uuid = String(created['uuid']);
  await waitUntil(async () => statusCode(await json(`${url}/task/${uuid}/info?token=${USER_TOKEN}`)) === 40, {
    timeoutMs: 20_000,
    message: 'the task did not complete',
  });
  const dl = await fetch(`${url}/task/${uuid}/download/all.zip?token=${USER_TOKEN}`);
  assert.equal(dl.status, 200);
  await dl.arrayBuffer();
  assert.deepEqual(await json(`${url}/task/list?token=${USER_TOKEN}`), { list: [{ uuid }] });
  assert.deepEqual(await json(`${url}/task/remove?token=${USER_TOKEN}`, { method: 'POST', body: new URLSearchParams({ uuid }) }), { success: true });
});

test('auth: a task is its creator\'s while uploading, after a failed forward and on its node', async (t) => {
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());
  const { url, app } = await startLoggedApp(t, [], { cloud: multiUser(['alice', 'bob']), tuning: { forwardRetryBaseMs: 10, uploadRetrySleepMs: 5 } });
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const post = (p: string, body: FormData | URLSearchParams): Promise<Record<string, unknown>> => json(`${url}${p}`, { method: 'POST', body });

  // Uploading: Bob can neither add files to Alice's upload session, nor commit it, nor see or stop it.
  const up = String((await post('/task/new/init?token=alice', form({ name: 'mine' })))['uuid']);
  const gone = { error: 'Invalid taskId: the task no longer exists.' };
  assert.deepEqual(await post(`/task/new/upload/${up}?token=bob`, form({}, images(1))), gone);
  assert.deepEqual(await post(`/task/new/commit/${up}?token=bob`, form({})), gone);
  for (const action of ['info', 'output']) {
    assert.deepEqual(await json(`${url}/task/${up}/${action}?token=bob`), { error: `Invalid route for taskId ${up}:${action}, no task table entry.` });
  }
  for (const action of ['cancel', 'remove', 'restart']) {
    assert.deepEqual(await post(`/task/${action}?token=bob`, new URLSearchParams({ uuid: up })), { error: `Invalid route for taskId ${up}, no nodes in routing table.` });
  }
  assert.deepEqual(await post(`/task/new/upload/${up}?token=alice`, form({}, images(1))), { success: true });
  assert.equal(app.tasks.get(up)?.phase, 'uploading', "Bob's attempts changed nothing");

  // Failed before reaching a node: still private.
  node.configure({ dropUploads: 1_000_000 });
  const failed = String((await post('/task/new?token=alice', form({}, images(1))))['uuid']);
  await waitUntil(async () => statusCode(await json(`${url}/task/${failed}/info?token=alice`)) === 30, { timeoutMs: 30_000, message: 'never failed' });
  node.configure({ dropUploads: 0 });
  for (const action of ['info', 'output', 'download/all.zip']) {
    assert.deepEqual(await json(`${url}/task/${failed}/${action}?token=bob`), { error: `Invalid route for taskId ${failed}:${action}, no task table entry.` });
  }
  for (const action of ['cancel', 'remove']) {
    assert.deepEqual(await post(`/task/${action}?token=bob`, new URLSearchParams({ uuid: failed })), { error: `Invalid route for taskId ${failed}, no nodes in routing table.` });
  }
  assert.equal(statusCode(await json(`${url}/task/${failed}/info?token=alice`)), 30);
  assert.deepEqual(await json(`${url}/task/list?token=bob`), { list: [] });
  // Alice can remove it; then it is gone for everyone.
  assert.deepEqual(await post('/task/remove?token=alice', new URLSearchParams({ uuid: failed })), { success: true });
  assert.match(String((await json(`${url}/task/${failed}/info?token=alice`))['error']), /no task table entry/);
});

test('auth: the admin CLI and web refuse without the password, slow failures down, and no secret leaks anywhere', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const node = await startTestNode({ token: NODE_TOKEN, processingMs: 100 });
  t.after(() => node.close());
  const d = await startDaemon(t, dir, ['--token', USER_TOKEN, '--admin-pass', ADMIN_PASS, '--admin-web-port', '1', '--log-level', 'silly']);
  const answers: string[] = [];

  // CLI: nothing before login; a wrong password is answered late and ends the session.
  const guest = await CliClient.connect(t, d.cliPort);
  answers.push(await guest.untilPrompt());
  guest.socket.write('NODE LIST\r\n');
  await guest.waitClosed();
  answers.push(guest.transcript);
  assert.doesNotMatch(guest.transcript, /\[(?:online|offline)\]|#> /);
  const wrong = await CliClient.connect(t, d.cliPort);
  await wrong.untilPrompt();
  const started = Date.now();
  wrong.socket.write(`LOGIN ${ADMIN_PASS.slice(0, -1)}\r\n`);
  await wrong.waitClosed();
  assert.ok(Date.now() - started >= 900, 'a wrong password is answered after a delay');
  answers.push(wrong.transcript);

  const cli = await CliClient.connect(t, d.cliPort);
  answers.push(await cli.untilPrompt());
  const send = async (line: string): Promise<string> => {
    const a = await cli.send(line);
    answers.push(a);
    return a;
  };
  assert.match(await send(`LOGIN ${ADMIN_PASS}`), /^OK/);
  assert.equal(await send(`NODE ADD 127.0.0.1 ${node.port} ${NODE_TOKEN}`), 'OK\r\n');
  assert.equal(await send('NODE UPDATE'), 'OK\r\n');

  // A split-merge task carries the user's token in its sm-cluster option: it must not show on the admin side.
  const created = await json(`${d.url}/task/new?token=${USER_TOKEN}`, {
    method: 'POST',
    body: form({ options: JSON.stringify([{ name: 'split', value: 2 }]) }, images(3)),
  });
  const uuid = String(created['uuid']);
  await waitUntil(async () => statusCode(await json(`${d.url}/task/${uuid}/info?token=${USER_TOKEN}`)) === 40, {
    timeoutMs: 20_000,
    message: 'the task did not complete',
  });
  for (const line of ['NODE LIST', 'NODE INFO 1', 'NODE BEST 1', 'ROUTE LIST', 'ROUTE LIST 1', `ROUTE INFO ${uuid}`, 'TASK LIST', 'TASK LIST 1',
    `TASK INFO ${uuid}`, `TASK OUTPUT ${uuid}`, 'HELP', '!!']) {
    await send(line);
  }

  // Admin web: no credentials, wrong ones (answered late), then the right ones.
  const web = `http://127.0.0.1:${d.webPort}`;
  const basic = (pw: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`admin:${pw}`).toString('base64')}` });
  assert.equal((await fetch(`${web}/r/node/list`)).status, 401);
  const t0 = Date.now();
  const bad = await fetch(`${web}/r/node/list`, { headers: basic('nope') });
  assert.equal(bad.status, 401);
  assert.ok(Date.now() - t0 >= 900, 'a wrong admin web password is answered after a delay');
  answers.push(await bad.text());
  // Then log in properly (the right password is accepted at once, even right after a failure).
  await waitUntil(async () => (await fetch(`${web}/r/info`, { headers: basic(ADMIN_PASS) })).status === 200, { timeoutMs: 15_000, intervalMs: 500 });
  for (const p of ['/r/info', '/r/node/list', '/r/tasks', `/r/tasks?q=${uuid}`, '/r/node/history', '/r/asr', '/']) {
    const r = await fetch(`${web}${p}`, { headers: basic(ADMIN_PASS) });
    answers.push(await r.text());
  }
  // Proxy answers to the user: the node's token never shows.
  for (const p of ['/info', '/options', '/task/list', `/task/${uuid}/info`, `/task/${uuid}/output`]) {
    answers.push(JSON.stringify(await json(`${d.url}${p}?token=${USER_TOKEN}`)));
  }
  const proxyAnswers = answers.splice(-5);

  assert.equal(await d.stop('SIGTERM'), 0);
  const log = fs.readFileSync(path.join(dir, 'ClusterODM.log'), 'utf8') + d.output();
  assert.ok(log.includes('Failed admin CLI login') && log.includes('Failed admin web login'), 'failed logins are logged');
  assert.deepEqual(findSecrets(log, SECRETS), [], 'no secret in the log');
  const leaking = answers.filter((a) => findSecrets(a, SECRETS).length > 0);
  assert.deepEqual(leaking, [], 'no secret in a CLI or admin web answer');
  assert.deepEqual(findSecrets(proxyAnswers.join('\n'), [NODE_TOKEN, ADMIN_PASS]), [], "no node token or password in the user's answers");
  // The state files keep the tokens (they are needed), readable by the owner only.
  for (const f of ['nodes.json', 'routes.json', 'routes.json.journal']) {
    const p = path.join(dir, 'data', f);
    if (fs.existsSync(p)) assert.equal(fs.statSync(p).mode & 0o077, 0, `${f} is private`);
  }
});
