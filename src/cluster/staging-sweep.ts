import type { Clock, Logger, Service, TimerHandle } from '../core';
import { errorMessage } from '../core';
import type { InstanceDirectory, StagingDirectory } from '../store';
import type { LeaderLease } from './leader-lease';

/** How often the leader looks for uploads whose staging instance is gone. */
export const DEFAULT_STAGING_SWEEP_MS = 10_000;
/** Failed records answer for this long (as routes of finished tasks are kept), then go. */
const KEEP_FAILED_MS = 2 * 24 * 3600 * 1000;

export interface StagingSweepDeps {
  staging: StagingDirectory;
  instances: InstanceDirectory;
  lease: LeaderLease;
  clock: Clock;
  logger: Logger;
  /** Whether a task reached its node (its record is then no longer needed). */
  routed: (uuid: string) => boolean;
  /** Resolves once `routed` knows every route (the shared route table is read in the background after start). */
  routesLoaded?: () => Promise<void>;
  /** The message of a task whose staging instance is gone. */
  message: (uuid: string, owner: string) => string;
  /** A task given up: e.g. marked FAILED in the task table. */
  onLost: (uuid: string, reason: string) => Promise<void>;
  intervalMs?: number;
}

/**
 * Run by the leader: an upload or forward whose staging instance is gone (heartbeat expired) and whose task did
 * not reach a node is marked failed, so every instance answers it as FAILED even if its client never comes back.
 * Records of tasks that reached their node, and old failures, are forgotten.
 */
export class StagingSweep implements Service {
  readonly name = 'staging sweep';
  private readonly d: StagingSweepDeps;
  private timer: TimerHandle | null = null;
  private running: Promise<void> | null = null;

  constructor(deps: StagingSweepDeps) {
    this.d = deps;
  }

  async start(): Promise<void> {
    this.timer = this.d.clock.setInterval(() => void this.sweep(), this.d.intervalMs ?? DEFAULT_STAGING_SWEEP_MS);
  }

  async stop(): Promise<void> {
    if (this.timer) this.d.clock.clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One pass (leader only); concurrent calls share it. Never rejects. */
  sweep(): Promise<void> {
    this.running ??= this.pass()
      .catch((e: unknown) => this.d.logger.warn(`Staging sweep failed: ${errorMessage(e)}`))
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  private async pass(): Promise<void> {
    const { staging, instances, lease, clock, logger } = this.d;
    if (!lease.isLeader()) return;
    // Before every route is known, a task already on its node would look lost.
    await this.d.routesLoaded?.();
    const alive = new Map<string, boolean>();
    const now = clock.now();
    for (const [uuid, rec] of await staging.all()) {
      if (rec.failed) {
        if (now - rec.at > KEEP_FAILED_MS) await staging.release(uuid);
        continue;
      }
      // Reached its node, or so old that its owner surely finished with it (failed or removed there).
      if (this.d.routed(uuid) || now - rec.at > KEEP_FAILED_MS) {
        await staging.release(uuid);
        continue;
      }
      let up = alive.get(rec.owner);
      if (up === undefined) alive.set(rec.owner, (up = rec.owner === instances.self() || (await instances.alive(rec.owner))));
      if (up) continue;
      const reason = this.d.message(uuid, rec.owner);
      const final = await staging.fail(uuid, reason, now);
      logger.warn(`Task ${uuid}: its staging instance ${rec.owner} is gone, the task failed`);
      await this.d.onLost(uuid, final.failed ?? reason).catch((e: unknown) => logger.error(`Task ${uuid}: cannot record its failure: ${errorMessage(e)}`));
    }
  }
}
