/**
 * Restarts while a node is down: ClusterODM is SIGKILLed while a task is being sent to a node, and restarted while
 * that node (or every node) is offline. The task must wait for its node, never end on two nodes, and never be
 * failed or lose its staged files because the site is still booting.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startTestNode, type TestNode, type TestNodeOptions } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { form, images, json, statusCode, type Json } from './support';

/**
 * Short waits: node probes from 50 ms (doubling, capped), copies left on old nodes looked for every 100 ms, and an
 * offline test node (it swallows connections: a black-holed host) given up on after 3 s instead of 10 s.
 */
const TUNING = { forwardRetryBaseMs: 20, uploadRetrySleepMs: 10, nodeWaitRetryMs: 50, straySweepMs: 100, nodeTimeoutMs: 3000 };
const env = { ...process.env, CLUSTERODM_TEST_TUNING: JSON.stringify(TUNING) };
const IMAGES = images(3);
const NAMES = IMAGES.map((i) => i.name).sort();
const WAITING = /^Waiting for its processing node to answer .*attempt (\d+)/;

async function twoNodes(t: TestContext, opts: Partial<TestNodeOptions>): Promise<TestNode[]> {
  const out: TestNode[] = [];
  for (let i = 0; i < 2; i++) {
    const n = await startTestNode({ processingMs: 100, maxParallelTasks: 2, ...opts });
    t.after(() => n.close());
    out.push(n);
  }
  return out;
}

async function daemonWith(t: TestContext, dir: string, nodes: TestNode[], args: string[] = []): Promise<Daemon> {
  const d = await startDaemon(t, dir, args, { env });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  for (const n of nodes) assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${n.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  cli.socket.destroy();
  return d;
}

async function newTask(d: Daemon): Promise<string> {
  const a = await json(`${d.url}/task/new`, { method: 'POST', body: form({ name: 'restart' }, IMAGES) });
  assert.equal(typeof a['uuid'], 'string', JSON.stringify(a));
  return a['uuid'] as string;
}

const holders = (nodes: TestNode[], uuid: string): TestNode[] => nodes.filter((n) => n.tasks().some((x) => x.uuid === uuid));
const initsFor = (n: TestNode, uuid: string): number =>
  n.requests.filter((r) => r.path.startsWith('/task/new/init') && r.headers['set-uuid'] === uuid).length;
const info = (d: Daemon, uuid: string): Promise<Json> => json(`${d.url}/task/${uuid}/info?with_output=0`);
const outputOf = (i: Json): string[] => (Array.isArray(i['output']) ? (i['output'] as unknown[]).map(String) : []);

/** The attempt number of the "waiting for its node" line, or 0 when the task does not say it is waiting. */
function waitingAttempt(i: Json): number {
  for (const line of outputOf(i)) {
    const m = WAITING.exec(line);
    if (m) return Number(m[1]);
  }
  return 0;
}

/**
 * A task whose node committed it but whose commit answer never reached ClusterODM: the daemon is killed while it
 * waits for that answer. Returns the node holding the task and the other one.
 */
async function killedAfterCommit(t: TestContext, dir: string, nodes: TestNode[]): Promise<{ uuid: string; holder: TestNode; other: TestNode }> {
  const d1 = await daemonWith(t, dir, nodes);
  const uuid = await newTask(d1);
  await waitUntil(() => holders(nodes, uuid).length === 1, { timeoutMs: 20_000, message: 'no node committed the task' });
  assert.equal(await d1.stop('SIGKILL'), null);
  const [holder] = holders(nodes, uuid);
  const other = nodes.find((n) => n !== holder);
  assert.ok(holder && other);
  for (const n of nodes) n.configure({ commitDelayMs: 0 });
  return { uuid, holder, other };
}

test('node down at restart: the task waits for its node instead of also being sent to another one', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const nodes = await twoNodes(t, { commitDelayMs: 60_000 });
  const { uuid, holder, other } = await killedAfterCommit(t, dir, nodes);
  holder.setOffline(true);
  const d2 = await startDaemon(t, dir, [], { env });
  // Pending: RUNNING with a line saying what it waits for, retried (several probes of the node, all refused).
  let last: Json = {};
  await waitUntil(
    async () => {
      last = await info(d2, uuid);
      return waitingAttempt(last) >= 3;
    },
    { timeoutMs: 20_000, message: 'the task does not say it waits for its node' },
  ).catch((e: unknown) => {
    throw new Error(`${String(e)}: ${JSON.stringify(last)}; ${other.tasks().length} tasks on the other node\n${d2.output().slice(-3000)}`);
  });
  assert.equal(statusCode(last), 20);
  assert.equal(initsFor(other, uuid), 0, 'the task was not sent to the other node');
  holder.setOffline(false);
  await waitUntil(async () => statusCode(await info(d2, uuid)) === 40, { timeoutMs: 30_000, message: 'the task never completed on its node' });
  assert.deepEqual(holders(nodes, uuid), [holder], 'the task is on exactly one node: the one that had it');
  assert.deepEqual(holder.taskFiles(uuid), NAMES);
  assert.equal(initsFor(other, uuid), 0);
  await waitUntil(() => new RegExp(`Task ${uuid} was already on 127\\.0\\.0\\.1:${holder.port}`).test(d2.output()), {
    message: 'the route to the node holding the task was not recorded',
  });
  await waitUntil(() => !fs.existsSync(path.join(dir, 'tmp', uuid)), { message: 'staged files left behind' });
});

test('node down at restart past --wait-for-node: the task moves once, and the copy left on the old node is removed when it is back', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const nodes = await twoNodes(t, { commitDelayMs: 60_000 });
  const { uuid, holder, other } = await killedAfterCommit(t, dir, nodes);
  holder.setOffline(true);
  const d2 = await startDaemon(t, dir, ['--wait-for-node', '1'], { env });
  await waitUntil(async () => statusCode(await info(d2, uuid)) === 40 && holders([other], uuid).length === 1, {
    timeoutMs: 30_000,
    message: 'the task did not move to the other node after the deadline',
  });
  assert.equal(initsFor(other, uuid), 1, 'sent to the other node once');
  assert.deepEqual(other.taskFiles(uuid), NAMES);
  // The old node still holds its copy while it is down; when it is back, that copy is removed.
  assert.equal(holders([holder], uuid).length, 1);
  holder.setOffline(false);
  await waitUntil(() => holders(nodes, uuid).length === 1, { timeoutMs: 20_000, message: 'the copy on the old node was never removed' }).catch(
    (e: unknown) => {
      throw new Error(`${String(e)}\n${d2.output().slice(-3000)}`);
    },
  );
  assert.deepEqual(holders(nodes, uuid), [other]);
  assert.equal(statusCode(await info(d2, uuid)), 40, 'the task still answers from its new node');
  await waitUntil(() => new RegExp(`Removed the copy of task ${uuid} left on 127\\.0\\.0\\.1:${holder.port}`).test(d2.output()), {
    message: 'the removal was not logged',
  });
});

test('whole-site reboot: with no node online at restart the task stays pending with its staged files instead of FAILED', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const nodes = await twoNodes(t, { uploadDelayMs: 60_000 });
  const d1 = await daemonWith(t, dir, nodes);
  const uuid = await newTask(d1);
  await waitUntil(() => nodes.some((n) => n.requests.some((r) => r.path.startsWith(`/task/new/upload/${uuid}`))), {
    timeoutMs: 20_000,
    message: 'upload never started',
  });
  assert.equal(await d1.stop('SIGKILL'), null);
  const first = nodes.find((n) => n.requests.some((r) => r.path.startsWith(`/task/new/upload/${uuid}`)));
  assert.ok(first);
  for (const n of nodes) n.configure({ uploadDelayMs: 0, offline: true });
  const d2 = await startDaemon(t, dir, [], { env });
  let last: Json = {};
  await waitUntil(
    async () => {
      last = await info(d2, uuid);
      return waitingAttempt(last) >= 3;
    },
    { timeoutMs: 20_000, message: 'the task is not pending' },
  ).catch((e: unknown) => {
    throw new Error(`${String(e)}: ${JSON.stringify(last)}\n${d2.output().slice(-3000)}`);
  });
  assert.equal(statusCode(last), 20);
  const staged = path.join(dir, 'tmp', uuid);
  assert.deepEqual(fs.readdirSync(staged).filter((f) => f !== 'body.json').sort(), NAMES, 'staged files kept');
  // The site comes back: the task goes to its node, once, with all its images.
  first.setOffline(false);
  await waitUntil(async () => statusCode(await info(d2, uuid)) === 40, { timeoutMs: 30_000, message: 'the task never completed' }).catch(
    (e: unknown) => {
      throw new Error(`${String(e)}\n${d2.output().slice(-3000)}`);
    },
  );
  for (const n of nodes) n.setOffline(false);
  assert.deepEqual(holders(nodes, uuid), [first]);
  assert.deepEqual(first.taskFiles(uuid), NAMES);
  await waitUntil(() => !fs.existsSync(staged), { message: 'staged files left behind' });
});

test('a task waiting for its node after a restart can be cancelled: the wait ends and its files go', { timeout: 90_000 }, async (t) => {
  const dir = tempDir(t);
  const node = await startTestNode({ processingMs: 100, uploadDelayMs: 60_000 });
  t.after(() => node.close());
  const d1 = await daemonWith(t, dir, [node]);
  const uuid = await newTask(d1);
  await waitUntil(() => node.requests.some((r) => r.path.startsWith(`/task/new/upload/${uuid}`)), { timeoutMs: 20_000, message: 'upload never started' });
  assert.equal(await d1.stop('SIGKILL'), null);
  node.configure({ uploadDelayMs: 0, offline: true });
  const d2 = await startDaemon(t, dir, [], { env });
  await waitUntil(async () => waitingAttempt(await info(d2, uuid)) >= 2, { timeoutMs: 20_000, message: 'the task is not pending' });
  assert.deepEqual(await json(`${d2.url}/task/cancel`, { method: 'POST', body: new URLSearchParams({ uuid }) }), { success: true });
  assert.equal(statusCode(await info(d2, uuid)), 50);
  assert.ok(!fs.existsSync(path.join(dir, 'tmp', uuid)), 'staged files removed');
  // The node is back and takes another task; the cancelled one was never sent to it.
  node.setOffline(false);
  const other = await newTask(d2);
  await waitUntil(async () => statusCode(await info(d2, other)) === 40, { timeoutMs: 30_000, message: 'the next task did not complete' });
  assert.equal(initsFor(node, uuid), 1, 'only the init of before the restart');
  assert.equal(statusCode(await info(d2, uuid)), 50);
});
