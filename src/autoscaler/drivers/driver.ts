import type { DockerMachineRecord } from '../../nodes';
import type { MachinePrice } from '../machine-api';

/** What the lifecycle hands a driver to create one machine. */
export interface CreateContext {
  /** `clusterodm-<images>-<random>`. */
  name: string;
  images: number;
  /** The token the new NodeODM requires. */
  nodeToken: string;
  /** Where NodeODM posts a task's info when it ends (carries the machine's secret). */
  webhookUrl: string;
  /** Reports a step (logged, shown in the task output and on the admin page). */
  step(message: string): void;
  signal: AbortSignal;
  /** True when NodeODM at `ip` answers /info with `nodeToken` (one try). */
  probe(ip: string): Promise<boolean>;
  /**
   * Counts this machine's hourly price against maxHourlySpend (synchronously with the check, so concurrent creates
   * see each other). False, counting nothing, when the machines running and being created plus this one would go
   * over it. Without a maxHourlySpend it only records the price.
   */
  claimSpend(hourly: number): boolean;
}

/** A machine the driver made: where its NodeODM is, and what it takes to destroy it later. */
export interface CreatedMachine {
  ip: string;
  /** The cloud's id (api driver), kept in the node record beside the name. */
  machineId?: string;
  /** api driver: what it is and what it costs (null: the cloud does not say and `prices` has no entry). */
  size?: string;
  region?: string;
  price?: MachinePrice | null;
}

/**
 * How machines are made and unmade: `docker-machine` (today's path: docker-machine create, setup over ssh) or `api`
 * (the cloud's HTTP API, NodeODM started by cloud-init). The lifecycle (limits, tokens, registration, vacuum rules)
 * is the autoscaler's and the same for both.
 */
export interface MachineDriver {
  readonly kind: 'docker-machine' | 'api';
  /** Port NodeODM listens on on the machine. */
  readonly servicePort: number;
  /** Start-up checks (docker-machine installed; the install id loaded). Throws the operator's message. */
  initialize(): Promise<void>;
  /**
   * Creates a machine with its NodeODM (createRetries attempts, regions rotating). A failed attempt leaves no
   * machine. Throws when every attempt failed (code NO_CAPACITY when the cloud said so at the last attempt).
   */
  create(ctx: CreateContext): Promise<CreatedMachine>;
  /** Removes a machine that `create` returned but that could not be registered. Never throws. */
  discard(name: string, machine: CreatedMachine): Promise<void>;
  /** Destroys the machine of a node record; already gone is fine. */
  destroy(record: DockerMachineRecord): Promise<void>;
  /** Destroys machines that are ours but that no node record knows; resolves to how many. */
  reconcile(known: (name: string, machineId: string | null) => boolean, creating: (name: string) => boolean): Promise<number>;
  /** `ASR VIEWCMD`: what a create for `images` would do (unmasked; the caller masks). */
  viewCommand(images: number): Promise<string>;
  stop(): void;
}
