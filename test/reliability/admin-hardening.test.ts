/**
 * Admin interfaces under attack (the admin CLI and the admin web of a real in-process daemon): a flood of wrong
 * passwords from the admin's own address, hostile node hostnames, secrets in answers, and DNS rebinding.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CliClient } from '../helpers/cli-client';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { form, images, json, rawRequest, startLoggedApp, statusCode, type LoggedApp } from './support';

const PASS = 'admin-pw-4b1f09c2';
const NODE_TOKEN = 'supersecret42';

const basic = (pw: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`admin:${pw}`).toString('base64')}` });
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The daemon in-process with both admin interfaces on (ports picked by the system). */
function startAdmin(t: TestContext, args: string[]): Promise<LoggedApp> {
  return startLoggedApp(t, ['--admin-cli-port', '1', '--admin-web-port', '1', ...args]);
}

function portsOf(a: LoggedApp): { cli: number; web: number } {
  const cli = a.app.cli?.port ?? 0;
  const web = a.app.web?.port ?? 0;
  assert.ok(cli > 0 && web > 0, 'the admin CLI and web are up');
  return { cli, web };
}

async function testNode(t: TestContext, opts: Parameters<typeof startTestNode>[0] = {}): Promise<TestNode> {
  const node = await startTestNode(opts);
  t.after(() => node.close());
  return node;
}

/** A CLI connection, past its banner. */
async function session(t: TestContext, port: number): Promise<CliClient> {
  const c = await CliClient.connect(t, port);
  await c.untilPrompt();
  return c;
}

/** A raw HTTP/1.1 request to the admin web with the Host header (and anything else) of our choosing. */
async function hostRequest(port: number, host: string | null, target = '/r/info', extra: string[] = [], body = ''): Promise<{ status: number; text: string }> {
  const head = [`${body ? 'POST' : 'GET'} ${target} HTTP/1.1`, ...(host === null ? [] : [`Host: ${host}`]), 'Connection: close', ...extra];
  const bytes = Buffer.from(`${head.join('\r\n')}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  const a = await rawRequest(port, bytes);
  return { status: a.status, text: a.body.toString('utf8') };
}

test('the login throttle locks out the real admin: right web and CLI logins work while wrong ones flood from the same address', { timeout: 120_000 }, async (t) => {
  const a = await startAdmin(t, ['--admin-pass', PASS]);
  const { cli, web } = portsOf(a);
  const failures = (what: string): number => a.logger.lines.filter((l) => l.includes(`Failed admin ${what} login`)).length;
  const attackStarted = Date.now();

  // The attacker (or another user behind the same NAT / reverse proxy): a wrong password every 0.3 s, on both.
  const wrongWeb: Array<Promise<{ status: number; ms: number }>> = [];
  const wrongCli: Array<Promise<{ transcript: string; ms: number }>> = [];
  let attacking = true;
  const attack = (async () => {
    while (attacking) {
      const started = Date.now();
      wrongWeb.push(fetch(`http://127.0.0.1:${web}/r/info`, { headers: basic('guess') }).then(async (r) => {
        await r.arrayBuffer();
        return { status: r.status, ms: Date.now() - started };
      }));
      wrongCli.push((async () => {
        const c = await session(t, cli);
        const sent = Date.now();
        c.socket.write('LOGIN guess\r\n');
        await c.waitClosed(15_000);
        return { transcript: c.transcript, ms: Date.now() - sent };
      })());
      await sleep(300);
    }
  })();
  t.after(() => {
    attacking = false;
  });
  await waitUntil(() => failures('web') > 0 && failures('CLI') > 0, { timeoutMs: 15_000, message: 'no failed login logged' });

  // Meanwhile the admin logs in, several times, each while the address has a fresh failure.
  for (let round = 0; round < 3; round++) {
    const seen = wrongWeb.length;
    await waitUntil(() => wrongWeb.length > seen, { timeoutMs: 15_000, message: 'the attack stalled' });
    const r = await fetch(`http://127.0.0.1:${web}/r/info`, { headers: basic(PASS) });
    assert.equal(r.status, 200, `round ${round}: the right admin web password is accepted during the attack`);
    assert.deepEqual(await r.json(), { name: 'ClusterODM', version: 'test' });
    const admin = await session(t, cli);
    assert.match(await admin.send(`LOGIN ${PASS}`), /^OK/, `round ${round}: the right CLI password is accepted during the attack`);
    assert.equal(await admin.send('NODE LIST'), '\r\n');
    admin.socket.destroy();
  }
  attacking = false;
  await attack;

  // Wrong passwords stay slow and refused.
  for (const w of await Promise.all(wrongWeb)) {
    assert.equal(w.status, 401);
    assert.ok(w.ms >= 900, `a wrong web password was answered after ${w.ms} ms`);
  }
  for (const c of await Promise.all(wrongCli)) {
    assert.doesNotMatch(c.transcript, /#> /, 'a wrong CLI password never logs in');
    assert.ok(c.ms >= 900, `a wrong CLI password closed the session after ${c.ms} ms`);
  }
  // The flood does not flood the log: at most one line per address and second (the login delay), at least one.
  const maxLines = Math.floor((Date.now() - attackStarted) / 1000) + 1;
  for (const [what, attempts] of [['web', wrongWeb.length], ['CLI', wrongCli.length]] as const) {
    const n = failures(what);
    assert.ok(n >= 1 && n <= maxLines, `${n} ${what} failure lines for ${attempts} attempts (at most ${maxLines})`);
  }
  assert.ok(!a.logger.lines.some((l) => l.includes(PASS) || l.includes('guess')), 'no password in the log');
});

/** Hostnames that are neither a DNS name nor an IP literal. */
const BAD_HOSTNAMES = [
  '127.0.0.1/',
  'http://127.0.0.1',
  '127.0.0.1#',
  '127.0.0.1?',
  '127.0.0.1?x=1',
  '"127.0.0.1"',
  "'localhost'",
  '<script>',
  'user@127.0.0.1',
  '127.0.0.1:3000',
  '[::1',
  '0x7f.1',
  '127.1',
  '127.0.0.1.',
  'a..b',
  '-',
  '*',
  '%41',
  'x'.repeat(64),
];

test('node hostnames are not validated: NODE ADD and the admin web accept DNS names and IP literals only; bad ones in nodes.json are never polled', async (t) => {
  const node = await testNode(t, { token: NODE_TOKEN });
  // Entries a hand-edited (or older) nodes.json may hold; a URL parser still reads them as 127.0.0.1:<port>.
  const seeded = ['127.0.0.1\t', '0x7f.0.0.1'];
  const dir = tempDir(t);
  fs.mkdirSync(path.join(dir, 'data'));
  const records = seeded.map((hostname) => ({ hostname, port: node.port, token: NODE_TOKEN }));
  fs.writeFileSync(path.join(dir, 'data', 'nodes.json'), JSON.stringify(records));
  // A task routed to such a node before: its requests are not sent either.
  const routed = '6f1c7a52-9b1e-4c3a-8d2f-6a5b4c3d2e10';
  fs.writeFileSync(path.join(dir, 'data', 'routes.json'), JSON.stringify({ [routed]: { node: records[0], accessed: Date.now() } }));
  const a = await startAdmin(t, ['--data-dir', path.join(dir, 'data')]);
  const { cli, web } = portsOf(a);
  const c = await session(t, cli);

  // Loaded, listed (so they can be deleted), logged, but never polled: the node never hears from them.
  assert.equal(await c.send('NODE UPDATE'), 'OK\r\n');
  const list = await c.send('NODE LIST');
  assert.match(list, /^1\) 127\.0\.0\.1\t:\d+ \[offline\]/);
  assert.match(list, /\r\n2\) 0x7f\.0\.0\.1:\d+ \[offline\]/);
  assert.match(await c.send(`TASK INFO ${routed}`), /"error": "The node has an invalid hostname"/);
  for (const action of ['info', 'output']) {
    assert.deepEqual(await json(`${a.url}/task/${routed}/${action}`), { error: 'Proxy redirect error: The node has an invalid hostname' });
  }
  assert.deepEqual(node.requests.map((r) => r.path), [], 'no request reached the node');
  for (const h of seeded) {
    assert.ok(a.logger.lines.some((l) => l.startsWith('warn:') && l.includes(`${JSON.stringify(h)} is not a valid hostname`)), `${JSON.stringify(h)} logged`);
  }
  assert.equal(await c.send('NODE DEL 2'), 'OK\r\n');
  assert.equal(await c.send('NODE DEL 1'), 'OK\r\n');

  for (const h of BAD_HOSTNAMES) {
    assert.equal(await c.send(`NODE ADD ${h} ${node.port} ${NODE_TOKEN}`), 'FAIL\r\n', `NODE ADD ${h}`);
  }
  for (const h of [...BAD_HOSTNAMES, '127.0.0.1\u0000', 'a\u0000b', ' 127.0.0.1 x', 'local host', '']) {
    const r = await json(`http://127.0.0.1:${web}/r/node/add`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hostname: h, port: node.port, token: NODE_TOKEN }),
    });
    assert.match(String(r['error']), /hostname/i, `/r/node/add ${JSON.stringify(h)}: ${JSON.stringify(r)}`);
  }
  assert.equal(a.app.registry.list().length, 0, 'nothing was added');
  await a.app.nodeOps.updateAll();
  assert.deepEqual(node.requests.map((r) => r.path), [], 'no request reached the node');

  // DNS names and IP literals (IPv6 too, bracketed or not) are accepted, from both.
  assert.equal(await c.send(`NODE ADD 127.0.0.1 ${node.port} ${NODE_TOKEN}`), 'OK\r\n');
  assert.equal(await c.send(`NODE ADD localhost ${node.port} ${NODE_TOKEN}`), 'OK\r\n');
  assert.equal(await c.send(`NODE ADD ::1 ${node.port}`), 'OK\r\n');
  assert.equal(await c.send(`NODE ADD [::1] ${node.port}`), 'FAIL\r\n', 'the same node as ::1');
  const added = await json(`http://127.0.0.1:${web}/r/node/add`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ hostname: 'node-1.cluster.internal', port: 3000 }),
  });
  assert.deepEqual(added, { success: true });
  assert.deepEqual(a.app.registry.list().map((n) => n.hostname), ['127.0.0.1', 'localhost', '::1', 'node-1.cluster.internal']);
});

test('masked node tokens show their first two characters: NODE INFO, ROUTE INFO/LIST and the admin web mask them fully', async (t) => {
  const node = await testNode(t, { token: NODE_TOKEN, processingMs: 50 });
  const a = await startAdmin(t, []);
  const { cli, web } = portsOf(a);
  const c = await session(t, cli);
  assert.equal(await c.send(`NODE ADD 127.0.0.1 ${node.port} ${NODE_TOKEN}`), 'OK\r\n');
  assert.equal(await c.send('NODE UPDATE'), 'OK\r\n');
  const created = await json(`${a.url}/task/new`, { method: 'POST', body: form({}, images(1)) });
  const uuid = String(created['uuid']);
  await waitUntil(() => a.app.routes.lookup(uuid) !== undefined, { timeoutMs: 20_000, message: 'the task has no route' });

  const info = await c.send('NODE INFO 1');
  assert.match(info, /"token": "\*+"/, info);
  for (const answer of [info, await c.send(`ROUTE INFO ${uuid}`), await c.send('ROUTE LIST'), await c.send('ROUTE LIST 1')]) {
    assert.ok(!/"token": "[^"*]/.test(answer), `a token shows in ${answer}`);
    assert.ok(!answer.includes(NODE_TOKEN.slice(0, 2)), `the token's first characters show in ${answer}`);
  }
  const rows = (await json(`http://127.0.0.1:${web}/r/node/list`))['list'] as Array<{ nodeData: { token: string } }>;
  assert.match(rows[0]?.nodeData.token ?? '', /^\*+$/);
  // The length does not show either: every token is masked the same way.
  assert.equal(await c.send(`NODE ADD localhost ${node.port} x`), 'OK\r\n');
  assert.equal(JSON.parse((await c.send('NODE INFO 2')).trim())['token'], JSON.parse(info.trim())['token']);
});

test('TASK OUTPUT redacts only ?token= and &token=: bare token=, token: and "token":"…" in output lines are redacted too', async (t) => {
  const lines = [
    'Running with token=s3cr3t-one',
    'cmd --x 1 token=s3cr3t-two --y 2',
    'TOKEN: s3cr3t-three',
    'auth token : s3cr3t-four',
    '{"token":"s3cr3t-five","other":"kept"}',
    "{'token': 's3cr3t-six'}",
    'access_token=s3cr3t-seven&x=1',
    'url http://host:3000/?token=s3cr3t-eight',
    'x-auth-token: s3cr3t-nine',
  ];
  const secrets = lines.map((l) => /s3cr3t-[a-z]+/.exec(l)?.[0] ?? '');
  const node = await testNode(t, { processingMs: 50, outputLines: lines });
  const a = await startAdmin(t, []);
  const { cli, web } = portsOf(a);
  assert.ok(await a.app.nodeOps.add('127.0.0.1', node.port));
  await a.app.nodeOps.updateAll();
  const created = await json(`${a.url}/task/new`, { method: 'POST', body: form({}, images(1)) });
  const uuid = String(created['uuid']);
  await waitUntil(async () => statusCode(await json(`${a.url}/task/${uuid}/info`)) === 40, { timeoutMs: 20_000, message: 'not completed' });
  // The user sees its own task's output as the node wrote it.
  const own = JSON.stringify(await json(`${a.url}/task/${uuid}/output`));
  assert.ok(secrets.every((s) => own.includes(s)));

  const c = await session(t, cli);
  const output = await c.send(`TASK OUTPUT ${uuid}`);
  assert.ok(output.includes('Test NodeODM node: processing 1 images'), output);
  assert.deepEqual(secrets.filter((s) => output.includes(s)), [], `TASK OUTPUT shows secrets:\n${output}`);
  assert.ok(output.includes('"other":"kept"') && output.includes('--y 2') && output.includes('&x=1'), 'the rest of each line is kept');
  const answers = [await c.send(`TASK INFO ${uuid}`), await c.send('TASK LIST'), await (await fetch(`http://127.0.0.1:${web}/r/tasks?q=${uuid}`)).text()];
  for (const answer of answers) assert.deepEqual(secrets.filter((s) => answer.includes(s)), [], answer);
});

test('the admin web accepts any Host: Hosts other than IP literals, localhost and --admin-web-hosts names are refused (DNS rebinding)', async (t) => {
  const a = await startAdmin(t, []);
  const { web } = portsOf(a);
  for (const host of [`127.0.0.1:${web}`, '127.0.0.1', `localhost:${web}`, 'LOCALHOST', `[::1]:${web}`, '10.1.2.3:10000', '[fe80::1]']) {
    const r = await hostRequest(web, host);
    assert.equal(r.status, 200, `Host ${host}: ${r.text}`);
  }
  for (const host of [`evil.example:${web}`, 'evil.example', 'localhost.evil.example', '127.0.0.1.evil.example', 'admin.example.com', '']) {
    const r = await hostRequest(web, host);
    assert.ok(r.status === 421, `Host ${JSON.stringify(host)} answered ${r.status}`);
    assert.match(r.text, /--admin-web-hosts/);
  }
  // No Host at all: Node's HTTP/1.1 parser answers 400 itself; HTTP/1.0 (where Host is optional) reaches the check.
  assert.equal((await hostRequest(web, null)).status, 400, 'no Host at all');
  assert.equal((await rawRequest(web, Buffer.from('GET /r/info HTTP/1.0\r\n\r\n'))).status, 421, 'HTTP/1.0 without Host');
  // What a rebinding page does: a same-origin JSON POST under its own name. Nothing changes.
  const rebind = await hostRequest(web, `evil.example:${web}`, '/r/node/add', [`Origin: http://evil.example:${web}`, 'Content-Type: application/json'], JSON.stringify({ hostname: '127.0.0.1', port: 3000 }));
  assert.equal(rebind.status, 421);
  assert.equal(a.app.registry.list().length, 0, 'no node was added');
  // The page itself and /signout are refused too.
  for (const target of ['/', '/signout', '/index.html']) assert.equal((await hostRequest(web, 'evil.example', target)).status, 421, target);

  // Names the operator configured are answered, in any case and with any port.
  const b = await startAdmin(t, ['--admin-web-hosts', 'admin.example.com,Cluster.Lan']);
  const other = portsOf(b).web;
  for (const host of ['admin.example.com', `ADMIN.example.com:${other}`, 'cluster.lan:80', `127.0.0.1:${other}`, 'localhost']) {
    assert.equal((await hostRequest(other, host)).status, 200, host);
  }
  for (const host of ['sub.admin.example.com', 'example.com', 'evil.example']) assert.equal((await hostRequest(other, host)).status, 421, host);
});
