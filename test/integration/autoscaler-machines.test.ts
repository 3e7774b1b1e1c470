/**
 * The autoscaler's machines through the daemon: the limit under concurrent tasks, NODE DEL, reconciliation after a
 * crash, start-up checks, and downloads of autoscaled tasks without --asr.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { cluster, fillStaticNode, info, newTask } from '../helpers/asr-cluster';
import { BUCKET, DO_TOKEN, S3_KEY, S3_SECRET, startAsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { startTestNode } from '../helpers/test-node';
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

test('autoscaler: start-up stops with a clear message on a bad configuration, S3 or docker-machine', async (t) => {
  const rig = await startAsrRig(t);
  const tryStart = async (name: string, env = rig.env): Promise<string> => {
    try {
      const d = await startDaemon(t, path.join(rig.dir, name), ['--asr', rig.asrFile], { env });
      await d.stop();
      return 'started';
    } catch (e: unknown) {
      return e instanceof Error ? e.message : String(e);
    }
  };
  fs.writeFileSync(rig.asrFile, JSON.stringify({ accessToken: 'x' }));
  assert.match(await tryStart('a'), /exited with 1[\s\S]*Your ASR configuration must specify a provider key \(we didn't find it\)\./);
  fs.writeFileSync(rig.asrFile, JSON.stringify({ provider: '../../etc/passwd' }));
  assert.match(await tryStart('b'), /Unknown ASR provider/);
  rig.writeAsr({ accessToken: 'CHANGEME!' });
  assert.match(await tryStart('c'), /Cannot initialize ASR: You need to create a configuration file and set accessToken\./);
  rig.writeAsr({ accessToken: DO_TOKEN, s3: { accessKey: S3_KEY, secretKey: S3_SECRET, endpoint: rig.s3Url, bucket: 'no-such-bucket' } });
  assert.match(await tryStart('d'), /Cannot connect to S3\. Check your S3 configuration: NoSuchBucket/);
  rig.writeAsr({ s3: { accessKey: S3_KEY, secretKey: S3_SECRET, endpoint: rig.s3Url, bucket: BUCKET } });
  assert.match(await tryStart('e', { ...process.env, PATH: '/nonexistent' }), /Docker-machine not found in PATH/);
  assert.equal(await tryStart('f'), 'started');
});

test('downloads: --downloads-from-s3 without --asr redirects finished autoscaled tasks there (path kept), never static ones', async (t) => {
  const rig = await startAsrRig(t);
  const dir = path.join(rig.dir, 'daemon');
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  const done = '11111111-2222-4333-8444-555555555555';
  const now = Date.now();
  fs.writeFileSync(
    path.join(dir, 'data', 'tasks.json'),
    JSON.stringify({
      [done]: {
        phase: 'finished',
        taskInfo: { uuid: done, name: 'old', dateCreated: now, status: { code: 40 }, options: [], imagesCount: 3, s3Path: 'https://b.example.com' },
        output: ['done'],
        accessed: now,
        updated: now,
      },
    }),
  );
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());
  const d = await startDaemon(t, dir, ['--downloads-from-s3', 'https://cdn.example.com/odm/results/']);
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  await cli.send(`NODE ADD 127.0.0.1 ${node.port}`);
  await cli.send('NODE UPDATE');
  const r = await fetch(`${d.url}/task/${done}/download/orthophoto.tif`, { redirect: 'manual' });
  assert.equal(r.status, 301);
  assert.equal(r.headers.get('location'), `https://cdn.example.com/odm/results/${done}/odm_orthophoto/odm_orthophoto.tif`);
  // A task on a static node downloads from its node.
  const uuid = await newTask(d, 2);
  await waitUntil(async () => (await info(d, uuid)).status?.code === 40, { timeoutMs: 20000, message: 'static task did not complete' });
  const dl = await fetch(`${d.url}/task/${uuid}/download/all.zip`, { redirect: 'manual' });
  assert.equal(dl.status, 200);
  assert.equal(dl.headers.get('content-type'), 'application/zip');
  await dl.arrayBuffer();
  // A static node started with --webhook may report it: accepted because the node itself says the task is done.
  const hook = await fetch(`${d.url}/commit`, { method: 'POST', body: JSON.stringify({ uuid, status: { code: 40 } }) });
  assert.equal(hook.status, 200);
  assert.deepEqual(await hook.json(), { ok: true });
  assert.match(d.output(), new RegExp(`Task ${uuid} is done \\(webhook from 127\\.0\\.0\\.1:${node.port}\\)`));
});
