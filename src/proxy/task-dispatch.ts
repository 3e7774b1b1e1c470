import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Autoscaler, Reservation } from '../autoscaler';
import type { CloudProvider } from '../cloud';
import type { Clock, Logger } from '../core';
import { abortableSleep, errorMessage } from '../core';
import { augmentTaskOptions, filterOptions, parseTaskOptions, type Limits, type NodeClient } from '../nodeodm';
import type { ClusterNode, HealthPoller, NodeRegistry } from '../nodes';
import { LAUNCHING_OUTPUT, type RouteTable, type TaskTable } from '../routing';
import type { LocalTasks } from './local-tasks';
import type { NodeUploader, TaskParams } from './node-uploader';
import type { OptionsCache } from './options-cache';
import { isPartialName } from './staging-names';
import type { StreamForwarder, StreamSession } from './stream-forward';

/** The init parameters of a task, as the original stores them in tmp/<uuid>/body.json. */
export interface BodyParams {
  options: string | null;
  taskName: string;
  skipPostProcessing: boolean;
  outputs: string | null;
  dateCreated: number | null;
  webhook: string;
}

/** A task whose files are all staged and that is ready to go to a node. */
export interface StagedTask {
  uuid: string;
  token: string | undefined;
  limits: Limits | null;
  params: BodyParams;
  dir: string;
  /** Names of the staged files (body.json excluded). */
  files: string[];
  /** `<public address>/?token=<user token>`, the sm-cluster value of split-merge tasks. */
  smClusterUrl: string;
  /** `<public address>/commit?token=<user token>`, the webhook of an autoscaled node ('' when unknown). */
  commitUrl: string;
}

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
}

const FINAL_FAILURE = 'Failed to forward task to processing node after 5 attempts. Try again later.';
const AUTOSCALE_FAILED = 'No nodes available (attempted to autoscale but failed). Try again later.';
const LOST_ON_RESTART =
  'ClusterODM was restarted while this task was being sent to a node, and its files are gone. Please create the task again.';

/**
 * Takes a staged task to a node: checks and node choice (answered before forwarding starts, as the original),
 * then the forward in the background with retries and node switching. Until the task is on a node it lives in
 * the durable task table, which answers info/output for it and survives restarts.
 */
export class TaskDispatcher implements LocalTasks {
  private readonly d: TaskDispatcherDeps & { forwardRetries: number; retryBaseMs: number };
  private readonly aborts = new Map<string, AbortController>();

  constructor(deps: TaskDispatcherDeps) {
    this.d = { forwardRetries: 5, retryBaseMs: 5000, ...deps };
  }

  /** Validates, approves, picks a node and starts forwarding. Throws the message the client should see. */
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
    // A task streamed during its upload gives its slot back first, so the usual choice is made as if it were not
    // there; it keeps its node only if that choice is the same node.
    const session = d.streaming?.take(t.uuid) ?? null;
    // Choosing the node and counting the forward against its slots happen together, so concurrent tasks
    // see each other (the original counted it only after several awaits).
    const node = d.registry.selectBest(count);
    // Every static node full (or none fits): a machine of its own, if the autoscaler may create one (SPEC §5 step 5).
    // The place under the limit is taken right here, synchronously with the choice.
    const reservation = (!node || node.availableSlots() === 0) && d.autoscaler ? d.autoscaler.reserve(count) : null;
    const streamed = session && !reservation && node === session.node && !session.error ? session : null;
    if (session && !streamed) d.streaming?.abandon(session);
    // An autoscaled task's options are checked against the reference node (the machine does not exist yet).
    const checkNode = reservation ? d.registry.referenceNode() : node;
    if (!checkNode) {
      if (reservation) d.autoscaler?.release(reservation);
      throw new Error('No nodes available');
    }
    if (!reservation) checkNode.transients++;
    let handedOver = false;
    try {
      const specs = await d.options.get(t.token ?? '', t.limits, checkNode);
      const augmented = augmentTaskOptions(parseTaskOptions(t.params.options || '[]'), {
        limits: t.limits,
        splitmerge: d.splitmerge,
        smClusterUrl: t.smClusterUrl,
      });
      const options = filterOptions(augmented, specs);
      const before = d.table.get(t.uuid)?.taskInfo;
      await d.table.put({
        uuid: t.uuid,
        token: t.token,
        phase: 'forwarding',
        taskInfo: {
          uuid: t.uuid,
          // Name and date as given at init (a streamed task was initialised on its node with them).
          name: before?.name || taskName(t.params, d.clock.now()),
          dateCreated: before?.dateCreated ?? t.params.dateCreated ?? d.clock.now(),
          status: { code: 20 },
          options,
          imagesCount: count,
        },
        output: [LAUNCHING_OUTPUT],
        ...(reservation ? {} : { nodeKey: checkNode.key }),
      });
      handedOver = true;
      if (reservation) void this.forwardAutoscaled(t, reservation, options);
      else void this.forward(t, checkNode, options, streamed);
    } finally {
      if (!handedOver) {
        if (reservation) d.autoscaler?.release(reservation);
        else checkNode.transients--;
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
    await removeDir(t.dir);
    await this.d.table.delete(t.uuid);
    this.d.logger.info(`Task ${t.uuid} is on ${node.name}`);
  }

  private logSaveError(uuid: string, e: unknown): void {
    this.d.logger.error(`Cannot save task ${uuid}: ${errorMessage(e)}`);
  }

  /**
   * After a restart: tasks that were being forwarded are checked on their node (the forward may have finished
   * just before the stop), resumed from the staged files, or marked FAILED with a clear message.
   */
  async resume(params: (uuid: string) => Promise<BodyParams | null>): Promise<void> {
    const { d } = this;
    const pending = d.table.entries({ phase: 'forwarding' });
    if (pending.length === 0) return;
    await d.poller.refreshAll();
    for (const entry of pending) {
      const node = d.registry.list().find((n) => n.key === entry.nodeKey);
      // A route written just before the stop means the task landed (its node may just be offline right now).
      const routed = d.routes.has(entry.uuid);
      if (routed || (node && (await this.nodeHasTask(node, entry.uuid)))) {
        if (!routed && node) await d.routes.add(entry.uuid, node, entry.token);
        await removeDir(this.dirOf(entry.uuid));
        await d.table.delete(entry.uuid);
        d.logger.info(`Task ${entry.uuid} was already on ${node?.name ?? 'its node'}`);
        continue;
      }
      const dir = this.dirOf(entry.uuid);
      const p = await params(entry.uuid);
      const files = await listStagedFiles(dir);
      // A task on its way to a machine of its own goes on to that machine (it serves no other task).
      const own = node?.isAutoSpawned() && d.autoscaler ? node : null;
      const next = own ?? (files.length > 0 && p ? d.registry.selectBest(files.length) : null);
      if (!p || files.length === 0 || !next) {
        await d.table.markFailed(entry.uuid, !p || files.length === 0 ? LOST_ON_RESTART : FINAL_FAILURE);
        await removeDir(dir);
        d.logger.warn(`Task ${entry.uuid} could not be resumed after a restart`);
        if (own) await d.autoscaler?.destroyNode(own).catch(() => undefined);
        continue;
      }
      d.logger.info(`Resuming the forward of task ${entry.uuid} to ${next.name}`);
      const t: StagedTask = { uuid: entry.uuid, token: entry.token, limits: null, params: p, dir, files, smClusterUrl: '', commitUrl: '' };
      if (own) {
        void this.forwardAutoscaled(t, { images: files.length, released: true }, entry.taskInfo.options, own);
        continue;
      }
      next.transients++;
      // Recorded first: a second restart must look for the task on this node, or it would be sent to a third.
      if (entry.nodeKey !== next.key) await d.table.update(entry.uuid, { nodeKey: next.key }).catch((e: unknown) => this.logSaveError(entry.uuid, e));
      void this.forward(t, next, entry.taskInfo.options);
    }
  }

  private async nodeHasTask(node: ClusterNode, uuid: string): Promise<boolean> {
    try {
      const info = await this.d.client.getJson(node, `/task/${uuid}/info`);
      return typeof info === 'object' && info !== null && !('error' in info);
    } catch {
      return false;
    }
  }

  // LocalTasks: what the proxy answers for tasks that are not on a node.

  has(uuid: string): boolean {
    const e = this.d.table.get(uuid);
    return e !== undefined && e.phase !== 'uploading';
  }

  owner(uuid: string): string | undefined {
    return this.d.table.get(uuid)?.token;
  }

  info(uuid: string, withOutput: number | null): unknown {
    return this.d.table.infoAnswer(uuid, withOutput) ?? null;
  }

  output(uuid: string, line: number): unknown {
    return this.d.table.outputAnswer(uuid, line) ?? [];
  }

  inS3(uuid: string): boolean {
    const e = this.d.table.get(uuid);
    return e !== undefined && e.phase === 'finished' && typeof e.taskInfo['s3Path'] === 'string';
  }

  async cancel(uuid: string): Promise<void> {
    this.aborts.get(uuid)?.abort();
    await this.d.table.markCanceled(uuid);
    await removeDir(this.dirOf(uuid));
  }

  async remove(uuid: string): Promise<void> {
    this.aborts.get(uuid)?.abort();
    await this.d.table.delete(uuid);
    await removeDir(this.dirOf(uuid));
  }

  list(token: string | undefined): string[] {
    return this.d.table
      .entries({ token })
      .filter((e) => e.phase !== 'uploading')
      .map((e) => e.uuid);
  }

  private dirOf(uuid: string): string {
    return path.join(this.d.tmpDir, uuid);
  }
}

/** The name of a task created without one, as the original. */
export function taskName(p: BodyParams, now: number): string {
  return p.taskName || `Task of ${new Date(now).toISOString()}`;
}

/** What a node's /task/new/init receives for a task. */
export function nodeTaskParams(p: BodyParams, options: unknown[], name: string | undefined, dateCreated: number): TaskParams {
  return {
    name: name || p.taskName,
    options,
    dateCreated,
    skipPostProcessing: p.skipPostProcessing,
    webhook: p.webhook || null,
    outputs: p.outputs,
  };
}

export async function removeDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

/** Staged files of a task dir, without the body.json the intake keeps there and files still being written. */
export async function listStagedFiles(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).filter((f) => f.toLowerCase() !== 'body.json' && !isPartialName(f)).sort();
  } catch {
    return [];
  }
}

