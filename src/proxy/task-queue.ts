import * as path from 'node:path';
import type { Autoscaler, Reservation } from '../autoscaler';
import type { Clock, Logger, TimerHandle } from '../core';
import { errorMessage } from '../core';
import { TaskStatus } from '../nodeodm';
import type { ClusterNode, NodeRegistry } from '../nodes';
import { LAUNCHING_OUTPUT, type TaskEntry, type TaskInfo, type TaskTable } from '../routing';
import { listStagedFiles, removeDir, type BodyParams, type StagedTask } from './staged-task';

/** Default of --queue-max: how many tasks may wait for a processing node (0 = no queue, the original's behaviour). */
export const DEFAULT_QUEUE_MAX = 100;
/** How often the queue looks for a free static slot or a place for a machine (also after node health changes). */
export const QUEUE_TICK_MS = 5000;
/** While tasks wait, the nodes' /info is polled this often (the health poller's own round is a minute), so a freed slot is seen soon. */
export const QUEUE_REFRESH_MS = 15_000;
/** After the cloud said "no capacity", how long until a create is tried again (unless a machine goes first). */
export const CAPACITY_RETRY_MS = 60_000;

export const QUEUE_LOST_ON_RESTART = 'ClusterODM was restarted while this task was queued, and its files are gone. Please create the task again.';

/** The output line of a queued task (`/task/<uuid>/info?with_output=0`, `/task/<uuid>/output`). */
export function waitingLine(ahead: number): string {
  return `Waiting for a processing node: ${ahead} ${ahead === 1 ? 'task' : 'tasks'} ahead`;
}

export function queueFullMessage(max: number): string {
  return `No nodes available, and the queue of tasks waiting for a processing node is full (${max} tasks, --queue-max). Try again later.`;
}

/** Where a task that leaves the queue goes: a static node (its `transients` already counted) or a machine of its own. */
export type QueueTarget = { node: ClusterNode; reservation?: undefined } | { node?: undefined; reservation: Reservation };

export interface TaskQueueDeps {
  table: TaskTable;
  registry: NodeRegistry;
  autoscaler: Autoscaler;
  clock: Clock;
  logger: Logger;
  tmpDir: string;
  /** --queue-max (> 0). */
  max: number;
  tickMs?: number;
  capacityRetryMs?: number;
  /** Polls every node's /info (the health poller's refreshAll); called while tasks wait, every refreshMs. */
  refresh?: () => Promise<unknown>;
  refreshMs?: number;
  /** Starts the forward of a task that left the queue (the dispatcher's). */
  launch(t: StagedTask, target: QueueTarget, options: unknown[]): void;
}

/** The dispatcher's queue: with --asr and --queue-max > 0 (default 100), else none. */
export function taskQueueFor(
  d: Omit<TaskQueueDeps, 'max' | 'launch' | 'autoscaler' | 'tickMs' | 'capacityRetryMs'> & {
    autoscaler: Autoscaler | null;
    queueMax?: number | undefined;
    queueTickMs?: number | undefined;
    capacityRetryMs?: number | undefined;
  },
  launch: TaskQueueDeps['launch'],
): TaskQueue | null {
  const max = d.queueMax ?? DEFAULT_QUEUE_MAX;
  if (!d.autoscaler || max <= 0) return null;
  const { table, registry, autoscaler, clock, logger, tmpDir, refresh } = d;
  return new TaskQueue({
    table,
    registry,
    autoscaler,
    clock,
    logger,
    tmpDir,
    max,
    launch,
    ...(refresh ? { refresh } : {}),
    ...(d.queueTickMs !== undefined ? { tickMs: d.queueTickMs } : {}),
    ...(d.capacityRetryMs !== undefined ? { capacityRetryMs: d.capacityRetryMs } : {}),
  });
}

/** A queued task as TASK LIST shows it: its info, and how many tasks are ahead of it. */
export type QueuedTask = TaskInfo & { processingTime: number; ahead: number };

/**
 * The queue of tasks waiting for a processing node (--asr, original #36): when no static node can take a task and
 * the autoscaler cannot create a machine (limit reached, the cloud's "no capacity", maxHourlySpend), the task waits
 * here instead of failing. All its state is in its task-table entry (phase `queued`, `queueSeq`), so the order
 * survives restarts and the table can be shared; its staged files stay in tmp/<uuid>/. Tasks leave in `queueSeq`
 * order, as soon as a static slot is free or a machine may be created; a later task never takes a place an earlier
 * one can use.
 */
export class TaskQueue {
  private readonly d: Required<TaskQueueDeps>;
  /** Staged files and parameters of queued tasks (rebuilt from tmp/ after a restart). */
  private readonly staged = new Map<string, StagedTask>();
  private nextSeq: number | null = null;
  /** No create is tried before this (the cloud said "no capacity"), unless a machine goes first. */
  private blockedUntil = 0;
  private timer: TimerHandle | null = null;
  private unsubscribe: (() => void) | null = null;
  private kickPending = false;
  private lastRefresh = 0;

  constructor(deps: TaskQueueDeps) {
    this.d = { tickMs: QUEUE_TICK_MS, capacityRetryMs: CAPACITY_RETRY_MS, refresh: () => Promise.resolve(), refreshMs: QUEUE_REFRESH_MS, ...deps };
  }

  get max(): number {
    return this.d.max;
  }

  /** Looks at the queue every tick and whenever a machine place may have freed. */
  start(): void {
    if (this.timer) return;
    this.timer = this.d.clock.setInterval(() => this.tick(), this.d.tickMs);
    this.unsubscribe = this.d.autoscaler.onCapacity((why) => {
      if (why === 'destroyed') this.blockedUntil = 0;
      this.kick();
    });
  }

  stop(): void {
    if (this.timer) this.d.clock.clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /** Queued entries, first in line first. */
  ordered(): Array<Readonly<TaskEntry>> {
    return this.d.table.entries({ phase: 'queued' }).sort((a, b) => (a.queueSeq ?? 0) - (b.queueSeq ?? 0));
  }

  length(): number {
    return this.d.table.entries({ phase: 'queued' }).length;
  }

  /** Tasks ahead of `uuid`; null when it is not queued. */
  ahead(uuid: string): number | null {
    return this.d.table.queuedAhead(uuid);
  }

  /** Queued tasks as TASK LIST shows them: their info (QUEUED) and `ahead`, first in line first. */
  list(): QueuedTask[] {
    return this.ordered().map((e, ahead) => ({ ...structuredClone(e.taskInfo), processingTime: -1, ahead }));
  }

  /**
   * The next place in line: above every number in the table, so order holds across restarts, and at least the time
   * of acceptance (ms), so tasks accepted by several instances sharing the table (--redis) line up by that time.
   */
  takeSeq(): number {
    if (this.nextSeq === null) {
      let max = 0;
      for (const e of this.d.table.entries()) if (typeof e.queueSeq === 'number' && e.queueSeq > max) max = e.queueSeq;
      this.nextSeq = max + 1;
    }
    const seq = Math.max(this.nextSeq, Math.floor(this.d.clock.now()));
    this.nextSeq = seq + 1;
    return seq;
  }

  /** Whether the task can wait here: the autoscaler could make it a machine some time. */
  canWait(images: number): boolean {
    return this.d.autoscaler.canHandle(images);
  }

  /**
   * Puts an accepted task in the queue with `seq` (from takeSeq at its acceptance). Throws the client's message when
   * the queue is full. Durable when it resolves.
   */
  async enqueue(t: StagedTask, taskInfo: TaskInfo, seq: number): Promise<void> {
    const waiting = this.length();
    if (waiting >= this.d.max) throw new Error(queueFullMessage(this.d.max));
    this.staged.set(t.uuid, t);
    try {
      await this.d.table.put({
        uuid: t.uuid,
        token: t.token,
        phase: 'queued',
        taskInfo: { ...taskInfo, status: { code: TaskStatus.QUEUED } },
        output: [waitingLine(this.aheadOfSeq(seq))],
        queueSeq: seq,
        ...(t.commitUrl ? { commitUrl: t.commitUrl } : {}),
      });
    } catch (e: unknown) {
      this.staged.delete(t.uuid);
      throw e;
    }
    this.d.logger.info(`Task ${t.uuid} is queued: waiting for a processing node (${this.ahead(t.uuid) ?? 0} tasks ahead)`);
    this.kick();
  }

  /**
   * A task whose machine could not be created because the cloud has no capacity (or maxHourlySpend): back to its
   * place in line, and no create is tried again until a machine goes or CAPACITY_RETRY_MS passed.
   */
  async requeue(t: StagedTask, reason: string): Promise<boolean> {
    const e = this.d.table.get(t.uuid);
    if (e?.phase !== 'forwarding') return false;
    this.blockedUntil = this.d.clock.now() + this.d.capacityRetryMs;
    const seq = e.queueSeq ?? this.takeSeq();
    this.staged.set(t.uuid, t);
    const taskInfo = { ...e.taskInfo, status: { code: TaskStatus.QUEUED } };
    const ok = await this.d.table.update(t.uuid, { phase: 'queued', taskInfo, output: [waitingLine(this.aheadOfSeq(seq))], queueSeq: seq, nodeKey: undefined });
    if (!ok) this.staged.delete(t.uuid);
    else this.d.logger.info(`Task ${t.uuid} is queued again: ${reason}`);
    return ok;
  }

  /** Cancel or remove took the task out (its entry changed phase or went); forgets its staged state. */
  drop(uuid: string): void {
    if (this.staged.delete(uuid)) this.kick();
  }

  /**
   * After a restart: queued tasks get their staged files and parameters back (a task whose files are gone fails with
   * a clear message), then the queue moves.
   */
  async restore(params: (uuid: string) => Promise<BodyParams | null>): Promise<void> {
    // Killed while its machine was being created (no node recorded yet): the reconciliation removes that machine,
    // and the task goes back to its place in line rather than waiting for a node it never had.
    for (const e of this.d.table.entries({ phase: 'forwarding' })) {
      if (e.nodeKey !== undefined || e.queueSeq === undefined) continue;
      const taskInfo = { ...e.taskInfo, status: { code: TaskStatus.QUEUED } };
      await this.d.table.update(e.uuid, { phase: 'queued', taskInfo, output: [waitingLine(this.aheadOfSeq(e.queueSeq))] });
      this.d.logger.info(`Task ${e.uuid} was waiting for a machine when ClusterODM stopped: queued again`);
    }
    for (const e of this.ordered()) {
      if (this.staged.has(e.uuid)) continue;
      const dir = path.join(this.d.tmpDir, e.uuid);
      const p = await params(e.uuid).catch(() => null);
      const files = await listStagedFiles(dir);
      if (!p || files.length === 0) {
        await this.d.table.markFailed(e.uuid, QUEUE_LOST_ON_RESTART).catch(() => false);
        await removeDir(dir);
        this.d.logger.warn(`Queued task ${e.uuid} lost its files in a restart`);
        continue;
      }
      this.staged.set(e.uuid, { uuid: e.uuid, token: e.token, limits: null, params: p, dir, files, smClusterUrl: '', commitUrl: e.commitUrl ?? '' });
    }
    const n = this.length();
    if (n > 0) this.d.logger.info(`${n} queued tasks waiting for a processing node`);
    this.pump();
  }

  /** Every tick while tasks wait: a pump, after a fresh look at the nodes when the last one is refreshMs old. */
  private tick(): void {
    if (this.length() === 0) return;
    const now = this.d.clock.now();
    if (now - this.lastRefresh < this.d.refreshMs) return this.pump();
    this.lastRefresh = now;
    this.d.refresh().then(
      () => this.pump(),
      () => this.pump(),
    );
  }

  /** A pump soon (after the current microtasks, so a failed create has requeued its task first). */
  kick(): void {
    if (this.kickPending) return;
    this.kickPending = true;
    this.d.clock.setTimeout(() => {
      this.kickPending = false;
      this.pump();
    }, 0);
  }

  /**
   * Sends queued tasks on, first in line first: to a static node with a free slot, else to a new machine while the
   * autoscaler has a place. Once a task cannot get a machine, no later task tries (it would take its place).
   * Synchronous, so the slots and places it counts cannot change under it.
   */
  pump(): void {
    const list = this.ordered();
    if (list.length === 0) return;
    let mayCreate = this.d.clock.now() >= this.blockedUntil;
    for (const e of list) {
      const t = this.staged.get(e.uuid);
      if (!t) continue;
      const images = t.files.length;
      const node = this.freeNode(images);
      if (node) {
        node.transients++;
        this.leave(e, t, { node });
        continue;
      }
      if (!mayCreate) continue;
      const reservation = this.d.autoscaler.reserve(images);
      if (reservation) this.leave(e, t, { reservation });
      else mayCreate = false;
    }
    this.refreshLines();
  }

  /** Each waiting task's output says how many are ahead of it (saved lazily, as progress). */
  private refreshLines(): void {
    this.ordered().forEach((e, ahead) => {
      // Another instance's queued task (shared table): that instance keeps its line.
      if (!this.staged.has(e.uuid)) return;
      const line = waitingLine(ahead);
      if (e.output.length === 1 && e.output[0] === line) return;
      this.d.table.update(e.uuid, { output: [line] }, { durable: false }).catch(() => undefined);
    });
  }

  private freeNode(images: number): ClusterNode | null {
    if (!this.d.registry.list().some((n) => n.availableSlots() > 0)) return null;
    const node = this.d.registry.selectBest(images);
    return node && node.availableSlots() > 0 ? node : null;
  }

  private leave(e: Readonly<TaskEntry>, t: StagedTask, target: QueueTarget): void {
    const { d } = this;
    this.staged.delete(e.uuid);
    // The entry changes in memory now (the save follows), so a cancel from here on finds the task being forwarded.
    const saved = d.table.update(e.uuid, {
      phase: 'forwarding',
      taskInfo: { ...e.taskInfo, status: { code: TaskStatus.RUNNING } },
      output: [LAUNCHING_OUTPUT],
      ...(target.node ? { nodeKey: target.node.key } : {}),
    });
    d.logger.info(`Task ${e.uuid} leaves the queue for ${target.node ? target.node.name : 'a new machine'}`);
    d.launch(t, target, e.taskInfo.options);
    saved.catch((err: unknown) => d.logger.error(`Cannot save task ${e.uuid}: ${errorMessage(err)}`));
  }

  private aheadOfSeq(seq: number): number {
    return this.d.table.entries({ phase: 'queued' }).filter((x) => (x.queueSeq ?? 0) < seq).length;
  }
}
