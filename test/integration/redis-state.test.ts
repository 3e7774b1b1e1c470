/**
 * Several instances sharing their state in a real redis-server (--redis): what one instance changes, the others
 * show; the first start imports data/; an unreachable Redis stops the start with a clear message.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { haveRedisServer, startRedis } from '../helpers/redis';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { form, images, json, statusCode } from '../reliability/support';
import { waitUntil } from '../helpers/wait';

// scripts/install-test-deps.sh installs it; a machine without it fails loudly rather than skipping.
assert.ok(haveRedisServer(), 'redis-server is not installed: run scripts/install-test-deps.sh');

async function cliOf(t: TestContext, d: Daemon): Promise<CliClient> {
  const c = await CliClient.connect(t, d.cliPort);
  await c.untilPrompt();
  return c;
}

/** Waits (at most 1 s, the promise made to operators) until `cli` answers `command` with text matching `re`. */
async function within1s(cli: CliClient, command: string, pred: (answer: string) => boolean, what: string): Promise<void> {
  let last = '';
  await waitUntil(
    async () => {
      last = await cli.send(command);
      return pred(last);
    },
    { timeoutMs: 1000, intervalMs: 20, message: `${what}; last answer ${JSON.stringify(last)}` },
  );
}

test('Redis unreachable at start: a clear message and exit 1', async (t) => {
  const dir = tempDir(t);
  const sock = path.join(dir, 'no-redis.sock');
  await assert.rejects(
    startDaemon(t, path.join(dir, 'a'), ['--redis', `unix://${sock}`]),
    (e: unknown) => {
      const msg = e instanceof Error ? e.message : String(e);
      assert.match(msg, /^daemon exited with 1:/);
      assert.match(msg, new RegExp(`Cannot reach Redis at unix://${sock.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
      return true;
    },
  );
});

test('an invalid --redis URL is refused before anything starts', async (t) => {
  const dir = tempDir(t);
  await assert.rejects(startDaemon(t, path.join(dir, 'a'), ['--redis', 'http://localhost:6379']), /Invalid value for --redis/);
});

test('NODE ADD, LOCK and DEL on one instance show in NODE LIST on another within 1 s', async (t) => {
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const a = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url]);
  const b = await startDaemon(t, path.join(dir, 'b'), ['--redis', redis.url]);
  const ca = await cliOf(t, a);
  const cb = await cliOf(t, b);
  assert.equal(await cb.send('NODE LIST'), '\r\n');

  assert.equal(await ca.send('NODE ADD 127.0.0.1 4001'), 'OK\r\n');
  await within1s(cb, 'NODE LIST', (s) => /^1\) 127\.0\.0\.1:4001 .*\r\n\r\n$/.test(s), 'B did not show the node A added');

  assert.equal(await cb.send('NODE ADD 127.0.0.1 4002'), 'OK\r\n');
  await within1s(ca, 'NODE LIST', (s) => /^1\) 127\.0\.0\.1:4001 .*\r\n2\) 127\.0\.0\.1:4002 .*\r\n\r\n$/.test(s), 'A did not show B\'s node');

  assert.equal(await ca.send('NODE LOCK 2'), 'OK\r\n');
  await within1s(cb, 'NODE LIST', (s) => /2\) 127\.0\.0\.1:4002 .*\[L\]/.test(s), 'B did not show the lock');

  assert.equal(await cb.send('NODE DEL 1'), 'OK\r\n');
  await within1s(ca, 'NODE LIST', (s) => /^1\) 127\.0\.0\.1:4002 .*\[L\]\r\n\r\n$/.test(s), 'A did not drop the node B removed');

  // Nothing was written to either instance's data folder: the list lives in Redis.
  assert.equal(fs.existsSync(path.join(a.dir, 'data', 'nodes.json')), false);
  // A third instance started now sees the same list.
  const c = await startDaemon(t, path.join(dir, 'c'), ['--redis', redis.url]);
  assert.match(await (await cliOf(t, c)).send('NODE LIST'), /^1\) 127\.0\.0\.1:4002 .*\[L\]\r\n\r\n$/);
});

test('the first start with --redis imports data/nodes.json once, logged with its count', async (t) => {
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const data = path.join(dir, 'a', 'data');
  fs.mkdirSync(data, { recursive: true });
  const nodes = [
    { hostname: '127.0.0.1', port: 4001, token: '' },
    { hostname: '127.0.0.1', port: 4002, token: 'secret', locked: true },
  ];
  fs.writeFileSync(path.join(data, 'nodes.json'), JSON.stringify(nodes));
  const a = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url]);
  assert.match(a.output(), /Imported 2 nodes from .*nodes\.json into Redis/);
  assert.match(await (await cliOf(t, a)).send('NODE LIST'), /^1\) 127\.0\.0\.1:4001 .*\r\n2\) 127\.0\.0\.1:4002 .*\[L\]\r\n\r\n$/);
  assert.equal(await a.stop(), 0);

  // Idempotent: a second start (any instance, with the file changed meanwhile) keeps what Redis holds.
  fs.writeFileSync(path.join(data, 'nodes.json'), JSON.stringify(nodes.slice(0, 1)));
  const again = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url]);
  assert.doesNotMatch(again.output(), /Imported/);
  assert.match(await (await cliOf(t, again)).send('NODE LIST'), /^1\) .*\r\n2\) 127\.0\.0\.1:4002 .*\[L\]\r\n\r\n$/);
});

test('a task created through one instance answers info, output and download through another', async (t) => {
  const redis = await startRedis(t);
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());
  const dir = tempDir(t);
  const a = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url]);
  const b = await startDaemon(t, path.join(dir, 'b'), ['--redis', redis.url]);
  const ca = await cliOf(t, a);
  assert.equal(await ca.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await ca.send('NODE UPDATE'), 'OK\r\n');
  const cb = await cliOf(t, b);
  await within1s(cb, 'NODE LIST', (s) => s.includes(`127.0.0.1:${node.port}`), 'B did not show the node');
  assert.equal(await cb.send('NODE UPDATE'), 'OK\r\n');

  const created = await json(`${a.url}/task/new`, { method: 'POST', body: form({ name: 'shared' }, images(2)) });
  const uuid = created['uuid'];
  assert.equal(typeof uuid, 'string', JSON.stringify(created));
  // Once A has sent it to the node, B finds the route A made and answers from the node.
  await waitUntil(async () => statusCode(await json(`${a.url}/task/${String(uuid)}/info`)) === 40, {
    timeoutMs: 20000,
    message: 'the task did not complete on the node',
  });
  const info = await json(`${b.url}/task/${String(uuid)}/info`);
  assert.equal(info['uuid'], uuid, JSON.stringify(info));
  assert.equal(statusCode(info), 40);
  const output = await fetch(`${b.url}/task/${String(uuid)}/output`);
  assert.equal(output.status, 200);
  assert.ok(Array.isArray(await output.json()));
  const zip = await fetch(`${b.url}/task/${String(uuid)}/download/all.zip`);
  assert.equal(zip.status, 200);
  assert.ok((await zip.arrayBuffer()).byteLength > 0);
  // The route lives in Redis, not in either data folder.
  assert.match(await redis.command(`HEXISTS clusterodm:routes ${String(uuid)}`), /^:1/);

  // Restarted through B, canceled through A: both reach the node through the shared route.
  const restarted = await json(`${b.url}/task/restart`, { method: 'POST', body: new URLSearchParams({ uuid: String(uuid) }) });
  assert.equal(restarted['success'], true, JSON.stringify(restarted));
  const canceled = await json(`${a.url}/task/cancel`, { method: 'POST', body: new URLSearchParams({ uuid: String(uuid) }) });
  assert.equal(canceled['success'], true, JSON.stringify(canceled));
  await waitUntil(async () => statusCode(await json(`${b.url}/task/${String(uuid)}/info`)) === 50, {
    timeoutMs: 10000,
    message: 'B does not show the cancel made through A',
  });

  // Removed through B: A forgets it too.
  const removed = await json(`${b.url}/task/remove`, { method: 'POST', body: new URLSearchParams({ uuid: String(uuid) }) });
  assert.equal(removed['success'], true, JSON.stringify(removed));
  await waitUntil(async () => (await fetch(`${a.url}/task/${String(uuid)}/info`)).status !== 200 || 'error' in (await json(`${a.url}/task/${String(uuid)}/info`)), {
    timeoutMs: 1000,
    message: 'A still answers for the task B removed',
  });
});

test('import of data/ on the first start with --redis and --export-state back: a 10,000-route round trip', async (t) => {
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const data = path.join(dir, 'a', 'data');
  fs.mkdirSync(data, { recursive: true });
  const nodes = [
    { hostname: '127.0.0.1', port: 4001, token: '' },
    { hostname: 'node2.example', port: '3000', token: 'nt', locked: true },
  ];
  const now = Date.now();
  const routes: Record<string, unknown> = {};
  for (let i = 0; i < 10_000; i++) {
    const r: Record<string, unknown> = { node: nodes[i % 2] };
    if (i % 3 !== 0) r['token'] = `user${i % 7}`;
    r['accessed'] = now - i;
    routes[randomUUID()] = r;
  }
  const tasks: Record<string, unknown> = {};
  for (const [i, phase] of (['failed', 'canceled', 'finished'] as const).entries()) {
    const uuid = randomUUID();
    const code = { failed: 30, canceled: 50, finished: 40 }[phase];
    tasks[uuid] = {
      ...(i > 0 ? { token: `user${i}` } : {}),
      phase,
      taskInfo: { uuid, name: `t${i}`, dateCreated: now, status: { code }, options: [], imagesCount: i },
      output: [`line ${i}`],
      accessed: now,
      updated: now,
    };
  }
  fs.writeFileSync(path.join(data, 'nodes.json'), JSON.stringify(nodes));
  fs.writeFileSync(path.join(data, 'routes.json'), JSON.stringify(routes));
  fs.writeFileSync(path.join(data, 'tasks.json'), JSON.stringify(tasks));

  const a = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url]);
  assert.match(a.output(), /Imported 2 nodes /);
  assert.match(a.output(), /Imported 10000 routes /);
  assert.match(a.output(), /Imported 3 tasks from .*tasks\.json into the shared state/);
  assert.match(await redis.command('HLEN clusterodm:routes'), /^:10000\r\n/);
  assert.match(await redis.command('HLEN clusterodm:tasks'), /^:3\r\n/);
  // An imported task answers from Redis.
  const [firstTask] = Object.keys(tasks);
  const imported = await json(`${a.url}/task/${String(firstTask)}/info?with_output=0`);
  assert.equal(statusCode(imported), 30, JSON.stringify(imported));
  assert.deepEqual(imported['output'], ['line 0']);
  assert.equal(await a.stop(), 0);
  // Once: a second start imports nothing, even with data/ still there.
  const again = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url]);
  assert.doesNotMatch(again.output(), /Imported/);
  // Read in the background after start.
  await waitUntil(() => /Loaded 10000 routes/.test(again.output()), { timeoutMs: 20000, message: 'the routes were not read' });
  assert.match(again.output(), /Loaded 3 tasks/);
  assert.equal(await again.stop(), 0);

  // Out of Redis, from an instance with an empty data folder: the three files, equal to what went in.
  const out = path.join(dir, 'export');
  const run = spawnSync(
    process.execPath,
    [path.join(__dirname, '..', 'helpers', 'daemon-main.js'), '--redis', redis.url, '--data-dir', path.join(dir, 'b', 'data'), '--log-dir', dir, '--export-state', out],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout + run.stderr, /Exported 2 nodes, 10000 routes and 3 tasks to /);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'nodes.json'), 'utf8')), nodes);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'routes.json'), 'utf8')), routes);
  // The info asked above was an access: that task's `accessed` moved on, the rest is what went in.
  const exported = JSON.parse(fs.readFileSync(path.join(out, 'tasks.json'), 'utf8')) as Record<string, Record<string, unknown>>;
  const readOne = exported[String(firstTask)];
  assert.ok(readOne && typeof readOne['accessed'] === 'number' && readOne['accessed'] >= now, JSON.stringify(readOne));
  assert.deepEqual(exported, { ...tasks, [String(firstTask)]: { ...(tasks[String(firstTask)] as object), accessed: readOne['accessed'] } });
});

test('the task table is shared: a task on its way to a node through A answers on B, a cancel through B shows on A', async (t) => {
  const redis = await startRedis(t);
  // The node takes its time with uploads, so the task stays in A's task table (forwarding) meanwhile.
  const node = await startTestNode({ processingMs: 100, uploadDelayMs: 60_000 });
  t.after(() => node.close());
  const dir = tempDir(t);
  const a = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url]);
  const b = await startDaemon(t, path.join(dir, 'b'), ['--redis', redis.url]);
  const ca = await cliOf(t, a);
  assert.equal(await ca.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await ca.send('NODE UPDATE'), 'OK\r\n');
  const created = await json(`${a.url}/task/new`, { method: 'POST', body: form({ name: 'on its way' }, images(2)) });
  const uuid = String(created['uuid']);
  assert.match(uuid, /^[0-9a-f-]{36}$/, JSON.stringify(created));
  let seen: Record<string, unknown> = {};
  await waitUntil(
    async () => {
      seen = await json(`${b.url}/task/${uuid}/info?with_output=0`);
      return seen['uuid'] === uuid;
    },
    { timeoutMs: 1000, intervalMs: 20, message: `B does not know the task A is forwarding: ${JSON.stringify(seen)}` },
  );
  assert.equal(seen['name'], 'on its way');
  assert.equal(statusCode(seen), 20);
  assert.deepEqual(seen['output'], ['Launching... please wait! This can take a few minutes.']);
  assert.match(await redis.command(`HEXISTS clusterodm:tasks ${uuid}`), /^:1/);

  const canceled = await json(`${b.url}/task/cancel`, { method: 'POST', body: new URLSearchParams({ uuid }) });
  assert.equal(canceled['success'], true, JSON.stringify(canceled));
  await waitUntil(async () => statusCode(await json(`${a.url}/task/${uuid}/info`)) === 50, {
    timeoutMs: 1000,
    intervalMs: 20,
    message: 'A does not show the cancel made through B',
  });
  // Nothing in either data folder: the table lives in Redis.
  assert.equal(fs.existsSync(path.join(a.dir, 'data', 'tasks.json')), false);
  assert.equal(fs.existsSync(path.join(b.dir, 'data', 'tasks.json')), false);
});

test('NODE ADD on two instances at the same time: no addition is lost', async (t) => {
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const a = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url]);
  const b = await startDaemon(t, path.join(dir, 'b'), ['--redis', redis.url]);
  const ca = await cliOf(t, a);
  const cb = await cliOf(t, b);
  const addAll = async (cli: CliClient, from: number): Promise<void> => {
    for (let p = from; p < from + 15; p++) assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${p}`), 'OK\r\n');
  };
  await Promise.all([addAll(ca, 5000), addAll(cb, 6000)]);
  const all = (s: string): boolean => (s.match(/^\d+\) 127\.0\.0\.1:\d+ /gm) ?? []).length === 30;
  await within1s(ca, 'NODE LIST', all, 'A does not list all 30 nodes');
  await within1s(cb, 'NODE LIST', all, 'B does not list all 30 nodes');
  const saved = await redis.command('GET clusterodm:nodes');
  assert.equal((saved.match(/"hostname"/g) ?? []).length, 30, saved);
});
