import type { Clock, Logger } from '../core';
import { errorMessage, isRecord } from '../core';
import { isFinalStatus, TaskStatus, type NodeClient } from '../nodeodm';
import type { ClusterNode } from '../nodes';
import type { TaskInfo, TaskTable } from '../routing';

/** Lines of output kept for a task whose machine is gone. */
export const MAX_OUTPUT_LINES = 10_000;

/** What a node says of one task routed to it. */
export type NodeTaskState =
  /** QUEUED or RUNNING: its machine must stay (only an explicit limit may take it, failing the task). */
  | { kind: 'active'; info: TaskInfo; output: string[] }
  /** COMPLETED, FAILED or CANCELED. */
  | { kind: 'final'; info: TaskInfo; output: string[] }
  /** The node answered that it has no such task (removed by its owner). */
  | { kind: 'missing' }
  /** No usable answer (the node is unreachable, or answered something else). */
  | { kind: 'unknown'; error: string };

/** Asks the node for a task's info and the last lines of its output, in one request. Never rejects. */
export async function readNodeTask(client: NodeClient, node: ClusterNode, uuid: string): Promise<NodeTaskState> {
  let answer: unknown;
  try {
    answer = await client.getJson(node, `/task/${uuid}/info`, { with_output: -MAX_OUTPUT_LINES });
  } catch (e: unknown) {
    return { kind: 'unknown', error: errorMessage(e) };
  }
  const info = asTaskInfo(answer, uuid);
  if (!info) {
    if (isRecord(answer) && typeof answer['error'] === 'string') return { kind: 'missing' };
    return { kind: 'unknown', error: 'the node answered no task info' };
  }
  const output = outputOf(answer);
  return isFinalStatus(info.status.code) ? { kind: 'final', info, output } : { kind: 'active', info, output };
}

function outputOf(answer: unknown): string[] {
  const out = isRecord(answer) ? answer['output'] : undefined;
  return Array.isArray(out) ? out.filter((l): l is string => typeof l === 'string') : [];
}

export interface TaskRecordsDeps {
  tasks: TaskTable;
  client: NodeClient;
  clock: Clock;
  logger: Logger;
  /** Base URL of the results, recorded as a finished task's s3Path. */
  downloadsBase?: string;
}

/**
 * The durable records of tasks whose machine goes away (SPEC §8.6): their final info and output go to the task
 * table, so `/task/<uuid>/info` and `output` keep answering once the machine is gone (the original saved no output
 * and lost everything at a restart). A task the machine takes with it unfinished is recorded FAILED with the reason.
 */
export class TaskRecords {
  constructor(private readonly d: TaskRecordsDeps) {}

  /**
   * A task is done (its webhook): its final info and output are saved. `reported` is the webhook's body, used
   * when the node cannot be asked.
   */
  async finish(uuid: string, node: ClusterNode, token: string | undefined, reported: unknown): Promise<TaskInfo | null> {
    const state = await readNodeTask(this.d.client, node, uuid);
    if (state.kind === 'unknown') this.d.logger.warn(`Autoscaler: cannot read task ${uuid} from ${node.name}: ${state.error}`);
    if (state.kind === 'active' || state.kind === 'final') {
      await this.saveFinished(uuid, token, state.info, state.output);
      return state.info;
    }
    const info = asTaskInfo(reported, uuid);
    if (info) await this.saveFinished(uuid, token, info, []);
    return info;
  }

  async saveFinished(uuid: string, token: string | undefined, info: TaskInfo, output: string[]): Promise<void> {
    const taskInfo = { ...info };
    if (this.d.downloadsBase) taskInfo['s3Path'] = this.d.downloadsBase;
    await this.d.tasks.put({ uuid, token, phase: 'finished', taskInfo, output });
  }

  /**
   * The task's machine is destroyed before the task ended: FAILED, with `reason` as the status's errorMessage and
   * the last output line. `info` is what the node last said of it (null when it could not be asked).
   */
  async saveFailed(uuid: string, token: string | undefined, info: TaskInfo | null, output: string[], reason: string): Promise<void> {
    const base: TaskInfo = info ?? { uuid, name: '', dateCreated: this.d.clock.now(), status: { code: TaskStatus.FAILED }, options: [], imagesCount: 0 };
    const taskInfo: TaskInfo = { ...base, status: { code: TaskStatus.FAILED, errorMessage: reason } };
    await this.d.tasks.put({ uuid, token, phase: 'failed', taskInfo, output: [...output, reason].slice(-MAX_OUTPUT_LINES) });
  }
}

/** A NodeODM task info with the fields the task table needs, or null. */
export function asTaskInfo(v: unknown, uuid: string): TaskInfo | null {
  if (!isRecord(v)) return null;
  const status = v['status'];
  if (v['uuid'] !== uuid || !isRecord(status)) return null;
  const code = status['code'];
  if (typeof code !== 'number') return null;
  const num = (x: unknown, d: number): number => (typeof x === 'number' && Number.isFinite(x) ? x : d);
  const { output: _output, ...rest } = v;
  const errorMessage = status['errorMessage'];
  const info: TaskInfo = {
    ...rest,
    uuid,
    name: typeof v['name'] === 'string' ? v['name'] : '',
    dateCreated: num(v['dateCreated'], 0),
    status: typeof errorMessage === 'string' ? { code, errorMessage } : { code },
    options: Array.isArray(v['options']) ? v['options'] : [],
    imagesCount: num(v['imagesCount'], 0),
  };
  if (v['processingTime'] !== undefined) info.processingTime = num(v['processingTime'], -1);
  if (v['progress'] !== undefined) info.progress = num(v['progress'], 0);
  return info;
}
