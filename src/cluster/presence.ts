import type { Clock, Logger, Service, TimerHandle } from '../core';
import { errorMessage } from '../core';
import type { InstanceDirectory } from '../store';

/** How long an instance's heartbeat lives without renewal (renewed every third of it). */
export const DEFAULT_HEARTBEAT_TTL_MS = 10_000;

/**
 * Several instances (--redis): this instance's address and heartbeat in the shared state, so the others can pass
 * it requests for uploads it stages, and can tell when it is gone. Started once the proxy listens (the address
 * defaults to its port).
 */
export class InstancePresence implements Service {
  readonly name = 'instance heartbeat';
  private readonly d: { instances: InstanceDirectory; address: () => string; clock: Clock; logger: Logger; ttlMs: number };
  private timer: TimerHandle | null = null;
  private failing = false;

  constructor(deps: { instances: InstanceDirectory; address: () => string; clock: Clock; logger: Logger; ttlMs?: number }) {
    this.d = { ttlMs: DEFAULT_HEARTBEAT_TTL_MS, ...deps };
  }

  async start(): Promise<void> {
    const address = this.d.address();
    await this.d.instances.beat(address, this.d.ttlMs);
    this.d.logger.info(`Registered as instance ${address} (heartbeat every ${Math.round(this.d.ttlMs / 3)} ms)`);
    this.timer = this.d.clock.setInterval(() => void this.beat(address), Math.max(50, Math.floor(this.d.ttlMs / 3)));
  }

  private async beat(address: string): Promise<void> {
    try {
      await this.d.instances.beat(address, this.d.ttlMs);
      if (this.failing) this.d.logger.info(`Heartbeat of instance ${address} renewed again`);
      this.failing = false;
    } catch (e: unknown) {
      if (!this.failing) this.d.logger.warn(`Cannot renew the heartbeat of instance ${address}: ${errorMessage(e)}`);
      this.failing = true;
    }
  }

  /**
   * The heartbeat is left to expire rather than removed: an instance restarted at the same address within its
   * lifetime carries on with the uploads it stages (its tmp folder and task table are still there).
   */
  async stop(): Promise<void> {
    if (this.timer) this.d.clock.clearInterval(this.timer);
    this.timer = null;
  }
}
