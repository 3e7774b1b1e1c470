import type { ClusterNode } from './node';

export interface LoadSample {
  /** ms epoch */
  t: number;
  /** Tasks queued or running on the node. */
  queue: number;
  /** The node's parallel task slots. */
  slots: number;
}

const WINDOW_MS = 60 * 60 * 1000;

/** Queue and slots of every node over the last hour, sampled at each successful poll (for the admin page chart). */
export class LoadHistory {
  private readonly samples = new Map<string, LoadSample[]>();

  record(node: ClusterNode, now: number): void {
    const list = this.samples.get(node.key) ?? [];
    list.push({ t: now, queue: node.info.taskQueueCount ?? 0, slots: node.info.maxParallelTasks ?? 0 });
    const from = now - WINDOW_MS;
    let drop = 0;
    while (drop < list.length && (list[drop]?.t ?? now) < from) drop++;
    if (drop > 0) list.splice(0, drop);
    this.samples.set(node.key, list);
  }

  series(node: ClusterNode, now: number): LoadSample[] {
    const from = now - WINDOW_MS;
    return (this.samples.get(node.key) ?? []).filter((s) => s.t >= from);
  }

  forget(node: ClusterNode): void {
    this.samples.delete(node.key);
  }
}
