import type { Autoscaler, Reservation } from '../autoscaler';
import type { ClusterNode, NodeRegistry } from '../nodes';
import type { TaskQueue } from './task-queue';

/** Where a new task goes: a static node, a machine of its own (a place under the limit taken), or the queue. */
export interface DispatchChoice {
  node: ClusterNode | null;
  reservation: Reservation | null;
  queued: boolean;
}

/**
 * The choice of SPEC §5 steps 4–5, with the queue (--asr, --queue-max > 0): while tasks wait, a new one that could
 * wait goes behind them (the first in line takes any free place first); a task that no static node can take and
 * that gets no machine (limit reached) waits instead of failing. A task the autoscaler cannot handle, and any task
 * without --asr, is chosen for as the original did (a full node's own queue takes it). Synchronous: the slot or
 * place is counted before anything else runs.
 */
export function chooseTarget(
  registry: NodeRegistry,
  autoscaler: Autoscaler | null,
  queue: TaskQueue | null,
  images: number,
  keep: ClusterNode | null,
): DispatchChoice {
  const canWait = queue !== null && queue.canWait(images);
  if (canWait && queue.length() > 0) return { node: null, reservation: null, queued: true };
  const node = registry.selectBest(images, keep);
  const full = !node || node.availableSlots() === 0;
  const reservation = full && autoscaler ? autoscaler.reserve(images) : null;
  if (reservation) return { node: null, reservation, queued: false };
  if (!node && canWait) return { node: null, reservation: null, queued: true };
  return { node, reservation: null, queued: false };
}

/** The choice when no machine can be had (the cluster's shared limit refused the place): as chooseTarget then. */
export function chooseWithoutMachine(registry: NodeRegistry, queue: TaskQueue | null, images: number, keep: ClusterNode | null): DispatchChoice {
  const node = registry.selectBest(images, keep);
  if (!node && queue !== null && queue.canWait(images)) return { node: null, reservation: null, queued: true };
  return { node, reservation: null, queued: false };
}
