import * as os from 'node:os';
import type { Clock, Logger } from './core';
import { InstancePresence, LeaderLease, StagingSweep } from './cluster';
import { InstanceRelay, lostUploadMessage, StagingPlacement } from './proxy';
import type { RouteTable, TaskTable } from './routing';
import type { ClusterCoordination, StateBackend } from './store';

/** Tests: shorter periods of the coordination between instances. */
export interface ClusterTuning {
  /** An instance's heartbeat lifetime (default 10 s). */
  heartbeatTtlMs?: number;
  /** The autoscaler leader's lease (default 15 s). */
  leaseMs?: number;
  /** How often the leader fails uploads whose staging instance is gone (default 10 s). */
  stagingSweepMs?: number;
  /** The periodic /info poll of the nodes (default 60 s). */
  healthIntervalMs?: number;
}

/**
 * The parts of the daemon that coordinate instances sharing one state (--redis): the heartbeat, the leader lease,
 * the relay of uploads to the instance staging them and the sweep of uploads whose instance is gone. With the
 * JSON files there is one instance: it always leads, and the rest is null.
 */
export interface ClusterParts {
  coordination: ClusterCoordination | null;
  lease: LeaderLease;
  presence: InstancePresence | null;
  relay: InstanceRelay | null;
  placement: StagingPlacement | null;
  sweep: StagingSweep | null;
}

export function buildClusterParts(opts: {
  state: StateBackend;
  routes: RouteTable;
  tasks: TaskTable;
  clock: Clock;
  logger: Logger;
  /** This instance's address, known once the proxy listens. */
  address: () => string;
  tuning?: ClusterTuning | undefined;
}): ClusterParts {
  const { state, clock, logger, tuning } = opts;
  const coordination = state.cluster();
  const lease = new LeaderLease({
    leadership: coordination?.leadership ?? null,
    clock,
    logger,
    ...(tuning?.leaseMs !== undefined ? { leaseMs: tuning.leaseMs } : {}),
  });
  if (!coordination) return { coordination: null, lease, presence: null, relay: null, placement: null, sweep: null };
  // A task given up because its staging instance is gone answers FAILED wherever its entry is kept.
  const onLost = async (uuid: string, reason: string): Promise<void> => {
    if (opts.tasks.has(uuid)) await opts.tasks.markFailed(uuid, reason, { errorMessage: true });
  };
  const relay = new InstanceRelay({ staging: coordination.staging, instances: coordination.instances, clock, logger, onLost });
  return {
    coordination,
    lease,
    presence: new InstancePresence({
      instances: coordination.instances,
      address: opts.address,
      clock,
      logger,
      ...(tuning?.heartbeatTtlMs !== undefined ? { ttlMs: tuning.heartbeatTtlMs } : {}),
    }),
    relay,
    placement: new StagingPlacement({ staging: coordination.staging, relay, clock, logger }),
    sweep: new StagingSweep({
      staging: coordination.staging,
      instances: coordination.instances,
      lease,
      clock,
      logger,
      routed: (uuid) => opts.routes.has(uuid),
      routesLoaded: () => opts.routes.loaded(),
      message: lostUploadMessage,
      onLost,
      ...(tuning?.stagingSweepMs !== undefined ? { intervalMs: tuning.stagingSweepMs } : {}),
    }),
  };
}

/**
 * Where the other instances reach this one's proxy: `--instance-address` as given (a port is added when it has
 * none), else the listen address (or this host's name when listening on every interface) and the proxy's port
 * (plain HTTP if it listens, else HTTPS).
 */
export function instanceAddress(configured: string, host: string | undefined, ports: { http?: number; https?: number }): string {
  const secure = ports.http === undefined && ports.https !== undefined;
  const port = ports.http ?? ports.https ?? 0;
  const scheme = secure ? 'https://' : '';
  if (configured) {
    if (/^https?:\/\//.test(configured) || /:\d+$/.test(configured)) return configured;
    return `${scheme}${configured}:${port}`;
  }
  const name = host && host !== '0.0.0.0' && host !== '::' ? host : os.hostname();
  return `${scheme}${name.includes(':') ? `[${name}]` : name}:${port}`;
}
