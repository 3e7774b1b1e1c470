/**
 * A daemon with `--asr` over the autoscaler fakes, and one static test node that a long first task keeps full: the
 * setting of the autoscaler's integration tests (three files, so that none comes near the per-file test timeout
 * on a loaded machine).
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import type { AsrRig } from './asr-rig';
import { CliClient } from './cli-client';
import { startDaemon, type Daemon } from './daemon';
import { startTestNode, type TestNode } from './test-node';
import { waitUntil } from './wait';

export interface Cluster {
  rig: AsrRig;
  d: Daemon;
  cli: CliClient;
  /** The static node; a long first task keeps it full. */
  node: TestNode;
}

export async function cluster(t: TestContext, rig: AsrRig, extraArgs: string[] = []): Promise<Cluster> {
  const node = await startTestNode({ processingMs: 120_000, maxParallelTasks: 1 });
  t.after(() => node.close());
  const d = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile, ...extraArgs], { env: rig.env });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  // On a loaded machine one poll can time out: the tests start once the node is seen online.
  await waitUntil(
    async () => {
      if (/\[online\]/.test(await cli.send('NODE LIST'))) return true;
      await cli.send('NODE UPDATE');
      return false;
    },
    { timeoutMs: 30000, message: 'the static node is not online' },
  );
  return { rig, d, cli, node };
}

export function form(n: number, prefix = 'IMG_'): FormData {
  const fd = new FormData();
  for (let i = 0; i < n; i++) fd.append('images', new Blob([Buffer.alloc(10_000 + i, i)]), `${prefix}${i}.JPG`);
  return fd;
}

export async function newTask(d: Daemon, n: number): Promise<string> {
  const res = await fetch(`${d.url}/task/new`, { method: 'POST', body: form(n) });
  const body = (await res.json()) as { uuid?: string; error?: string };
  assert.equal(typeof body.uuid, 'string', JSON.stringify(body));
  return body.uuid ?? '';
}

export async function info(d: Daemon, uuid: string): Promise<{ status?: { code: number }; error?: string; [k: string]: unknown }> {
  return (await (await fetch(`${d.url}/task/${uuid}/info`)).json()) as { status?: { code: number } };
}

/** Fills the static node: its only slot runs a long task. */
export async function fillStaticNode(c: Cluster): Promise<string> {
  const uuid = await newTask(c.d, 1);
  await waitUntil(() => c.node.tasks().length === 1, { timeoutMs: 20000, message: 'first task never reached the static node' });
  return uuid;
}
