/**
 * Cost in sight and secrets kept: maxHourlySpend makes a create that would go over it "no capacity" (the task
 * queues), the admin web's autoscaler status shows each machine's size, region, age and price with the total, and
 * its task list shows queued positions; over a whole flow no log line and no answer a client or an admin got holds
 * a secret. Through the daemon, on the api driver with a fake DigitalOcean (prices from its /v2/sizes).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { info, newTask, type Cluster } from '../helpers/asr-cluster';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { startTestNode } from '../helpers/test-node';
import { DO_TOKEN, S3_SECRET, startAsrRig } from '../helpers/asr-rig';
import type { Daemon } from '../helpers/daemon';
import { FakeDigitalOceanApi } from '../helpers/fake-clouds/digitalocean';
import { waitUntil } from '../helpers/wait';

const PASSWORD = 'adm1n-pa55-Qx7';
const REGISTRY_PASSWORD = 'reg-pa55-w0rd-Z9';
const FAST = { asrCleanupDelayMs: 100, asrPollMs: 100, queueTickMs: 200, forwardRetryBaseMs: 100 };

async function costRig(t: TestContext, asr: Record<string, unknown>, processingMs: number): Promise<{ cloud: FakeDigitalOceanApi; c: Cluster }> {
  const cloud = await FakeDigitalOceanApi.start(DO_TOKEN);
  t.after(() => cloud.close());
  cloud.knobs.boot = true;
  cloud.knobs.bootOptions = { node: { processingMs, assetSize: 1000 } };
  const rig = await startAsrRig(t, {
    asr: {
      driver: 'api',
      apiUrl: cloud.url,
      bootTimeout: 60,
      createRetries: 1,
      dockerRegistry: { url: 'registry.example.com', username: 'odm', password: REGISTRY_PASSWORD },
      ...asr,
    },
  });
  rig.env['CLUSTERODM_TEST_TUNING'] = JSON.stringify(FAST);
  // The static node is locked: the reference for options only, so every task needs a machine.
  const node = await startTestNode({ processingMs: 120_000 });
  t.after(() => node.close());
  const d = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile, '--admin-web-port', '1', '--admin-pass', PASSWORD], { env: rig.env });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  assert.match(await cli.send(`LOGIN ${PASSWORD}`), /^OK\r\n/);
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  assert.equal(await cli.send('NODE LOCK 1'), 'OK\r\n');
  return { cloud, c: { rig, d, cli, node } };
}

/** GET on the admin web's JSON API, as the admin page does; the body is also kept for the secret check. */
async function admin(d: Daemon, pathname: string, seen: string[]): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${d.webPort}${pathname}`, {
    headers: { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}` },
  });
  const text = await res.text();
  seen.push(text);
  return JSON.parse(text) as unknown;
}

interface AsrAnswer {
  machines: Array<{ name: string; size: string | null; region: string | null; created: number; hourlyPrice: number | null; currency: string | null }>;
  hourlySpend: number;
  maxHourlySpend: number;
}

test('maxHourlySpend: a create that would go over it queues the task; the admin web shows each machine\'s cost and the queue', async (t) => {
  // s-1vcpu-1gb costs 0.00893 USD/h at the fake: one machine fits under 0.01, two do not.
  const { cloud, c } = await costRig(t, { maxHourlySpend: 0.01 }, 1500);
  const a = await newTask(c.d, 2);
  const seen: string[] = [];
  await waitUntil(async () => ((await admin(c.d, '/r/asr', seen)) as AsrAnswer).machines.length === 1, { timeoutMs: 60000, message: 'no machine on the admin page' });
  const b = await newTask(c.d, 2);
  await waitUntil(async () => (await info(c.d, b)).status?.code === 10, { timeoutMs: 20000, message: 'the second task was not queued' });
  await waitUntil(() => /would take the hourly spend over maxHourlySpend 0\.01: no capacity/.test(c.d.output()), { timeoutMs: 5000, message: 'no spend log line' });
  assert.equal(cloud.machines.size, 1, 'a machine was created over maxHourlySpend');

  const asr = (await admin(c.d, '/r/asr', seen)) as AsrAnswer;
  assert.equal(asr.maxHourlySpend, 0.01);
  assert.equal(asr.hourlySpend, 0.00893);
  const [m] = asr.machines;
  assert.ok(m);
  assert.match(m.name, /^clusterodm-2-/);
  assert.deepEqual([m.size, m.region, m.hourlyPrice, m.currency], ['s-1vcpu-1gb', 'nyc3', 0.00893, 'USD']);
  assert.ok(m.created > 0 && m.created <= Date.now());
  // The price came from the cloud's size list, read once (cached).
  assert.equal(cloud.requests.filter((r) => r.path.startsWith('/v2/sizes')).length, 1);
  const tasks = (await admin(c.d, '/r/tasks', seen)) as { tasks: Array<{ uuid: string; status: number; ahead?: number }> };
  assert.deepEqual(
    tasks.tasks.filter((x) => x.uuid === b).map((x) => [x.status, x.ahead]),
    [[10, 0]],
  );

  // The first machine goes after its task: the spend allows the next one.
  await waitUntil(async () => (await info(c.d, a)).status?.code === 40, { timeoutMs: 60000, message: 'first task never finished' });
  await waitUntil(async () => (await info(c.d, b)).status?.code === 40, { timeoutMs: 60000, message: 'queued task never finished' });
  assert.equal(cloud.machines.peak, 1);
});

test('no secret in any log line or any answer a client or an admin got, over a whole flow with a queue', async (t) => {
  const { cloud, c } = await costRig(t, { dropletsLimit: 1 }, 800);
  const seen: string[] = [];
  const client = async (pathname: string, init?: RequestInit): Promise<void> => {
    // A task whose machine is being removed may get a dropped connection (SPEC: so NodeODM clients retry): retry.
    const answers: Response[] = [];
    await waitUntil(async () => {
      const r = await fetch(`${c.d.url}${pathname}`, { redirect: 'manual', ...init }).catch(() => null);
      if (r) answers.push(r);
      return r !== null;
    }, { timeoutMs: 10000, message: `${pathname}: the connection failed every time` });
    const res = answers[0];
    if (!res) return;
    seen.push(`${res.status} ${JSON.stringify([...res.headers])} ${await res.text()}`);
  };
  const uuids = [await newTask(c.d, 2), await newTask(c.d, 1), await newTask(c.d, 3)];
  const probeAll = async (): Promise<void> => {
    for (const u of uuids) {
      await client(`/task/${u}/info?with_output=0`);
      await client(`/task/${u}/output`);
    }
    await client('/task/list');
    await client('/info');
    for (const p of ['/r/asr', '/r/tasks', '/r/node/list', '/r/info']) await admin(c.d, p, seen);
    for (const cmd of ['NODE LIST', 'TASK LIST', 'ROUTE LIST', 'ASR VIEWCMD 2', `TASK INFO ${uuids[0] ?? ''}`]) seen.push(await c.cli.send(cmd));
  };
  for (const u of uuids) {
    await probeAll();
    await waitUntil(async () => (await info(c.d, u)).status?.code === 40, { timeoutMs: 60000, message: `task ${u} never finished` });
  }
  await probeAll();
  for (const u of uuids) await client(`/task/${u}/download/all.zip`);
  await waitUntil(() => cloud.machines.size === 0, { timeoutMs: 30000, message: 'a machine was left' });
  // Each machine's node token and webhook secret, from the user data the cloud was given.
  const nodeSecrets = new Set<string>();
  for (const r of cloud.requests) {
    if (r.method !== 'POST' || r.path !== '/v2/droplets') continue;
    const userData = String((JSON.parse(r.body) as { user_data?: string }).user_data ?? '');
    for (const m of userData.matchAll(/[0-9a-f]{48}/g)) nodeSecrets.add(m[0]);
  }
  assert.equal(nodeSecrets.size, 6, 'three machines, each with a node token and a webhook secret');

  const log = fs.readFileSync(path.join(c.d.dir, 'ClusterODM.log'), 'utf8') + c.d.output();
  const secrets = [DO_TOKEN, S3_SECRET, REGISTRY_PASSWORD, PASSWORD, ...nodeSecrets];
  const everything = [log, ...seen].join('\n');
  for (const s of secrets) assert.ok(!everything.includes(s), `a secret leaked: ${s.slice(0, 4)}…`);
  // The answers were real ones (a check over empty answers would prove nothing).
  assert.match(everything, /Waiting for a processing node: 1 task ahead/);
  assert.match(everything, /clusterodm-\d-\w+/);
});
