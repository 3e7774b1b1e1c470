/**
 * The autoscaler's vacuum with an injected clock, against real test nodes standing in for the machines' NodeODM
 * (the vacuum polls them itself) and the fake docker-machine.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { IDLE_GRACE_MS, VACUUM_INTERVAL_MS } from '../../src/autoscaler';
import { FakeClock } from '../../src/core';
import { machineNode, runTask, scalerRig, setOnline } from '../helpers/scaler-rig';
import { waitUntil } from '../helpers/wait';

const HOUR = 3600_000;

test('vacuum: max runtime, max upload time, offline for too long (from when last seen), idle; busy nodes stay', async (t) => {
  const clock = new FakeClock(1_800_000_000_000);
  const r = await scalerRig(t, { clock });
  await r.scaler.start();
  await r.scaler.vacuum();
  const now = clock.now();
  const runtimeNode = await machineNode(t, 600_000);
  const uploadNode = await machineNode(t, 600_000);
  const uploadingNode = await machineNode(t, 600_000);
  const busyNode = await machineNode(t, 600_000);
  const freshNode = await machineNode(t, 600_000);
  const runtime = await r.spawned('clusterodm-1-runtime', { created: now - 2 * HOUR, maxRuntime: 3600, port: runtimeNode.port });
  const upload = await r.spawned('clusterodm-1-upload', { created: now - 2 * HOUR, maxUploadTime: 3600, port: uploadNode.port });
  const uploading = await r.spawned('clusterodm-1-uploading', { created: now - 2 * HOUR, maxUploadTime: 3600, port: uploadingNode.port });
  const blip = await r.spawned('clusterodm-1-blip', { created: now - 2 * HOUR, maxUploadTime: 3600 });
  const gone = await r.spawned('clusterodm-1-gone', { created: now - 2 * HOUR, maxUploadTime: 3600 });
  const busy = await r.spawned('clusterodm-1-busy', { created: now - 10 * HOUR, port: busyNode.port });
  await r.spawned('clusterodm-1-fresh', { created: now - 60_000, port: freshNode.port });
  for (const [node, machine] of [[runtimeNode, runtime], [uploadingNode, uploading], [busyNode, busy]] as const) {
    await r.routes.add(await runTask(node), machine, undefined);
  }
  // One failed poll: offline now, but seen online a minute ago (the original destroyed it at once).
  blip.lastSeenOnline = now - 60_000;
  // Not seen for longer than maxUploadTime.
  gone.lastSeenOnline = now - 2 * HOUR;
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), ['clusterodm-1-blip', 'clusterodm-1-busy', 'clusterodm-1-fresh', 'clusterodm-1-uploading']);
  assert.deepEqual(r.registry.list().map((n) => n.record.dockerMachine?.name).sort(), r.machines());
  assert.ok(r.logger.lines.includes(`warn: ${runtime.name} has exceeded its maximum runtime and will be forcibly deleted!`));
  assert.ok(r.logger.lines.includes(`warn: ${upload.name} has exceeded its maximum upload time and will be forcibly deleted!`));
  assert.ok(r.logger.lines.includes(`warn: ${gone.name} has been offline for too long and will be forcibly deleted!`));

  // Time passes: fresh becomes idle (nothing queued, past the grace time). The vacuum runs on its own timer.
  clock.advance(IDLE_GRACE_MS);
  await r.scaler.vacuum(); // let the passes the timer started meanwhile finish
  clock.advance(VACUUM_INTERVAL_MS);
  await waitUntil(() => !r.machines().includes('clusterodm-1-fresh'), { timeoutMs: 10000, message: 'the idle machine stayed' });
  assert.deepEqual(r.machines(), ['clusterodm-1-blip', 'clusterodm-1-busy', 'clusterodm-1-uploading']);
});

test('vacuum: a task that just landed on a machine the last poll saw idle keeps its machine (the idle rule trusted a queue count up to 60 s old)', async (t) => {
  const r = await scalerRig(t);
  const node = await machineNode(t, 600_000);
  const machine = await r.spawned('clusterodm-1-landed', { created: r.clock.now() - 2 * IDLE_GRACE_MS, port: node.port });
  // The periodic poll, a moment before the task arrived: nothing queued.
  setOnline(machine, r.clock.now(), 0);
  const uuid = await runTask(node);
  await r.routes.add(uuid, machine, 'user-token');
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), ['clusterodm-1-landed'], 'the machine was destroyed with its task running');
  assert.equal(r.tasks.get(uuid), undefined, 'the running task was recorded as if it were done');
  assert.equal(r.routes.has(uuid), true);
  assert.equal(node.tasks()[0]?.status, 20);
  // Once the task is over (here canceled by its owner), the machine is idle and goes, the task keeping its info.
  await fetch(`${node.url}/task/cancel`, { method: 'POST', body: new URLSearchParams({ uuid }) });
  await waitUntil(() => node.tasks()[0]?.status === 50, { message: 'the task was not canceled' });
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), []);
  assert.equal(r.tasks.infoAnswer(uuid, null)?.status.code, 50);
});

test('vacuum: past maxRuntime the machine goes with its task running, which answers FAILED with the reason (it was saved as done, still RUNNING)', async (t) => {
  const r = await scalerRig(t);
  const node = await machineNode(t, 600_000);
  const machine = await r.spawned('clusterodm-1-long', { created: r.clock.now() - 2 * HOUR, maxRuntime: 3600, port: node.port });
  const uuid = await runTask(node);
  await r.routes.add(uuid, machine, 'user-token');
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), []);
  assert.equal(r.routes.has(uuid), false);
  // What /task/<uuid>/info and /output answer from the task table.
  const info = r.tasks.infoAnswer(uuid, null);
  const reason = 'The machine of this task (clusterodm-1-long) ran longer than the autoscaler\'s maxRuntime (3600 s) and was destroyed.';
  assert.deepEqual(info?.status, { code: 30, errorMessage: reason });
  assert.equal(info?.imagesCount, 1, 'the info the node last gave is kept');
  const output = r.tasks.outputAnswer(uuid, 0) ?? [];
  assert.equal(output.at(-1), reason);
  assert.ok(output.length > 1, 'the output the node had is kept');
  assert.equal(r.tasks.get(uuid)?.token, 'user-token');
  assert.ok(r.logger.lines.includes(`warn: Autoscaler: task ${uuid} on ${machine.name} is FAILED: ${reason}`));
});

test('vacuum: past maxUploadTime a task still on its way to its machine answers FAILED with the reason', async (t) => {
  const r = await scalerRig(t);
  const node = await machineNode(t, 600_000);
  const machine = await r.spawned('clusterodm-1-slow', { created: r.clock.now() - 2 * HOUR, maxUploadTime: 3600, port: node.port });
  const uuid = '11111111-2222-4333-8444-000000000003';
  const now = r.clock.now();
  await r.tasks.put({
    uuid,
    token: undefined,
    phase: 'forwarding',
    taskInfo: { uuid, name: 't', dateCreated: now, status: { code: 20 }, options: [], imagesCount: 3 },
    output: ['Launching... please wait! This can take a few minutes.'],
    nodeKey: machine.key,
  });
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), []);
  const reason = "The machine of this task (clusterodm-1-slow) did not receive the task within the autoscaler's maxUploadTime (3600 s) and was destroyed.";
  assert.equal(r.tasks.infoAnswer(uuid, null)?.status.code, 30);
  assert.deepEqual(r.tasks.outputAnswer(uuid, 0), [reason]);
});

test('vacuum: a task on a machine destroyed while unreachable answers FAILED with the reason (it vanished without a record)', async (t) => {
  const r = await scalerRig(t);
  const node = await machineNode(t, 600_000);
  const now = r.clock.now();
  const machine = await r.spawned('clusterodm-1-lost', { created: now - 3 * HOUR, maxUploadTime: 3600, port: node.port });
  const uuid = await runTask(node);
  await r.routes.add(uuid, machine, 'user-token');
  // Unreachable since two hours ago.
  node.setOffline(true);
  machine.lastSeenOnline = now - 2 * HOUR;
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), []);
  assert.equal(r.routes.has(uuid), false);
  const reason = "The machine of this task (clusterodm-1-lost) was unreachable for longer than the autoscaler's maxUploadTime (3600 s) and was destroyed.";
  const info = r.tasks.infoAnswer(uuid, null);
  assert.ok(info, 'the task vanished: no route and no record');
  assert.deepEqual(info.status, { code: 30, errorMessage: reason });
  assert.equal(info.uuid, uuid);
  assert.deepEqual(r.tasks.outputAnswer(uuid, 0), [reason]);
  assert.equal(r.tasks.get(uuid)?.token, 'user-token', 'still private to its owner');
});

test('vacuum: an idle machine whose webhook never came keeps its task info and output', async (t) => {
  const r = await scalerRig(t);
  const node = await machineNode(t, 50);
  const uuid = await runTask(node);
  const spawned = await r.spawned('clusterodm-1-idle', { created: r.clock.now() - 2 * IDLE_GRACE_MS, port: node.port });
  await r.routes.add(uuid, spawned, 'user-token');
  await waitUntil(() => node.tasks()[0]?.status === 40, { message: 'the task did not complete' });
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), []);
  const saved = r.tasks.get(uuid);
  assert.equal(saved?.phase, 'finished');
  assert.equal(saved?.taskInfo.status.code, 40);
  assert.equal(saved?.token, 'user-token');
  assert.ok(saved?.output.some((l) => l.startsWith('Compressing all.zip')));
  assert.equal(r.routes.has(uuid), false);
});

test('vacuum: a machine whose task is done and saved (a restart lost the cleanup after its webhook) is destroyed at once', async (t) => {
  const r = await scalerRig(t);
  const now = r.clock.now();
  const busyNode = await machineNode(t, 600_000);
  const done = await r.spawned('clusterodm-1-done', { created: now - 60_000 });
  const busy = await r.spawned('clusterodm-1-busy', { created: now - 60_000, port: busyNode.port });
  const uuid = '11111111-2222-4333-8444-000000000001';
  await r.routes.add(uuid, done, undefined);
  await r.routes.add(await runTask(busyNode), busy, undefined);
  await r.tasks.put({
    uuid,
    token: undefined,
    phase: 'finished',
    taskInfo: { uuid, name: 't', dateCreated: now, status: { code: 40 }, options: [], imagesCount: 1 },
    output: ['done'],
  });
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), ['clusterodm-1-busy']);
  assert.ok(r.logger.lines.includes(`warn: ${done.name} has finished its task and will be deleted`));
  assert.equal(r.tasks.get(uuid)?.phase, 'finished', 'the saved task stays');
});
