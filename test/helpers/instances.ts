import type { TestContext } from 'node:test';
import { startDaemon, type Daemon } from './daemon';
import type { RedisServer } from './redis';

/** Short heartbeats, leases and sweeps, so a gone instance is noticed within a second or two. */
export const CLUSTER_TUNING = { heartbeatTtlMs: 600, stagingSweepMs: 150, leaseMs: 900, forwardRetryBaseMs: 50 };

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
