/** A daemon on the api driver with a fake DigitalOcean, for the task queue's tests (asr-queue*.test.ts). */
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { cluster, info, type Cluster } from './asr-cluster';
import { DO_TOKEN, startAsrRig, type AsrRig } from './asr-rig';
import type { Daemon } from './daemon';
import { FakeDigitalOceanApi } from './fake-clouds/digitalocean';
import { waitUntil } from './wait';

export const FAST = { asrCleanupDelayMs: 100, asrPollMs: 100, queueTickMs: 200, forwardRetryBaseMs: 100 };

export interface QueueRig {
  rig: AsrRig;
  cloud: FakeDigitalOceanApi;
  c: Cluster;
}

/** A daemon on the api driver with its static node locked (reference only): every task needs a machine. */
export async function queueRig(t: TestContext, asr: Record<string, unknown>, opts: { tuning?: Record<string, number>; args?: string[]; processingMs?: number } = {}): Promise<QueueRig> {
  const cloud = await FakeDigitalOceanApi.start(DO_TOKEN);
  t.after(() => cloud.close());
  cloud.knobs.boot = true;
  cloud.knobs.bootOptions = { node: { processingMs: opts.processingMs ?? 300, assetSize: 1000 } };
  const rig = await startAsrRig(t, { asr: { driver: 'api', apiUrl: cloud.url, bootTimeout: 60, createRetries: 1, ...asr } });
  rig.env['CLUSTERODM_TEST_TUNING'] = JSON.stringify({ ...FAST, ...opts.tuning });
  const c = await cluster(t, rig, opts.args ?? []);
  assert.equal(await c.cli.send('NODE LOCK 1'), 'OK\r\n');
  return { rig, cloud, c };
}

export async function outputOf(d: Daemon, uuid: string): Promise<string[]> {
  return (await (await fetch(`${d.url}/task/${uuid}/output`)).json()) as string[];
}

export async function untilOutput(d: Daemon, uuid: string, line: string): Promise<void> {
  await waitUntil(async () => JSON.stringify(await outputOf(d, uuid)) === JSON.stringify([line]), {
    timeoutMs: 20000,
    message: `output of ${uuid} never became "${line}"`,
  });
}

/** Waits for a task's status; one that ends otherwise (FAILED, CANCELED) fails at once, with its info and the log. */
export async function untilStatus(d: Daemon, uuid: string, code: number, timeoutMs = 60000): Promise<void> {
  let last: unknown = null;
  let ended = false;
  try {
    await waitUntil(
      async () => {
        const i = await info(d, uuid);
        last = i;
        const now = i.status?.code;
        ended = now !== code && (now === 30 || now === 50);
        return now === code || ended;
      },
      { timeoutMs, message: `task ${uuid} never reached status ${code}` },
    );
  } catch (e: unknown) {
    throw new Error(`${e instanceof Error ? e.message : String(e)}; last info ${JSON.stringify(last)}; ${logOf(d, uuid)}`);
  }
  if (ended) throw new Error(`task ${uuid} ended with ${JSON.stringify(last)} instead of status ${code}; ${logOf(d, uuid)}`);
}

/** For a failure message: the log lines naming the task, and the log's tail. */
function logOf(d: Daemon, uuid: string): string {
  const lines = d.output().split('\n');
  const named = lines.filter((l) => l.includes(uuid));
  return `log lines naming the task:\n${named.join('\n')}\nlog tail:\n${lines.slice(-60).join('\n')}`;
}

/** The autospawned node's number in NODE LIST. */
export async function spawnedNodeNumber(c: Cluster): Promise<string> {
  let n = '';
  await waitUntil(
    async () => {
      n = /^(\d+)\) .*\[A\]/m.exec(await c.cli.send('NODE LIST'))?.[1] ?? '';
      return n !== '';
    },
    { timeoutMs: 60000, message: 'no [A] node' },
  );
  return n;
}

/** uuids in the order of the daemon's "leaves the queue" log lines. */
export function leftQueue(d: Daemon): string[] {
  return [...d.output().matchAll(/Task ([0-9a-f-]{36}) leaves the queue/g)].map((m) => m[1] ?? '');
}

