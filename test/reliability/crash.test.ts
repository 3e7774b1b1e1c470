/**
 * Crash consistency: ClusterODM is killed with SIGKILL at random moments while clients create tasks (chunked and
 * single-shot) through it, and restarted each time. Afterwards every state file parses, no committed task lost its
 * route, every task a client got a uuid for is on a node or answers FAILED, and no finished task left a tmp dir.
 * Seeded: CRASH_SEED=<n> replays a run (the kill moments and each client's choices; scheduling still varies).
 * A second test kills the daemon in the middle of one image of a chunked upload and checks what the node ends with.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { test } from 'node:test';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { form, images, json, prng, seedFrom, statusCode, type Json } from './support';

const TASKS = Number(process.env['CRASH_TASKS'] ?? 200);
const KILLS = Number(process.env['CRASH_KILLS'] ?? 20);
const CLIENTS = 6;

interface Tracked {
  uuid: string;
  kind: 'chunked' | 'single';
  /** The client saw the commit (or /task/new) answered with the uuid, or a retried commit found it already done. */
  committed: boolean;
  /** A clear refusal at commit (e.g. no node available): the client was told, the task is gone by design. */
  refused?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('crash consistency: 200 task creations survive 20+ SIGKILLs of the daemon', { timeout: 170_000 }, async (t) => {
  const seed = seedFrom('CRASH_SEED', 'crash consistency');
  const rnd = prng(seed);
  const dir = tempDir(t);
  const nodes: TestNode[] = [];
  for (let i = 0; i < 3; i++) {
    const n = await startTestNode({ processingMs: 50, assetSize: 4096, maxParallelTasks: 4 });
    t.after(() => n.close());
    nodes.push(n);
  }

  // The cluster the clients talk to; `gen` changes at each restart.
  const state = { d: null as Daemon | null, gen: 0, killing: true };
  const start = async (): Promise<Daemon> => {
    const d = await startDaemon(t, dir);
    state.d = d;
    state.gen++;
    return d;
  };
  const first = await start();
  const cli = await CliClient.connect(t, first.cliPort);
  await cli.untilPrompt();
  for (const n of nodes) assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${n.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  cli.socket.destroy();

  const tracked: Tracked[] = [];
  const protocolErrors: string[] = [];
  let handedOut = 0;

  /** One request to the current daemon; null when the connection failed (the daemon died, or is restarting). */
  const call = async (pathAndQuery: string, init: RequestInit): Promise<Json | null> => {
    const d = state.d;
    if (!d) return null;
    try {
      return await json(`${d.url}${pathAndQuery}`, init, 20_000);
    } catch {
      return null;
    }
  };
  /** Waits for the daemon that replaces the one a failed request went to (or a moment, once kills are over). */
  const recover = async (gen: number): Promise<void> => {
    if (!state.killing) return sleep(50);
    await waitUntil(() => state.gen !== gen || !state.killing, { timeoutMs: 30_000, intervalMs: 10, message: 'no restart' });
  };
  /** Repeats a step until the daemon answers it (network failures are retried against the restarted daemon). */
  const step = async (pathAndQuery: string, makeBody: () => FormData): Promise<Json> => {
    for (let i = 0; i < 2000; i++) {
      const gen = state.gen;
      const r = await call(pathAndQuery, { method: 'POST', body: makeBody() });
      if (r) return r;
      await recover(gen);
    }
    throw new Error(`${pathAndQuery} never answered`);
  };
  const transient = (e: unknown): boolean => /no nodes are online|No nodes available/.test(String(e));

  const createChunked = async (r: () => number, id: number): Promise<void> => {
    let uuid = '';
    for (let i = 0; !uuid; i++) {
      if (i > 500) throw new Error('init never succeeded');
      const a = await step('/task/new/init', () => form({ name: `c${id}` }));
      if (typeof a['uuid'] === 'string') uuid = a['uuid'];
      else if (transient(a['error'])) await sleep(20);
      else protocolErrors.push(`init: ${JSON.stringify(a)}`);
    }
    handedOut++;
    const task: Tracked = { uuid, kind: 'chunked', committed: false };
    tracked.push(task);
    const chunks = 1 + Math.floor(r() * 3);
    for (let c = 0; c < chunks; c++) {
      const files = images(1 + Math.floor(r() * 2), `c${c}_`, 1500);
      const a = await step(`/task/new/upload/${uuid}`, () => form({}, files));
      if (a['success'] !== true) protocolErrors.push(`upload ${uuid}: ${JSON.stringify(a)}`);
    }
    for (let i = 0; i < 500; i++) {
      const a = await step(`/task/new/commit/${uuid}`, () => form({}));
      if (a['uuid'] === uuid) {
        task.committed = true;
        return;
      }
      // A commit whose answer was lost in a kill went through: the task is no longer uploading.
      if (a['error'] === 'Invalid taskId: the task no longer exists.') {
        task.committed = true;
        return;
      }
      if (transient(a['error'])) {
        task.refused = String(a['error']);
        return;
      }
      protocolErrors.push(`commit ${uuid}: ${JSON.stringify(a)}`);
      return;
    }
  };

  const createSingle = async (r: () => number, id: number): Promise<void> => {
    const files = images(1 + Math.floor(r() * 3), `s${id}_`, 1500);
    for (let i = 0; i < 500; i++) {
      const a = await step('/task/new', () => form({ name: `s${id}` }, files));
      if (typeof a['uuid'] === 'string') {
        handedOut++;
        tracked.push({ uuid: a['uuid'], kind: 'single', committed: true });
        return;
      }
      if (transient(a['error'])) await sleep(20);
      else {
        protocolErrors.push(`task/new: ${JSON.stringify(a)}`);
        return;
      }
    }
  };

  let next = 0;
  const worker = async (w: number): Promise<void> => {
    const r = prng(seed ^ (0x9e3779b9 * (w + 1)));
    while (next < TASKS) {
      const id = next++;
      if (r() < 0.5) await createChunked(r, id);
      else await createSingle(r, id);
    }
  };

  let kills = 0;
  // Kills are spread over the whole run: the i-th comes once about i/(KILLS+1) of the uuids are out, at a random moment.
  const killer = async (): Promise<void> => {
    while (kills < KILLS) {
      const due = Math.floor(((kills + 1) * TASKS) / (KILLS + 1)) - Math.floor(rnd() * 3);
      await waitUntil(() => handedOut >= due, { timeoutMs: 60_000, intervalMs: 5, message: 'clients stalled' });
      await sleep(Math.floor(rnd() * 400));
      const d = state.d;
      state.d = null;
      assert.ok(d);
      assert.equal(await d.stop('SIGKILL'), null);
      kills++;
      await start();
    }
    state.killing = false;
  };

  const began = Date.now();
  await Promise.all([killer(), ...Array.from({ length: CLIENTS }, (_, w) => worker(w))]);
  const d = state.d;
  assert.ok(d);
  process.stdout.write(`# crash consistency: ${kills} kills, ${handedOut} uuids handed out in ${Date.now() - began} ms\n`);
  assert.deepEqual(protocolErrors, [], 'every step got the answer the protocol promises');
  assert.ok(kills >= KILLS);
  assert.ok(handedOut >= TASKS);

  // Every committed task ends on a node (and completes there) or FAILED with a message; none is lost.
  const committed = tracked.filter((x) => x.committed);
  const final = new Map<string, Json>();
  await waitUntil(
    async () => {
      for (const x of committed) {
        if (final.has(x.uuid)) continue;
        const info = await json(`${d.url}/task/${x.uuid}/info`);
        const code = statusCode(info);
        if (code === 40 || code === 30) final.set(x.uuid, info);
      }
      return final.size === committed.length;
    },
    { timeoutMs: 60_000, intervalMs: 100, message: 'some committed tasks never settled' },
  ).catch((e: unknown) => {
    const missing = committed.filter((x) => !final.has(x.uuid)).map((x) => x.uuid);
    throw new Error(`${String(e)}; unsettled: ${missing.join(', ')}\n${d.output().slice(-4000)}`);
  });
  for (const [uuid, info] of final) {
    if (statusCode(info) === 30) {
      const out = await json(`${d.url}/task/${uuid}/output`);
      const lines = (out['list'] as string[] | undefined) ?? [];
      assert.ok(lines.length > 0 && lines.every((l) => l.length > 10), `FAILED task ${uuid} says why: ${JSON.stringify(lines)}`);
    }
  }
  // Uncommitted chunked tasks (never the case here: every client commits) would be uploading and listed.
  assert.equal(tracked.filter((x) => !x.committed && !x.refused).length, 0);

  // One last kill, then the files as a restart would find them.
  assert.equal(await d.stop('SIGKILL'), null);
  kills++;
  const data = path.join(dir, 'data');
  const nodesFile = JSON.parse(fs.readFileSync(path.join(data, 'nodes.json'), 'utf8')) as unknown[];
  assert.equal(nodesFile.length, 3);
  const routesFile = path.join(data, 'routes.json');
  const routes = (fs.existsSync(routesFile) ? JSON.parse(fs.readFileSync(routesFile, 'utf8')) : {}) as Record<
    string,
    { node: { port: string | number } }
  >;
  for (const j of ['routes.json.journal', 'routes.json.journal.old']) {
    const f = path.join(data, j);
    if (!fs.existsSync(f)) continue;
    for (const line of fs.readFileSync(f, 'utf8').split('\n')) {
      if (line === '') continue;
      const v = JSON.parse(line) as { op: string; uuid?: string; uuids?: string[]; node?: { port: string | number } };
      if (v.op === 'put' && v.uuid && v.node) routes[v.uuid] = { node: v.node };
      if (v.op === 'del') for (const u of v.uuids ?? []) delete routes[u];
    }
  }
  const tasksFile = JSON.parse(fs.readFileSync(path.join(data, 'tasks.json'), 'utf8')) as Record<string, { phase: string }>;
  const leftovers = fs.readdirSync(path.join(dir, 'tmp')).filter((n) => n !== '.gitignore');
  let onNodes = 0;
  let failed = 0;
  for (const [uuid, info] of final) {
    const holders = nodes.filter((n) => n.tasks().some((x) => x.uuid === uuid));
    if (statusCode(info) === 40) {
      onNodes++;
      assert.equal(holders.length, 1, `task ${uuid} is committed on exactly one node`);
      const route = routes[uuid];
      assert.ok(route, `committed task ${uuid} kept its route`);
      assert.equal(String(route.node.port), String(holders[0]?.port), `the route of ${uuid} points at its node`);
    } else {
      failed++;
      assert.equal(tasksFile[uuid]?.phase, 'failed', `failed task ${uuid} is kept in tasks.json`);
    }
    // A kill between "route saved" and "files removed" leaves the files of a task still marked forwarding: the next
    // start resolves it (checked below). Any other leftover is a leak.
    if (leftovers.includes(uuid) && !(statusCode(info) === 40 && tasksFile[uuid]?.phase === 'forwarding')) {
      assert.fail(
        `finished task ${uuid} (status ${statusCode(info)}, ${tracked.find((x) => x.uuid === uuid)?.kind}, ` +
          `phase ${tasksFile[uuid]?.phase ?? 'none'}) left a tmp dir: ${fs.readdirSync(path.join(dir, 'tmp', uuid)).join(',')}`,
      );
    }
  }
  // Dirs left are only of inits/uploads whose uuid never reached a client (swept by the orphan rule).
  const known = new Set(tracked.map((x) => x.uuid));
  assert.deepEqual(leftovers.filter((n) => known.has(n)), []);
  // And a restart sees the same: every task answers as before the last kill.
  const again = await startDaemon(t, dir);
  for (const [uuid, info] of final) {
    assert.equal(statusCode(await json(`${again.url}/task/${uuid}/info`)), statusCode(info), `task ${uuid} after the last restart`);
  }
  assert.doesNotMatch(again.output() + d.output(), /Uncaught Exception|Unhandled Rejection/);
  // Dirs of requests a kill cut off (no task behind them, older than this start) are swept at start. An init killed
  // after it recorded its upload session but before it answered stays an upload session (the stale-upload rule ends it).
  const sessions = new Set(Object.entries(tasksFile).filter(([, e]) => e.phase === 'uploading').map(([u]) => u));
  const unexplained = (): string[] => fs.readdirSync(path.join(dir, 'tmp')).filter((n) => n !== '.gitignore' && !sessions.has(n));
  await waitUntil(() => unexplained().length === 0, {
    timeoutMs: 20_000,
    message: 'orphan tmp dirs were not swept at start',
  }).catch((e: unknown) => {
    const tmp = path.join(dir, 'tmp');
    const left = fs.readdirSync(tmp).map((n) => `${n} ${fs.statSync(path.join(tmp, n)).mtimeMs} [${fs.readdirSync(path.join(tmp, n)).join(',')}]`);
    throw new Error(`${String(e)}: ${left.join('; ')}\n${again.output().slice(-3000)}`);
  });
  // After a clean stop, no finished task is still waiting to be resolved.
  assert.equal(await again.stop('SIGTERM'), 0);
  const tasksAfter = JSON.parse(fs.readFileSync(path.join(data, 'tasks.json'), 'utf8')) as Record<string, { phase: string }>;
  for (const [uuid, info] of final) {
    assert.equal(tasksAfter[uuid]?.phase, statusCode(info) === 30 ? 'failed' : undefined, `task ${uuid} after the restart`);
  }
  process.stdout.write(
    `# crash consistency: ${kills} kills survived; ${onNodes} tasks on nodes, ${failed} FAILED with a reason, ` +
      `${tracked.filter((x) => x.refused).length} refused at commit, ${leftovers.length - sessions.size} orphan tmp dirs of unanswered requests (swept at the next start), ` +
      `${sessions.size} unanswered inits kept as upload sessions\n`,
  );
});

/** One multipart body of announced length, for a client that sends only part of it before the daemon dies. */
function oneFileBody(name: string, size: number): { boundary: string; head: Buffer; tail: Buffer; length: number } {
  const boundary = 'CrashMidUpload7f3a';
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="${name}"\r\nContent-Type: image/jpeg\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { boundary, head, tail, length: head.length + size + tail.length };
}

test('a crash during an upload leaves no broken or duplicated images on the node', { timeout: 170_000 }, async (t) => {
  const dir = tempDir(t);
  // As NodeODM with multer: a dropped upload leaves its cut file behind, an init keeps an uncommitted upload's files,
  // and a repeated name is stored as IMG_0001_.JPG.
  const node = await startTestNode({ processingMs: 50, keepPartialUploads: true, initKeepsUpload: true, uniqueUploadNames: true });
  t.after(() => node.close());
  const first = await startDaemon(t, dir);
  const cli = await CliClient.connect(t, first.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  cli.socket.destroy();

  const init = await json(`${first.url}/task/new/init`, { method: 'POST', body: form({ name: 'killed mid-upload' }) });
  const uuid = String(init['uuid']);
  assert.match(uuid, /^[0-9a-f-]{36}$/, JSON.stringify(init));
  const small = [
    { name: 'IMG_0001.JPG', data: Buffer.alloc(300_000, 1) },
    { name: 'IMG_0002.JPG', data: Buffer.alloc(300_001, 2) },
  ];
  assert.deepEqual(await json(`${first.url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, small) }), { success: true });
  // The images go on to the node while the client uploads.
  await waitUntil(() => node.taskImages(uuid).length === 2, { timeoutMs: 30_000, message: 'the first chunk did not reach the node' });

  // A chunk with one 40 MB image; the daemon is killed once half of it is staged.
  const big = { name: 'IMG_0003.JPG', size: 40_000_000 };
  const body = oneFileBody(big.name, big.size);
  const staged = path.join(dir, 'tmp', uuid);
  const stagedBytes = (): number =>
    fs
      .readdirSync(staged)
      .filter((n) => n !== 'body.json' && !small.some((s) => s.name === n))
      .reduce((sum, n) => sum + fs.statSync(path.join(staged, n)).size, 0);
  const u = new URL(`${first.url}/task/new/upload/${uuid}`);
  const cut = http.request({
    host: u.hostname,
    port: u.port,
    path: u.pathname,
    method: 'POST',
    headers: { 'content-type': `multipart/form-data; boundary=${body.boundary}`, 'content-length': body.length },
  });
  cut.on('error', () => undefined);
  cut.write(body.head);
  for (let sent = 0; sent < big.size / 2; sent += 1_000_000) cut.write(Buffer.alloc(1_000_000, 3));
  await waitUntil(() => stagedBytes() >= 15_000_000, { timeoutMs: 60_000, message: 'half of the big image was not staged' });
  assert.equal(await first.stop('SIGKILL'), null);
  cut.destroy();

  // Restarted on the same data and tmp dirs, the client sends the same chunk again, whole, and commits.
  const again = await startDaemon(t, dir);
  const onlyWholeFilesStaged = await waitUntil(
    () => fs.readdirSync(staged).sort().join(',') === ['IMG_0001.JPG', 'IMG_0002.JPG', 'body.json'].join(','),
    { timeoutMs: 10_000 },
  ).then(
    () => true,
    () => false,
  );
  const whole = [{ name: big.name, data: Buffer.alloc(big.size, 3) }];
  assert.deepEqual(await json(`${again.url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, whole) }, 60_000), { success: true });
  assert.deepEqual(await json(`${again.url}/task/new/commit/${uuid}`, { method: 'POST', body: form({}) }), { uuid });
  await waitUntil(async () => statusCode(await json(`${again.url}/task/${uuid}/info`)) === 40, {
    timeoutMs: 60_000,
    message: 'the task did not complete on the node',
  });

  // The node holds exactly the images the client sent, each one complete, once.
  assert.deepEqual(node.taskImages(uuid), [
    { name: 'IMG_0001.JPG', bytes: 300_000 },
    { name: 'IMG_0002.JPG', bytes: 300_001 },
    { name: 'IMG_0003.JPG', bytes: 40_000_000 },
  ]);
  assert.deepEqual(
    node.tasks().map((x) => [x.uuid, x.imagesCount]),
    [[uuid, 3]],
  );
  assert.ok(onlyWholeFilesStaged, 'the part of the killed upload was removed from tmp/ at start');
  assert.doesNotMatch(again.output(), /Uncaught Exception|Unhandled Rejection/);
});
