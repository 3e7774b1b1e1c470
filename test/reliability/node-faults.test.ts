/**
 * Node faults beyond those of task-flow.test.ts (dies mid-forward, mid-download): a node that dies during the
 * client's upload (while images stream to it) and comes back; a node that never answers, longer than every timeout
 * (timeouts injected short); a node that answers garbage or HTTP 500. Each time no client request hangs, the task
 * moves or fails with a clear message, NODE LIST shows the node offline then online, and no socket, file
 * descriptor, timer or tmp file is left over.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { multiUser } from '../helpers/app';
import { CliClient } from '../helpers/cli-client';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';
import { activeResources, fdCount, form, images, json, startLoggedApp, statusCode, type LoggedApp } from './support';

const NODE_TIMEOUT_MS = 800;
const fast = { forwardRetryBaseMs: 20, uploadRetrySleepMs: 10, nodeTimeoutMs: NODE_TIMEOUT_MS };

type Mode = 'blackhole' | 'garbage' | 'http500';

/** A fake node: valid /info and /options (so it is online and gets work), then the fault on everything else; or on all. */
interface BadNode {
  port: number;
  connections: () => number;
  close: () => Promise<void>;
}

const badNodes: BadNode[] = [];

/** Closes the fake nodes (so their listening sockets do not count as ClusterODM's handles). */
async function closeBadNodes(): Promise<void> {
  await Promise.all(badNodes.splice(0).map((b) => b.close()));
}

async function badNode(t: TestContext, mode: Mode, ok: Map<string, string> | null): Promise<BadNode> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      if (!buf.includes('\r\n\r\n')) return;
      const body = ok?.get(/^GET (\/\w+)[ ?]/.exec(buf)?.[1] ?? '');
      buf = '';
      if (body !== undefined) {
        s.write(`HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        return;
      }
      if (mode === 'garbage') s.end('\x00\x01\x02 this is not HTTP \xff\r\n\r\n');
      else if (mode === 'http500') s.write('HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\noops!');
      // blackhole: read everything, answer nothing, ever.
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((r) => {
      server.close(() => r());
      for (const s of sockets) s.destroy();
    });
    return closed;
  };
  t.after(close);
  const b = { port: (server.address() as net.AddressInfo).port, connections: () => sockets.size, close };
  badNodes.push(b);
  return b;
}

async function setup(t: TestContext, nodes: number): Promise<{ a: LoggedApp; cli: CliClient; good: TestNode[]; infoBody: Map<string, string> }> {
  const good: TestNode[] = [];
  for (let i = 0; i < nodes; i++) {
    const n = await startTestNode({ processingMs: 100, assetSize: 64 * 1024 });
    t.after(() => n.close());
    good.push(n);
  }
  const a = await startLoggedApp(t, ['--admin-cli-port', '1'], { cloud: multiUser(['']), tuning: fast });
  for (const n of good) assert.ok(await a.app.nodeOps.add('127.0.0.1', n.port));
  await a.app.nodeOps.updateAll();
  const cli = await CliClient.connect(t, a.app.cli?.port ?? 0);
  await cli.untilPrompt();
  const base = good[0]?.url ?? '';
  const infoBody = new Map([
    ['/info', await (await fetch(`${base}/info`)).text()],
    ['/options', await (await fetch(`${base}/options`)).text()],
  ]);
  return { a, cli, good, infoBody };
}

/** Open fds and socket/timer handles of this process, to compare before and after a fault. */
function handles(): { fds: number; sockets: number; timers: number } {
  const r = activeResources();
  return { fds: fdCount(), sockets: r.get('TCPSocketWrap') ?? 0, timers: r.get('Timeout') ?? 0 };
}

async function assertNoLeak(before: { fds: number; sockets: number; timers: number }, a: LoggedApp): Promise<void> {
  await closeBadNodes();
  // Keep-alive connections to healthy nodes may stay for a few seconds; then everything is back to where it was.
  let now = handles();
  await waitUntil(
    () => {
      now = handles();
      return now.fds <= before.fds + 4 && now.sockets <= before.sockets + 4 && now.timers <= before.timers + 4;
    },
    { timeoutMs: 30_000, intervalMs: 200, message: 'handles leaked' },
  ).catch((e: unknown) => {
    throw new Error(`${String(e)}: before ${JSON.stringify(before)}, after ${JSON.stringify(now)}`);
  });
  const tmp = path.join(a.dir, 'tmp');
  await waitUntil(() => fs.readdirSync(tmp).every((n) => a.app.tasks.get(n)?.phase === 'uploading'), {
    timeoutMs: 10_000,
    message: `tmp files left: ${fs.readdirSync(tmp).join(', ')}`,
  });
}

async function nodeList(cli: CliClient): Promise<string> {
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  return cli.send('NODE LIST');
}

test('node faults: a node that dies while the client uploads (images streaming to it) and comes back', async (t) => {
  const { a, cli, good } = await setup(t, 2);
  const before = handles();
  const init = await json(`${a.url}/task/new/init`, { method: 'POST', body: form({ name: 'moving' }) });
  const uuid = String(init['uuid']);
  assert.deepEqual(await json(`${a.url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, images(3, 'a')) }), { success: true });
  // The node the images are streaming to goes away in the middle of the upload session.
  await waitUntil(() => good.some((n) => n.taskFiles(uuid).length > 0), { timeoutMs: 10_000, message: 'nothing streamed' });
  const dying = good.find((n) => n.taskFiles(uuid).length > 0);
  assert.ok(dying);
  dying.setOffline(true);
  assert.deepEqual(await json(`${a.url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, images(3, 'b')) }), { success: true });
  assert.deepEqual(await json(`${a.url}/task/new/commit/${uuid}`, { method: 'POST', body: form({}) }), { uuid });
  await waitUntil(async () => statusCode(await json(`${a.url}/task/${uuid}/info`)) === 40, { timeoutMs: 30_000, message: 'the task never completed' });
  const holder = good.find((n) => n.tasks().some((x) => x.uuid === uuid));
  assert.ok(holder && holder !== dying, 'the task moved to the other node');
  assert.equal(holder.taskFiles(uuid).length, 6, 'with every image');
  const port = dying.port;
  assert.match(await nodeList(cli), new RegExp(`127\\.0\\.0\\.1:${port} \\[offline\\]`));
  dying.setOffline(false);
  assert.match(await nodeList(cli), new RegExp(`127\\.0\\.0\\.1:${port} \\[online\\]`));
  assert.ok(a.logger.lines.some((l) => l.includes(`127.0.0.1:${port}`) && l.includes('offline')), 'the change was logged');
  await assertNoLeak(before, a);
});

test('node faults: a node that never answers, longer than every timeout: nothing hangs, the task moves', async (t) => {
  const { a, cli, good, infoBody } = await setup(t, 1);
  const before = handles();
  // Online at first (its /info answers), then silent on everything else: uploads, task calls.
  const hole = await badNode(t, 'blackhole', infoBody);
  assert.ok(await a.app.nodeOps.add('127.0.0.1', hole.port));
  const holeNode = a.app.registry.list().find((n) => n.port === String(hole.port) || Number(n.port) === hole.port);
  assert.ok(holeNode);
  await a.app.nodeOps.updateAll();
  // Make the silent node the best choice, so the forward goes there first.
  good[0]?.configure({ maxParallelTasks: 1 });
  const busy = await json(`${a.url}/task/new`, { method: 'POST', body: form({}, images(1)) });
  assert.equal(typeof busy['uuid'], 'string');
  const started = Date.now();
  const created = await json(`${a.url}/task/new`, { method: 'POST', body: form({}, images(2)) }, 10_000);
  const uuid = String(created['uuid']);
  await waitUntil(async () => statusCode(await json(`${a.url}/task/${uuid}/info`)) === 40, { timeoutMs: 40_000, message: 'the task never completed' });
  assert.ok(good[0]?.tasks().some((x) => x.uuid === uuid), 'it ended on the node that answers');
  process.stdout.write(`# node faults: a silent node cost ${Date.now() - started} ms before the task moved\n`);

  // A task routed to the silent node: its calls end with a clear error, or a dropped connection for the client to
  // retry (NodeODM's convention for a node that does not answer), never a hang.
  const ghost = '0b9f8f0e-3c7a-4f0e-9d5e-2f1c1a7b6e55';
  await a.app.routes.add(ghost, holeNode, undefined);
  const t0 = Date.now();
  assert.deepEqual(await json(`${a.url}/task/${ghost}/info`, {}, 10_000), { error: 'Proxy redirect error: node did not answer in time' });
  assert.ok(Date.now() - t0 < NODE_TIMEOUT_MS * 5);
  await assert.rejects(json(`${a.url}/task/cancel`, { method: 'POST', body: new URLSearchParams({ uuid: ghost }) }, 10_000), /fetch failed/);
  assert.deepEqual(await json(`${a.url}/task/list`, {}, 10_000), { list: [{ uuid: busy['uuid'] }, { uuid }] });
  // Its /info now goes silent too: the poller marks it offline within the timeout.
  const silent = await badNode(t, 'blackhole', null);
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${silent.port}`), 'OK\r\n');
  const p0 = Date.now();
  assert.match(await nodeList(cli), new RegExp(`127\\.0\\.0\\.1:${silent.port} \\[offline\\]`));
  assert.ok(Date.now() - p0 < NODE_TIMEOUT_MS * 5, 'NODE UPDATE waited no longer than the timeout');
  assert.equal(await cli.send('NODE DEL 3'), 'OK\r\n');
  assert.equal(await cli.send('NODE DEL 2'), 'OK\r\n');
  await waitUntil(() => hole.connections() === 0 && silent.connections() === 0, { timeoutMs: 20_000, message: 'connections to the silent nodes stayed open' });
  await assertNoLeak(before, a);
});

test('node faults: a node answering garbage or HTTP 500: offline with a reason, tasks move or fail clearly', async (t) => {
  const { a, cli, good, infoBody } = await setup(t, 1);
  const before = handles();
  // Its /info is garbage: never online, and the log says why.
  const garbage = await badNode(t, 'garbage', null);
  const err500 = await badNode(t, 'http500', null);
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${garbage.port}`), 'OK\r\n');
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${err500.port}`), 'OK\r\n');
  const list = await nodeList(cli);
  assert.match(list, new RegExp(`127\\.0\\.0\\.1:${garbage.port} \\[offline\\]`));
  assert.match(list, new RegExp(`127\\.0\\.0\\.1:${err500.port} \\[offline\\]`));
  assert.ok(a.logger.lines.some((l) => l.includes(`Cannot update info for 127.0.0.1:${err500.port}: HTTP 500`)));
  assert.equal(await cli.send('NODE DEL 3'), 'OK\r\n');
  assert.equal(await cli.send('NODE DEL 2'), 'OK\r\n');

  // Online nodes (valid /info) whose task calls answer garbage or 500: a task sent to them moves to the good node.
  for (const mode of ['garbage', 'http500'] as const) {
    const bad = await badNode(t, mode, infoBody);
    assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${bad.port}`), 'OK\r\n');
    assert.equal(await cli.send('NODE LOCK 1'), 'OK\r\n'); // only the bad node takes new tasks...
    assert.match(await nodeList(cli), new RegExp(`127\\.0\\.0\\.1:${bad.port} \\[online\\]`));
    const created = await json(`${a.url}/task/new`, { method: 'POST', body: form({}, images(2)) });
    const uuid = String(created['uuid']);
    await waitUntil(() => a.logger.lines.some((l) => l.includes(`Attempted to forward task ${uuid}`)), { timeoutMs: 20_000, message: 'no failed attempt' });
    assert.equal(await cli.send('NODE UNLOCK 1'), 'OK\r\n'); // ...until the good one is back in the game
    await waitUntil(async () => statusCode(await json(`${a.url}/task/${uuid}/info`)) === 40, { timeoutMs: 30_000, message: `${mode}: the task never completed` });
    assert.ok(good[0]?.tasks().some((x) => x.uuid === uuid), `${mode}: the task moved to the good node`);
    // A task routed to the bad node: a clear error (garbage) or the node's own answer (500), at once.
    const ghost = mode === 'garbage' ? '1b9f8f0e-3c7a-4f0e-9d5e-2f1c1a7b6e55' : '2b9f8f0e-3c7a-4f0e-9d5e-2f1c1a7b6e55';
    const node = a.app.registry.nth(2);
    assert.ok(node);
    await a.app.routes.add(ghost, node, undefined);
    const r = await fetch(`${a.url}/task/${ghost}/info`, { signal: AbortSignal.timeout(10_000) }).catch((e: unknown) => e);
    if (mode === 'http500') {
      assert.ok(r instanceof Response && r.status === 500 && (await r.text()) === 'oops!', 'the node answer is relayed');
    } else {
      // A node that answers garbage is treated as one that reset the connection: the client's socket is dropped.
      assert.ok(r instanceof Error || (r instanceof Response && /Proxy redirect error/.test(await r.text())), String(r));
    }
    assert.equal(await cli.send('NODE DEL 2'), 'OK\r\n');
  }

  // With only a node whose uploads fail, a task fails clearly.
  const bad = await badNode(t, 'http500', infoBody);
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${bad.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE LOCK 1'), 'OK\r\n');
  await nodeList(cli);
  const failed = String((await json(`${a.url}/task/new`, { method: 'POST', body: form({}, images(1)) }))['uuid']);
  await waitUntil(async () => statusCode(await json(`${a.url}/task/${failed}/info`)) === 30, { timeoutMs: 30_000, message: 'the task never failed' });
  assert.deepEqual(await json(`${a.url}/task/${failed}/output`), { list: ['Failed to forward task to processing node after 5 attempts. Try again later.'] });
  assert.equal(await cli.send('NODE DEL 2'), 'OK\r\n');
  await assertNoLeak(before, a);
});
