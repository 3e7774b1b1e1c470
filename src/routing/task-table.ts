import type { Clock, Logger, TimerHandle } from '../core';
import { ClusterError, errorMessage } from '../core';
import { TaskStatus } from '../nodeodm';
import type { StoreFs } from '../store';
import { FileTaskStore, type RemoteTaskChange, type TaskCodec, type TaskStore } from './task-store';
import { isRecord } from '../core';

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
 * (atomically, through JsonStateFile, which also coalesces overlapping saves).
 */

/** Entries idle for longer than this are dropped (as the original's hourly sweep). */
export const TASK_EXPIRY_MS = 2 * 24 * 60 * 60 * 1000;
/** Non-durable (progress) updates reach the disk within this delay. */
export const PROGRESS_SAVE_MS = 1000;
/** `accessed` bumps only matter for the 2-day expiry, so they are written rarely. */
export const TOUCH_SAVE_MS = 60_000;
/** The only output line while a task is on its way to a node (SPEC §5 step 9, §13). */
export const LAUNCHING_OUTPUT = 'Launching... please wait! This can take a few minutes.';

/** set-uuid must be a v1–5 UUID (SPEC §4.5). */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export function isValidUuid(v: unknown): v is string {
  return typeof v === 'string' && UUID_RE.test(v);
}

export type TaskPhase = 'uploading' | 'forwarding' | 'failed' | 'canceled' | 'finished';
const PHASES: ReadonlySet<string> = new Set<TaskPhase>(['uploading', 'forwarding', 'failed', 'canceled', 'finished']);
/** Phases where the task is still moving; their `updated` time keeps them from expiring. */
const ACTIVE_PHASES: ReadonlySet<TaskPhase> = new Set<TaskPhase>(['uploading', 'forwarding']);

export interface TaskInfo {
  uuid: string;
  name: string;
  dateCreated: number;
  processingTime?: number;
  status: { code: number; errorMessage?: string };
  options: unknown[];
  imagesCount: number;
  progress?: number;
  [k: string]: unknown;
}

export interface TaskEntry {
  uuid: string;
  /** Owner's token; '' is stored as undefined (as the route table does). */
  token: string | undefined;
  phase: TaskPhase;
  taskInfo: TaskInfo;
  output: string[];
  accessed: number;
  updated: number;
  /** Forwarding bookkeeping so a restart can resume: chosen node "host:port" if any, files already confirmed on it. */
  nodeKey?: string;
  uploadedFiles?: string[];
  /** When a restart found the task's node not answering: it waits for that node until a deadline counted from here. */
  waitingSince?: number;
}

/** What put() accepts: `accessed`/`updated` default to now. */
export type TaskEntryInput = Omit<TaskEntry, 'accessed' | 'updated'> & { accessed?: number; updated?: number };

/** `info` answered from the table: processingTime is always present, output only with `with_output`. */
export type TaskInfoAnswer = TaskInfo & { processingTime: number; output?: string[] };

export interface UpdateOptions {
  /** false: only schedule a save within PROGRESS_SAVE_MS. Ignored (always durable) when phase or status changes. */
  durable?: boolean;
}

export interface TaskTableOptions {
  /** data/tasks.json: where the table lives, or (with `store`) what a shared store imports on the first start. */
  file: string;
  /** Where the table lives when it is not `file` alone (shared state, see task-store.ts). */
  store?: (codec: TaskCodec, file: FileTaskStore) => TaskStore;
  clock: Clock;
  logger: Logger;
  expiryMs?: number;
  fs?: StoreFs;
}

// ---- validation: one checker for the file and for put/update, so memory never holds what a restart would reject

function fail(where: string, what: string): never {
  throw new Error(`${where} ${what}`);
}

function checkNumber(v: unknown, where: string, optional = false): void {
  if (optional && v === undefined) return;
  if (typeof v !== 'number' || !Number.isFinite(v)) fail(where, 'is not a number');
}

function checkStrings(v: unknown, where: string): string[] {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) fail(where, 'is not an array of strings');
  return v as string[];
}

/** Checks the fields the table relies on; anything else a node reported is kept as is. */
function checkTaskInfo(v: unknown, uuid: string, where: string): TaskInfo {
  if (!isRecord(v)) fail(where, 'is not an object');
  if (v['uuid'] !== uuid) fail(`${where}.uuid`, `does not match the task uuid ${uuid}`);
  if (typeof v['name'] !== 'string') fail(`${where}.name`, 'is not a string');
  checkNumber(v['dateCreated'], `${where}.dateCreated`);
  checkNumber(v['processingTime'], `${where}.processingTime`, true);
  checkNumber(v['imagesCount'], `${where}.imagesCount`);
  checkNumber(v['progress'], `${where}.progress`, true);
  if (!Array.isArray(v['options'])) fail(`${where}.options`, 'is not an array');
  const status = v['status'];
  if (!isRecord(status)) fail(`${where}.status`, 'is not an object');
  checkNumber(status['code'], `${where}.status.code`);
  if (status['errorMessage'] !== undefined && typeof status['errorMessage'] !== 'string') {
    fail(`${where}.status.errorMessage`, 'is not a string');
  }
  return v as TaskInfo;
}

/** One entry of tasks.json (the uuid is its key). */
export function parseEntry(uuid: string, v: unknown): TaskEntry {
  const where = `task ${uuid}`;
  if (!isValidUuid(uuid)) fail(`task key ${JSON.stringify(uuid)}`, 'is not a valid uuid');
  if (!isRecord(v)) fail(where, 'is not an object');
  const { token, phase, nodeKey } = v;
  if (token !== undefined && typeof token !== 'string') fail(`${where}.token`, 'is not a string');
  if (typeof phase !== 'string' || !PHASES.has(phase)) fail(`${where}.phase`, `is not one of ${[...PHASES].join(', ')}`);
  checkNumber(v['accessed'], `${where}.accessed`);
  checkNumber(v['updated'], `${where}.updated`);
  if (nodeKey !== undefined && typeof nodeKey !== 'string') fail(`${where}.nodeKey`, 'is not a string');
  const entry: TaskEntry = {
    uuid,
    token: token || undefined,
    phase: phase as TaskPhase,
    taskInfo: checkTaskInfo(v['taskInfo'], uuid, `${where}.taskInfo`),
    output: checkStrings(v['output'], `${where}.output`),
    accessed: v['accessed'] as number,
    updated: v['updated'] as number,
  };
  if (nodeKey !== undefined) entry.nodeKey = nodeKey;
  if (v['uploadedFiles'] !== undefined) entry.uploadedFiles = checkStrings(v['uploadedFiles'], `${where}.uploadedFiles`);
  if (v['waitingSince'] !== undefined) {
    checkNumber(v['waitingSince'], `${where}.waitingSince`);
    entry.waitingSince = v['waitingSince'] as number;
  }
  return entry;
}

/** Validates data/tasks.json: a JSON object `{"<uuid>": entry}` (see the top of this file). Throws on a bad shape. */
export function parseTasksFile(raw: unknown): TaskEntry[] {
  if (!isRecord(raw)) throw new Error('tasks.json is not a JSON object keyed by task uuid');
  return Object.entries(raw).map(([uuid, v]) => parseEntry(uuid, v));
}

function entryToFileJSON(e: TaskEntry): Record<string, unknown> {
  const { uuid: _uuid, ...rest } = e;
  return rest;
}

export function serializeTasks(entries: Iterable<TaskEntry>): string {
  const parts: string[] = [];
  for (const e of entries) parts.push(`${JSON.stringify(e.uuid)}:${JSON.stringify(entryToFileJSON(e))}`);
  return `{${parts.join(',')}}`;
}

/** Stored entries are frozen so no caller can change the table behind the persistence's back. */
export function deepFreeze<T>(v: T): T {
  if (typeof v === 'object' && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const child of Object.values(v)) deepFreeze(child);
  }
  return v;
}

/** A private, validated, frozen copy: a JSON round trip makes memory equal what a restart would load. */
function toStored(e: TaskEntry): Readonly<TaskEntry> {
  try {
    const copy = JSON.parse(JSON.stringify(entryToFileJSON(e))) as unknown;
    return deepFreeze(parseEntry(e.uuid, copy));
  } catch (err: unknown) {
    throw new ClusterError('INVALID_INPUT', `Invalid task entry: ${errorMessage(err)}`, { cause: err });
  }
}

/** How the stores read and write entries (one validator for every backend). */
export const TASK_CODEC: TaskCodec = {
  parseFile: parseTasksFile,
  serializeAll: serializeTasks,
  encode: (e) => JSON.stringify(entryToFileJSON(e)),
  decode: (uuid, text) => deepFreeze(parseEntry(uuid, JSON.parse(text) as unknown)),
};

function requireUuid(uuid: unknown): asserts uuid is string {
  if (!isValidUuid(uuid)) throw new ClusterError('INVALID_INPUT', `Invalid task uuid: ${String(uuid)}`);
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

  constructor(opts: TaskTableOptions) {
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
    const stored = toStored({ ...entry, accessed: entry.accessed ?? now, updated: entry.updated ?? now });
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
   * Forward failed (SPEC §5 step 11): FAILED with the error as the only output line. Only while the task is still
   * uploading/forwarding, so a late error cannot turn a canceled task into a failed one (SPEC §12 item 9).
   */
  async markFailed(uuid: string, message: string): Promise<boolean> {
    const e = this.get(uuid);
    if (!e || !ACTIVE_PHASES.has(e.phase)) return false;
    const taskInfo = { ...e.taskInfo, status: { ...e.taskInfo.status, code: TaskStatus.FAILED } };
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
  entries(filter: { token?: string | undefined; phase?: TaskPhase } = {}): Array<Readonly<TaskEntry>> {
    const byToken = 'token' in filter;
    const token = filter.token || undefined;
    return [...this.tasks.values()].filter(
      (e) => (!byToken || e.token === token) && (filter.phase === undefined || e.phase === filter.phase),
    );
  }

  /** Drops entries not accessed for expiryMs, except uploads/forwards that made progress within that time. */
  async expire(): Promise<number> {
    const limit = this.clock.now() - this.expiryMs;
    const stale = (e: TaskEntry): boolean => e.accessed < limit && !(ACTIVE_PHASES.has(e.phase) && e.updated >= limit);
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
