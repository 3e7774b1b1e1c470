import type { TaskTable } from '../routing';

/**
 * Tasks that ClusterODM answers for itself because they are not on a node: being uploaded, being forwarded,
 * queued (waiting for a processing node), failed or canceled before reaching a node, or finished on an autoscaled node that is gone.
 * The task pipeline implements it on top of the durable TaskTable.
 */
export interface LocalTasks {
  has(uuid: string): boolean;
  /** The token that created the task (undefined = none). */
  owner(uuid: string): string | undefined;
  info(uuid: string, withOutput: number | null): unknown;
  output(uuid: string, line: number): unknown;
  /** Stops a task that has not reached a node; it stays listed as CANCELED. */
  cancel(uuid: string): Promise<void>;
  /** Stops and forgets a task that has not reached a node. */
  remove(uuid: string): Promise<void>;
  /** Whether the task's results were kept in S3 (it finished on an autoscaled node). */
  inS3(uuid: string): boolean;
  /** uuids of the local tasks created with this token. */
  list(token: string | undefined): string[];
  /** Shared state: the task is still moving (uploading, queued, being forwarded) on another instance. */
  heldElsewhere?(uuid: string): boolean;
}

/** The read side of LocalTasks, answered from the durable task table (the dispatcher adds cancel and remove). */
export abstract class TableTaskAnswers {
  constructor(private readonly taskTable: TaskTable) {}

  has(uuid: string): boolean {
    const e = this.taskTable.get(uuid);
    return e !== undefined && e.phase !== 'uploading';
  }

  heldElsewhere(uuid: string): boolean {
    return this.taskTable.stagedElsewhere(uuid);
  }

  owner(uuid: string): string | undefined {
    return this.taskTable.get(uuid)?.token;
  }

  info(uuid: string, withOutput: number | null): unknown {
    return this.taskTable.infoAnswer(uuid, withOutput) ?? null;
  }

  output(uuid: string, line: number): unknown {
    return this.taskTable.outputAnswer(uuid, line) ?? [];
  }

  inS3(uuid: string): boolean {
    const e = this.taskTable.get(uuid);
    return e !== undefined && e.phase === 'finished' && typeof e.taskInfo['s3Path'] === 'string';
  }

  list(token: string | undefined): string[] {
    return this.taskTable
      .entries({ token })
      .filter((e) => e.phase !== 'uploading')
      .map((e) => e.uuid);
  }
}
