/**
 * The autoscaler with several instances on one Redis: one machine limit for the whole cluster (20 concurrent
 * tasks over 3 instances, limit 3: exactly 3 machines), and one leader (vacuum, reconciliation) that a surviving
 * instance replaces within the lease time when it dies.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { form } from '../helpers/asr-cluster';
import { startAsrRig, type AsrRig } from '../helpers/asr-rig';
import { startBalancer } from '../helpers/balancer';
import { CliClient } from '../helpers/cli-client';
import type { Daemon } from '../helpers/daemon';
import { CLUSTER_TUNING, startInstance } from '../helpers/instances';
import { haveRedisServer, startRedis, type RedisServer } from '../helpers/redis';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

assert.ok(haveRedisServer(), 'redis-server is not installed: run scripts/install-test-deps.sh');

function asrInstance(t: TestContext, rig: AsrRig, redis: RedisServer, name: string, tuning: Record<string, number> = {}): Promise<Daemon> {
  return startInstance(t, redis, path.join(rig.dir, name), ['--asr', rig.asrFile], rig.env, tuning);
}

async function cliOf(t: TestContext, d: Daemon): Promise<CliClient> {
  const c = await CliClient.connect(t, d.cliPort);
  await c.untilPrompt();
  return c;
}

const leads = (d: Daemon): boolean => /now leads the autoscaler/.test(d.output());

test('3 instances, 20 concurrent tasks, dropletsLimit 3: exactly 3 machines in the whole cluster, one per task', async (t) => {
  const redis = await startRedis(t);
  const rig = await startAsrRig(t, { asr: { dropletsLimit: 3 }, dm: { createDelayMs: 1500, nodeArgs: ['--processing-ms', '600000'] } });
  const node = await startTestNode({ processingMs: 120_000, maxParallelTasks: 1 });
  t.after(() => node.close());
  // A lease that a loaded machine's pauses never let lapse: leadership stays put here (failover: the next test).
  const all = await Promise.all(['a', 'b', 'c'].map((n) => asrInstance(t, rig, redis, n, { leaseMs: 10_000 })));
  const clis = await Promise.all(all.map((d) => cliOf(t, d)));
  assert.equal(await clis[0]?.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  for (const c of clis) {
    await waitUntil(async () => (await c.send('NODE LIST')).includes(`127.0.0.1:${node.port}`), { message: 'an instance does not list the node' });
    assert.equal(await c.send('NODE UPDATE'), 'OK\r\n');
  }
  const lb = await startBalancer(t, all.map((d) => d.proxyPort));
  const create = async (n: number): Promise<string> => {
    const body = (await (await fetch(`${lb.url}/task/new`, { method: 'POST', body: form(n) })).json()) as { uuid?: string };
    assert.equal(typeof body.uuid, 'string', JSON.stringify(body));
    return body.uuid ?? '';
  };
  // The static node's only slot is taken: every further task needs a machine of its own.
  await create(1);
  await waitUntil(() => node.tasks().length === 1, { timeoutMs: 20000, message: 'the first task never reached the static node' });
  const uuids = await Promise.all(Array.from({ length: 20 }, () => create(2)));
  assert.equal(new Set(uuids).size, 20);
  // Three get a machine each, whichever instance took them; the other 17 queue on the static node.
  await waitUntil(() => node.tasks().length === 18, { timeoutMs: 60000, message: 'the other tasks did not queue on the static node' });
  for (const c of clis) {
    await waitUntil(async () => ((await c.send('NODE LIST')).match(/\[A\]/g) ?? []).length === 3, {
      timeoutMs: 60000,
      message: 'three autospawned nodes expected on every instance',
    });
  }
  assert.equal(rig.dm.calls('docker-machine').filter((x) => x.args[0] === 'create').length, 3);
  assert.ok(rig.fakeDo.peak() <= 3, `peak droplets ${rig.fakeDo.peak()}`);
  assert.equal(rig.dm.machines().length, 3);
  // No task got two machines: 3 machines, 3 tasks beside the static node's 18, and each of the 21 answers.
  for (const uuid of uuids) {
    const i = (await (await fetch(`${lb.url}/task/${uuid}/info`)).json()) as { uuid?: string };
    assert.equal(i.uuid, uuid, JSON.stringify(i));
  }
  // Exactly one leader ran the reconciliation; the machines others were making were spared.
  assert.equal(all.filter(leads).length, 1);
  assert.ok(all.every((d) => !/is not in nodes\.json, destroying it/.test(d.output())), 'a machine in the making was reconciled away');
});

test('leader failover: the survivor takes the lease within the lease time and reconciles; the follower never did', async (t) => {
  const redis = await startRedis(t);
  const rig = await startAsrRig(t);
  const a = await asrInstance(t, rig, redis, 'a');
  const b = await asrInstance(t, rig, redis, 'b');
  await waitUntil(() => leads(a) !== leads(b), { message: 'not exactly one leader' });
  const [leader, follower] = leads(a) ? [a, b] : [b, a];
  // A droplet of ours that nodes.json does not know: the leader destroys it, once.
  rig.fakeDo.addDroplet({ name: 'clusterodm-2-Lost1', region: 'nyc3', size: 's', image: 'i', tags: ['clusterodm'] });
  assert.equal(await leader.stop('SIGKILL'), null);
  const killedAt = Date.now();
  await waitUntil(() => leads(follower), { timeoutMs: CLUSTER_TUNING.leaseMs * 10, message: 'the survivor did not take over' });
  const handover = Date.now() - killedAt;
  // The new leader vacuums and reconciles at once.
  await waitUntil(() => ![...rig.fakeDo.droplets.values()].some((d) => d.name === 'clusterodm-2-Lost1'), {
    timeoutMs: 20000,
    message: 'the new leader did not reconcile',
  });
  assert.match(follower.output(), /fencing token 2\b/);
  t.diagnostic(`handover took ${handover} ms with a ${CLUSTER_TUNING.leaseMs} ms lease`);
  // A third instance joining now follows.
  const c = await asrInstance(t, rig, redis, 'c');
  await waitUntil(() => c.output().includes('Registered as instance'), { message: 'c did not register' });
  assert.equal(leads(c), false);
});
