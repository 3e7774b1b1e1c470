import * as path from 'node:path';
import type { Autoscaler, Reservation } from '../autoscaler';
import type { CloudProvider } from '../cloud';
import type { Clock, Logger } from '../core';
import { abortableSleep, ClusterError, errorMessage } from '../core';
import { augmentTaskOptions, filterOptions, parseTaskOptions, type NodeClient } from '../nodeodm';
import type { ClusterNode, HealthPoller, NodeRegistry } from '../nodes';
import { LAUNCHING_OUTPUT, type RouteTable, type TaskTable } from '../routing';
import { TableTaskAnswers, type LocalTasks } from './local-tasks';
import type { NodeUploader, TaskParams } from './node-uploader';
import type { OptionsCache } from './options-cache';
import { nodeTaskParams, removeDir, taskName, type BodyParams, type StagedTask } from './staged-task';
import type { StrayCopies } from './stray-copies';
import type { StreamForwarder, StreamSession } from './stream-forward';
import { chooseTarget, chooseWithoutMachine } from './dispatch-choice';
import { taskQueueFor, type TaskQueue } from './task-queue';
import { DEFAULT_WAIT_FOR_NODE_MS, NODE_WAIT_RETRY_MS, TaskResumer } from './task-resume';

export { listStagedFiles, nodeTaskParams, removeDir, taskName, type BodyParams, type StagedTask } from './staged-task';

export interface TaskDispatcherDeps {
  registry: NodeRegistry;
  poller: HealthPoller;
  routes: RouteTable;
  table: TaskTable;
  cloud: CloudProvider;
  options: OptionsCache;
  uploader: NodeUploader;
  client: NodeClient;
  clock: Clock;
  logger: Logger;
  splitmerge: boolean;
  /** Where staged tasks live: tmp/<uuid>/. */
  tmpDir: string;
  /** Tasks whose images were sent on while being uploaded. */
  streaming?: StreamForwarder | null;
  /** Creates a machine for a task when every static node is full (--asr). */
  autoscaler?: Autoscaler | null;
  /** Retries after the first attempt (the original: 5, with 5 s × retry between them). */
  forwardRetries?: number;
  retryBaseMs?: number;
  /** Copies that may be left on nodes a task moved away from (removed when those nodes answer again). */
  strays?: StrayCopies | null;
  /** --wait-for-node: after a restart, how long a task waits for its silent node before it moves (default 30 min). */
  waitForNodeMs?: number;
  /** First pause between two looks at that node (doubling up to 30×; default 2 s). */
  nodeWaitRetryMs?: number;
  /** --queue-max: tasks that may wait for a processing node with --asr (default 100; 0 = none, they fail at once). */
  queueMax?: number;
  /** Tests: how often the queue looks for a place, and how long after "no capacity" a create is tried again. */
  queueTickMs?: number;
  capacityRetryMs?: number;
}

const FINAL_FAILURE = 'Failed to forward task to processing node after 5 attempts. Try again later.';
const AUTOSCALE_FAILED = 'No nodes available (attempted to autoscale but failed). Try again later.';

/**
 * Takes a staged task to a node: checks and node choice (answered before forwarding starts, as the original),
 * then the forward in the background with retries and node switching. Until the task is on a node it lives in
 * the durable task table, which answers info/output for it and survives restarts.
 */
export class TaskDispatcher extends TableTaskAnswers implements LocalTasks {
  private readonly d: TaskDispatcherDeps & { forwardRetries: number; retryBaseMs: number };
  private readonly aborts = new Map<string, AbortController>();
  private readonly resumer: TaskResumer;
  /** Tasks waiting for a static slot or a machine (--asr with --queue-max > 0). */
  readonly queue: TaskQueue | null;

  constructor(deps: TaskDispatcherDeps) {
    super(deps.table);
    this.d = { forwardRetries: 5, retryBaseMs: 5000, ...deps };
    const { d } = this;
    this.queue = taskQueueFor({ ...d, autoscaler: d.autoscaler ?? null, refresh: () => d.poller.refreshAll() }, (t, target, options) =>
      void (target.node ? this.forward(t, target.node, options) : this.forwardAutoscaled(t, target.reservation, options)),
    );
    this.resumer = new TaskResumer(
      {
        ...d,
        autoscaler: d.autoscaler ?? null,
        strays: d.strays ?? null,
        waitForNodeMs: d.waitForNodeMs ?? DEFAULT_WAIT_FOR_NODE_MS,
        retryBaseMs: d.nodeWaitRetryMs ?? NODE_WAIT_RETRY_MS,
      },
      {
        forward: (t, node, options) => void this.forward(t, node, options),
        forwardAutoscaled: (t, node, options) => void this.forwardAutoscaled(t, { images: t.files.length, released: true }, options, node),
        track: (uuid, ac) => this.aborts.set(uuid, ac),
        untrack: (uuid, ac) => {
          if (this.aborts.get(uuid) === ac) this.aborts.delete(uuid);
        },
        logSaveError: (uuid, e) => this.logSaveError(uuid, e),
      },
    );
  }

  /** Validates, approves, picks a node (or the queue) and starts forwarding. Throws the message the client should see. */
  async accept(t: StagedTask): Promise<void> {
    const { d } = this;
    const count = t.files.length;
    if (count < 1) throw new Error(`Not enough images (${count} files uploaded)`);
    if (!d.splitmerge && t.files.includes('seed.zip')) {
      throw new Error('Cannot use this node as a split-merge cluster.');
    }
    const approval = await d.cloud.approveNewTask(t.token ?? '', count);
    if (!approval.approved) throw new Error(approval.error);
    await d.poller.refreshAll();
    // A task streamed during its upload keeps its node when the usual choice finds it as good (see selectNode).
    const session = d.streaming?.take(t.uuid) ?? null;
    // Choosing the node (or a machine, or the queue) and counting the forward against it happen together, so
    // concurrent tasks see each other (the original counted it only after several awaits).
    const keep = session && !session.error ? session.node : null;
    let choice = chooseTarget(d.registry, d.autoscaler ?? null, this.queue, count, keep);
    // Several instances (--redis): the place is also taken in the shared state (the cluster's limit), or the task is
    // chosen for as if the limit were reached.
    if (choice.reservation && d.autoscaler?.sharedLimit && !(await d.autoscaler.confirm(choice.reservation))) {
      choice = chooseWithoutMachine(d.registry, this.queue, count, keep);
    }
    const { reservation, queued } = choice;
    // Its place in line, taken with the choice (should its machine be refused for lack of capacity, it goes back there).
    const seq = this.queue && (queued || reservation) ? this.queue.takeSeq() : null;
    const node = reservation || queued ? null : choice.node;
    const streamed = session && node && node === session.node && !session.error ? session : null;
    if (session && !streamed) d.streaming?.abandon(session);
    // An autoscaled or queued task's options are checked against the reference node (no node of its own yet).
    const checkNode = reservation || queued ? d.registry.referenceNode() : node;
    if (!checkNode) {
      if (reservation) d.autoscaler?.release(reservation);
      throw new Error('No nodes available');
    }
    if (node) node.transients++;
    let handedOver = false;
    try {
      const specs = await d.options.get(t.limits, checkNode);
      const augmented = augmentTaskOptions(parseTaskOptions(t.params.options || '[]'), {
        limits: t.limits,
        splitmerge: d.splitmerge,
        smClusterUrl: t.smClusterUrl,
      });
      const options = filterOptions(augmented, specs);
      const before = d.table.get(t.uuid)?.taskInfo;
      const taskInfo = {
        uuid: t.uuid,
        // Name and date as given at init (a streamed task was initialised on its node with them).
        name: before?.name || taskName(t.params, d.clock.now()),
        dateCreated: before?.dateCreated ?? t.params.dateCreated ?? d.clock.now(),
        status: { code: 20 },
        options,
        imagesCount: count,
      };
      if (queued && this.queue) {
        await this.queue.enqueue(t, taskInfo, seq ?? 0);
        handedOver = true;
        return;
      }
      await d.table.put({
        uuid: t.uuid,
        token: t.token,
        phase: 'forwarding',
        taskInfo,
        output: [LAUNCHING_OUTPUT],
        ...(node ? { nodeKey: node.key } : {}),
        ...(seq !== null ? { queueSeq: seq, ...(t.commitUrl ? { commitUrl: t.commitUrl } : {}) } : {}),
      });
      handedOver = true;
      if (reservation) void this.forwardAutoscaled(t, reservation, options);
      else if (node) void this.forward(t, node, options, streamed);
    } finally {
      if (!handedOver) {
        if (reservation) d.autoscaler?.release(reservation);
        else if (node) node.transients--;
        if (streamed) d.streaming?.abandon(streamed);
      }
    }
  }

  private taskParams(t: StagedTask, options: unknown[]): TaskParams {
    const entry = this.d.table.get(t.uuid);
    return nodeTaskParams(t.params, options, entry?.taskInfo.name, entry?.taskInfo.dateCreated ?? this.d.clock.now());
  }

  /** The background forward. `node.transients` was incremented for `node` by the caller. */
  private async forward(t: StagedTask, first: ClusterNode, options: unknown[], streamed: StreamSession | null = null): Promise<void> {
    const { d } = this;
    const ac = new AbortController();
    this.aborts.set(t.uuid, ac);
    let node = first;
    try {
      if (streamed && (await this.finishStreamed(t, streamed, options, ac.signal))) return;
      if (ac.signal.aborted) return;
      const result = await this.sendWithRetries(t, first, options, ac.signal, async (current) => {
        node = await this.switchNode(t, current);
        return node;
      });
      if (result.ok || ac.signal.aborted) return;
      d.logger.error(`Cannot forward task ${t.uuid} to processing node ${node.name}: ${result.error}`);
      await removeDir(t.dir);
      await d.table.markFailed(t.uuid, FINAL_FAILURE).catch((e: unknown) => this.logSaveError(t.uuid, e));
    } finally {
      node.transients--;
      this.aborts.delete(t.uuid);
    }
  }

  /**
   * Sends the staged task to `first`, retrying (6 attempts in all, 5 s × retry apart, as the original) and asking
   * `next` for the node of each retry. Resolves once the task landed, was aborted, or every attempt failed.
   */
  private async sendWithRetries(
    t: StagedTask,
    first: ClusterNode,
    options: unknown[],
    signal: AbortSignal,
    next: (current: ClusterNode) => Promise<ClusterNode>,
  ): Promise<{ ok: true } | { ok: false; error: string }> {
    const { d } = this;
    let node = first;
    let lastError = '';
    for (let attempt = 0; attempt <= d.forwardRetries; attempt++) {
      try {
        const files = t.files.map((name) => ({ path: path.join(t.dir, name), name }));
        await d.uploader.sendTask(node, t.uuid, this.taskParams(t, options), files, { signal });
        await this.landed(t, node);
        return { ok: true };
      } catch (e: unknown) {
        if (signal.aborted) return { ok: false, error: 'Aborted' };
        lastError = errorMessage(e);
        if (attempt === d.forwardRetries) break;
        d.logger.warn(
          `Attempted to forward task ${t.uuid} to processing node ${node.name} but failed with: ${lastError}, attempting again (retry: ${attempt + 1})`,
        );
        await abortableSleep(d.clock, d.retryBaseMs * (attempt + 1), signal);
        if (signal.aborted) return { ok: false, error: 'Aborted' };
        node = await next(node);
      }
    }
    return { ok: false, error: lastError };
  }

  /**
   * The background forward of an autoscaled task: a machine of its own, then the task to it (same node on every
   * retry, as the original). Unlike the original, a failed forward or an abort destroys the machine.
   */
  private async forwardAutoscaled(t: StagedTask, r: Reservation, options: unknown[], existing: ClusterNode | null = null): Promise<void> {
    const { d } = this;
    const asr = d.autoscaler;
    if (!asr) return;
    const ac = new AbortController();
    this.aborts.set(t.uuid, ac);
    let node: ClusterNode | null = existing;
    try {
      if (!node) {
        try {
          node = await asr.createNode(
            r,
            { uuid: t.uuid, images: t.files.length, commitUrl: t.commitUrl, onStep: (m) => this.noteStep(t.uuid, m) },
            ac.signal,
          );
        } catch (e: unknown) {
          if (ac.signal.aborted) return;
          // No capacity at the cloud (or over maxHourlySpend): back to its place in the queue, files kept.
          if (this.queue && e instanceof ClusterError && e.code === 'NO_CAPACITY') {
            if (await this.queue.requeue(t, asr.mask(errorMessage(e)))) return;
          }
          d.logger.error(`Cannot create node via autoscaling: ${asr.mask(errorMessage(e))} (task ${t.uuid})`);
          await removeDir(t.dir);
          await d.table.markFailed(t.uuid, AUTOSCALE_FAILED).catch((err: unknown) => this.logSaveError(t.uuid, err));
          return;
        }
        if (!ac.signal.aborted) {
          await d.table.update(t.uuid, { nodeKey: node.key }).catch((e: unknown) => this.logSaveError(t.uuid, e));
        }
      }
      const result = ac.signal.aborted ? null : await this.sendWithRetries(t, node, options, ac.signal, async (n) => n);
      if (result?.ok) return;
      if (result && !ac.signal.aborted) {
        d.logger.error(`Cannot forward task ${t.uuid} to processing node ${node.name}: ${result.error}`);
        await removeDir(t.dir);
        await d.table.markFailed(t.uuid, FINAL_FAILURE).catch((e: unknown) => this.logSaveError(t.uuid, e));
      }
      const gone = node;
      await asr.destroyNode(gone).catch((e: unknown) => d.logger.error(`Cannot destroy ${gone.name}: ${asr.mask(errorMessage(e))}`));
    } finally {
      asr.release(r);
      this.aborts.delete(t.uuid);
    }
  }

  /** An autoscaler step, added to the task's output so the client sees progress. */
  private noteStep(uuid: string, message: string): void {
    const e = this.d.table.get(uuid);
    if (!e || e.phase !== 'forwarding') return;
    this.d.table.update(uuid, { output: [...e.output, message].slice(-100) }, { durable: false }).catch(() => undefined);
  }

  /**
   * A task whose images went to its node during the upload: send what is left and commit. False (after cleaning up)
   * when that did not work out; the caller then sends the task again from the staged copy.
   */
  private async finishStreamed(t: StagedTask, s: StreamSession, options: unknown[], signal: AbortSignal): Promise<boolean> {
    const { d } = this;
    const abort = (): void => s.ac.abort();
    signal.addEventListener('abort', abort, { once: true });
    try {
      const files = t.files.map((name) => ({ path: path.join(t.dir, name), name }));
      await d.streaming?.complete(s, files);
      if (JSON.stringify(this.taskParams(t, options)) !== JSON.stringify(s.params)) {
        throw new Error('the task changed since it was initialised');
      }
      await d.uploader.commit(s.node, t.uuid, s.ac.signal);
      await d.uploader.checkCommitted(s.node, t.uuid, files, s.ac.signal);
      await this.landed(t, s.node);
      return true;
    } catch (e: unknown) {
      if (!signal.aborted) {
        d.logger.warn(`Task ${t.uuid} could not be completed on ${s.node.name} (${errorMessage(e)}), sending it again`);
      }
      s.ac.abort();
      return false;
    } finally {
      signal.removeEventListener('abort', abort);
    }
  }

  /** After a failed attempt: a fresh poll, and another node if a better one is available. */
  private async switchNode(t: StagedTask, current: ClusterNode): Promise<ClusterNode> {
    const { d } = this;
    await d.poller.refreshAll();
    const next = d.registry.selectBest(t.files.length);
    if (!next || next === current) {
      d.logger.info(`No other nodes available to process ${t.uuid}, we'll retry the same one.`);
      return current;
    }
    current.transients--;
    next.transients++;
    // The failed attempt may have left a committed copy there (a lost commit answer from a node that then went
    // silent): it is removed when that node answers again.
    await d.strays?.add(t.uuid, current).catch((e: unknown) => this.logSaveError(t.uuid, e));
    await d.strays?.forget(t.uuid, next.key).catch((e: unknown) => this.logSaveError(t.uuid, e));
    d.logger.info(`Switched ${t.uuid} to ${next.name}`);
    await d.table.update(t.uuid, { nodeKey: next.key }).catch((e: unknown) => this.logSaveError(t.uuid, e));
    return next;
  }

  private async landed(t: StagedTask, node: ClusterNode): Promise<void> {
    try {
      await this.d.routes.add(t.uuid, node, t.token);
    } catch (e: unknown) {
      // The task is on its node: sending it again would destroy it there. The route is in memory; the table entry
      // and the files stay, so a restart finds the task on this node and records the route then.
      this.d.logger.error(`Task ${t.uuid} is on ${node.name} but its route cannot be saved: ${errorMessage(e)}`);
      return;
    }
    // Files before the table entry: a kill in between leaves an entry that a restart resolves, never an orphan dir.
    // A final record (the task already finished on its machine and its webhook came first) stays.
    await removeDir(t.dir);
    await this.d.table.deleteActive(t.uuid);
    this.d.logger.info(`Task ${t.uuid} is on ${node.name}`);
  }

  private logSaveError(uuid: string, e: unknown): void {
    this.d.logger.error(`Cannot save task ${uuid}: ${errorMessage(e)}`);
  }

  /**
   * After a restart: tasks that were being forwarded are found on their node, resumed from the staged files, or
   * kept pending while their node does not answer (see TaskResumer). Resolves once each is settled.
   */
  async resume(params: (uuid: string) => Promise<BodyParams | null>): Promise<void> {
    if (this.queue) {
      this.queue.start();
      await this.queue.restore(params);
    }
    return this.resumer.resume(params);
  }

  /** Ends the waits of resumed tasks and the queue's timer (shutdown); they stay pending in the task table. */
  stop(): void {
    this.resumer.stop();
    this.queue?.stop();
  }

  // LocalTasks: what the proxy answers for tasks that are not on a node.

  async cancel(uuid: string): Promise<void> {
    this.queue?.drop(uuid);
    this.aborts.get(uuid)?.abort();
    await this.d.table.markCanceled(uuid);
    await removeDir(this.dirOf(uuid));
  }

  async remove(uuid: string): Promise<void> {
    this.queue?.drop(uuid);
    this.aborts.get(uuid)?.abort();
    await this.d.table.delete(uuid);
    await removeDir(this.dirOf(uuid));
  }

  private dirOf(uuid: string): string {
    return path.join(this.d.tmpDir, uuid);
  }
}
