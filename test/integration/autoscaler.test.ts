import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { BUCKET, DO_TOKEN, S3_KEY, S3_SECRET, startAsrRig, type AsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { assetSha256, startTestNode, type TestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const ASSET = 200_000;

interface Cluster {
  rig: AsrRig;
  d: Daemon;
  cli: CliClient;
  /** The static node; a long first task keeps it full. */
  node: TestNode;
}

async function cluster(t: TestContext, rig: AsrRig, extraArgs: string[] = []): Promise<Cluster> {
  const node = await startTestNode({ processingMs: 120_000, maxParallelTasks: 1 });
  t.after(() => node.close());
  const d = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile, ...extraArgs], { env: rig.env });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  return { rig, d, cli, node };
}

function form(n: number, prefix = 'IMG_'): FormData {
  const fd = new FormData();
  for (let i = 0; i < n; i++) fd.append('images', new Blob([Buffer.alloc(10_000 + i, i)]), `${prefix}${i}.JPG`);
  return fd;
}

async function newTask(d: Daemon, n: number): Promise<string> {
  const res = await fetch(`${d.url}/task/new`, { method: 'POST', body: form(n) });
  const body = (await res.json()) as { uuid?: string; error?: string };
  assert.equal(typeof body.uuid, 'string', JSON.stringify(body));
  return body.uuid ?? '';
}

async function info(d: Daemon, uuid: string): Promise<{ status?: { code: number }; error?: string; [k: string]: unknown }> {
  return (await (await fetch(`${d.url}/task/${uuid}/info`)).json()) as { status?: { code: number } };
}

/** Fills the static node: its only slot runs a long task. */
async function fillStaticNode(c: Cluster): Promise<string> {
  const uuid = await newTask(c.d, 1);
  await waitUntil(() => c.node.tasks().length === 1, { timeoutMs: 20000, message: 'first task never reached the static node' });
  return uuid;
}

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
