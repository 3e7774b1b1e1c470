import { isRecord } from '../core';
/** NodeODM protocol types (API 2.x, see shared/api/nodeodm-swagger.json). */

export const TaskStatus = {
  QUEUED: 10,
  RUNNING: 20,
  FAILED: 30,
  COMPLETED: 40,
  CANCELED: 50,
} as const;
export type TaskStatusCode = (typeof TaskStatus)[keyof typeof TaskStatus];

/** Whether a status code is final: the task will not run any more (what NodeODM's webhook reports). */
export function isFinalStatus(code: number): boolean {
  return code === TaskStatus.COMPLETED || code === TaskStatus.FAILED || code === TaskStatus.CANCELED;
}

/** The `/info` answer of a node. Kept whole (NODE INFO shows it); the known fields are checked. */
export interface NodeInfo {
  readonly version?: string;
  readonly taskQueueCount?: number;
  readonly totalMemory?: number;
  readonly availableMemory?: number;
  readonly cpuCores?: number;
  readonly maxImages?: number | null;
  readonly maxParallelTasks?: number;
  readonly engineVersion?: string;
  readonly engine?: string;
  readonly [key: string]: unknown;
}

const NUMERIC_FIELDS = ['taskQueueCount', 'totalMemory', 'availableMemory', 'cpuCores', 'maxParallelTasks'] as const;
const STRING_FIELDS = ['version', 'engineVersion', 'engine'] as const;

/** Validates a node's `/info` answer. Throws with the reason when it is not a usable info object. */
export function parseNodeInfo(raw: unknown): NodeInfo {
  if (!isRecord(raw)) throw new Error('info is not a JSON object');
  if (typeof raw['error'] === 'string') throw new Error(raw['error']);
  for (const k of NUMERIC_FIELDS) {
    const v = raw[k];
    if (v !== undefined && v !== null && (typeof v !== 'number' || !Number.isFinite(v))) {
      throw new Error(`info.${k} is not a number`);
    }
  }
  for (const k of STRING_FIELDS) {
    const v = raw[k];
    if (v !== undefined && v !== null && typeof v !== 'string') throw new Error(`info.${k} is not a string`);
  }
  const mi = raw['maxImages'];
  if (mi !== undefined && mi !== null && (typeof mi !== 'number' || !Number.isFinite(mi))) {
    throw new Error('info.maxImages is not a number');
  }
  return raw as NodeInfo;
}
