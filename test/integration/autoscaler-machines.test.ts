/**
 * The autoscaler's machines through the daemon: the limit under concurrent tasks, NODE DEL, and reconciliation
 * after a crash. Start-up checks: autoscaler-startup.test.ts.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { cluster, fillStaticNode, info, newTask } from '../helpers/asr-cluster';
import { DO_TOKEN, startAsrRig } from '../helpers/asr-rig';
import { startDaemon } from '../helpers/daemon';
import { waitUntil } from '../helpers/wait';

test('autoscaler: 20 concurrent tasks never exceed dropletsLimit; ASR VIEWCMD masks secrets; NODE DEL destroys the machine', async (t) => {
  const rig = await startAsrRig(t, { asr: { dropletsLimit: 3 }, dm: { createDelayMs: 1500, nodeArgs: ['--processing-ms', '600000'] } });
  const c = await cluster(t, rig);
  await fillStaticNode(c);
  const uuids = await Promise.all(Array.from({ length: 20 }, () => newTask(c.d, 2)));
  assert.equal(new Set(uuids).size, 20);
  // Three get a machine each; the other 17 queue on the static node (SPEC §8.4).
  await waitUntil(() => c.node.tasks().length === 18, { timeoutMs: 60000, message: 'the other tasks did not queue on the static node' });
  await waitUntil(async () => ((await c.cli.send('NODE LIST')).match(/\[A\]/g) ?? []).length === 3, {
    timeoutMs: 60000,
    message: 'three autospawned nodes expected',
  });
  assert.equal(rig.dm.calls('docker-machine').filter((x) => x.args[0] === 'create').length, 3);
  assert.ok(rig.fakeDo.peak() <= 3, `peak droplets ${rig.fakeDo.peak()}`);
  assert.equal(rig.dm.machines().length, 3);

  const view = await c.cli.send('ASR VIEWCMD 5');
  assert.match(view, /^docker-machine create --driver digitalocean --digitalocean-access-token \*{8} --digitalocean-region nyc3 --digitalocean-image ubuntu-16-04-x64 --digitalocean-size s-1vcpu-1gb --digitalocean-monitoring=true --digitalocean-tags clusterodm debug-machine\r\n$/);
  assert.ok(!view.includes(DO_TOKEN));
  assert.equal(await c.cli.send('ASR VIEWCMD 51'), 'FAIL\r\n', 'no size fits 51 images');

  // NODE DEL of an autospawned node destroys its machine and droplet.
  const list = await c.cli.send('NODE LIST');
  const n = /^(\d+)\) .*\[A\]/m.exec(list)?.[1] ?? '';
  assert.equal(await c.cli.send(`NODE DEL ${n}`), 'OK\r\n');
  assert.equal(rig.dm.machines().length, 2);
  assert.equal(rig.fakeDo.droplets.size, 2);
});

test('autoscaler: a crash between creating a machine and registering it leaves no machine after the next start', async (t) => {
  const rig = await startAsrRig(t, { dm: { createDelayMs: 3000 } });
  const c = await cluster(t, rig);
  await fillStaticNode(c);
  const uuid = await newTask(c.d, 2);
  await waitUntil(() => rig.dm.calls('docker-machine').some((x) => x.args[0] === 'create'), { timeoutMs: 20000, message: 'no create' });
  await c.d.stop('SIGKILL');
  // docker-machine goes on without us: the droplet and the machine appear.
  await waitUntil(() => rig.dm.machines().length === 1 && rig.fakeDo.droplets.size === 1, { timeoutMs: 20000, message: 'no machine' });
  // Also a droplet of ours that docker-machine lost, and droplets that are not ours.
  rig.fakeDo.addDroplet({ name: 'clusterodm-7-Lost1', region: 'nyc3', size: 's', image: 'i', tags: ['clusterodm'] });
  rig.fakeDo.addDroplet({ name: 'my-own-server', region: 'nyc3', size: 's', image: 'i', tags: ['clusterodm'] });
  rig.fakeDo.addDroplet({ name: 'clusterodm-3-Untagged', region: 'nyc3', size: 's', image: 'i', tags: [] });

  const d2 = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile], { env: rig.env });
  await waitUntil(() => rig.dm.machines().length === 0, { timeoutMs: 20000, message: 'the orphaned machine survived' });
  await waitUntil(() => [...rig.fakeDo.droplets.values()].every((x) => !x.name.startsWith('clusterodm-') || x.tags.length === 0), {
    timeoutMs: 20000,
    message: 'a tagged droplet of ours survived',
  });
  assert.deepEqual([...rig.fakeDo.droplets.values()].map((x) => x.name).sort(), ['clusterodm-3-Untagged', 'my-own-server']);
  // The task was not lost: it answers (resumed on the static node, or FAILED with a clear message).
  const i = await info(d2, uuid);
  assert.ok(i.status && [10, 20, 30].includes(i.status.code), JSON.stringify(i));
});
