/**
 * The autoscaler through the daemon: a task's own machine from creation to results in S3, and the failures of
 * that flow (its forward, its creation). Limits and reconciliation: autoscaler-machines.test.ts; start-up:
 * autoscaler-startup.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { cluster, fillStaticNode, info, newTask, type Cluster } from '../helpers/asr-cluster';
import { BUCKET, DO_TOKEN, S3_KEY, S3_SECRET, startAsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { assetSha256, startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const ASSET = 200_000;

test('autoscaler: a task that finds the static node full gets its own machine, finishes, the machine goes, results come from S3', async (t) => {
  const registryPass = 'reg-pa55 w0rd$(id)';
  const rig = await startAsrRig(t, {
    asr: {
      imageSizeMapping: [{ maxImages: 50, slug: 's-4vcpu-8gb' }],
      dockerRegistry: { url: 'registry.example.com', username: 'odm', password: registryPass },
    },
    dm: { failCreate: 2 },
  });
  rig.dm.configure({ nodeArgs: ['--processing-ms', '300', '--asset-size', String(ASSET)] });
  const c = await cluster(t, rig);
  const out = c.d.output();
  assert.match(out, /ASR: DigitalOceanAsrProvider/);
  assert.match(out, /Can write to S3/);
  assert.match(out, /Found docker-machine executable/);

  const first = await fillStaticNode(c);
  const uuid = await newTask(c.d, 3);
  // While the machine is being made, the task answers from the task table, with the steps in its output.
  const early = await info(c.d, uuid);
  assert.equal(early.status?.code, 20);

  // Two failed creations, each removed, regions rotating; the third attempt works.
  await waitUntil(() => rig.dm.machines().length === 1, { timeoutMs: 30000, message: 'no machine was created' });
  const creates = rig.dm.calls('docker-machine').filter((x) => x.args[0] === 'create');
  assert.equal(creates.length, 3);
  const regionOf = (args: string[]): string | undefined => args[args.indexOf('--digitalocean-region') + 1];
  assert.deepEqual(creates.map((x) => regionOf(x.args)), ['nyc3', 'sfo2', 'nyc3']);
  const name = creates[0]?.args.at(-1) ?? '';
  assert.match(name, /^clusterodm-3-[A-Za-z0-9]+$/);
  assert.deepEqual(creates[2]?.args, [
    'create', '--driver', 'digitalocean',
    '--digitalocean-access-token', DO_TOKEN,
    '--digitalocean-region', 'nyc3',
    '--digitalocean-image', 'ubuntu-16-04-x64',
    '--digitalocean-size', 's-4vcpu-8gb',
    '--digitalocean-monitoring=true',
    '--digitalocean-tags', 'clusterodm',
    name,
  ]);
  const rms = rig.dm.calls('docker-machine').filter((x) => x.args[0] === 'rm');
  assert.ok(rms.length >= 2 && rms.slice(0, 2).every((x) => x.args.join(' ') === `rm -y -f ${name}`));

  // The task runs on the machine, and the node is listed as autospawned.
  await waitUntil(async () => (await c.cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 30000, message: 'no [A] node' });
  const remote = rig.dm.calls();
  const run = remote.find((x) => x.tool === 'docker' && x.args[0] === 'run');
  assert.ok(run, 'docker run was not called on the machine');
  const flag = (f: string): string | undefined => run.args[run.args.indexOf(f) + 1];
  assert.deepEqual(run.args.slice(0, 7), ['run', '-d', '-p', '3000:3000', 'opendronemap/nodeodm', '-q', '1']);
  assert.equal(flag('--s3_access_key'), S3_KEY);
  assert.equal(flag('--s3_secret_key'), S3_SECRET);
  assert.equal(flag('--s3_endpoint'), rig.s3Url);
  assert.equal(flag('--s3_bucket'), BUCKET);
  const webhook = new URL(flag('--webhook') ?? '');
  assert.equal(webhook.pathname, '/commit');
  assert.match(webhook.searchParams.get('secret') ?? '', /^[\w-]{20,}$/);
  assert.ok(remote.some((x) => x.tool === 'fallocate'), 'no swap was added');
  // The registry password goes through stdin, never on a command line.
  const login = remote.find((x) => x.tool === 'docker' && x.args[0] === 'login');
  assert.deepEqual(login?.args, ['login', '-u', 'odm', '--password-stdin', 'registry.example.com']);

  // A forged webhook is refused and changes nothing.
  const forged = await fetch(`${c.d.url}/commit?secret=guess`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ uuid, status: { code: 40 } }) });
  assert.equal(forged.status, 403);
  const unknown = await fetch(`${c.d.url}/commit`, { method: 'POST', body: JSON.stringify({ uuid: '00000000-1111-4222-8333-444444444444' }) });
  assert.equal(unknown.status, 403);
  const notDone = await fetch(`${c.d.url}/commit`, { method: 'POST', body: JSON.stringify({ uuid: first }) });
  assert.equal(notDone.status, 403, 'a task still running on a static node cannot be reported done');
  assert.equal(rig.dm.machines().length, 1);

  // The real webhook: the task is saved, the machine destroyed 10 s later, the droplet gone.
  await waitUntil(async () => (await info(c.d, uuid)).status?.code === 40, { timeoutMs: 30000, message: 'task never completed' });
  await waitUntil(() => rig.dm.machines().length === 0 && rig.fakeDo.droplets.size === 0, { timeoutMs: 30000, message: 'machine was not destroyed' });
  await waitUntil(async () => !(await c.cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 5000, message: 'node still listed' });
  const saved = await info(c.d, uuid);
  assert.equal(saved.status?.code, 40);
  assert.equal(saved['s3Path'], `${rig.s3Url}/${BUCKET}`);
  const output = (await (await fetch(`${c.d.url}/task/${uuid}/output`)).json()) as string[];
  assert.ok(output.includes('Uploaded all.zip to S3'), `output kept: ${JSON.stringify(output)}`);

  // Its download redirects to the bucket (301, as the original), where the results are.
  const dl = await fetch(`${c.d.url}/task/${uuid}/download/all.zip`, { redirect: 'manual' });
  assert.equal(dl.status, 301);
  const location = dl.headers.get('location') ?? '';
  assert.equal(location, `${rig.s3Url}/${BUCKET}/${uuid}/all.zip`);
  const body = Buffer.from(await (await fetch(location)).arrayBuffer());
  assert.equal(createHash('sha256').update(body).digest('hex'), assetSha256(ASSET));
  // The static node's task is never sent to S3.
  const staticDl = await fetch(`${c.d.url}/task/${first}/download/all.zip`, { redirect: 'manual' });
  assert.equal(staticDl.status, 200);
  assert.deepEqual(await staticDl.json(), { error: 'Asset not ready' });
  // Path tricks in the asset are refused.
  const tricky = (await (await fetch(`${c.d.url}/task/${uuid}/download/a%2F..%2F..%2Fx`)).json()) as { error?: string };
  assert.match(tricky.error ?? '', /Invalid asset/);

  // No secret in the log.
  const log = fs.readFileSync(path.join(c.d.dir, 'ClusterODM.log'), 'utf8') + c.d.output();
  for (const secret of [DO_TOKEN, S3_SECRET, registryPass, webhook.searchParams.get('secret') ?? 'x', flag('--token') ?? 'x']) {
    assert.ok(!log.includes(secret), `a secret leaked into the log: ${secret.slice(0, 4)}…`);
  }
});

test('autoscaler: a failed forward destroys its machine and the task fails with a clear message', async (t) => {
  const rig = await startAsrRig(t, { dm: { nodeArgs: ['--drop-uploads', '1000'] } });
  const env = { ...rig.env, CLUSTERODM_TEST_TUNING: JSON.stringify({ forwardRetryBaseMs: 20, uploadRetrySleepMs: 10 }) };
  const node = await startTestNode({ processingMs: 120_000 });
  t.after(() => node.close());
  const d = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile], { env });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  await cli.send(`NODE ADD 127.0.0.1 ${node.port}`);
  await cli.send('NODE UPDATE');
  const c: Cluster = { rig, d, cli, node };
  await fillStaticNode(c);
  const uuid = await newTask(d, 2);
  await waitUntil(async () => (await info(d, uuid)).status?.code === 30, { timeoutMs: 60000, message: 'task did not fail' });
  const out = (await (await fetch(`${d.url}/task/${uuid}/output`)).json()) as string[];
  assert.deepEqual(out, ['Failed to forward task to processing node after 5 attempts. Try again later.']);
  await waitUntil(() => rig.dm.machines().length === 0 && rig.fakeDo.droplets.size === 0, { timeoutMs: 20000, message: 'the machine leaked' });
  await waitUntil(async () => !(await cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 5000, message: 'node still listed' });
});

test('autoscaler: when no machine can be created, the task fails with the original message and nothing is left', async (t) => {
  const rig = await startAsrRig(t, { asr: { createRetries: 2 }, dm: { failCreate: 10 } });
  const c = await cluster(t, rig);
  await fillStaticNode(c);
  const uuid = await newTask(c.d, 2);
  await waitUntil(async () => (await info(c.d, uuid)).status?.code === 30, { timeoutMs: 30000, message: 'task did not fail' });
  const out = (await (await fetch(`${c.d.url}/task/${uuid}/output`)).json()) as string[];
  assert.deepEqual(out, ['No nodes available (attempted to autoscale but failed). Try again later.']);
  assert.equal(rig.dm.calls('docker-machine').filter((x) => x.args[0] === 'create').length, 2);
  assert.equal(rig.dm.machines().length, 0);
  assert.match(c.d.output(), /Cannot create node via autoscaling: Cannot create machine \(attempted 2 times\)/);
  assert.ok(!fs.existsSync(path.join(c.d.dir, 'tmp', uuid)), 'staged files removed');
});

test('autoscaler: with private results (s3.acl), downloads of an autoscaled task are streamed from the bucket', async (t) => {
  const rig = await startAsrRig(t, { asr: { s3: { accessKey: S3_KEY, secretKey: S3_SECRET, endpoint: '', bucket: BUCKET, acl: 'private' }, addSwap: 0 } });
  rig.writeAsr({ s3: { accessKey: S3_KEY, secretKey: S3_SECRET, endpoint: rig.s3Url, bucket: BUCKET, acl: 'private' } });
  rig.dm.configure({ nodeArgs: ['--processing-ms', '200', '--asset-size', String(ASSET)] });
  const c = await cluster(t, rig, ['--log-level', 'debug']);
  await fillStaticNode(c);
  const uuid = await newTask(c.d, 2);
  await waitUntil(async () => (await info(c.d, uuid)).status?.code === 40, { timeoutMs: 40000, message: 'task never completed' });
  const run = rig.dm.calls().find((x) => x.tool === 'docker' && x.args[0] === 'run');
  assert.equal(run?.args[run.args.indexOf('--s3_acl') + 1], 'private', 'NodeODM is told the ACL');
  assert.ok(!rig.dm.calls().some((x) => x.tool === 'fallocate'), 'addSwap 0 adds no swap');
  const dl = await fetch(`${c.d.url}/task/${uuid}/download/all.zip`, { redirect: 'manual' });
  assert.equal(dl.status, 200);
  assert.equal(dl.headers.get('content-length'), String(ASSET));
  const body = Buffer.from(await dl.arrayBuffer());
  assert.equal(createHash('sha256').update(body).digest('hex'), assetSha256(ASSET));
  const missing = await fetch(`${c.d.url}/task/${uuid}/download/odm_dem/dsm.tif`);
  assert.equal(missing.status, 404);
  // Debug logging shows every docker-machine call, with the secrets masked.
  const log = fs.readFileSync(path.join(c.d.dir, 'ClusterODM.log'), 'utf8');
  assert.match(log, /Running docker-machine create --driver digitalocean --digitalocean-access-token \*{8} /);
  assert.ok(!log.includes(DO_TOKEN) && !log.includes(S3_SECRET) && !log.includes(S3_KEY));
});
