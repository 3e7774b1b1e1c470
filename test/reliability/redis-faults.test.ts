/**
 * Faults of a deployment of several instances on Redis: an instance SIGKILLed while tasks are being created through
 * a balancer, and Redis itself killed and restarted (append-only file) during traffic.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { startBalancer } from '../helpers/balancer';
import { cli, sharedNode, startInstance, startRestartableRedis } from '../helpers/instances';
import { haveRedisServer, startRedis } from '../helpers/redis';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { form, images, prng, seedFrom, statusCode, type Json } from './support';

assert.ok(haveRedisServer(), 'redis-server is not installed: run scripts/install-test-deps.sh');

/** A JSON answer, or null when the connection failed (an instance killed under the request). */
async function tryJson(url: string, init: RequestInit = {}): Promise<Json | null> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
    return (await res.json()) as Json;
  } catch {
    return null;
  }
}

const lostMessage = (uuid: string): RegExp => new RegExp(`Task ${uuid} .*upload the task again`);

/**
 * A client creating one task through the balancer, single-shot or chunked, retrying a chunk or commit that failed
 * on a dead connection (as NodeODM clients do). The uuid once it has one, whatever happens next.
 */
async function createTask(url: string, chunked: boolean, i: number): Promise<string | null> {
  if (!chunked) {
    const r = await tryJson(`${url}/task/new`, { method: 'POST', body: form({ name: `t${i}` }, images(2, `s${i}-`)) });
    return typeof r?.['uuid'] === 'string' ? r['uuid'] : null;
  }
  const init = await tryJson(`${url}/task/new/init`, { method: 'POST', body: form({ name: `t${i}` }) });
  const uuid = typeof init?.['uuid'] === 'string' ? init['uuid'] : null;
  if (!uuid) return null;
  const attempt = async (pathname: string, body: () => FormData): Promise<boolean> => {
    for (let k = 0; k < 10; k++) {
      const r = await tryJson(`${url}${pathname}`, { method: 'POST', body: body() });
      if (r && (r['success'] === true || r['uuid'] === uuid)) return true;
      if (r && typeof r['error'] === 'string' && lostMessage(uuid).test(r['error'])) return false;
    }
    return false;
  };
  for (let c = 0; c < 2; c++) {
    if (!(await attempt(`/task/new/upload/${uuid}`, () => form({}, images(2, `c${i}-${c}-`))))) return uuid;
  }
  await attempt(`/task/new/commit/${uuid}`, () => new FormData());
  return uuid;
}

test('SIGKILL of one of two instances during 100 task creations: every task with a uuid is on its node or FAILED clearly', async (t) => {
  const random = prng(seedFrom('REDIS_FAULT_SEED', 'sigkill'));
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const a = await startInstance(t, redis, path.join(dir, 'a'));
  const b = await startInstance(t, redis, path.join(dir, 'b'));
  const node = await sharedNode(t, [a, b], { processingMs: 50, maxParallelTasks: 100 });
  const lb = await startBalancer(t, [a.proxyPort, b.proxyPort]);
  const [survivor, victim] = random() < 0.5 ? [a, b] : [b, a];
  const killAfter = 10 + Math.floor(random() * 60);
  let started = 0;
  const uuids: string[] = [];
  const worker = async (): Promise<void> => {
    while (started < 100) {
      const i = started++;
      if (i === killAfter) {
        void victim.stop('SIGKILL').then(() => lb.setBackends([survivor.proxyPort]));
      }
      const uuid = await createTask(lb.url, random() < 0.5, i);
      if (uuid) uuids.push(uuid);
    }
  };
  await Promise.all(Array.from({ length: 6 }, worker));
  await victim.stop('SIGKILL');
  t.diagnostic(`killed instance ${victim === a ? 'a' : 'b'} at task ${killAfter}; ${uuids.length} tasks got a uuid`);
  assert.ok(uuids.length >= 50, `only ${uuids.length} of 100 tasks got a uuid`);

  let failed = 0;
  for (const uuid of uuids) {
    let last: Json | null = null;
    await waitUntil(
      async () => {
        last = await tryJson(`${survivor.url}/task/${uuid}/info`);
        const code = last ? statusCode(last) : undefined;
        return code === 40 || code === 30;
      },
      { timeoutMs: 30000, message: `task ${uuid} is neither done on its node nor FAILED: ${JSON.stringify(last)}` },
    );
    const info = last as unknown as Json;
    if (statusCode(info) === 30) {
      failed++;
      // A clear reason: the lost upload's message, or the node's or forward's own.
      const reason = (info['status'] as { errorMessage?: string }).errorMessage ?? '';
      const output = (await tryJson(`${survivor.url}/task/${uuid}/output`))?.['list'];
      assert.ok(reason.length > 0 || (Array.isArray(output) && output.length > 0), `task ${uuid} FAILED without a reason`);
    } else {
      assert.ok(node.tasks().some((x) => x.uuid === uuid), `task ${uuid} completed but is not on the node`);
    }
  }
  t.diagnostic(`${uuids.length - failed} on the node, ${failed} FAILED`);
});

test('Redis killed and restarted during traffic: known routes answer, new tasks get a clear error, nothing acknowledged is lost', async (t) => {
  const redis = await startRestartableRedis(t);
  const dir = tempDir(t);
  const a = await startInstance(t, redis, path.join(dir, 'a'));
  const b = await startInstance(t, redis, path.join(dir, 'b'));
  await sharedNode(t, [a, b], { processingMs: 50, maxParallelTasks: 100 });
  const lb = await startBalancer(t, [a.proxyPort, b.proxyPort]);
  const known: string[] = [];
  for (let i = 0; i < 6; i++) {
    const r = await tryJson(`${lb.url}/task/new`, { method: 'POST', body: form({ name: `k${i}` }, images(2)) });
    assert.equal(typeof r?.['uuid'], 'string', JSON.stringify(r));
    known.push(String(r?.['uuid']));
  }
  for (const uuid of known) {
    await waitUntil(async () => statusCode((await tryJson(`${lb.url}/task/${uuid}/info`)) ?? {}) === 40, { timeoutMs: 20000, message: 'a task did not complete' });
  }
  assert.equal(await cli(t, a, 'NODE ADD 127.0.0.1 4999'), 'OK\r\n');

  // Traffic all along: info of the known tasks through the balancer, every answer counted.
  let traffic = true;
  const answers = { ok: 0, bad: [] as string[] };
  const reader = (async (): Promise<void> => {
    for (let i = 0; traffic; i++) {
      const uuid = known[i % known.length] ?? '';
      const r = await tryJson(`${lb.url}/task/${uuid}/info`);
      if (r && statusCode(r) === 40) answers.ok++;
      else answers.bad.push(JSON.stringify(r));
    }
  })();
  await waitUntil(() => answers.ok > 10, { message: 'no traffic' });
  await redis.kill();
  // Known routes answer from each instance's cache, through both instances.
  for (let round = 0; round < 2; round++) {
    for (const uuid of known) assert.equal(statusCode((await tryJson(`${lb.url}/task/${uuid}/info`)) ?? {}), 40);
  }
  // New tasks: a clear error at once, on every instance and every way of creating one.
  for (const d of [a, b]) {
    const init = await tryJson(`${d.url}/task/new/init`, { method: 'POST', body: form({}) });
    assert.match(String(init?.['error']), /shared state \(Redis\) is unreachable/, JSON.stringify(init));
    const single = await tryJson(`${d.url}/task/new`, { method: 'POST', body: form({}, images(2)) });
    assert.match(String(single?.['error']), /shared state \(Redis\) is unreachable/, JSON.stringify(single));
  }

  await redis.start();
  // Reconnected with backoff: new tasks work again through both instances.
  for (const d of [a, b]) {
    await waitUntil(() => /Redis .* is back/.test(d.output()), { timeoutMs: 20000, message: 'an instance did not reconnect' });
    let r: Json | null = null;
    await waitUntil(async () => typeof (r = await tryJson(`${d.url}/task/new`, { method: 'POST', body: form({}, images(2)) }))?.['uuid'] === 'string', {
      timeoutMs: 20000,
      message: `no new task after the restart: ${JSON.stringify(r)}`,
    });
  }
  traffic = false;
  await reader;
  assert.deepEqual(answers.bad, [], 'a known task did not answer during the outage');
  t.diagnostic(`${answers.ok} info answers during the outage and the restart`);
  // Nothing acknowledged was lost: the routes and the node added before the crash.
  for (const uuid of known) {
    assert.match(await redis.command(`HEXISTS clusterodm:routes ${uuid}`), /^:1/);
    for (const d of [a, b]) assert.equal(statusCode((await tryJson(`${d.url}/task/${uuid}/info`)) ?? {}), 40);
  }
  assert.match(await redis.command('GET clusterodm:nodes'), /"port":"?4999"?/);
  assert.match(await cli(t, b, 'NODE LIST'), /127\.0\.0\.1:4999/);
});
