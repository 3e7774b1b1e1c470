import type { Clock, Logger, TimerHandle } from '../core';
import { TaskStatus } from '../nodeodm';
import type { StoreFs } from '../store';
import {
  ACTIVE_PHASES,
  deepFreeze,
  isValidUuid,
  requireUuid,
  TASK_CODEC,
  toStored,
  type TaskEntry,
  type TaskEntryInput,
  type TaskInfoAnswer,
  type TaskPhase,
} from './task-entry';
import { FileTaskStore, type RemoteTaskChange, type TaskCodec, type TaskStore } from './task-store';

export * from './task-entry';

/**
 * Tasks that are not (yet) on a node: uploading, being forwarded, failed to forward, canceled before reaching a
 * node, or finished on an autoscaled node that is gone. The original kept this in memory only (SPEC §12 item 18);
 * here it lives in `data/tasks.json`:
 *
 *   {"<uuid>": {"token": "…"?, "phase": "forwarding", "taskInfo": {…NodeODM task info…}, "output": ["…"],
 *               "accessed": ms, "updated": ms, "nodeKey": "host:port"?, "uploadedFiles": ["a.jpg"]?,
 *               "waitingSince": ms?}}
 *
 * An object keyed by uuid, like routes.json. The table is small, so every change rewrites the whole file
 * (atomically, through JsonStateFile, which also coalesces overlapping saves). With shared state (--redis) it is
 * one entry per task instead, and only what changed is written (task-store.ts). Entries: task-entry.ts.
 */

/** Entries idle for longer than this are dropped (as the original's hourly sweep). */
export const TASK_EXPIRY_MS = 2 * 24 * 60 * 60 * 1000;
/** Non-durable (progress) updates reach the disk within this delay. */
export const PROGRESS_SAVE_MS = 1000;
/** `accessed` bumps only matter for the 2-day expiry, so they are written rarely. */
export const TOUCH_SAVE_MS = 60_000;
/** The only output line while a task is on its way to a node (SPEC §5 step 9, §13). */
export const LAUNCHING_OUTPUT = 'Launching... please wait! This can take a few minutes.';

export interface UpdateOptions {
  /** false: only schedule a save within PROGRESS_SAVE_MS. Ignored (always durable) when phase or status changes. */
  durable?: boolean;
}

export interface TaskTableOptions {
  /** data/tasks.json: where the table lives, or (with `store`) what a shared store imports on the first start. */
  file: string;
  /**
   * Shared state: this instance's stable name. New entries are marked staged here (`stagedBy`), and only those
   * are this instance's to resume (entries({ stagedHere: true })). Absent: every entry is this process's.
   */
  instance?: string;
  /** Where the table lives when it is not `file` alone (shared state, see task-store.ts). */
  store?: (codec: TaskCodec, file: FileTaskStore) => TaskStore;
  clock: Clock;
  logger: Logger;
  expiryMs?: number;
  fs?: StoreFs;
}

export class TaskTable {
  private readonly tasks = new Map<string, Readonly<TaskEntry>>();
  private readonly state: TaskStore;
  /** What changed since the last save (an entry store writes only these; the file store rewrites everything). */
  private dirty = new Set<string>();
  private removed = new Set<string>();
  private touched = new Set<string>();
  /** Until load() is done, other instances' changes wait here (the load would replace what they changed). */
  private pendingRemote: RemoteTaskChange[] | null = [];
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly expiryMs: number;
  private saveTimer: { handle: TimerHandle; at: number } | null = null;

  private readonly instance: string | undefined;

  constructor(opts: TaskTableOptions) {
    this.instance = opts.instance;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.expiryMs = opts.expiryMs ?? TASK_EXPIRY_MS;
    const file = new FileTaskStore({
      file: opts.file,
      codec: TASK_CODEC,
      logger: opts.logger,
      clock: opts.clock,
      ...(opts.fs ? { fs: opts.fs } : {}),
    });
    this.state = opts.store ? opts.store(TASK_CODEC, file) : file;
    this.state.onRemoteChange?.((c) => this.applyRemote(c));
  }

  /** Another instance's change: it replaces what this one had of those entries (including unsaved bumps). */
  private applyRemote(c: RemoteTaskChange): void {
    if (this.pendingRemote) {
      this.pendingRemote.push(c);
      return;
    }
    const uuids = c.op === 'del' ? c.uuids : c.entries.map((e) => e.uuid);
    for (const u of uuids) {
      this.dirty.delete(u);
      this.touched.delete(u);
      this.removed.delete(u);
    }
    if (c.op === 'del') for (const u of c.uuids) this.tasks.delete(u);
    else for (const e of c.entries) this.tasks.set(e.uuid, e);
  }

  /** Loads tasks.json (a corrupt file is kept aside by JsonStateFile), then drops expired entries. */
  async load(): Promise<number> {
    const list = (await this.state.load()) ?? [];
    this.tasks.clear();
    for (const e of list) this.tasks.set(e.uuid, deepFreeze(e));
    const pending = this.pendingRemote ?? [];
    this.pendingRemote = null;
    for (const c of pending) this.applyRemote(c);
    // A failed save here must not stop startup: memory is right, and the next change writes it again.
    await this.expire().catch(() => undefined);
    this.logger.info(`Loaded ${this.tasks.size} tasks`);
    return this.tasks.size;
  }

  size(): number {
    return this.tasks.size;
  }

  /** Reads answer "not here" for invalid uuids: they come from request paths and can never be keys. */
  get(uuid: string): Readonly<TaskEntry> | undefined {
    return isValidUuid(uuid) ? this.tasks.get(uuid) : undefined;
  }

  has(uuid: string): boolean {
    return this.get(uuid) !== undefined;
  }

  /** Finds an entry and refreshes `accessed`; the bump is saved later, with other changes (never a write per call). */
  lookup(uuid: string): Readonly<TaskEntry> | undefined {
    const e = this.get(uuid);
    if (!e) return undefined;
    const bumped = Object.freeze({ ...e, accessed: this.clock.now() });
    this.tasks.set(uuid, bumped);
    if (!this.dirty.has(uuid)) this.touched.add(uuid);
    this.scheduleSave(TOUCH_SAVE_MS);
    return bumped;
  }

  /** Adds or replaces an entry; durable when the promise resolves. */
  async put(entry: TaskEntryInput): Promise<void> {
    requireUuid(entry.uuid);
    const now = this.clock.now();
    const stagedBy = entry.stagedBy ?? this.instance;
    const stored = toStored({ ...entry, accessed: entry.accessed ?? now, updated: entry.updated ?? now, ...(stagedBy !== undefined ? { stagedBy } : {}) });
    this.tasks.set(stored.uuid, stored);
    this.changed(stored.uuid);
    await this.persist();
  }

  /**
   * Changes an entry (shallow: a `taskInfo` in the patch replaces the whole object). Resolves false if there is no
   * such entry, e.g. it was removed while a forward was still running.
   */
  async update(uuid: string, patch: Partial<Omit<TaskEntry, 'uuid'>>, opts: UpdateOptions = {}): Promise<boolean> {
    requireUuid(uuid);
    const cur = this.tasks.get(uuid);
    if (!cur) return false;
    const next = toStored({ ...cur, ...patch, uuid, updated: patch.updated ?? this.clock.now() });
    this.tasks.set(uuid, next);
    this.changed(uuid);
    const lifecycleChange = next.phase !== cur.phase || next.taskInfo.status.code !== cur.taskInfo.status.code;
    if (opts.durable === false && !lifecycleChange) this.scheduleSave(PROGRESS_SAVE_MS);
    else await this.persist();
    return true;
  }

  /** Resolves false if there was no such entry. */
  async delete(uuid: string): Promise<boolean> {
    requireUuid(uuid);
    if (!this.tasks.delete(uuid)) return false;
    this.gone(uuid);
    await this.persist();
    return true;
  }

  /**
   * Deletes the entry only while the task is still moving (uploading, queued, forwarding). A task that landed on an
   * autoscaled machine may have finished there, and had its webhook record its final info, before the forward got
   * round to dropping its entry: that record is all that is left of it once the machine goes.
   */
  async deleteActive(uuid: string): Promise<boolean> {
    const e = this.get(uuid);
    if (!e || !ACTIVE_PHASES.has(e.phase)) return false;
    return this.delete(uuid);
  }

  /**
   * Forward failed (SPEC §5 step 11): FAILED with the error as the only output line. Only while the task is still
   * uploading/forwarding, so a late error cannot turn a canceled task into a failed one (SPEC §12 item 9).
   */
  async markFailed(uuid: string, message: string, opts: { errorMessage?: boolean } = {}): Promise<boolean> {
    const e = this.get(uuid);
    if (!e || !ACTIVE_PHASES.has(e.phase)) return false;
    const status = { ...e.taskInfo.status, code: TaskStatus.FAILED, ...(opts.errorMessage ? { errorMessage: message } : {}) };
    const taskInfo = { ...e.taskInfo, status };
    return this.update(uuid, { phase: 'failed', taskInfo, output: [message] });
  }

  /** Cancel of a task not on a node (SPEC §4.10 step 3): status CANCELED, entry kept. */
  async markCanceled(uuid: string): Promise<boolean> {
    const e = this.get(uuid);
    if (!e) return false;
    const taskInfo = { ...e.taskInfo, status: { ...e.taskInfo.status, code: TaskStatus.CANCELED } };
    return this.update(uuid, { phase: 'canceled', taskInfo });
  }

  /** With `token` in the filter (even undefined), only that owner's entries; '' and undefined are the same owner. */
  /** `stagedHere`: only the entries whose files this instance stages (all of them without shared state). */
  entries(filter: { token?: string | undefined; phase?: TaskPhase; stagedHere?: boolean } = {}): Array<Readonly<TaskEntry>> {
    const byToken = 'token' in filter;
    const token = filter.token || undefined;
    const here = filter.stagedHere === true && this.instance !== undefined;
    return [...this.tasks.values()].filter(
      (e) =>
        (!byToken || e.token === token) &&
        (filter.phase === undefined || e.phase === filter.phase) &&
        (!here || e.stagedBy === this.instance),
    );
  }

  /** Shared state: the task is still moving (uploading, queued, forwarding) and its files are on another instance. */
  stagedElsewhere(uuid: string): boolean {
    const e = this.tasks.get(uuid);
    return e !== undefined && this.instance !== undefined && e.stagedBy !== undefined && e.stagedBy !== this.instance && ACTIVE_PHASES.has(e.phase);
  }

  /** How many queued tasks are ahead of this one (lower `queueSeq`); null when it is not queued. */
  queuedAhead(uuid: string): number | null {
    const e = this.get(uuid);
    if (e?.phase !== 'queued') return null;
    const seq = e.queueSeq ?? 0;
    let ahead = 0;
    for (const x of this.tasks.values()) if (x.phase === 'queued' && (x.queueSeq ?? 0) < seq) ahead++;
    return ahead;
  }

  /** Drops entries not accessed for expiryMs, except uploads/forwards that made progress within that time. */
  async expire(): Promise<number> {
    const limit = this.clock.now() - this.expiryMs;
    const stale = (e: TaskEntry): boolean =>
      e.phase !== 'queued' && e.accessed < limit && !(ACTIVE_PHASES.has(e.phase) && e.updated >= limit);
    const old = [...this.tasks.values()].filter(stale).map((e) => e.uuid);
    for (const uuid of old) {
      this.tasks.delete(uuid);
      this.gone(uuid);
    }
    if (old.length > 0) {
      this.logger.info(`Expired ${old.length} tasks`);
      await this.persist();
    }
    return old.length;
  }

  /** Writes anything pending and waits for it (shutdown); leaves no timer behind. */
  async flush(): Promise<void> {
    if (this.saveTimer) await this.persist();
    await this.state.flush();
  }

  /**
   * `/task/<uuid>/info[?with_output=N]` for a task not on a node (SPEC §4.9 step 3). A copy: unlike the original,
   * with_output never changes the stored info (SPEC §12 item 12). Counts as an access.
   */
  infoAnswer(uuid: string, withOutput: number | null): TaskInfoAnswer | undefined {
    const e = this.lookup(uuid);
    if (!e) return undefined;
    const info = structuredClone(e.taskInfo) as TaskInfoAnswer;
    if (typeof info.processingTime !== 'number') {
      info.processingTime = info.status.code === TaskStatus.RUNNING ? this.clock.now() - info.dateCreated : -1;
    }
    // slice() gives the NodeODM meaning: negative N counts from the end.
    if (withOutput !== null) info.output = e.output.slice(withOutput);
    return info;
  }

  /** `/task/<uuid>/output?line=N` for a task not on a node. Counts as an access. */
  outputAnswer(uuid: string, line: number): string[] | undefined {
    return this.lookup(uuid)?.output.slice(line);
  }

  /** Saves now; the write includes every change so far, so a pending delayed save is no longer needed. */
  private persist(): Promise<void> {
    if (this.saveTimer) this.clock.clearTimeout(this.saveTimer.handle);
    this.saveTimer = null;
    const put = [...this.dirty].flatMap((u) => this.tasks.get(u) ?? []);
    const touched = [...this.touched].flatMap((u) => this.tasks.get(u) ?? []);
    const del = [...this.removed];
    this.dirty = new Set();
    this.touched = new Set();
    this.removed = new Set();
    return this.state.save({ all: () => this.tasks.values(), put, del, touched }).catch((e: unknown) => {
      // Written again with the next save (a file store rewrites everything anyway).
      for (const u of del) if (!this.tasks.has(u)) this.removed.add(u);
      for (const { uuid } of put) if (this.tasks.has(uuid)) this.dirty.add(uuid);
      throw e;
    });
  }

  private changed(uuid: string): void {
    this.dirty.add(uuid);
    this.touched.delete(uuid);
    this.removed.delete(uuid);
  }

  private gone(uuid: string): void {
    this.removed.add(uuid);
    this.dirty.delete(uuid);
    this.touched.delete(uuid);
  }

  /** Makes sure a save happens within `delayMs`; many calls share one write. */
  private scheduleSave(delayMs: number): void {
    const at = this.clock.now() + delayMs;
    if (this.saveTimer && this.saveTimer.at <= at) return;
    if (this.saveTimer) this.clock.clearTimeout(this.saveTimer.handle);
    const handle = this.clock.setTimeout(() => {
      this.saveTimer = null;
      // JsonStateFile already logs a failed write; the next change or flush() retries it.
      this.persist().catch(() => undefined);
    }, delayMs);
    this.saveTimer = { handle, at };
  }
}
