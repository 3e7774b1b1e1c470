import type { Clock, Logger, Service, TimerHandle } from '../core';
import { errorMessage, isRecord } from '../core';
import type { NodeClient } from '../nodeodm';
import type { ClusterNode, NodeRegistry } from '../nodes';
import { isValidUuid, type RouteTable, type TaskTable } from '../routing';
import { JsonStateFile, type StoreFs } from '../store';

/** A record older than this is dropped even if its node never came back (as long as a route lives unused). */
export const STRAY_EXPIRY_MS = 5 * 24 * 60 * 60 * 1000;
const SWEEP_MS = 30_000;

/**
 * Copies of tasks that may be left on a node the task was moved away from while that node did not answer (a node
 * down at a restart, a forward switched to another node): `data/strays.json`, `{"<uuid>": {"<host:port>": ms}}`.
 *
 * Every `intervalMs`, each record whose node answers is settled: if the node holds the task and the task does not
 * belong there (its route points elsewhere, and it is not being sent there), the copy is removed with
 * `/task/remove`; once the node says it has no such task, the record goes. So a task moved away from a node that
 * was down cannot also run there when the node comes back.
 */
export interface StrayCopiesOptions {
  file: string;
  registry: NodeRegistry;
  routes: RouteTable;
  table: TaskTable;
  client: NodeClient;
  clock: Clock;
  logger: Logger;
  intervalMs?: number;
  expiryMs?: number;
  fs?: StoreFs;
}

type Records = Map<string, Map<string, number>>;

export function parseStraysFile(raw: unknown): Records {
  if (!isRecord(raw)) throw new Error('strays.json is not a JSON object keyed by task uuid');
  const out: Records = new Map();
  for (const [uuid, nodes] of Object.entries(raw)) {
    if (!isValidUuid(uuid)) throw new Error(`strays.json: ${JSON.stringify(uuid)} is not a task uuid`);
    if (!isRecord(nodes)) throw new Error(`strays.json: ${uuid} is not an object`);
    const m = new Map<string, number>();
    for (const [key, at] of Object.entries(nodes)) {
      if (typeof at !== 'number' || !Number.isFinite(at)) throw new Error(`strays.json: ${uuid}.${key} is not a number`);
      m.set(key, at);
    }
    if (m.size > 0) out.set(uuid, m);
  }
  return out;
}

export class StrayCopies implements Service {
  readonly name = 'stray copies';
  private readonly o: StrayCopiesOptions & { intervalMs: number; expiryMs: number };
  private readonly state: JsonStateFile<Records>;
  private records: Records = new Map();
  private timer: TimerHandle | null = null;
  private sweeping: Promise<void> | null = null;

  constructor(opts: StrayCopiesOptions) {
    this.o = { intervalMs: SWEEP_MS, expiryMs: STRAY_EXPIRY_MS, ...opts };
    this.state = new JsonStateFile({
      file: opts.file,
      parse: parseStraysFile,
      logger: opts.logger,
      clock: opts.clock,
      ...(opts.fs ? { fs: opts.fs } : {}),
    });
  }

  async load(): Promise<void> {
    this.records = (await this.state.load()) ?? new Map();
    if (this.records.size > 0) this.o.logger.info(`${this.records.size} tasks may have a copy to remove on a node that was down`);
  }

  async start(): Promise<void> {
    this.timer = this.o.clock.setInterval(() => void this.sweep(), this.o.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer) this.o.clock.clearInterval(this.timer);
    this.timer = null;
    await this.sweeping;
    await this.state.flush();
  }

  /** Durable before it resolves: call it before the task is sent anywhere else. */
  async add(uuid: string, node: ClusterNode): Promise<void> {
    const m = this.records.get(uuid) ?? new Map<string, number>();
    if (m.has(node.key)) return;
    m.set(node.key, this.o.clock.now());
    this.records.set(uuid, m);
    this.o.logger.info(`Task ${uuid} may have a copy on ${node.name}: it will be removed there when the node answers`);
    await this.save();
  }

  /** The task is (being) sent to that node again: whatever it holds there is the task's own copy. */
  async forget(uuid: string, nodeKey: string): Promise<void> {
    if (!this.drop(uuid, nodeKey)) return;
    await this.save();
  }

  /** One pass over the records; passes never overlap. Never rejects. */
  sweep(): Promise<void> {
    if (this.records.size === 0) return Promise.resolve();
    this.sweeping ??= this.pass()
      .catch((e: unknown) => this.o.logger.error(`Cannot remove stray task copies: ${errorMessage(e)}`))
      .finally(() => {
        this.sweeping = null;
      });
    return this.sweeping;
  }

  private async pass(): Promise<void> {
    await this.o.routes.loaded();
    const now = this.o.clock.now();
    const byKey = new Map(this.o.registry.list().map((n) => [n.key, n]));
    // A node that did not answer is not asked again in the same pass (each try may wait for a timeout).
    const silent = new Set<string>();
    let changed = false;
    for (const [uuid, m] of [...this.records]) {
      for (const [key, since] of [...m]) {
        const node = byKey.get(key);
        const outcome = node && !silent.has(key) ? await this.settle(uuid, node) : 'keep';
        if (outcome === 'silent') silent.add(key);
        if (outcome !== 'done' && now - since <= this.o.expiryMs) continue;
        if (outcome !== 'done') this.o.logger.warn(`Gave up removing the copy of task ${uuid} from ${key}: not reachable for too long`);
        changed = this.drop(uuid, key) || changed;
      }
    }
    if (changed) await this.save().catch(() => undefined);
  }

  /** 'done' when the node holds no stray copy any more (or it belongs there); else look again later. */
  private async settle(uuid: string, node: ClusterNode): Promise<'done' | 'keep' | 'silent'> {
    if (this.belongsOn(uuid, node)) return 'done';
    if (this.sentTo(uuid, node)) return 'keep';
    let info: unknown;
    try {
      info = await this.o.client.getJson(node, `/task/${uuid}/info`);
    } catch {
      return 'silent';
    }
    if (!isRecord(info) || 'error' in info) return 'done';
    // Looked at again right before the removal: the task may have been sent there in the meantime.
    if (this.belongsOn(uuid, node)) return 'done';
    if (this.sentTo(uuid, node)) return 'keep';
    try {
      const answer = await this.o.client.postForm(node, '/task/remove', new Map([['uuid', uuid]]));
      if (isRecord(answer) && answer['success'] === true) {
        this.o.logger.info(`Removed the copy of task ${uuid} left on ${node.name}`);
        return 'done';
      }
      this.o.logger.warn(`${node.name} did not remove the copy of task ${uuid}: ${JSON.stringify(answer)}`);
    } catch (e: unknown) {
      this.o.logger.warn(`Cannot remove the copy of task ${uuid} from ${node.name}: ${errorMessage(e)}`);
    }
    return 'keep';
  }

  /** The task's route points at that node: the copy there is the task. */
  private belongsOn(uuid: string, node: ClusterNode): boolean {
    return this.o.routes.peek(uuid)?.node.key === node.key;
  }

  /** The task is being sent to that node (or waits for it): not a stray copy, for now. */
  private sentTo(uuid: string, node: ClusterNode): boolean {
    const e = this.o.table.get(uuid);
    return e?.phase === 'forwarding' && e.nodeKey === node.key;
  }

  private drop(uuid: string, nodeKey: string): boolean {
    const m = this.records.get(uuid);
    if (!m?.delete(nodeKey)) return false;
    if (m.size === 0) this.records.delete(uuid);
    return true;
  }

  private save(): Promise<void> {
    return this.state.save(() => {
      const obj: Record<string, Record<string, number>> = {};
      for (const [uuid, m] of this.records) obj[uuid] = Object.fromEntries(m);
      return JSON.stringify(obj);
    });
  }
}
