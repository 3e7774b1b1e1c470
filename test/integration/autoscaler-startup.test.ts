/**
 * The autoscaler's start-up checks through the daemon (configuration, S3, docker-machine), and downloads of
 * autoscaled tasks with --downloads-from-s3 but without --asr.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { info, newTask } from '../helpers/asr-cluster';
import { BUCKET, DO_TOKEN, S3_KEY, S3_SECRET, startAsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

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
