import type { Clock, Logger } from '../core';
import { errorMessage } from '../core';
import type { NodeClient } from '../nodeodm';
import type { ClusterNode, HealthPoller, NodeRegistry } from '../nodes';
import type { RouteTable, TaskTable } from '../routing';
import { readNodeTask, type NodeTaskState, type TaskRecords } from './task-records';

export const VACUUM_INTERVAL_MS = 10 * 60 * 1000;
/** An autospawned node holding no task for this long after its creation is destroyed (no leaked machines). */
export const IDLE_GRACE_MS = 30 * 60 * 1000;

export interface VacuumDeps {
  registry: NodeRegistry;
  poller: HealthPoller;
  routes: RouteTable;
  tasks: TaskTable;
  client: NodeClient;
  clock: Clock;
  logger: Logger;
  records: TaskRecords;
  /** Destroys the machine, then drops its routes and the node. */
  destroyNode(node: ClusterNode): Promise<void>;
  mask(text: string): string;
  /** When the autoscaler started (a node never seen online counts as seen then). */
  startedAt(): number;
}

/** Why a machine goes: the log line, and for the explicit limits the reason its unfinished tasks fail with. */
interface Verdict {
  message: string;
  /** Set when the machine may go with unfinished tasks: they are recorded FAILED with this reason. */
  failure?: string;
}

/**
 * The vacuum's rules (SPEC §8.6), decided on a fresh poll of each machine's node and of each task routed to it:
 * the queue count of the last periodic poll can be 60 s old, and a task that had just landed read as an idle
 * machine, which was destroyed with the task RUNNING on it. A machine whose node reports a task of it QUEUED or
 * RUNNING is never destroyed, except by the explicit limits (maxRuntime, maxUploadTime), which record that task
 * FAILED with the reason, as they do the tasks of a machine destroyed while unreachable.
 */
export class Vacuum {
  constructor(private readonly d: VacuumDeps) {}

  async pass(): Promise<void> {
    const { registry, poller, routes, logger } = this.d;
    await routes.loaded();
    const spawned = registry.list().filter((n) => n.isAutoSpawned());
    await Promise.all(spawned.map((n) => poller.refresh(n)));
    const routed = routes.uuidsByNode(new Set(spawned));
    for (const node of spawned) {
      if (!registry.list().includes(node)) continue; // removed meanwhile (its webhook, NODE DEL)
      try {
        await this.visit(node, routed.get(node) ?? []);
      } catch (e: unknown) {
        logger.error(`Autoscaler: cannot destroy ${node.name}: ${this.d.mask(errorMessage(e))}`);
      }
    }
  }

  private async visit(node: ClusterNode, uuids: readonly string[]): Promise<void> {
    const { clock, routes, tasks, records, logger } = this.d;
    const now = clock.now();
    const online = node.isOnline(now);
    const states = new Map<string, NodeTaskState>();
    for (const uuid of uuids) {
      states.set(uuid, online ? await readNodeTask(this.d.client, node, uuid) : { kind: 'unknown', error: 'its node is offline' });
    }
    const verdict = this.verdict(node, now, online, uuids, states);
    if (!verdict) return;
    logger.warn(`${node.name} ${verdict.message}`);
    const { failure } = verdict;
    const failed = (uuid: string): void => logger.warn(`Autoscaler: task ${uuid} on ${node.name} is FAILED: ${failure ?? ''}`);
    // Every task keeps answering once the machine is gone: done ones with their info, the others FAILED.
    for (const [uuid, state] of states) {
      if (tasks.get(uuid)?.phase === 'finished') continue;
      const token = routes.peek(uuid)?.token;
      if (state.kind === 'final') {
        await records.saveFinished(uuid, token, state.info, state.output);
      } else if (failure && state.kind !== 'missing') {
        const last = state.kind === 'active' ? state : null;
        await records.saveFailed(uuid, token, last?.info ?? null, last?.output ?? [], failure);
        failed(uuid);
      }
    }
    if (failure) {
      for (const uuid of this.forwardingTo(node)) if (await tasks.markFailed(uuid, failure)) failed(uuid);
    }
    await this.d.destroyNode(node);
  }

  private verdict(node: ClusterNode, now: number, online: boolean, uuids: readonly string[], states: ReadonlyMap<string, NodeTaskState>): Verdict | null {
    const dm = node.record.dockerMachine;
    if (!dm) return null;
    const age = (now - dm.created) / 1000;
    const active = [...states.values()].some((s) => s.kind === 'active');
    const machine = `The machine of this task (${dm.name})`;
    if (online && dm.maxRuntime > 0 && age > dm.maxRuntime) {
      return {
        message: 'has exceeded its maximum runtime and will be forcibly deleted!',
        failure: `${machine} ran longer than the autoscaler's maxRuntime (${dm.maxRuntime} s) and was destroyed.`,
      };
    }
    if (online && dm.maxUploadTime > 0 && node.queueCount() === 0 && !active && age > dm.maxUploadTime) {
      return {
        message: 'has exceeded its maximum upload time and will be forcibly deleted!',
        failure: `${machine} did not receive the task within the autoscaler's maxUploadTime (${dm.maxUploadTime} s) and was destroyed.`,
      };
    }
    // Offline since it was last seen online (or since we started, if we never saw it): one failed poll is not enough.
    const lastSeen = node.lastSeenOnline > 0 ? Math.max(node.lastSeenOnline, dm.created) : Math.max(dm.created, this.d.startedAt());
    if (!online && dm.maxUploadTime > 0 && (now - lastSeen) / 1000 > dm.maxUploadTime) {
      return {
        message: 'has been offline for too long and will be forcibly deleted!',
        failure: `${machine} was unreachable for longer than the autoscaler's maxUploadTime (${dm.maxUploadTime} s) and was destroyed.`,
      };
    }
    // Past this point nothing may take a machine whose node reports a task of it queued or running.
    if (active) return null;
    const forwarding = this.forwardingTo(node).length > 0;
    // Its tasks are done and saved, but the removal after the webhook did not happen (e.g. a restart in between).
    if (uuids.length > 0 && uuids.every((u) => this.d.tasks.get(u)?.phase === 'finished') && !forwarding) {
      return { message: 'has finished its task and will be deleted' };
    }
    // No webhook came (or its machine was never destroyed): a node with nothing queued or running, no task on its way
    // to it, and every task routed to it known to be over, is idle. The original kept such machines forever.
    const settled = [...states.values()].every((s) => s.kind === 'final' || s.kind === 'missing');
    if (online && now - dm.created > IDLE_GRACE_MS && node.queueCount() === 0 && settled && !forwarding) {
      return { message: uuids.length > 0 ? 'is idle (its tasks are done) and will be deleted' : 'holds no task and will be deleted' };
    }
    return null;
  }

  /** Tasks on their way to this node. */
  private forwardingTo(node: ClusterNode): string[] {
    return this.d.tasks
      .entries({ phase: 'forwarding' })
      .filter((e) => e.nodeKey === node.key)
      .map((e) => e.uuid);
  }
}
