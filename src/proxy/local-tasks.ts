/**
 * Tasks that ClusterODM answers for itself because they are not on a node: being uploaded, being forwarded,
 * failed or canceled before reaching a node, or finished on an autoscaled node that is gone.
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
}
