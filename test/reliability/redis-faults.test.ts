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
  return (await answer(url, init)).json;
}

/** The JSON answer or, when there is none, what happened instead (for a failure message). */
async function answer(url: string, init: RequestInit = {}): Promise<{ json: Json | null; why: string }> {
  const started = Date.now();
  let status = 0;
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
    status = res.status;
    const text = await res.text();
    try {
      return { json: JSON.parse(text) as Json, why: text };
    } catch {
      return { json: null, why: `HTTP ${status}, not JSON after ${Date.now() - started} ms: ${text.slice(0, 300)}` };
    }
  } catch (e: unknown) {
    return { json: null, why: `${status ? `HTTP ${status}, ` : ''}${String(e)} after ${Date.now() - started} ms` };
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
  // A failed assertion below must not leave this loop running (it would hold the test file open).
  t.after(() => {
    traffic = false;
  });
  const answers = { ok: 0, bad: [] as string[] };
  const reader = (async (): Promise<void> => {
    for (let i = 0; traffic; i++) {
      const uuid = known[i % known.length] ?? '';
      const r = await tryJson(`${lb.url}/task/${uuid}/info`);
      if (r && statusCode(r) === 40) answers.ok++;
      else answers.bad.push(JSON.stringify(r));
    }
  })();
  await waitUntil(() => answers.ok > 10, { timeoutMs: 30000, message: 'no traffic' });
  await redis.kill();
  // Known routes answer from each instance's cache, through both instances.
  for (let round = 0; round < 2; round++) {
    for (const uuid of known) assert.equal(statusCode((await tryJson(`${lb.url}/task/${uuid}/info`)) ?? {}), 40);
  }
  // New tasks: a clear error at once, on every instance and every way of creating one.
  const tails = (): string => [a, b].map((d, i) => `--- instance ${'ab'[i]} log tail:\n${d.output().slice(-3000)}`).join('\n');
  for (const d of [a, b]) {
    const init = await answer(`${d.url}/task/new/init`, { method: 'POST', body: form({}) });
    assert.match(String(init.json?.['error']), /shared state \(Redis\) is unreachable/, `${init.why}\n${tails()}`);
    const single = await answer(`${d.url}/task/new`, { method: 'POST', body: form({}, images(2)) });
    assert.match(String(single.json?.['error']), /shared state \(Redis\) is unreachable/, `${single.why}\n${tails()}`);
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

test('Redis that stops answering (hung, or cut off by the network): new tasks get a clear error in seconds, known routes answer, then all works again', async (t) => {
  const redis = await startRestartableRedis(t);
  const dir = tempDir(t);
  const a = await startInstance(t, redis, path.join(dir, 'a'));
  await sharedNode(t, [a], { processingMs: 50, maxParallelTasks: 100 });
  const known = await tryJson(`${a.url}/task/new`, { method: 'POST', body: form({ name: 'known' }, images(2)) });
  const uuid = String(known?.['uuid']);
  assert.match(uuid, /^[0-9a-f-]{36}$/, JSON.stringify(known));
  await waitUntil(async () => statusCode((await tryJson(`${a.url}/task/${uuid}/info`)) ?? {}) === 40, { timeoutMs: 30000, message: 'the task did not complete' });

  redis.pause();
  t.after(() => redis.resume());
  // The connection stays open and nothing comes back: a request waits for the deadline, never for good.
  const init = await answer(`${a.url}/task/new/init`, { method: 'POST', body: form({}) });
  assert.match(String(init.json?.['error']), /shared state \(Redis\) is unreachable/, `${init.why}\n${a.output().slice(-3000)}`);
  const single = await answer(`${a.url}/task/new`, { method: 'POST', body: form({}, images(2)) });
  assert.match(String(single.json?.['error']), /shared state \(Redis\) is unreachable/, `${single.why}\n${a.output().slice(-3000)}`);
  // A task this instance knows answers from its cache all the while.
  assert.equal(statusCode((await tryJson(`${a.url}/task/${uuid}/info`)) ?? {}), 40);

  redis.resume();
  let r: Json | null = null;
  await waitUntil(async () => typeof (r = await tryJson(`${a.url}/task/new`, { method: 'POST', body: form({}, images(2)) }))?.['uuid'] === 'string', {
    timeoutMs: 30000,
    message: `no new task once Redis answers again: ${JSON.stringify(r)}`,
  });
});
