/**
 * What this process did with each task on each node (node-uploader.ts), so that a task sent to a node again starts
 * there from nothing, and a task the node reports as committed is adopted only when this process may have committed
 * it; a task the node holds for any other reason is never removed.
 *
 * A task of an earlier run (it was uploading or being forwarded when ClusterODM stopped) may have been sent anywhere
 * before: every node is assumed to hold an uncommitted upload of it, and may have committed it.
 */
import type { NodeEndpoint } from '../nodeodm';

interface OnNode {
  /** The node may hold an uncommitted upload of the task (an init was sent, and no clean-up confirmed since). */
  upload: boolean;
  /** A commit of the task was sent to the node (its answer may have been lost). */
  commitSent: boolean;
}

interface TaskRecord {
  earlierRun: boolean;
  nodes: Map<string, OnNode>;
}

export class NodeTaskLedger {
  private readonly tasks = new Map<string, TaskRecord>();
  private readonly locks = new Map<string, Promise<void>>();

  /** Tasks an earlier run may have sent anywhere. */
  fromEarlierRun(uuids: Iterable<string>): void {
    for (const uuid of uuids) this.record(uuid).earlierRun = true;
  }

  get(node: NodeEndpoint, uuid: string): Readonly<OnNode> {
    const task = this.tasks.get(uuid);
    const known = task?.nodes.get(node.baseUrl);
    if (known) return known;
    const maybe = task?.earlierRun === true;
    return { upload: maybe, commitSent: maybe };
  }

  set(node: NodeEndpoint, uuid: string, patch: Partial<OnNode>): void {
    const task = this.record(uuid);
    const next = { ...this.get(node, uuid), ...patch };
    if (next.upload || next.commitSent || task.earlierRun) task.nodes.set(node.baseUrl, next);
    else task.nodes.delete(node.baseUrl);
    // Nothing of the task left anywhere: no record (a task whose upload was abandoned and cleared costs nothing).
    if (task.nodes.size === 0 && !task.earlierRun) this.tasks.delete(uuid);
  }

  /** The task is committed on a node: nothing of it elsewhere matters to this process any more. */
  forget(uuid: string): void {
    this.tasks.delete(uuid);
  }

  /** Runs `fn` when no other call for the same task and node runs (clean-up, init, upload, commit never interleave). */
  async exclusive<T>(node: NodeEndpoint, uuid: string, fn: () => Promise<T>): Promise<T> {
    const key = `${node.baseUrl} ${uuid}`;
    const before = this.locks.get(key) ?? Promise.resolve();
    let release = (): void => undefined;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.locks.set(key, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      if (this.locks.get(key) === tail) this.locks.delete(key);
    }
  }

  private record(uuid: string): TaskRecord {
    let task = this.tasks.get(uuid);
    if (!task) {
      task = { earlierRun: false, nodes: new Map() };
      this.tasks.set(uuid, task);
    }
    return task;
  }
}
