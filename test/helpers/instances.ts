import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { CliClient } from './cli-client';
import { startDaemon, type Daemon } from './daemon';
import { redisCommand, type RedisServer } from './redis';
import { startTestNode, type TestNode, type TestNodeOptions } from './test-node';
import { tempDir } from './tmp';
import { waitUntil } from './wait';

/**
 * Short leases and sweeps, so a gone instance is noticed within seconds; heartbeats long enough that a daemon
 * stalled by a loaded CI machine never looks gone.
 */
export const CLUSTER_TUNING = { heartbeatTtlMs: 3000, stagingSweepMs: 200, leaseMs: 900, forwardRetryBaseMs: 50 };

/** A ClusterODM instance (child process) on `redis`, with the short periods above. */
export function startInstance(
  t: TestContext,
  redis: RedisServer,
  dir: string,
  args: string[] = [],
  env: NodeJS.ProcessEnv = process.env,
  tuning: Record<string, number> = {},
): Promise<Daemon> {
  const all = { ...CLUSTER_TUNING, ...tuning };
  return startDaemon(t, dir, ['--redis', redis.url, ...args], { env: { ...env, CLUSTERODM_TEST_TUNING: JSON.stringify(all) } });
}

/** A redis-server that can be killed and started again on the same socket and data (append-only file, fsync always). */
export interface RestartableRedis extends RedisServer {
  /** SIGKILL: anything acknowledged is already in the append-only file. */
  kill(): Promise<void>;
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT: a Redis that holds its connections open and answers nothing (hung, or cut off by the network). */
  pause(): void;
  resume(): void;
}

export async function startRestartableRedis(t: TestContext): Promise<RestartableRedis> {
  const dir = tempDir(t, 'clusterodm-redis-');
  const socket = path.join(dir, 'redis.sock');
  let proc: ChildProcess | null = null;
  let exit: Promise<void> = Promise.resolve();
  const start = async (): Promise<void> => {
    const p = spawn(
      'redis-server',
      ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'],
      { stdio: 'ignore' },
    );
    proc = p;
    exit = new Promise((resolve) => p.once('exit', () => resolve()));
    await waitUntil(async () => (await redisCommand(socket, 'PING')).startsWith('+PONG'), { timeoutMs: 10000, message: 'redis-server did not start' });
  };
  const kill = async (): Promise<void> => {
    proc?.kill('SIGKILL');
    await exit;
    proc = null;
  };
  const pause = (): void => {
    assert.ok(proc, 'redis-server is not running');
    proc.kill('SIGSTOP');
  };
  // After a kill there is nothing to resume.
  const resume = (): void => void proc?.kill('SIGCONT');
  t.after(kill);
  await start();
  return { url: `unix://${socket}`, socket, dir, command: (line) => redisCommand(socket, line), kill, start, pause, resume };
}

/** One admin CLI command on an instance, on a connection of its own. */
export async function cli(t: TestContext, d: Daemon, line: string): Promise<string> {
  const c = await CliClient.connect(t, d.cliPort);
  await c.untilPrompt();
  return c.send(line);
}

/** A test node added through the first instance, listed and polled by every instance. */
export async function sharedNode(t: TestContext, all: Daemon[], opts: Partial<TestNodeOptions> = { processingMs: 100 }): Promise<TestNode> {
  const node = await startTestNode(opts);
  t.after(() => node.close());
  const [first] = all;
  assert.ok(first);
  assert.equal(await cli(t, first, `NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  for (const d of all) {
    await waitUntil(async () => (await cli(t, d, 'NODE LIST')).includes(`127.0.0.1:${node.port}`), { message: 'an instance does not list the node' });
    assert.equal(await cli(t, d, 'NODE UPDATE'), 'OK\r\n');
  }
  return node;
}
