import { ClusterError, errorMessage, isRecord } from '../core';
import type { TaskCodec } from './task-store';

/**
 * One entry of the task table, as data/tasks.json and the shared table hold it: its types, the one validator
 * for files, shared entries and writes alike, and its JSON form. The table itself is task-table.ts.
 */

/** set-uuid must be a v1–5 UUID (SPEC §4.5). */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

export function isValidUuid(v: unknown): v is string {
  return typeof v === 'string' && UUID_RE.test(v);
}

/** `queued`: waiting (--asr) for a static node slot or a machine, in `queueSeq` order. */
export type TaskPhase = 'uploading' | 'queued' | 'forwarding' | 'failed' | 'canceled' | 'finished';
export const PHASES: ReadonlySet<string> = new Set<TaskPhase>(['uploading', 'queued', 'forwarding', 'failed', 'canceled', 'finished']);
/** Phases where the task is still moving; their `updated` time keeps them from expiring (a queued task never expires). */
export const ACTIVE_PHASES: ReadonlySet<TaskPhase> = new Set<TaskPhase>(['uploading', 'queued', 'forwarding']);

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
  /**
   * Shared state (--redis): the instance whose tmp/ holds the task's staged files, the only one that may resume
   * its forward after a restart. Absent in the data folder's tasks.json.
   */
  stagedBy?: string;
  /** Place in the queue (phase `queued`): increasing, never reused, so the order survives restarts. */
  queueSeq?: number;
  /** The autoscaled machine's webhook base (`<public address>/commit?token=…`), kept while the task is queued. */
  commitUrl?: string;
}

/** What put() accepts: `accessed`/`updated` default to now. */
export type TaskEntryInput = Omit<TaskEntry, 'accessed' | 'updated'> & { accessed?: number; updated?: number };

/** `info` answered from the table: processingTime is always present, output only with `with_output`. */
export type TaskInfoAnswer = TaskInfo & { processingTime: number; output?: string[] };

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
  if (v['stagedBy'] !== undefined) {
    if (typeof v['stagedBy'] !== 'string') fail(`${where}.stagedBy`, 'is not a string');
    entry.stagedBy = v['stagedBy'];
  }
  if (v['queueSeq'] !== undefined) {
    checkNumber(v['queueSeq'], `${where}.queueSeq`);
    entry.queueSeq = v['queueSeq'] as number;
  }
  if (v['commitUrl'] !== undefined) {
    if (typeof v['commitUrl'] !== 'string') fail(`${where}.commitUrl`, 'is not a string');
    entry.commitUrl = v['commitUrl'];
  }
  if (entry.phase === 'queued' && entry.queueSeq === undefined) fail(`${where}.queueSeq`, 'is missing (the task is queued)');
  return entry;
}

/** Validates data/tasks.json: a JSON object `{"<uuid>": entry}` (see the top of this file). Throws on a bad shape. */
export function parseTasksFile(raw: unknown): TaskEntry[] {
  if (!isRecord(raw)) throw new Error('tasks.json is not a JSON object keyed by task uuid');
  return Object.entries(raw).map(([uuid, v]) => parseEntry(uuid, v));
}

export function entryToFileJSON(e: TaskEntry): Record<string, unknown> {
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
export function toStored(e: TaskEntry): Readonly<TaskEntry> {
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

export function requireUuid(uuid: unknown): asserts uuid is string {
  if (!isValidUuid(uuid)) throw new ClusterError('INVALID_INPUT', `Invalid task uuid: ${String(uuid)}`);
}
