import type { ClusterTuning } from './app-cluster';
import type { CloudProvider } from './cloud';
import type { Config } from './config';
import type { Clock, Logger } from './core';
import type { ProxyTimeouts } from './proxy';

/** What the daemon is built from: its configuration, clock and logger, and the knobs tests turn. */
export interface AppDeps {
  config: Config;
  version: string;
  clock: Clock;
  logger: Logger;
  /** Listen address for every listener; undefined = all interfaces (as the original). */
  host?: string;
  /**
   * Tests: every enabled listener binds an ephemeral port (0 in the config still means disabled, as in the
   * original), and the bound ports are logged.
   */
  ephemeralPorts?: boolean;
  /** Tests: a cloud provider of their own (e.g. one that accepts several user tokens). */
  cloud?: CloudProvider;
  /** Tests: shorter waits than the original's (5 s × retry between forward attempts, 2 s between upload retries). */
  tuning?: {
    forwardRetryBaseMs?: number;
    uploadRetrySleepMs?: number;
    /** First pause between looks at a silent node a resumed task waits for (default 2 s, doubling). */
    nodeWaitRetryMs?: number;
    /** How often copies left on nodes a task moved away from are looked for (default 30 s). */
    straySweepMs?: number;
    proxyTimeouts?: Partial<ProxyTimeouts>;
    /** How long a silent node is waited for (/info polls, proxied calls, task uploads); defaults 10 s / 5 min / 5 min. */
    nodeTimeoutMs?: number;
    /** A client upload that sends nothing for this long is dropped (default 30 s, as the original). */
    uploadIdleMs?: number;
    /** The task queue's look for a place (default 5 s), and its wait after "no capacity" (default 60 s). */
    queueTickMs?: number;
    capacityRetryMs?: number;
    /** Autoscaler: delay from a task's webhook to its machine's removal (default 10 s), api driver's poll (2 s). */
    asrCleanupDelayMs?: number;
    asrPollMs?: number;
    /** How long an upload waits for its node's init before it is sent from disk instead of copied (default 2 s). */
    teeWaitMs?: number;
    /** Bench A/B (bench/client-ab.ts): 1 = bodiless proxied requests through node:http instead of undici. */
    forwardViaNodeHttp?: number;
  } & ClusterTuning;
}
