/**
 * The task queue (--asr): tasks that no static node can take and that get no machine wait QUEUED in the task table,
 * first in first out, and go as soon as a machine can be made. Through the daemon, on the api driver with a fake
 * DigitalOcean whose machines boot their user data into test nodes.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { form, info, newTask } from '../helpers/asr-cluster';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { leftQueue, queueRig, spawnedNodeNumber, untilOutput, untilStatus } from '../helpers/queue-rig';
import { waitUntil } from '../helpers/wait';

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

