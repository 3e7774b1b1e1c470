/**
 * The task queue (--asr) across restarts and static nodes: queued tasks keep their order through a SIGKILL, a task
 * whose machine was being made goes back to its place, a static node that can take a task takes the first in line.
 * (Split from asr-queue.test.ts: Node 20 times out a whole file at once.)
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { info, newTask } from '../helpers/asr-cluster';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { leftQueue, outputOf, queueRig, spawnedNodeNumber, untilOutput, untilStatus } from '../helpers/queue-rig';
import { waitUntil } from '../helpers/wait';

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
