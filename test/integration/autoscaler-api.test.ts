/**
 * The autoscaler's `api` driver through the daemon, on a fake DigitalOcean API whose machines boot their cloud-init
 * user data (a test NodeODM with the token and webhook found there): a task's own machine from creation to results
 * in S3, the boot deadline, and two installs on one account.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { cluster, fillStaticNode, info, newTask } from '../helpers/asr-cluster';
import { BUCKET, DO_TOKEN, S3_SECRET, startAsrRig, type AsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { FakeDigitalOceanApi } from '../helpers/fake-clouds/digitalocean';
import { assetSha256 } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const ASSET = 150_000;

async function apiRig(t: TestContext, asr: Record<string, unknown> = {}): Promise<{ rig: AsrRig; cloud: FakeDigitalOceanApi }> {
  const cloud = await FakeDigitalOceanApi.start(DO_TOKEN);
  t.after(() => cloud.close());
  cloud.knobs.boot = true;
  cloud.knobs.bootOptions = { node: { processingMs: 300, assetSize: ASSET } };
  const rig = await startAsrRig(t, { asr: { driver: 'api', apiUrl: cloud.url, bootTimeout: 60, ...asr } });
  return { rig, cloud };
}

function creates(cloud: FakeDigitalOceanApi): Array<Record<string, unknown>> {
  return cloud.requests.filter((r) => r.method === 'POST' && r.path === '/v2/droplets').map((r) => JSON.parse(r.body) as Record<string, unknown>);
}

function installIdOf(dir: string): string {
  return fs.readFileSync(path.join(dir, 'data', 'install-id'), 'utf8').trim();
}

test('autoscaler api driver: a task that finds the static node full gets its own droplet through the API, finishes, results come from S3, the droplet goes', async (t) => {
  const registryPass = 'reg-pa55 w0rd$(id)';
  const { rig, cloud } = await apiRig(t, {
    imageSizeMapping: [{ maxImages: 50, slug: 's-4vcpu-8gb' }],
    dockerRegistry: { url: 'registry.example.com', username: 'odm', password: registryPass },
  });
  cloud.knobs.failCreates = 2;
  cloud.knobs.ipAfterPolls = 1;
  const c = await cluster(t, rig);
  assert.match(c.d.output(), /ASR driver: api \(digitalocean\)/);
  assert.match(c.d.output(), /Can write to S3/);
  assert.doesNotMatch(c.d.output(), /docker-machine/);
  const install = installIdOf(c.d.dir);

  await fillStaticNode(c);
  const uuid = await newTask(c.d, 3);
  assert.equal((await info(c.d, uuid)).status?.code, 20);

  // Two refused creations (HTTP 500), regions rotating; the third works. No docker-machine anywhere.
  await waitUntil(() => cloud.machines.size === 1, { timeoutMs: 30000, message: 'no droplet was created' });
  await waitUntil(async () => (await c.cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 60000, message: 'no [A] node' });
  const bodies = creates(cloud);
  assert.equal(bodies.length, 3);
  assert.deepEqual(bodies.map((b) => b['region']), ['nyc3', 'sfo2', 'nyc3']);
  const body = bodies[2] ?? {};
  assert.match(String(body['name']), /^clusterodm-3-[A-Za-z0-9]+$/);
  assert.equal(body['size'], 's-4vcpu-8gb');
  assert.equal(body['image'], 'ubuntu-24-04-x64');
  assert.deepEqual(body['tags'], ['clusterodm', `clusterodm-install:${install}`]);
  assert.equal(rig.dm.calls().length, 0, 'docker-machine was called');

  // The machine ran its user data: NodeODM with the S3 flags, a webhook with a secret, and its token.
  const [droplet] = [...cloud.machines.values()];
  assert.ok(droplet);
  const boot = await cloud.booted(droplet.id);
  const flag = (f: string): string => boot.nodeFlags[boot.nodeFlags.indexOf(f) + 1] ?? '';
  assert.equal(flag('--s3_secret_key'), S3_SECRET);
  assert.equal(flag('--s3_bucket'), BUCKET);
  const webhook = new URL(flag('--webhook'));
  assert.equal(webhook.pathname, '/commit');
  assert.match(webhook.searchParams.get('secret') ?? '', /^[0-9a-f]{48}$/);
  assert.match(flag('--token'), /^[0-9a-f]{48}$/);
  const login = boot.calls.find((x) => x.tool === 'docker' && x.args[0] === 'login');
  assert.deepEqual(login?.args, ['login', '-u', 'odm', '--password-stdin', 'registry.example.com']);
  // nodes.json keeps the droplet's id beside the machine name, so it can be destroyed after a restart.
  type Saved = { dockerMachine?: { name: string; machineId?: string } };
  const savedSpawned = (): Saved | undefined => {
    try {
      return (JSON.parse(fs.readFileSync(path.join(c.d.dir, 'data', 'nodes.json'), 'utf8')) as Saved[]).find((n) => n.dockerMachine);
    } catch {
      return undefined; // not written yet
    }
  };
  await waitUntil(() => savedSpawned() !== undefined, { timeoutMs: 10000, message: 'nodes.json never listed the machine' });
  const spawned = savedSpawned();
  assert.equal(spawned?.dockerMachine?.machineId, droplet.id);
  assert.equal(spawned?.dockerMachine?.name, body['name']);

  // The webhook: the task is saved, the droplet destroyed through the API.
  await waitUntil(async () => (await info(c.d, uuid)).status?.code === 40, { timeoutMs: 60000, message: 'task never completed' });
  await waitUntil(() => cloud.machines.size === 0, { timeoutMs: 30000, message: 'droplet was not destroyed' });
  await waitUntil(async () => !(await c.cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 5000, message: 'node still listed' });
  assert.ok(cloud.requests.some((r) => r.method === 'DELETE' && r.path === `/v2/droplets/${droplet.id}`));
  const dl = await fetch(`${c.d.url}/task/${uuid}/download/all.zip`, { redirect: 'manual' });
  assert.equal(dl.status, 301);
  const location = dl.headers.get('location') ?? '';
  assert.equal(location, `${rig.s3Url}/${BUCKET}/${uuid}/all.zip`);
  const zip = Buffer.from(await (await fetch(location)).arrayBuffer());
  assert.equal(createHash('sha256').update(zip).digest('hex'), assetSha256(ASSET));

  // No secret in the log.
  const log = fs.readFileSync(path.join(c.d.dir, 'ClusterODM.log'), 'utf8') + c.d.output();
  for (const secret of [DO_TOKEN, S3_SECRET, registryPass, webhook.searchParams.get('secret') ?? 'x', flag('--token')]) {
    assert.ok(!log.includes(secret), `a secret leaked into the log: ${secret.slice(0, 4)}…`);
  }
});

test('autoscaler api driver: a machine whose NodeODM misses bootTimeout is destroyed and the attempt counts as failed', async (t) => {
  const { rig, cloud } = await apiRig(t, { bootTimeout: 3, createRetries: 2 });
  // The machine boots, but its user data fails before NodeODM starts.
  cloud.knobs.bootOptions = { failTools: ['docker'] };
  const c = await cluster(t, rig);
  await fillStaticNode(c);
  const uuid = await newTask(c.d, 2);
  await waitUntil(async () => (await info(c.d, uuid)).status?.code === 30, { timeoutMs: 60000, message: 'task did not fail' });
  const out = (await (await fetch(`${c.d.url}/task/${uuid}/output`)).json()) as string[];
  assert.deepEqual(out, ['No nodes available (attempted to autoscale but failed). Try again later.']);
  assert.deepEqual(creates(cloud).map((b) => b['region']), ['nyc3', 'sfo2']);
  assert.equal(cloud.machines.size, 0, 'a machine that missed the deadline was left');
  assert.match(c.d.output(), /did not answer within the boot deadline \(bootTimeout 3 s\)/);
  assert.match(c.d.output(), /Cannot create node via autoscaling: Cannot create machine \(attempted 2 times\)/);
});

test('autoscaler api driver: with --queue-max 0, a task the account has no droplet for fails with a "no capacity" log line', async (t) => {
  const { rig, cloud } = await apiRig(t, { createRetries: 1 });
  cloud.knobs.machineLimit = 0;
  // Without the queue (the original's behaviour); with it, the task waits (asr-queue.test.ts).
  const c = await cluster(t, rig, ['--queue-max', '0']);
  await fillStaticNode(c);
  const uuid = await newTask(c.d, 2);
  await waitUntil(async () => (await info(c.d, uuid)).status?.code === 30, { timeoutMs: 60000, message: 'task did not fail' });
  assert.match(c.d.output(), /Cannot create machine clusterodm-2-\w+: no capacity at digitalocean for s-1vcpu-1gb in nyc3: .*droplet limit/);
  assert.match(c.d.output(), /Cannot create node via autoscaling: Cannot create machine \(attempted 1 times\): no capacity/);
  assert.equal(cloud.machines.size, 0);
});

test('autoscaler api driver: two installs on one DigitalOcean account never destroy each other\'s machines', async (t) => {
  const { rig, cloud } = await apiRig(t);
  cloud.knobs.bootOptions = { node: { processingMs: 600_000 } };
  const idA = 'aaaaaaaaaaaaaaa1';
  const idB = 'bbbbbbbbbbbbbbb2';
  for (const [dir, id] of [['daemon', idA], ['daemonB', idB]] as const) {
    fs.mkdirSync(path.join(rig.dir, dir, 'data'), { recursive: true });
    fs.writeFileSync(path.join(rig.dir, dir, 'data', 'install-id'), `${id}\n`);
  }
  const tags = (id: string): string[] => ['clusterodm', `clusterodm-install:${id}`];
  const orphanA = cloud.addDroplet({ name: 'clusterodm-2-OrphanA', tags: tags(idA) });
  const orphanB = cloud.addDroplet({ name: 'clusterodm-2-OrphanB', tags: tags(idB) });
  // A droplet of the docker-machine path, of the original, or made by hand: no install tag.
  const foreign = cloud.addDroplet({ name: 'clusterodm-4-Foreign', tags: ['clusterodm'] });

  // Install A: its start reconciliation removes its own orphan only; then a task gets a machine of A.
  const c = await cluster(t, rig);
  await waitUntil(() => !cloud.machines.has(orphanA.id), { timeoutMs: 30000, message: "A's orphan survived" });
  await fillStaticNode(c);
  await newTask(c.d, 2);
  await waitUntil(async () => (await c.cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 60000, message: 'no [A] node' });
  const mine = [...cloud.machines.values()].find((m) => m.tags.includes(`clusterodm-install:${idA}`));
  assert.ok(mine, "A's machine");
  assert.ok(cloud.machines.has(orphanB.id) && cloud.machines.has(foreign.id), 'A destroyed a machine that is not its own');

  // Install B on the same account: it removes its own orphan, and leaves A's running machine and the foreign one.
  const dB = await startDaemon(t, path.join(rig.dir, 'daemonB'), ['--asr', rig.asrFile], { env: rig.env });
  await waitUntil(() => !cloud.machines.has(orphanB.id), { timeoutMs: 30000, message: "B's orphan survived" });
  await waitUntil(() => /ASR driver: api/.test(dB.output()), { timeoutMs: 5000, message: 'B has not started its autoscaler' });
  assert.ok(cloud.machines.has(mine.id), "B destroyed A's machine");
  assert.ok(cloud.machines.has(foreign.id), 'B destroyed a droplet without its install tag');
  assert.ok((await c.cli.send('NODE LIST')).includes('[A]'));
});

test('autoscaler api driver: a SIGKILL while a machine is being created leaves no machine of ours after the next start, and touches no other', async (t) => {
  const { rig, cloud } = await apiRig(t);
  // The machine gets no address while the daemon lives: the creation is stuck between the API call and registration.
  cloud.knobs.ipAfterPolls = 1_000_000;
  const c = await cluster(t, rig);
  const install = installIdOf(c.d.dir);
  await fillStaticNode(c);
  const uuid = await newTask(c.d, 2);
  await waitUntil(() => cloud.machines.size === 1, { timeoutMs: 30000, message: 'no create' });
  const [stuck] = [...cloud.machines.values()];
  assert.ok(stuck && stuck.tags.includes(`clusterodm-install:${install}`));
  await c.d.stop('SIGKILL');
  cloud.knobs.ipAfterPolls = 0;
  const other = cloud.addDroplet({ name: 'clusterodm-2-OtherInstall', tags: ['clusterodm', 'clusterodm-install:zzzzzzzzzzzzzzz9'] });
  const untagged = cloud.addDroplet({ name: 'clusterodm-2-NoInstallTag', tags: ['clusterodm'] });

  const d2 = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile], { env: rig.env });
  await waitUntil(() => !cloud.machines.has(stuck.id), { timeoutMs: 30000, message: 'the orphaned machine survived' });
  assert.ok(cloud.machines.has(other.id), "another install's machine was destroyed");
  assert.ok(cloud.machines.has(untagged.id), 'a machine without our install id was destroyed');
  assert.match(d2.output(), new RegExp(`digitalocean machine ${stuck.name} \\(${stuck.id}\\) is not in nodes.json, destroying it`));
  const i = await info(d2, uuid);
  assert.ok(i.status && [10, 20, 30, 40].includes(i.status.code), JSON.stringify(i));
});

test('autoscaler api driver: starts without docker-machine, stops on a bad driver or a missing key, and ASR VIEWCMD shows the spec without secrets', async (t) => {
  const { rig, cloud } = await apiRig(t);
  const noDockerMachine = { ...process.env, PATH: '/nonexistent' };
  const tryStart = async (name: string): Promise<string> => {
    try {
      const d = await startDaemon(t, path.join(rig.dir, name), ['--asr', rig.asrFile], { env: noDockerMachine });
      await d.stop();
      return 'started';
    } catch (e: unknown) {
      return e instanceof Error ? e.message : String(e);
    }
  };
  rig.writeAsr({ driver: 'ssh' });
  assert.match(await tryStart('a'), /Cannot initialize ASR: Invalid config key driver: must be "docker-machine" or "api"/);
  rig.writeAsr({ driver: 'api', accessToken: 'CHANGEME!' });
  assert.match(await tryStart('b'), /Cannot initialize ASR: You need to create a configuration file and set accessToken\./);
  rig.writeAsr({ accessToken: DO_TOKEN, bootTimeout: 0 });
  assert.match(await tryStart('c'), /Invalid config key bootTimeout/);
  rig.writeAsr({ bootTimeout: 60 });

  const d = await startDaemon(t, path.join(rig.dir, 'ok'), ['--asr', rig.asrFile], { env: noDockerMachine });
  assert.match(d.output(), /ASR driver: api \(digitalocean\)/);
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  const view = await cli.send('ASR VIEWCMD 5');
  const install = installIdOf(d.dir);
  assert.match(view, /^digitalocean create \{"region":"nyc3","size":"s-1vcpu-1gb","image":"ubuntu-24-04-x64","name":"debug-machine",.*\(user data: cloud-init, not shown\)\r\n$/);
  assert.ok(view.includes(`"installId":"${install}"`), view);
  assert.ok(!view.includes(DO_TOKEN) && !view.includes(S3_SECRET), 'a secret in ASR VIEWCMD');
  assert.equal(cloud.machines.size, 0);
});

test('autoscaler api driver: after a restart, a running machine is kept (nodes.json knows its id) and NODE DEL destroys it through the API', async (t) => {
  const { rig, cloud } = await apiRig(t);
  cloud.knobs.bootOptions = { node: { processingMs: 600_000 } };
  const c = await cluster(t, rig);
  const install = installIdOf(c.d.dir);
  await fillStaticNode(c);
  await newTask(c.d, 2);
  await waitUntil(async () => (await c.cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 60000, message: 'no [A] node' });
  const [machine] = [...cloud.machines.values()];
  assert.ok(machine);
  await waitUntil(() => fs.readFileSync(path.join(c.d.dir, 'data', 'nodes.json'), 'utf8').includes(`"machineId":"${machine.id}"`), {
    timeoutMs: 10000,
    message: 'nodes.json never got the machine id',
  });
  await c.d.stop();
  // Listed after it: once this orphan is gone, the reconciliation has judged the running machine.
  const orphan = cloud.addDroplet({ name: 'clusterodm-2-Orphan', tags: ['clusterodm', `clusterodm-install:${install}`] });

  const d2 = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile], { env: rig.env });
  await waitUntil(() => !cloud.machines.has(orphan.id), { timeoutMs: 30000, message: 'the orphan survived' });
  assert.ok(cloud.machines.has(machine.id), 'the running machine was reconciled away');
  const cli = await CliClient.connect(t, d2.cliPort);
  await cli.untilPrompt();
  const n = /^(\d+)\) .*\[A\]/m.exec(await cli.send('NODE LIST'))?.[1] ?? '';
  assert.notEqual(n, '');
  assert.equal(await cli.send(`NODE DEL ${n}`), 'OK\r\n');
  assert.ok(!cloud.machines.has(machine.id), 'NODE DEL did not destroy the machine');
  assert.ok(cloud.requests.some((r) => r.method === 'DELETE' && r.path === `/v2/droplets/${machine.id}`));
});
