import * as path from 'node:path';
import type { Autoscaler } from '../autoscaler';
import type { Clock, Logger } from '../core';
import { abortableSleep, errorMessage, isRecord } from '../core';
import type { NodeClient } from '../nodeodm';
import type { ClusterNode, HealthPoller, NodeRegistry } from '../nodes';
import { LAUNCHING_OUTPUT, type RouteTable, type TaskEntry, type TaskTable } from '../routing';
import { listStagedFiles, removeDir, type BodyParams, type StagedTask } from './staged-task';
import type { StrayCopies } from './stray-copies';

/** Default of --wait-for-node: how long a task waits for the node it was being sent to when ClusterODM stopped. */
export const DEFAULT_WAIT_FOR_NODE_MS = 30 * 60 * 1000;
/** First pause between two looks at a node that does not answer; it doubles up to 30 times this. */
export const NODE_WAIT_RETRY_MS = 2000;

export const LOST_ON_RESTART =
  'ClusterODM was restarted while this task was being sent to a node, and its files are gone. Please create the task again.';

export interface TaskResumerDeps {
  registry: NodeRegistry;
  poller: HealthPoller;
  routes: RouteTable;
  table: TaskTable;
  client: NodeClient;
  clock: Clock;
  logger: Logger;
  tmpDir: string;
  autoscaler: Autoscaler | null;
  strays: StrayCopies | null;
  waitForNodeMs: number;
  retryBaseMs: number;
}

/** What the resumer asks of the dispatcher. */
export interface ResumeHooks {
  /** Starts the background forward of `t` to `node`; `node.transients` was already counted for it. */
  forward(t: StagedTask, node: ClusterNode, options: unknown[]): void;
  /** Goes on sending `t` to the machine created for it. */
  forwardAutoscaled(t: StagedTask, node: ClusterNode, options: unknown[]): void;
  /** Lets cancel/remove of the task stop the wait. */
  track(uuid: string, ac: AbortController): void;
  untrack(uuid: string, ac: AbortController): void;
  logSaveError(uuid: string, e: unknown): void;
}

type Probe = 'has' | 'lacks' | 'down';
type Staged = { params: BodyParams; files: string[] };

/**
 * After a restart, each task that was being sent to a node is settled on its own: found on its node (the forward
 * finished just before the stop), sent again from its staged files, or, while its node does not answer, kept
 * pending (RUNNING, with an output line saying so) and looked at again with backoff. It moves to another node only
 * once `waitForNodeMs` passed since its node was first found silent, and the node it leaves is recorded in
 * StrayCopies, so a copy there is removed when that node answers again: the task never runs on two nodes. With no
 * node online at all (a whole site rebooting) it keeps waiting, with its files, until a node is back.
 */
export class TaskResumer {
  private readonly waits = new Set<AbortController>();

  constructor(
    private readonly d: TaskResumerDeps,
    private readonly hooks: ResumeHooks,
  ) {}

  async resume(params: (uuid: string) => Promise<BodyParams | null>): Promise<void> {
    // Shared state: other instances' tasks are theirs to resume (their files are in their tmp/).
    const pending = this.d.table.entries({ phase: 'forwarding', stagedHere: true });
    if (pending.length === 0) return;
    await this.d.poller.refreshAll();
    await Promise.all(
      pending.map((entry) =>
        this.resumeOne(entry, params).catch((e: unknown) => this.d.logger.error(`Cannot resume task ${entry.uuid}: ${errorMessage(e)}`)),
      ),
    );
  }

  /** Ends every wait (shutdown); the tasks stay pending in the table for the next start. */
  stop(): void {
    for (const ac of this.waits) ac.abort();
  }

  private async resumeOne(entry: Readonly<TaskEntry>, params: (uuid: string) => Promise<BodyParams | null>): Promise<void> {
    const { d } = this;
    const uuid = entry.uuid;
    const node = d.registry.list().find((n) => n.key === entry.nodeKey) ?? null;
    // A route written just before the stop means the task landed (its node may just be offline right now).
    if (d.routes.has(uuid)) return this.alreadyThere(entry, null);
    const p = await params(uuid);
    const files = await listStagedFiles(this.dirOf(uuid));
    const staged: Staged | null = p && files.length > 0 ? { params: p, files } : null;
    // A task on its way to a machine of its own goes on to that machine (it serves no other task).
    if (node?.isAutoSpawned() && d.autoscaler) return this.resumeAutoscaled(entry, node, staged);
    const ac = new AbortController();
    this.waits.add(ac);
    this.hooks.track(uuid, ac);
    try {
      await this.settle(entry, node, staged, ac.signal);
    } finally {
      this.waits.delete(ac);
      this.hooks.untrack(uuid, ac);
    }
  }

  private async resumeAutoscaled(entry: Readonly<TaskEntry>, own: ClusterNode, staged: Staged | null): Promise<void> {
    if ((await this.probe(own, entry.uuid)) === 'has') return this.alreadyThere(entry, own);
    if (!staged) {
      await this.fail(entry, LOST_ON_RESTART);
      await this.d.autoscaler?.destroyNode(own).catch(() => undefined);
      return;
    }
    this.d.logger.info(`Resuming the forward of task ${entry.uuid} to ${own.name}`);
    this.hooks.forwardAutoscaled(this.stagedTask(entry, staged), own, entry.taskInfo.options);
  }

  /** Looks at the task's node until the task is found there, sent somewhere, failed (no files) or the wait ended. */
  private async settle(entry: Readonly<TaskEntry>, node: ClusterNode | null, staged: Staged | null, signal: AbortSignal): Promise<void> {
    const { d } = this;
    let since = entry.waitingSince ?? null;
    let delay = d.retryBaseMs;
    for (let attempt = 1; !signal.aborted; attempt++) {
      const seen: Probe = node ? await this.probe(node, entry.uuid) : 'down';
      if (signal.aborted) return;
      if (seen === 'has' && node) return this.alreadyThere(entry, node);
      if (seen === 'down') since ??= await this.startWaiting(entry, node);
      // The node answered without the task, the node is gone from the cluster, or it was waited for long enough.
      const free = seen === 'lacks' || !node || (since !== null && d.clock.now() >= since + d.waitForNodeMs);
      if (free && !staged) return this.fail(entry, LOST_ON_RESTART);
      if (free && staged && (await this.moveTo(entry, node, seen, staged, signal))) return;
      if (signal.aborted) return;
      since ??= await this.startWaiting(entry, node);
      this.noteWaiting(entry.uuid, node, since, attempt);
      await abortableSleep(d.clock, delay, signal);
      delay = Math.min(delay * 2, d.retryBaseMs * 30);
    }
  }

  /**
   * Sends the task to the best node, recording first (durably) that the node it leaves may hold a copy to remove.
   * False when no node can take it now (or that record cannot be saved): the caller waits and tries again.
   */
  private async moveTo(entry: Readonly<TaskEntry>, old: ClusterNode | null, seen: Probe, staged: Staged, signal: AbortSignal): Promise<boolean> {
    const { d } = this;
    await d.poller.refreshAll();
    if (signal.aborted) return false;
    const next = d.registry.selectBest(staged.files.length);
    if (!next) return false;
    next.transients++;
    try {
      // A node that answered it has no such task holds no copy that could run; a silent one may.
      if (old && old !== next && seen !== 'lacks') await d.strays?.add(entry.uuid, old);
      await d.strays?.forget(entry.uuid, next.key);
    } catch (e: unknown) {
      next.transients--;
      d.logger.error(`Task ${entry.uuid} stays pending: ${errorMessage(e)}`);
      return false;
    }
    if (signal.aborted) {
      next.transients--;
      return false;
    }
    // Recorded first: a second restart must look for the task on this node, or it would be sent to a third.
    const patch = { nodeKey: next.key, output: [LAUNCHING_OUTPUT], waitingSince: undefined };
    await d.table.update(entry.uuid, patch).catch((e: unknown) => this.hooks.logSaveError(entry.uuid, e));
    d.logger.info(`Resuming the forward of task ${entry.uuid} to ${next.name}`);
    this.hooks.forward(this.stagedTask(entry, staged), next, entry.taskInfo.options);
    return true;
  }

  /** The first time the node is found silent: when (kept in the table, so restarts do not reset the deadline). */
  private async startWaiting(entry: Readonly<TaskEntry>, node: ClusterNode | null): Promise<number> {
    const since = this.d.clock.now();
    const until = new Date(since + this.d.waitForNodeMs).toISOString();
    this.d.logger.warn(
      node
        ? `Task ${entry.uuid} waits for ${node.name}, which does not answer; it moves to another node after ${until}`
        : `Task ${entry.uuid} waits for a node to be online`,
    );
    await this.d.table.update(entry.uuid, { waitingSince: since }).catch((e: unknown) => this.hooks.logSaveError(entry.uuid, e));
    return since;
  }

  /** The line /task/<uuid>/info and /output show while the task waits (saved lazily, as progress). */
  private noteWaiting(uuid: string, node: ClusterNode | null, since: number, attempt: number): void {
    const deadline = since + this.d.waitForNodeMs;
    const line =
      node && this.d.clock.now() < deadline
        ? `Waiting for its processing node to answer (ClusterODM was restarted while sending the task to it): attempt ${attempt}; ` +
          `the task moves to another node if it does not answer by ${new Date(deadline).toISOString()}.`
        : `Waiting for its processing node to answer or for another node to be online: attempt ${attempt}.`;
    this.d.table.update(uuid, { output: [LAUNCHING_OUTPUT, line] }, { durable: false }).catch(() => undefined);
  }

  /** Is the task on that node? 'down' when the node does not answer at all. */
  private async probe(node: ClusterNode, uuid: string): Promise<Probe> {
    try {
      const info = await this.d.client.getJson(node, `/task/${uuid}/info`);
      return isRecord(info) && !('error' in info) ? 'has' : 'lacks';
    } catch {
      return 'down';
    }
  }

  /** The forward finished before the stop: the route (if missing), then files and entry go. */
  private async alreadyThere(entry: Readonly<TaskEntry>, node: ClusterNode | null): Promise<void> {
    const { d } = this;
    if (node && !d.routes.has(entry.uuid)) await d.routes.add(entry.uuid, node, entry.token);
    await removeDir(this.dirOf(entry.uuid));
    await d.table.deleteActive(entry.uuid);
    d.logger.info(`Task ${entry.uuid} was already on ${node?.name ?? 'its node'}`);
  }

  private async fail(entry: Readonly<TaskEntry>, message: string): Promise<void> {
    await this.d.table.markFailed(entry.uuid, message);
    await removeDir(this.dirOf(entry.uuid));
    this.d.logger.warn(`Task ${entry.uuid} could not be resumed after a restart`);
  }

  private stagedTask(entry: Readonly<TaskEntry>, s: Staged): StagedTask {
    const dir = this.dirOf(entry.uuid);
    return { uuid: entry.uuid, token: entry.token, limits: null, params: s.params, dir, files: s.files, smClusterUrl: '', commitUrl: '' };
  }

  private dirOf(uuid: string): string {
    return path.join(this.d.tmpDir, uuid);
  }
}
