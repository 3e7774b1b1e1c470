import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { CliClient } from '../helpers/cli-client';
import { multiUser, startApp } from '../helpers/app';
import { startDaemon } from '../helpers/daemon';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

function images(n: number): FormData {
  const fd = new FormData();
  for (let i = 0; i < n; i++) fd.append('images', new Blob([Buffer.alloc(2000 + i)]), `img${i}.jpg`);
  return fd;
}

async function json(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  return (await (await fetch(url, init)).json()) as Record<string, unknown>;
}

const fast = { forwardRetryBaseMs: 20, uploadRetrySleepMs: 10 };

test('forwarding: a task no node accepts ends FAILED with the reason, and its staged files are removed', async (t) => {
  const node = await startTestNode({ dropUploads: 1_000_000 });
  t.after(() => node.close());
  const { url, app, dir } = await startApp(t, multiUser(['']), [], fast);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const { uuid } = (await json(`${url}/task/new`, { method: 'POST', body: images(2) })) as { uuid: string };
  let info: Record<string, unknown> = {};
  await waitUntil(
    async () => {
      info = await json(`${url}/task/${uuid}/info`);
      return (info['status'] as { code: number }).code === 30;
    },
    { timeoutMs: 30000, message: 'the task never failed' },
  );
  const message = 'Failed to forward task to processing node after 5 attempts. Try again later.';
  assert.deepEqual(await json(`${url}/task/${uuid}/output`), [message]);
  assert.deepEqual((await json(`${url}/task/${uuid}/info?with_output=0`))['output'], [message]);
  assert.deepEqual(await json(`${url}/task/list`), [{ uuid }], 'a failed task is still listed');
  assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
  // info?with_output did not change what the table stores (the original mutated it).
  assert.equal((await json(`${url}/task/${uuid}/info`))['output'], undefined);
});

test('forwarding: cancel and remove stop a task that is still being forwarded', async (t) => {
  const node = await startTestNode({ uploadDelayMs: 60_000 });
  t.after(() => node.close());
  const { url, app, dir } = await startApp(t, multiUser(['']), [], fast);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const { uuid } = (await json(`${url}/task/new`, { method: 'POST', body: images(2) })) as { uuid: string };
  await waitUntil(() => node.requests.some((r) => r.path.startsWith(`/task/new/upload/${uuid}`)), { message: 'upload never started' });
  assert.equal((app.registry.nth(1)?.transients ?? -1) > 0, true, 'the forward counts against the node');
  const form = (u: string): RequestInit => ({ method: 'POST', body: new URLSearchParams({ uuid: u }) });
  assert.deepEqual(await json(`${url}/task/cancel`, form(uuid)), { success: true });
  const info = await json(`${url}/task/${uuid}/info`);
  assert.equal((info['status'] as { code: number }).code, 50);
  await waitUntil(() => app.registry.nth(1)?.transients === 0, { message: 'the slot was not given back' });
  assert.deepEqual(fs.readdirSync(path.join(dir, 'tmp')), []);
  assert.equal(node.tasks().length, 0, 'nothing was committed on the node');
  assert.deepEqual(await json(`${url}/task/remove`, form(uuid)), { success: true });
  assert.deepEqual(await json(`${url}/task/${uuid}/info`), { error: `Invalid route for taskId ${uuid}:info, no task table entry.` });
});

test('forwarding: ClusterODM killed mid-forward resumes the forward after a restart', async (t) => {
  const dir = tempDir(t);
  const node = await startTestNode({ uploadDelayMs: 1500, processingMs: 100 });
  t.after(() => node.close());
  const d1 = await startDaemon(t, dir);
  const cli = await CliClient.connect(t, d1.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  const { uuid } = (await json(`${d1.url}/task/new`, { method: 'POST', body: images(3) })) as { uuid: string };
  await waitUntil(() => node.requests.some((r) => r.path.startsWith(`/task/new/upload/${uuid}`)), { message: 'upload never started' });
  assert.equal(await d1.stop('SIGKILL'), null);
  node.configure({ uploadDelayMs: 0 });
  const d2 = await startDaemon(t, dir);
  await waitUntil(
    async () => ((await json(`${d2.url}/task/${uuid}/info`))['status'] as { code?: number } | undefined)?.code === 40,
    { timeoutMs: 20000, message: 'the interrupted task never completed' },
  ).catch((e: unknown) => {
    throw new Error(`${String(e)}\n${d2.output()}`);
  });
  assert.match(d2.output(), new RegExp(`Resuming the forward of task ${uuid}`));
  assert.deepEqual(node.taskFiles(uuid).sort(), ['img0.jpg', 'img1.jpg', 'img2.jpg']);
});
