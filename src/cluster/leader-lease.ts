import type { Clock, Logger, Service, TimerHandle } from '../core';
import { errorMessage } from '../core';
import type { Leadership } from '../store';

/** The autoscaler leader's lease: a leader that stops renewing is replaced within about this long. */
export const DEFAULT_LEASE_MS = 15_000;

/**
 * Which instance runs the autoscaler's vacuum, reconciliation and machine teardown: the holder of a lease in the
 * shared state, with a fencing token that grows at every takeover. Every instance tries to take (or renew) it five
 * times per lease period, so a dead leader is replaced within the lease time and a fifth. Without shared state
 * (one instance) this instance always leads.
 */
export class LeaderLease implements Service {
  readonly name = 'leader lease';
  private readonly d: { leadership: Leadership | null; clock: Clock; logger: Logger; leaseMs: number };
  private token: number | null = null;
  private timer: TimerHandle | null = null;
  private readonly listeners: Array<() => void> = [];
  private trying: Promise<void> | null = null;

  constructor(deps: { leadership: Leadership | null; clock: Clock; logger: Logger; leaseMs?: number }) {
    this.d = { leaseMs: DEFAULT_LEASE_MS, ...deps };
  }

  get shared(): boolean {
    return this.d.leadership !== null;
  }

  /** Whether this instance leads, as of its last renewal (always without shared state). */
  isLeader(): boolean {
    return !this.d.leadership || this.token !== null;
  }

  /** `listener` runs each time this instance becomes the leader. */
  onElected(listener: () => void): void {
    this.listeners.push(listener);
  }

  async start(): Promise<void> {
    if (!this.d.leadership) return;
    await this.tryLead();
    this.timer = this.d.clock.setInterval(() => void this.tryLead(), Math.max(20, Math.floor(this.d.leaseMs / 5)));
  }

  private tryLead(): Promise<void> {
    this.trying ??= this.doTryLead().finally(() => {
      this.trying = null;
    });
    return this.trying;
  }

  private async doTryLead(): Promise<void> {
    const leadership = this.d.leadership;
    if (!leadership) return;
    let token: number | null;
    try {
      token = await leadership.acquire(this.d.leaseMs);
    } catch (e: unknown) {
      // Cannot renew: another instance may take over once the lease runs out, so this one stops acting as leader.
      if (this.token !== null) this.d.logger.warn(`Cannot renew the autoscaler lease, no longer leading: ${errorMessage(e)}`);
      this.token = null;
      return;
    }
    const before = this.token;
    this.token = token;
    if (token !== null && before !== token) {
      this.d.logger.info(`This instance now leads the autoscaler (fencing token ${token})`);
      for (const l of this.listeners) l();
    } else if (token === null && before !== null) {
      this.d.logger.warn('Another instance took over the autoscaler lease');
    }
  }

  /**
   * Fencing: whether this instance may take a destructive step now, checked in the shared state at once (a leader
   * paused past its lease sees false and does nothing). Always true without shared state.
   */
  async fence(): Promise<boolean> {
    const leadership = this.d.leadership;
    if (!leadership) return true;
    const token = this.token;
    if (token === null) return false;
    try {
      if (await leadership.holds(token)) return true;
    } catch (e: unknown) {
      this.d.logger.warn(`Cannot check the autoscaler lease: ${errorMessage(e)}`);
      return false;
    }
    if (this.token === token) this.token = null;
    this.d.logger.warn(`Fencing token ${token} is no longer current: not acting as the autoscaler leader`);
    return false;
  }

  async stop(): Promise<void> {
    if (this.timer) this.d.clock.clearInterval(this.timer);
    this.timer = null;
    await this.trying;
    const token = this.token;
    this.token = null;
    if (token !== null && this.d.leadership) {
      await this.d.leadership.resign(token).catch((e: unknown) => this.d.logger.warn(`Cannot give up the autoscaler lease: ${errorMessage(e)}`));
    }
  }
}
