import type { Clock, Logger } from '../core';
import { ClusterError, errorMessage, normalizeHostname } from '../core';
import type { StateDoc } from '../store';
import { ClusterNode, isValidPort, nodeKey, type NodeRecord } from './node';
import { selectNode, selectStreamingNode, type Candidate } from './selection';

/** Saves of the shared node list that another instance's save got ahead of: tried again up to this many times. */
const MAX_SAVE_ATTEMPTS = 12;
/** Upper bound of the random pause before the n-th retry, times n. */
const CONFLICT_BACKOFF_MS = 20;

/**
 * The ordered list of nodes (1-based numbering as the original: file order, then insertion order),
 * persisted (nodes.json, or Redis when shared) after every change. A failed save rolls the change back and
 * throws, so memory and the store never disagree. A change saved by another instance is merged in: nodes
 * already known keep their object (routes and health state point at it), new ones are added, gone ones dropped.
 */
export class NodeRegistry {
  private nodes: ClusterNode[] = [];
  private readonly store: StateDoc<NodeRecord[]>;
  /** Changes and merges of others' changes run one at a time, so a merge never drops a change being saved. */
  private queue: Promise<unknown> = Promise.resolve();
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(opts: { store: StateDoc<NodeRecord[]>; clock: Clock; logger: Logger }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.store.onRemoteChange(() => {
      void this.exclusive(() => this.merge()).catch((e: unknown) => this.logger.error(`Cannot reload the node list: ${errorMessage(e)}`));
    });
  }

  /** Takes in the list another instance saved, keeping the objects of nodes this one already knows. */
  private async merge(): Promise<void> {
    const records = (await this.store.load()) ?? [];
    const known = new Map(this.nodes.map((n) => [n.key, n]));
    const seen = new Set<string>();
    const next: ClusterNode[] = [];
    for (const rec of records) {
      const key = nodeKey(rec.hostname, rec.port);
      if (seen.has(key)) continue;
      seen.add(key);
      const node = known.get(key);
      if (node) {
        const r = node.record as unknown as Record<string, unknown>;
        for (const k of Object.keys(r)) delete r[k];
        Object.assign(node.record, rec);
        next.push(node);
      } else {
        next.push(new ClusterNode(rec));
      }
    }
    const added = next.filter((n) => !known.has(n.key)).length;
    const removed = this.nodes.filter((n) => !seen.has(n.key)).length;
    this.nodes = next;
    this.logger.info(`Node list changed by another instance: ${next.length} nodes (${added} added, ${removed} removed)`);
  }

  /** Loads nodes.json; duplicates (same host and port, whatever the port's type) keep the first entry. */
  async load(): Promise<number> {
    const records = (await this.store.load()) ?? [];
    const seen = new Set<string>();
    this.nodes = [];
    for (const rec of records) {
      const key = nodeKey(rec.hostname, rec.port);
      if (seen.has(key)) {
        this.logger.warn(`Ignoring duplicate node ${rec.hostname}:${rec.port} in nodes.json`);
        continue;
      }
      seen.add(key);
      const node = new ClusterNode(rec);
      // Kept (so NODE LIST shows it, NODE DEL removes it and the file round-trips) but never polled nor used.
      if (!node.addressable) {
        this.logger.warn(
          `Node #${this.nodes.length + 1} in nodes.json: ${JSON.stringify(rec.hostname)} is not a valid hostname (a DNS name or an IP address); it is never polled nor sent tasks, delete it (NODE DEL) and add it again`,
        );
      }
      this.nodes.push(node);
    }
    this.logger.info(`Loaded ${this.nodes.length} nodes`);
    return this.nodes.length;
  }

  list(): readonly ClusterNode[] {
    return this.nodes;
  }

  /** 1-based lookup; anything but a whole number in range gives null. */
  nth(n: string | number): ClusterNode | null {
    const s = String(n).trim();
    if (!/^\d+$/.test(s)) return null;
    return this.nodes[Number(s) - 1] ?? null;
  }

  /** 1-based number of a node, or 0 if it is not registered. */
  numberOf(node: ClusterNode): number {
    return this.nodes.indexOf(node) + 1;
  }

  find(hostname: string, port: number | string): ClusterNode | undefined {
    const key = nodeKey(hostname, port);
    return this.nodes.find((n) => n.key === key);
  }

  online(): ClusterNode[] {
    const now = this.clock.now();
    return this.nodes.filter((n) => n.isOnline(now));
  }

  /** The first online node in list order (locked or not): serves the UI, /options and engine info. */
  referenceNode(): ClusterNode | null {
    const now = this.clock.now();
    return this.nodes.find((n) => n.isOnline(now)) ?? null;
  }

  /**
   * Adds a node unless one with the same host and port exists. Returns null for invalid or duplicate input: the
   * hostname must be a DNS name or an IP literal (`[::1]` is stored as `::1`).
   */
  async addUnique(host: string, port: number | string, token = ''): Promise<ClusterNode | null> {
    const hostname = normalizeHostname(host);
    if (hostname === null || !isValidPort(port)) return null;
    if (this.find(hostname, port)) return null;
    const node = new ClusterNode({ hostname, port, token });
    await this.add(node);
    return node;
  }

  async add(node: ClusterNode): Promise<void> {
    await this.retryOnConflict(() => this.addOnce(node));
  }

  private async addOnce(node: ClusterNode): Promise<void> {
    if (this.find(node.hostname, node.port)) throw new ClusterError('INVALID_INPUT', `Node ${node.name} already exists`);
    this.nodes.push(node);
    await this.persist(() => {
      this.nodes = this.nodes.filter((n) => n !== node);
    });
  }

  async remove(node: ClusterNode): Promise<boolean> {
    return this.retryOnConflict(() => this.removeOnce(node));
  }

  private async removeOnce(node: ClusterNode): Promise<boolean> {
    const index = this.nodes.indexOf(node);
    if (index < 0) return false;
    this.nodes.splice(index, 1);
    await this.persist(() => {
      this.nodes.splice(index, 0, node);
    });
    return true;
  }

  async setLocked(node: ClusterNode, locked: boolean): Promise<void> {
    await this.retryOnConflict(() => this.setLockedOnce(node, locked));
  }

  private async setLockedOnce(node: ClusterNode, locked: boolean): Promise<void> {
    const before = node.record.locked;
    node.record.locked = locked;
    await this.persist(() => {
      if (before === undefined) delete node.record.locked;
      else node.record.locked = before;
    });
  }

  /**
   * The node that should receive the images of a task while they are still being uploaded, `numImages` of them so
   * far (see selectStreamingNode: the node the commit would choose).
   */
  selectForStreaming(numImages: number, needFreeSlot: boolean): ClusterNode | null {
    const now = this.clock.now();
    const i = selectStreamingNode(
      this.nodes.map((n) => this.candidate(n, now)),
      numImages,
      needFreeSlot,
    );
    return i === null ? null : (this.nodes[i] ?? null);
  }

  private candidate(n: ClusterNode, now: number): Candidate {
    return {
      online: n.isOnline(now),
      locked: n.isLocked(),
      autoSpawned: n.isAutoSpawned(),
      maxImages: n.maxImages(),
      availableSlots: n.availableSlots(),
      queueCount: n.queueCount(),
      turn: n.turn,
      uploading: n.uploads,
    };
  }

  /**
   * Picks the best node for a task of `numImages` images from what is known now, and bumps its round-robin
   * turn (as the original, even for NODE BEST). Callers wanting fresh data refresh the nodes first. `keep`: the node
   * that already holds the task's images, kept when it is as good a choice (see selectNode).
   */
  selectBest(numImages: number, keep: ClusterNode | null = null): ClusterNode | null {
    const now = this.clock.now();
    const kept = keep ? this.nodes.indexOf(keep) : -1;
    const sel = selectNode(
      this.nodes.map((n) => this.candidate(n, now)),
      numImages,
      kept < 0 ? null : kept,
    );
    if (!sel) return null;
    if (sel.resetTurns) for (const n of this.nodes) n.turn = 0;
    const chosen = this.nodes[sel.index] ?? null;
    if (chosen) chosen.turn = sel.newTurn;
    return chosen;
  }

  /** Writes nodes.json now (also used at shutdown). */
  save(): Promise<void> {
    return this.store.save(() => JSON.stringify(this.nodes.map((n) => n.toJSON())));
  }

  async flush(): Promise<void> {
    await this.store.flush();
  }

  /**
   * Shared list: another instance saved a change this one has not merged yet. The change was rolled back; take in
   * theirs and apply it again (a node that is gone or already there then answers as it would have).
   */
  private exclusive<R>(op: () => Promise<R>): Promise<R> {
    const run = this.queue.then(op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private retryOnConflict<R>(op: () => Promise<R>): Promise<R> {
    return this.exclusive(() => this.attempt(op));
  }

  private async attempt<R>(op: () => Promise<R>): Promise<R> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await op();
      } catch (e: unknown) {
        const conflict = e instanceof ClusterError && e.cause instanceof ClusterError && e.cause.code === 'STATE_CONFLICT';
        if (!conflict || attempt >= MAX_SAVE_ATTEMPTS) throw e;
        // Instances that collided retry at random moments, or they would collide again in step (seen: two
        // instances adding 15 nodes each at once ran out of five immediate retries).
        await new Promise<void>((resolve) => this.clock.setTimeout(resolve, Math.random() * CONFLICT_BACKOFF_MS * attempt));
        await this.merge();
      }
    }
  }

  private async persist(rollback: () => void): Promise<void> {
    try {
      await this.save();
    } catch (e: unknown) {
      rollback();
      throw new ClusterError('STATE_WRITE_FAILED', `Cannot save nodes: ${errorMessage(e)}`, { cause: e });
    }
  }
}
