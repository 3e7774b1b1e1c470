/**
 * The task queue (--asr): tasks that no static node can take and that get no machine wait QUEUED in the task table,
 * first in first out, and go as soon as a machine can be made. Through the daemon, on the api driver with a fake
 * DigitalOcean whose machines boot their user data into test nodes.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { cluster, form, info, newTask, type Cluster } from '../helpers/asr-cluster';
import { DO_TOKEN, startAsrRig, type AsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { FakeDigitalOceanApi } from '../helpers/fake-clouds/digitalocean';
import { waitUntil } from '../helpers/wait';

const FAST = { asrCleanupDelayMs: 100, asrPollMs: 100, queueTickMs: 200, forwardRetryBaseMs: 100 };

interface QueueRig {
  rig: AsrRig;
  cloud: FakeDigitalOceanApi;
  c: Cluster;
}

/** A daemon on the api driver with its static node locked (reference only): every task needs a machine. */
async function queueRig(t: TestContext, asr: Record<string, unknown>, opts: { tuning?: Record<string, number>; args?: string[]; processingMs?: number } = {}): Promise<QueueRig> {
  const cloud = await FakeDigitalOceanApi.start(DO_TOKEN);
  t.after(() => cloud.close());
  cloud.knobs.boot = true;
  cloud.knobs.bootOptions = { node: { processingMs: opts.processingMs ?? 300, assetSize: 1000 } };
  const rig = await startAsrRig(t, { asr: { driver: 'api', apiUrl: cloud.url, bootTimeout: 60, createRetries: 1, ...asr } });
  rig.env['CLUSTERODM_TEST_TUNING'] = JSON.stringify({ ...FAST, ...opts.tuning });
  const c = await cluster(t, rig, opts.args ?? []);
  assert.equal(await c.cli.send('NODE LOCK 1'), 'OK\r\n');
  return { rig, cloud, c };
}

async function outputOf(d: Daemon, uuid: string): Promise<string[]> {
  return (await (await fetch(`${d.url}/task/${uuid}/output`)).json()) as string[];
}

async function untilOutput(d: Daemon, uuid: string, line: string): Promise<void> {
  await waitUntil(async () => JSON.stringify(await outputOf(d, uuid)) === JSON.stringify([line]), {
    timeoutMs: 20000,
    message: `output of ${uuid} never became "${line}"`,
  });
}

async function untilStatus(d: Daemon, uuid: string, code: number, timeoutMs = 60000): Promise<void> {
  await waitUntil(async () => (await info(d, uuid)).status?.code === code, { timeoutMs, message: `task ${uuid} never reached status ${code}` });
}

/** The autospawned node's number in NODE LIST. */
async function spawnedNodeNumber(c: Cluster): Promise<string> {
  let n = '';
  await waitUntil(
    async () => {
      n = /^(\d+)\) .*\[A\]/m.exec(await c.cli.send('NODE LIST'))?.[1] ?? '';
      return n !== '';
    },
    { timeoutMs: 60000, message: 'no [A] node' },
  );
  return n;
}

/** uuids in the order of the daemon's "leaves the queue" log lines. */
function leftQueue(d: Daemon): string[] {
  return [...d.output().matchAll(/Task ([0-9a-f-]{36}) leaves the queue/g)].map((m) => m[1] ?? '');
}

test('queue: a quota refusal queues the task (QUEUED, its place in the output) and it starts when a machine frees', async (t) => {
  const { cloud, c } = await queueRig(t, {}, { tuning: { capacityRetryMs: 600_000 } });
  cloud.knobs.machineLimit = 1;
  cloud.knobs.bootOptions = { node: { processingMs: 600_000, assetSize: 1000 } };
  const a = await newTask(c.d, 2);
  const n = await spawnedNodeNumber(c);
  // The account is full: the cloud refuses with its droplet limit; the task waits instead of failing.
  const b = await newTask(c.d, 2);
  await untilStatus(c.d, b, 10, 30000);
  await untilOutput(c.d, b, 'Waiting for a processing node: 0 tasks ahead');
  assert.match(c.d.output(), /no capacity at digitalocean for s-1vcpu-1gb in nyc3/);
  await waitUntil(() => new RegExp(`Task ${b} is queued again: .*no capacity`).test(c.d.output()), { timeoutMs: 5000, message: 'no "queued again" log line' });
  const c3 = await newTask(c.d, 3);
  await untilOutput(c.d, c3, 'Waiting for a processing node: 1 task ahead');
  assert.equal((await info(c.d, c3)).status?.code, 10);
  assert.ok(fs.existsSync(path.join(c.d.dir, 'tmp', b)), 'the queued task lost its staged files');

  // The machine goes: the queue moves, first in line first, and both finish on machines of their own.
  cloud.knobs.bootOptions = { node: { processingMs: 300, assetSize: 1000 } };
  assert.equal(await c.cli.send(`NODE DEL ${n}`), 'OK\r\n');
  await untilStatus(c.d, b, 40);
  await untilStatus(c.d, c3, 40);
  assert.deepEqual(leftQueue(c.d).filter((u) => u === b || u === c3).slice(0, 2), [b, c3]);
  assert.ok(cloud.machines.peak <= 1);
  assert.notEqual((await info(c.d, a)).status?.code, 10);
});

test('queue: 30 tasks with a limit of 3 machines all finish, never more than 3 machines, in FIFO order', async (t) => {
  const { cloud, c } = await queueRig(t, { dropletsLimit: 3 });
  const uuids: string[] = [];
  for (let i = 0; i < 30; i++) uuids.push(await newTask(c.d, 1 + (i % 3)));
  for (const u of uuids) await untilStatus(c.d, u, 40, 180_000);
  assert.ok(cloud.machines.peak <= 3, `peak machines ${cloud.machines.peak}`);
  assert.ok(cloud.machines.peak >= 2, 'the machines were not used in parallel');
  // Each task's machine was asked for in the order the tasks came (the log names the task at its first step).
  const out = c.d.output();
  const starts = uuids.map((u) => out.indexOf(`(task ${u}): Trying to create machine`));
  assert.ok(starts.every((s) => s >= 0), 'a task never asked for a machine');
  assert.deepEqual([...starts].sort((x, y) => x - y), starts, 'a later task got a machine before an earlier one');
  const queued = leftQueue(c.d);
  assert.ok(queued.length >= 20, `only ${queued.length} tasks were queued`);
  assert.deepEqual(queued, uuids.filter((u) => queued.includes(u)));
  await waitUntil(() => cloud.machines.size === 0, { timeoutMs: 30000, message: 'machines left after the last task' });
});

test('queue: queued tasks survive a SIGKILL in the same order, then get dispatched', async (t) => {
  const { rig, cloud, c } = await queueRig(t, { dropletsLimit: 1 }, { processingMs: 600_000 });
  await newTask(c.d, 2);
  await spawnedNodeNumber(c);
  const queued = [await newTask(c.d, 2), await newTask(c.d, 1), await newTask(c.d, 3)];
  for (const [i, u] of queued.entries()) await untilOutput(c.d, u, `Waiting for a processing node: ${i} ${i === 1 ? 'task' : 'tasks'} ahead`);
  await c.d.stop('SIGKILL');

  const d2 = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile], { env: rig.env });
  for (const [i, u] of queued.entries()) {
    assert.equal((await info(d2, u)).status?.code, 10);
    assert.deepEqual(await outputOf(d2, u), [`Waiting for a processing node: ${i} ${i === 1 ? 'task' : 'tasks'} ahead`]);
    assert.ok(fs.existsSync(path.join(d2.dir, 'tmp', u)), 'tmp cleanup removed a queued task');
  }
  const cli = await CliClient.connect(t, d2.cliPort);
  await cli.untilPrompt();
  const list = JSON.parse((await cli.send('TASK LIST')).trim()) as Array<{ uuid: string; status: { code: number }; ahead?: number }>;
  assert.deepEqual(
    list.filter((x) => x.ahead !== undefined).map((x) => [x.uuid, x.ahead, x.status.code]),
    queued.map((u, i) => [u, i, 10]),
  );

  // Started again with room for every task (the file is read at start): they leave in their order and finish. (Each
  // machine's webhook goes to the first daemon's address, as tests get new ports at each start; the results come
  // from the machines through the routes.)
  cloud.knobs.bootOptions = { node: { processingMs: 300, assetSize: 1000 } };
  await d2.stop('SIGTERM');
  rig.writeAsr({ dropletsLimit: 4 });
  const d3 = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile], { env: rig.env });
  for (const u of queued) await untilStatus(d3, u, 40, 60_000);
  assert.deepEqual(leftQueue(d3), queued);
  assert.ok(cloud.machines.peak <= 4);
});

test('queue: cancel and remove take a task out of the queue, its files go, the others move up', async (t) => {
  const { c } = await queueRig(t, { dropletsLimit: 1 }, { processingMs: 600_000 });
  await newTask(c.d, 2);
  await spawnedNodeNumber(c);
  const [b, c3, d] = [await newTask(c.d, 1), await newTask(c.d, 1), await newTask(c.d, 1)] as [string, string, string];
  await untilOutput(c.d, d, 'Waiting for a processing node: 2 tasks ahead');

  const post = async (what: string, uuid: string): Promise<unknown> =>
    (await fetch(`${c.d.url}/task/${what}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ uuid }) })).json();
  assert.deepEqual(await post('cancel', c3), { success: true });
  assert.equal((await info(c.d, c3)).status?.code, 50);
  assert.ok(!fs.existsSync(path.join(c.d.dir, 'tmp', c3)));
  await untilOutput(c.d, d, 'Waiting for a processing node: 1 task ahead');

  assert.deepEqual(await post('remove', b), { success: true });
  assert.ok((await info(c.d, b)).error, 'a removed task still answers');
  assert.ok(!fs.existsSync(path.join(c.d.dir, 'tmp', b)));
  await untilOutput(c.d, d, 'Waiting for a processing node: 0 tasks ahead');
  assert.deepEqual(leftQueue(c.d), []);
});

test('queue: --queue-max bounds the queue with a clear message; 0 fails at once as the original', async (t) => {
  const { rig, c } = await queueRig(t, { dropletsLimit: 1 }, { processingMs: 600_000, args: ['--queue-max', '2'] });
  await newTask(c.d, 2);
  await spawnedNodeNumber(c);
  await newTask(c.d, 1);
  await newTask(c.d, 1);
  const res = await fetch(`${c.d.url}/task/new`, { method: 'POST', body: form(1) });
  const body = (await res.json()) as { error?: string };
  assert.equal(body.error, 'No nodes available, and the queue of tasks waiting for a processing node is full (2 tasks, --queue-max). Try again later.');

  // --queue-max 0: the same cluster state gives the original's answer at once.
  await c.d.stop('SIGTERM');
  rig.writeAsr({ dropletsLimit: 0 });
  const d0 = await startDaemon(t, path.join(rig.dir, 'daemon0'), ['--asr', rig.asrFile, '--queue-max', '0'], { env: rig.env });
  const cli = await CliClient.connect(t, d0.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${c.node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE LOCK 1'), 'OK\r\n');
  const r0 = await fetch(`${d0.url}/task/new`, { method: 'POST', body: form(1) });
  assert.deepEqual(await r0.json(), { error: 'No nodes available' });
});

test('queue: SIGKILL while a task\'s machine is being created: the next start removes that machine (ours only) and the task goes back to its place', async (t) => {
  const { rig, cloud, c } = await queueRig(t, { dropletsLimit: 1 });
  // The droplet never gets an address: the create is still going on when ClusterODM is killed.
  cloud.knobs.ipAfterPolls = 1_000_000;
  const foreign = cloud.addDroplet({ name: 'clusterodm-2-NotOurs', tags: ['clusterodm'] });
  const a = await newTask(c.d, 2);
  await waitUntil(() => cloud.machines.size === 2, { timeoutMs: 30000, message: 'no create' });
  const b = await newTask(c.d, 1);
  await untilOutput(c.d, b, 'Waiting for a processing node: 0 tasks ahead');
  await c.d.stop('SIGKILL');
  const orphan = [...cloud.machines.values()].find((m) => m.id !== foreign.id);
  assert.ok(orphan);

  cloud.knobs.ipAfterPolls = 0;
  // Room for both (a machine's webhook goes to the killed daemon's port: tests get new ports at each start).
  rig.writeAsr({ dropletsLimit: 2 });
  const d2 = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile], { env: rig.env });
  await waitUntil(() => !cloud.machines.has(orphan.id), { timeoutMs: 30000, message: 'the machine of the killed create survived' });
  assert.ok(cloud.machines.has(foreign.id), 'a machine without our install id was destroyed');
  await waitUntil(() => new RegExp(`Task ${a} was waiting for a machine when ClusterODM stopped: queued again`).test(d2.output()), {
    timeoutMs: 20000,
    message: 'the task was not queued again',
  });
  // a keeps its place ahead of b, and both get machines in that order.
  await untilStatus(d2, a, 40, 60_000);
  await untilStatus(d2, b, 40, 60_000);
  assert.deepEqual(leftQueue(d2), [a, b]);
});

test('queue: a queued task goes to a static node as soon as one can take it (here: unlocked), first in line first', async (t) => {
  const { cloud, c } = await queueRig(t, { dropletsLimit: 0 });
  const a = await newTask(c.d, 2);
  const b = await newTask(c.d, 1);
  await untilOutput(c.d, b, 'Waiting for a processing node: 1 task ahead');
  assert.equal(await c.cli.send('NODE UNLOCK 1'), 'OK\r\n');
  // The static node runs one task at a time: the first in line gets it, the other stays queued.
  await waitUntil(() => c.node.tasks().length === 1, { timeoutMs: 20000, message: 'the static node got no task' });
  assert.equal(c.node.tasks()[0]?.uuid, a);
  await untilOutput(c.d, b, 'Waiting for a processing node: 0 tasks ahead');
  assert.equal((await info(c.d, b)).status?.code, 10);
  assert.equal(cloud.requests.filter((r) => r.method === 'POST').length, 0, 'a machine was asked for over the limit');
});
