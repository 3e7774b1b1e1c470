import assert from 'node:assert/strict';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { ClusterOdm, type AppDeps } from '../../src/app';
import type { CloudProvider, Limits } from '../../src/cloud';
import { parseConfig } from '../../src/config';
import { MemoryLogger, systemClock } from '../../src/core';
import { startTestNode, type TestNode, type TestNodeOptions } from './test-node';
import { tempDir } from './tmp';

/** Starts the whole daemon in-process (ephemeral ports, no admin CLI) with a cloud provider of the test's. */
const APP_ROOT = path.resolve(__dirname, '..', '..', '..');

/** A provider with several users (as Lightning has), each with the limits `limits` gives. */
export function multiUser(tokens: string[], limits: (token: string) => Limits | null = () => null): CloudProvider {
  return {
    name: 'TestCloudProvider',
    validate: async (token) => ({ valid: tokens.includes(token), limits: limits(token) }),
    approveNewTask: async () => ({ approved: true, error: '' }),
    taskFinished: async () => undefined,
    clearCache: () => undefined,
    authInfo: () => ({ message: 'test', loginUrl: null, registerUrl: null }),
  };
}

export async function startApp(
  t: TestContext,
  cloud: CloudProvider,
  args: string[] = [],
  tuning: AppDeps['tuning'] = {},
): Promise<{ url: string; app: ClusterOdm; dir: string }> {
  const dir = tempDir(t);
  const parsed = parseConfig({
    argv: ['--data-dir', path.join(dir, 'data'), '--tmp-dir', path.join(dir, 'tmp'), '--admin-cli-port', '0', ...args],
    cwd: dir,
    appRoot: APP_ROOT,
  });
  assert.equal(parsed.kind, 'config');
  if (parsed.kind !== 'config') throw new Error('unreachable');
  const app = new ClusterOdm({
    config: parsed.config,
    version: 'test',
    clock: systemClock,
    logger: new MemoryLogger(),
    host: '127.0.0.1',
    ephemeralPorts: true,
    cloud,
    tuning,
  });
  await app.start();
  t.after(() => app.stop());
  return { url: `http://127.0.0.1:${app.proxy.ports.http ?? 0}`, app, dir };
}


/**
 * One test node behind an in-process daemon with short retry waits, and a task initialised through it (with no
 * options): the start of every upload-streaming test.
 */
export async function appWithInitTask(
  t: TestContext,
  nodeOpts: Partial<TestNodeOptions> = {},
  tuning: AppDeps['tuning'] = {},
): Promise<{ node: TestNode; url: string; app: ClusterOdm; uuid: string }> {
  const node = await startTestNode({ processingMs: 100, ...nodeOpts });
  t.after(() => node.close());
  const { url, app } = await startApp(t, multiUser(['']), [], { forwardRetryBaseMs: 20, uploadRetrySleepMs: 10, ...tuning });
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const init = (await (await fetch(`${url}/task/new/init`, { method: 'POST', body: new FormData() })).json()) as { uuid?: unknown };
  assert.equal(typeof init.uuid, 'string', JSON.stringify(init));
  return { node, url, app, uuid: init.uuid as string };
}
