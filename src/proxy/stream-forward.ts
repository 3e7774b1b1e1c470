import type * as http from 'node:http';
import * as path from 'node:path';
import type { Clock, Logger, TimerHandle } from '../core';
import { errorMessage } from '../core';
import type { ClusterNode, NodeRegistry } from '../nodes';
import type { NodeUploader, TaskParams, UploadFile } from './node-uploader';
import type { RequestFlow } from './request-flow';
import { DEFAULT_TEE_HOLD_BYTES, DEFAULT_TEE_LAG_BYTES, DEFAULT_TEE_STALL_MS, sameNameOnNode, teeable, teeRequest, type TeeBody } from './upload-tee';

/** One client upload request copied to the node as it arrives (StreamForwarder.tee). */
export interface UploadTeeHandle {
  /** Starts the copy: call it in the same synchronous block as the staging parser's pipe, so both see every byte. */
  start(): void;
  /** A file of the request is staged (in upload order), as `name` in the task's staging dir. */
  file(name: string, originalName: string): void;
  /** Staging ended: ok = every file is on disk and the client hears success. */
  staged(ok: boolean): void;
}

/** A task whose images go to a node while the client is still uploading them. */
export class StreamSession {
  readonly uuid: string;
  readonly node: ClusterNode;
  /** The task's staging dir. */
  readonly dir: string;
  /** The task's init parameters for a node (kept to initialise the task on another node if it moves). */
  readonly paramsFor: (node: ClusterNode) => Promise<TaskParams>;
  /** What the task was initialised with on the node (the dispatcher checks it still holds at commit). */
  params: TaskParams | null = null;
  readonly ac = new AbortController();
  readonly sent = new Set<string>();
  /** Files on their way to the node inside a copy of the client's upload request (not in `queue`). */
  readonly teeing = new Set<string>();
  /** Files staged for the task so far (their count decides the node). */
  staged = 0;
  /** The task is initialised on the node. */
  initialized = false;
  error: string | null = null;
  ready: Promise<void> = Promise.resolve();
  queue: UploadFile[] = [];
  active = 0;
  /** Files on their way to the node in uploads read from disk (taken out of `queue`, not yet in `sent`). */
  readonly sending = new Set<string>();
  idleTimer: TimerHandle | null = null;
  private waiters: Array<() => void> = [];

  constructor(uuid: string, dir: string, node: ClusterNode, paramsFor: (node: ClusterNode) => Promise<TaskParams>) {
    this.uuid = uuid;
    this.dir = dir;
    this.node = node;
    this.paramsFor = paramsFor;
  }

  get settled(): boolean {
    return this.queue.length === 0 && this.active === 0;
  }

  /** Resolves once every queued file has been sent (or sending failed). */
  whenSettled(): Promise<void> {
    if (this.settled) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  notify(): void {
    if (!this.settled) return;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

export interface StreamForwarderDeps {
  registry: NodeRegistry;
  uploader: NodeUploader;
  clock: Clock;
  logger: Logger;
  /** Files per upload request to the node. */
  batchFiles?: number;
  /** Upload requests in flight per task. */
  parallel?: number;
  /** A session with no new file for this long gives its node slot back (the task can still be committed later). */
  idleMs?: number;
  /** How long an upload waits for the task's init on the node before it is staged without a copy to the node. */
  teeWaitMs?: number;
  /** How far (bytes held in memory) a node may fall behind a client's upload before that copy is dropped. */
  teeLagBytes?: number;
  /** How long a node that far behind may hold the client's upload (when the staging shares its flow) before its copy is dropped. */
  teeStallMs?: number;
  /**
   * With an autoscaler (--asr): stream only to a node with a free slot (a task that finds every node full at
   * commit gets a machine of its own, so streaming it to a full node would be wasted).
   */
  needFreeSlot?: boolean;
}

/**
 * Sends each image to a node as soon as it is staged, so that at commit the node already holds (nearly) every image
 * (the original staged the whole task, then re-sent it: about twice the time of a direct upload). The node is the
 * one the commit would choose for the images staged so far (one policy, see selectStreamingNode); a task that
 * outgrows it moves to the next fitting node while it is uploaded. An open upload is not a busy slot of its node.
 * The staged copy stays on disk: if the node fails, falls behind, or is not the commit's choice after all, the
 * files are sent from it.
 */
export class StreamForwarder {
  private readonly d: Required<StreamForwarderDeps>;
  private readonly sessions = new Map<string, StreamSession>();

  constructor(deps: StreamForwarderDeps) {
    this.d = { batchFiles: 4, parallel: 4, idleMs: 30 * 60 * 1000, teeWaitMs: 2000, teeLagBytes: DEFAULT_TEE_LAG_BYTES, teeStallMs: DEFAULT_TEE_STALL_MS, needFreeSlot: false, ...deps };
  }

  /**
   * At init: choose the node the commit would choose (for a task of 1 image: the count is not known yet) and
   * initialise the task there, in the background, with the parameters `paramsFor` gives for that node (its options
   * are validated against that node's own option list). `dir` is the task's staging dir.
   */
  begin(uuid: string, dir: string, paramsFor: (node: ClusterNode) => Promise<TaskParams>): void {
    const node = this.d.registry.selectForStreaming(1, this.d.needFreeSlot);
    if (node) this.open(uuid, dir, node, paramsFor);
  }

  private open(uuid: string, dir: string, node: ClusterNode, paramsFor: (node: ClusterNode) => Promise<TaskParams>): StreamSession {
    node.uploads++;
    const s = new StreamSession(uuid, dir, node, paramsFor);
    this.sessions.set(uuid, s);
    this.touch(s);
    s.ready = (async () => {
      s.params = await paramsFor(node);
      // A fresh task: a node can hold it committed only under a client's set-uuid that another task took there.
      if ((await this.d.uploader.init(node, uuid, s.params, s.ac.signal)) === 'committed') {
        throw new Error(`task ${uuid} is already committed on ${node.name}`);
      }
      s.initialized = true;
    })().catch((e: unknown) => {
      this.fail(s, e);
    });
    this.d.logger.debug(`Streaming task ${uuid} to ${node.name} while it is uploaded`);
    return s;
  }

  /** A staged file: sent on as soon as an upload slot is free. */
  add(uuid: string, file: UploadFile): void {
    const s = this.sessions.get(uuid);
    if (!s || s.error) return;
    this.touch(s);
    if (this.counted(s, file.name)) return;
    s.queue.push(file);
    this.pump(s);
  }

  /**
   * Counts a staged file. True when the task has outgrown its node with it: the task then moved (with every staged
   * file, this one included) to the node the commit would now choose, or stopped streaming if there is none.
   */
  private counted(s: StreamSession, name: string): boolean {
    const count = ++s.staged;
    const max = s.node.maxImages();
    if (max === null || count <= max) return false;
    const next = this.d.registry.selectForStreaming(count, this.d.needFreeSlot);
    // Every file staged so far is sent, on its way or waiting (a failed session is never moved: add skips it).
    const names = new Set([...s.sent, ...s.teeing, ...s.sending, ...s.queue.map((f) => f.name), name]);
    this.discard(s.uuid);
    if (!next) {
      this.d.logger.info(`Task ${s.uuid} has ${count} images, more than ${s.node.name} takes; no node takes them now, it will be sent at commit`);
      return true;
    }
    this.d.logger.info(`Task ${s.uuid} has ${count} images, more than ${s.node.name} takes; streaming it to ${next.name} instead`);
    const moved = this.open(s.uuid, s.dir, next, s.paramsFor);
    moved.staged = count;
    for (const f of names) moved.queue.push({ path: path.join(s.dir, f), name: f });
    this.pump(moved);
    return true;
  }

  /**
   * A client upload request of a streamed task, copied as is to the task's node while it is staged (instead of
   * each file being read back from disk once staged): null when that cannot be done (no session, no announced
   * length, --upload-max-speed, the node's init not done within teeWaitMs); the caller then reports each staged
   * file with `add`. Must be followed, in the same tick, by the staging parser's pipe. With `flow` (shared with the
   * staging), a node a little behind holds the client for up to teeStallMs (at most `maxStallMs`: the staging's
   * idle timeout must not fire while the node holds the client) instead of losing the copy at once.
   */
  async tee(uuid: string, dir: string, req: http.IncomingMessage, flow?: RequestFlow, maxStallMs = Infinity): Promise<UploadTeeHandle | null> {
    const s = this.sessions.get(uuid);
    if (!s || s.error || !this.d.uploader.canSendRawBodies || !teeable(req.headers)) return null;
    if (!s.initialized) await raceTimeout(s.ready, this.d.teeWaitMs, this.d.clock);
    if (!s.initialized || s.error || this.sessions.get(uuid) !== s) return null;
    // The node is behind (files wait to be sent from disk): a copy of this request would only compete with them.
    if (s.queue.length > 0 || s.sending.size > 0) return null;
    this.touch(s);
    s.active++;
    // Names only: a request can stage thousands of files, and a path per file would be held until it ends.
    const names: string[] = [];
    let renamed = false;
    /** The copy ended before the node confirmed it: this request's files go from disk, each once staged. */
    let detached = false;
    let staged: boolean | null = null;
    let sent: { error: string | null } | null = null;
    let body: TeeBody | null = null;
    const current = (): boolean => this.sessions.get(uuid) === s && !s.ac.signal.aborted;
    const fallBack = (reason: string): void => {
      if (detached) return;
      detached = true;
      for (const name of names) s.teeing.delete(name);
      if (current()) {
        this.d.logger.warn(`Copying an upload of task ${uuid} to ${s.node.name} failed (${reason}); sending its files from disk`);
        for (const name of names) s.queue.push({ path: path.join(dir, name), name });
        this.pump(s);
      }
      names.length = 0;
      renamed = false;
    };
    const settle = (): void => {
      if (staged === null || sent === null) return;
      // staged false: the client was told the upload failed, and the intake discards the session.
      if (staged && sent.error !== null) fallBack(sent.error);
      s.active--;
      for (const name of names) s.teeing.delete(name);
      if (staged && !detached) {
        if (renamed) this.fail(s, new Error('a file was renamed while staged, so the node holds it under another name'));
        else for (const name of names) s.sent.add(name);
      }
      this.pump(s);
    };
    return {
      start: () => {
        if (body) return;
        body = teeRequest(req, this.d.teeLagBytes, flow ? { flow, clock: this.d.clock, stallMs: Math.min(this.d.teeStallMs, maxStallMs), holdBytes: Math.min(this.d.teeLagBytes, DEFAULT_TEE_HOLD_BYTES) } : undefined);
        void this.d.uploader
          .uploadBody(s.node, uuid, body, s.ac.signal)
          .then(
            () => (sent = { error: null }),
            (e: unknown) => {
              const error = errorMessage(e);
              sent = { error };
              // A node that stopped reading may hold a cut file under its real name: a catch-up there would store
              // the whole one beside it (NodeODM renames it), so the task goes again from nothing at commit.
              if (body?.lagged() && current()) this.fail(s, e);
              // While the client is still sending: the files staged so far, and the next ones, go from disk now.
              else if (staged === null) fallBack(error);
            },
          )
          .then(settle);
      },
      file: (name, originalName) => {
        if (detached || !current()) {
          this.add(uuid, { path: path.join(dir, name), name });
          return;
        }
        this.touch(s);
        if (this.counted(s, name)) return;
        names.push(name);
        s.teeing.add(name);
        if (!sameNameOnNode(name, originalName)) renamed = true;
      },
      staged: (ok) => {
        if (staged !== null) return;
        if (!ok) body?.stream.destroy();
        // Never started: nothing went to the node.
        if (!body) sent = { error: 'not started' };
        staged = ok;
        settle();
      },
    };
  }

  private pump(s: StreamSession): void {
    while (!s.error && s.active < this.d.parallel && s.queue.length > 0) {
      const batch = s.queue.splice(0, this.d.batchFiles);
      for (const f of batch) s.sending.add(f.name);
      s.active++;
      for (const f of batch) s.sending.add(f.name);
      void (async () => {
        try {
          await s.ready;
          if (s.error) return;
          await this.d.uploader.upload(s.node, s.uuid, batch, s.ac.signal);
          for (const f of batch) s.sent.add(f.name);
        } catch (e: unknown) {
          this.fail(s, e);
        } finally {
          for (const f of batch) s.sending.delete(f.name);
          s.active--;
          for (const f of batch) s.sending.delete(f.name);
          this.pump(s);
          s.notify();
        }
      })();
    }
    if (s.error) s.queue = [];
    s.notify();
  }

  private fail(s: StreamSession, e: unknown): void {
    if (s.error) return;
    s.error = errorMessage(e);
    s.queue = [];
    // An abandoned session (moved, discarded) fails its pending sends on purpose.
    if (!s.ac.signal.aborted) this.d.logger.warn(`Streaming task ${s.uuid} to ${s.node.name} failed (${s.error}); it will be sent at commit`);
    s.notify();
  }

  private touch(s: StreamSession): void {
    if (s.idleTimer) this.d.clock.clearTimeout(s.idleTimer);
    s.idleTimer = this.d.clock.setTimeout(() => {
      this.d.logger.info(`Upload of task ${s.uuid} idle, giving back its slot on ${s.node.name}`);
      this.discard(s.uuid);
    }, this.d.idleMs);
  }

  /**
   * At commit: the session of a task, taken out (the node no longer counts it among its uploads). The caller then
   * finishes it (complete) or abandons it.
   */
  take(uuid: string): StreamSession | null {
    const s = this.sessions.get(uuid);
    if (!s) return null;
    this.sessions.delete(uuid);
    if (s.idleTimer) this.d.clock.clearTimeout(s.idleTimer);
    s.node.uploads--;
    return s;
  }

  /** Sends the files not sent yet, waits for everything in flight; throws if anything failed. */
  async complete(s: StreamSession, files: readonly UploadFile[]): Promise<void> {
    // A Set, not queue.some() per file: a task of 20,000 images with many still queued would block for seconds.
    const queued = new Set(s.queue.map((q) => q.name));
    for (const f of files) {
      if (!s.sent.has(f.name) && !s.teeing.has(f.name) && !s.sending.has(f.name) && !queued.has(f.name)) s.queue.push(f);
    }
    this.pump(s);
    await s.whenSettled();
    if (s.error) throw new Error(s.error);
    const missing = files.filter((f) => !s.sent.has(f.name));
    if (missing.length > 0) throw new Error(`${missing.length} files did not reach ${s.node.name}`);
  }

  /**
   * Stops a taken session and removes its uncommitted upload from the node (best effort, in the background; the
   * node's uploader also clears it before the task is initialised there again).
   */
  abandon(s: StreamSession): void {
    s.ac.abort();
    void s
      .whenSettled()
      .then(() => this.d.uploader.removePartial(s.node, s.uuid, new AbortController().signal))
      .catch(() => undefined);
  }

  /** The upload failed or was abandoned: stop, give the slot back, remove the partial task from the node. */
  discard(uuid: string): void {
    const s = this.take(uuid);
    if (s) this.abandon(s);
  }

  /** Stops every session without waiting for nodes (shutdown; at commit after a restart the task is re-sent). */
  stop(): void {
    for (const uuid of [...this.sessions.keys()]) this.take(uuid)?.ac.abort();
  }
}

/** Waits for `p`, at most `ms` (p never rejects here: the session records its own failure). */
function raceTimeout(p: Promise<void>, ms: number, clock: Clock): Promise<void> {
  return new Promise((resolve) => {
    const timer = clock.setTimeout(resolve, ms);
    void p.finally(() => {
      clock.clearTimeout(timer);
      resolve();
    });
  });
}
