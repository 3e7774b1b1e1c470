import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ClusterOdm } from '../../src/app';
import type { CloudProvider } from '../../src/cloud';
import { parseConfig } from '../../src/config';
import { MemoryLogger, systemClock } from '../../src/core';
import { COMMIT_WINDOW_MESSAGE } from '../../src/proxy';
import { multiUser } from '../helpers/app';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const APP_ROOT = path.resolve(__dirname, '..', '..', '..');
const TOKEN = 'user';

/** The daemon in-process on `dir` (so a second one can start on the same state). */
async function appOn(t: TestContext, dir: string, cloud: CloudProvider): Promise<{ url: string; app: ClusterOdm }> {
  const parsed = parseConfig({
    argv: ['--data-dir', path.join(dir, 'data'), '--tmp-dir', path.join(dir, 'tmp'), '--admin-cli-port', '0'],
    cwd: dir,
    appRoot: APP_ROOT,
  });
  if (parsed.kind !== 'config') throw new Error('unexpected --help');
  const app = new ClusterOdm({ config: parsed.config, version: 'test', clock: systemClock, logger: new MemoryLogger(), host: '127.0.0.1', ephemeralPorts: true, cloud });
  await app.start();
  t.after(() => app.stop());
  return { url: `http://127.0.0.1:${app.proxy.ports.http ?? 0}`, app };
}

async function call(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  return (await (await fetch(url, init)).json()) as Record<string, unknown>;
}

test('commit webhook replayed for a static-node task: taskFinished is called and the commit window lowered only once', { timeout: 60_000 }, async (t) => {
  const finished: string[] = [];
  const cloud: CloudProvider = {
    ...multiUser([TOKEN], () => ({ maxConcurrentTasks: 2 })),
    taskFinished: async (_token, info) => {
      finished.push(String((info as { uuid?: unknown } | null)?.uuid));
    },
  };
  const node = await startTestNode({ processingMs: 20, maxParallelTasks: 4 });
  t.after(() => node.close());
  const dir = tempDir(t);
  const { url, app } = await appOn(t, dir, cloud);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();

  const newTask = async (): Promise<Record<string, unknown>> => {
    const fd = new FormData();
    fd.append('images', new Blob([Buffer.alloc(100)]), 'a.jpg');
    return call(`${url}/task/new?token=${TOKEN}`, { method: 'POST', body: fd });
  };
  const completed = async (uuid: string): Promise<void> =>
    waitUntil(async () => ((await call(`${url}/task/${uuid}/info?token=${TOKEN}`))['status'] as { code?: number } | undefined)?.code === 40, {
      timeoutMs: 20_000,
      message: `task ${uuid} did not complete`,
    });
  const webhook = (uuid: string): Promise<Record<string, unknown>> =>
    call(`${url}/commit?token=${TOKEN}`, { method: 'POST', body: JSON.stringify({ uuid, status: { code: 40 } }) });

  // Two commits fill the window (2 per minute for this user).
  const first = (await newTask())['uuid'] as string;
  await completed(first);
  const second = (await newTask())['uuid'] as string;
  assert.equal(typeof second, 'string');
  await completed(second);

  // The node reports the first task done: one place in the window is given back, the task is billed once...
  assert.deepEqual(await webhook(first), { ok: true });
  // ... however often the webhook is replayed, one at a time or at once.
  assert.deepEqual(await webhook(first), { ok: true });
  assert.deepEqual(await Promise.all([webhook(first), webhook(first), webhook(first)]), [{ ok: true }, { ok: true }, { ok: true }]);
  await waitUntil(() => finished.length >= 1, { message: 'taskFinished never called' });
  assert.deepEqual(finished, [first]);

  // The window holds the second commit: one more fits, the next is refused (the replays did not free it).
  const third = await newTask();
  assert.equal(typeof third['uuid'], 'string', JSON.stringify(third));
  await completed(third['uuid'] as string);
  assert.deepEqual(await newTask(), { error: COMMIT_WINDOW_MESSAGE });

  // A replay after a restart is not counted either.
  await app.stop();
  const again = await appOn(t, dir, cloud);
  await again.app.nodeOps.updateAll();
  const replay = await call(`${again.url}/commit?token=${TOKEN}`, { method: 'POST', body: JSON.stringify({ uuid: first }) });
  assert.deepEqual(replay, { ok: true });
  // The second task's first webhook still counts.
  assert.deepEqual(await call(`${again.url}/commit?token=${TOKEN}`, { method: 'POST', body: JSON.stringify({ uuid: second }) }), { ok: true });
  await waitUntil(() => finished.length >= 2, { message: 'taskFinished of the second task never called' });
  assert.deepEqual(finished, [first, second]);
});
