/**
 * What instances sharing one state (--redis) coordinate through, besides the shared documents and tables of
 * port.ts: who is alive and where, which instance stages which upload, who leads the autoscaler, the machines
 * being made under the limit, and who polls which node. The JSON backend has none of it (one instance: it
 * stages everything, leads, and polls every node itself).
 */
export interface ClusterCoordination {
  /** Live instances, by address (`host:port` of the proxy): the instance's id in the cluster. */
  readonly instances: InstanceDirectory;
  readonly staging: StagingDirectory;
  readonly leadership: Leadership;
  readonly machines: MachineSlots;
  readonly nodeHealth: NodeHealthBoard;
}

export interface InstanceDirectory {
  /** This instance's address ('' until its first beat). */
  self(): string;
  /** Registers `address` as this instance's, or renews it: its heartbeat expires ttlMs later unless renewed. */
  beat(address: string, ttlMs: number): Promise<void>;
  /** Whether the instance at `address` has a live heartbeat. */
  alive(address: string): Promise<boolean>;
}

/** Where an upload being staged lives, or why it failed. */
export interface StagingRecord {
  /** Address of the instance holding the staged files. */
  owner: string;
  /** Set once the task was given up (its owner is gone): the message every instance answers. */
  failed?: string;
  /** When it was recorded or failed (ms). */
  at: number;
}

export interface StagingDirectory {
  /** Records that this instance stages `uuid` (init, single-shot /task/new). */
  claim(uuid: string, now: number): Promise<void>;
  lookup(uuid: string): Promise<StagingRecord | null>;
  /** Marks the upload failed with `reason`, unless it is already (returns the record that holds). */
  fail(uuid: string, reason: string, now: number): Promise<StagingRecord>;
  /** Forgets the record (the task reached its node, failed locally, or was removed). */
  release(uuid: string): Promise<void>;
  /** Every record (the leader's sweep). */
  all(): Promise<Map<string, StagingRecord>>;
}

export interface Leadership {
  /**
   * Takes the lease if it is free, or renews it if this instance holds it: the fencing token while this
   * instance leads (a new, higher one at each takeover), null while another does.
   */
  acquire(ttlMs: number): Promise<number | null>;
  /** Whether `token` is still the current lease's, checked atomically in the store (fencing). */
  holds(token: number): Promise<boolean>;
  /** Gives the lease up (clean stop) if `token` still holds it. */
  resign(token: number): Promise<void>;
}

export interface MachineSlots {
  /**
   * Takes a place for a new machine if the autoscaled nodes plus the places every live instance holds stay
   * under `limit` (-1: none); atomic across instances. Returns the place's id, or null.
   */
  take(limit: number): Promise<string | null>;
  /** Names the machine a place is for (so the leader's reconciliation spares it while it is being made). */
  name(id: string, machine: string): Promise<void>;
  give(id: string): Promise<void>;
  /** Names of machines any live instance is making. */
  creating(): Promise<Set<string>>;
}

export interface NodeHealthBoard {
  /** Whether this instance polls `nodeKey` this round (a lease of ttlMs: one poller per node per interval). */
  claim(nodeKey: string, ttlMs: number): Promise<boolean>;
  /** Writes what the poll found (JSON text) for every instance to read. */
  write(nodeKey: string, state: string): Promise<void>;
  /** Every node's last written state. */
  read(): Promise<Map<string, string>>;
}
