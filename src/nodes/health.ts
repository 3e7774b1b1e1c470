import type { Clock, Logger, Service, TimerHandle } from '../core';
import { errorMessage } from '../core';
import { parseNodeInfo, type NodeClient } from '../nodeodm';
import type { LoadHistory } from './load-history';
import type { ClusterNode } from './node';
import type { NodeRegistry } from './registry';
import type { NodeHealthBoard } from '../store';

export interface HealthPollerOptions {
  registry: NodeRegistry;
  client: NodeClient;
  clock: Clock;
  logger: Logger;
  intervalMs?: number;
  /** How many /info requests may be in flight at once, so hundreds of nodes never stall the poll. */
  concurrency?: number;
  /** Where each successful poll's queue and slots are recorded (the admin page's load chart). */
  history?: LoadHistory | null;
  /**
   * Several instances (--redis): the periodic poll is shared. Each node is polled by the one instance that takes
   * its short lease each interval, which writes what it found for the others to read (null: poll every node).
   */
  board?: NodeHealthBoard | null;
}

/**
 * Polls every node's /info every 60 s and on demand. A node is online while it answered within the last
 * 2 minutes; a failed poll marks it offline at once (lastRefreshed = 0, as the original), while
 * lastSeenOnline keeps when it was last good. Status changes are logged only when they flip.
 */
export class HealthPoller implements Service {
  readonly name = 'health poller';
  private readonly opts: Required<HealthPollerOptions>;
  private timer: TimerHandle | null = null;
  private readonly inFlight = new Map<ClusterNode, Promise<boolean>>();
  /** Last status logged per node; a node not in it has not been polled yet. */
  private readonly known = new WeakMap<ClusterNode, boolean>();
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(opts: HealthPollerOptions) {
    this.opts = { intervalMs: 60_000, concurrency: 16, history: null, board: null, ...opts };
  }

  async start(): Promise<void> {
    void this.tick();
    this.timer = this.opts.clock.setInterval(() => void this.tick(), this.opts.intervalMs);
  }

  /** The periodic poll: every node, or (shared) the nodes whose lease this instance takes, then the others' findings. */
  private async tick(): Promise<void> {
    const board = this.opts.board;
    if (!board) return this.refreshAll();
    const nodes = this.opts.registry.list();
    const lease = Math.max(1, Math.floor(this.opts.intervalMs * 0.9));
    // Without the shared state (Redis down) each instance polls for itself: routing must go on.
    const mine = await Promise.all(nodes.map((n) => board.claim(n.key, lease).catch(() => true)));
    const others: ClusterNode[] = [];
    await Promise.all(
      nodes.map(async (n, i) => {
        if (!mine[i]) return others.push(n);
        await this.refresh(n);
        const state = { info: n.info, lastRefreshed: n.lastRefreshed, lastSeenOnline: n.lastSeenOnline };
        await board.write(n.key, JSON.stringify(state)).catch((e: unknown) => this.opts.logger.debug(`Cannot share the state of ${n.name}: ${errorMessage(e)}`));
        return 0;
      }),
    );
    if (others.length === 0) return;
    const states = await board.read().catch(() => null);
    if (!states) return;
    for (const n of others) {
      const text = states.get(n.key);
      if (text !== undefined) this.apply(n, text);
    }
  }

  /** What another instance's poll found for `node`. */
  private apply(node: ClusterNode, text: string): void {
    let v: { info?: unknown; lastRefreshed?: unknown; lastSeenOnline?: unknown };
    try {
      v = JSON.parse(text) as typeof v;
      node.info = parseNodeInfo(v.info ?? {});
    } catch {
      return;
    }
    const refreshed = typeof v.lastRefreshed === 'number' ? v.lastRefreshed : 0;
    node.lastRefreshed = refreshed;
    if (typeof v.lastSeenOnline === 'number') node.lastSeenOnline = Math.max(node.lastSeenOnline, v.lastSeenOnline);
    const online = refreshed > 0;
    if (online) this.opts.history?.record(node, refreshed);
    if (this.known.get(node) !== online) this.opts.logger.info(`Node ${node.name} is ${online ? 'online' : 'offline'} (polled by another instance)`);
    this.known.set(node, online);
  }

  async stop(): Promise<void> {
    if (this.timer) this.opts.clock.clearInterval(this.timer);
    this.timer = null;
  }

  /** Refreshes every node (bounded concurrency). Never rejects. */
  async refreshAll(): Promise<void> {
    await Promise.all(this.opts.registry.list().map((n) => this.refresh(n)));
  }

  /** Refreshes one node; concurrent calls for the same node share one request. Resolves to online or not. */
  refresh(node: ClusterNode): Promise<boolean> {
    const existing = this.inFlight.get(node);
    if (existing) return existing;
    const p = this.withSlot(() => this.doRefresh(node)).finally(() => this.inFlight.delete(node));
    this.inFlight.set(node, p);
    return p;
  }

  private async doRefresh(node: ClusterNode): Promise<boolean> {
    const { clock, logger, client } = this.opts;
    const before = this.known.get(node);
    if (!node.addressable) {
      // A bad hostname from nodes.json (logged at load): its token is never sent anywhere.
      node.lastRefreshed = 0;
      this.known.set(node, false);
      return false;
    }
    try {
      const info = parseNodeInfo(await client.getJson(node, '/info'));
      node.info = info;
      node.lastRefreshed = clock.now();
      node.lastSeenOnline = node.lastRefreshed;
      this.opts.history?.record(node, node.lastRefreshed);
      if (before !== true) logger.info(`Node ${node.name} is online`);
      this.known.set(node, true);
      return true;
    } catch (e: unknown) {
      node.lastRefreshed = 0;
      const msg = `Cannot update info for ${node.name}: ${errorMessage(e)}`;
      // Logged when the status changes (including a node that is unreachable from its first poll), else quietly.
      if (before === true) logger.warn(`${msg} (node is now offline)`);
      else if (before === undefined) logger.warn(msg);
      else logger.debug(msg);
      this.known.set(node, false);
      return false;
    }
  }

  private async withSlot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.opts.concurrency) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}
