import { randomBytes } from 'node:crypto';
import type { Clock, Logger, Service, TimerHandle } from '../core';
import { ClusterError, errorMessage } from '../core';
import type { NodeClient } from '../nodeodm';
import type { ClusterNode, HealthPoller, NodeRegistry } from '../nodes';
import type { RouteTable, TaskInfo, TaskTable } from '../routing';
import type { MachineSlots } from '../store';
import type { DockerMachine } from './docker-machine';
import { DockerMachineDriver } from './drivers/docker-machine-driver';
import type { MachineDriver } from './drivers/driver';
import type { AsrProvider, AsrSettings } from './provider';
import { downloadsBaseUrl, type S3Store } from './s3';
import { RuntimeSecrets, secretMatches } from './secrets';
import { maskSecrets } from './shell';
import { MachineBuilder } from './machine-builder';
import { MachinePlaces } from './machine-places';
import { TaskRecords } from './task-records';
import type { AsrStatus, AutoscalerLeader, MachineRequest, Reservation } from './types';
import { Vacuum, VACUUM_INTERVAL_MS } from './vacuum';

/** How long after a task's webhook its machine is destroyed (as the original). */
export const CLEANUP_DELAY_MS = 10_000;

export interface AutoscalerCommonDeps {
  s3: S3Store;
  registry: NodeRegistry;
  poller: HealthPoller;
  routes: RouteTable;
  tasks: TaskTable;
  client: NodeClient;
  clock: Clock;
  logger: Logger;
  /** Base URL of the results (`--downloads-from-s3` or the bucket's), recorded as the task's s3Path. */
  downloadsBase?: string;
  random?: (bytes: number) => Buffer;
  /** How long after a task's webhook its machine goes (default CLEANUP_DELAY_MS; tests shorten it). */
  cleanupDelayMs?: number;
  /**
   * Several instances (--redis): the leader lease (only its holder runs the vacuum and the reconciliation, each
   * destroy checked against its fencing token) and the machine places shared under the limit. Absent: one instance.
   */
  leader?: AutoscalerLeader | null;
  slots?: MachineSlots | null;
}


/** docker-machine (a provider and docker-machine), or any other driver with the settings it was built from. */
export type AutoscalerDeps = AutoscalerCommonDeps &
  ({ provider: AsrProvider; machines: DockerMachine; driver?: undefined } | { provider: AsrSettings; driver: MachineDriver; machines?: undefined });

/** Why a place under the machines limit may have freed. */
export type CapacityChange = 'released' | 'destroyed';

/**
 * The autoscaler (SPEC §8): one machine per task when the static nodes are full, created and set up through
 * docker-machine, registered as an autospawned node, destroyed after the task's webhook, by the vacuum, or by
 * NODE DEL. Unlike the original, it leaks nothing: the limit is checked and taken in one synchronous step, a
 * failed creation or forward destroys its machine, and machines carrying our name (at docker-machine) or our tag
 * (at the provider) that nodes.json does not know are destroyed at start and at every vacuum.
 */
export class Autoscaler implements Service {
  readonly name = 'autoscaler';
  private readonly d: AutoscalerDeps;
  private readonly random: (bytes: number) => Buffer;
  private readonly places: MachinePlaces;
  private readonly destroying = new Set<string>();
  private readonly cleanups = new Set<TimerHandle>();
  private timer: TimerHandle | null = null;
  private startedAt = 0;
  private vacuuming: Promise<void> | null = null;
  private stopped = false;
  private electionHooked = false;
  /** Secrets generated at run time (node tokens, webhook secrets), per machine: masked in logs too. */
  private readonly runtimeSecrets = new RuntimeSecrets();
  private readonly records: TaskRecords;
  private readonly vacuumRules: Vacuum;
  /** Makes machines; lists those being made (never reconciled away). */
  private readonly builder: MachineBuilder;
  /** How machines are made and unmade (docker-machine or the cloud's API). */
  readonly driver: MachineDriver;
  private readonly capacityListeners = new Set<(why: CapacityChange) => void>();

  constructor(deps: AutoscalerDeps) {
    this.d = deps;
    this.random = deps.random ?? randomBytes;
    const { registry, poller, routes, tasks, client, clock, logger } = deps;
    this.driver = deps.driver ?? new DockerMachineDriver({ provider: deps.provider, machines: deps.machines, registry, clock, logger, mask: (t) => this.mask(t) });
    this.places = new MachinePlaces({
      limit: () => deps.provider.machinesLimit(),
      running: () => this.running(),
      slots: deps.slots ?? null,
      logger,
    });
    this.builder = new MachineBuilder({
      driver: this.driver,
      provider: deps.provider,
      registry,
      poller,
      places: this.places,
      clock,
      logger,
      random: this.random,
      secrets: this.runtimeSecrets,
      mask: (t) => this.mask(t),
    });
    this.records = new TaskRecords({ tasks, client, clock, logger, ...(deps.downloadsBase ? { downloadsBase: deps.downloadsBase } : {}) });
    this.vacuumRules = new Vacuum({
      registry,
      poller,
      routes,
      tasks,
      client,
      clock,
      logger,
      records: this.records,
      destroyNode: (node) => this.fencedDestroy(node),
      mask: (text) => this.mask(text),
      startedAt: () => this.startedAt,
    });
  }

  /** A vacuum's destroy: only while this instance still leads (fencing token checked in the shared state). */
  private async fencedDestroy(node: ClusterNode): Promise<void> {
    if (!(await this.fence())) throw new Error(`not destroying ${node.name}: this instance no longer leads the autoscaler`);
    await this.destroyNode(node);
  }

  /** Whether this instance may run the vacuum and the reconciliation now (always with one instance). */
  private async fence(): Promise<boolean> {
    const leader = this.d.leader;
    return !leader || (leader.isLeader() && (await leader.fence()));
  }

  get provider(): AsrSettings {
    return this.d.provider;
  }

  /** Secrets to mask wherever a command or a message is shown. */
  secrets(): string[] {
    return [...this.d.provider.secrets(), ...this.runtimeSecrets.values()];
  }

  mask(text: string): string {
    return maskSecrets(text, this.secrets());
  }

  /** Checks S3 and the driver (SPEC §8.1; the configuration was validated when it was read). Throws the operator's message. */
  async initialize(): Promise<void> {
    await this.d.s3.testBucket();
    await this.driver.initialize();
  }

  /** Vacuum (and reconciliation) now and every 10 minutes. */
  async start(): Promise<void> {
    this.startedAt = this.d.clock.now();
    this.stopped = false;
    // A new leader vacuums at once (the one before may have died halfway).
    if (!this.electionHooked) this.d.leader?.onElected(() => void (this.stopped ? undefined : this.vacuum()));
    this.electionHooked = true;
    void this.vacuum();
    this.timer = this.d.clock.setInterval(() => void this.vacuum(), VACUUM_INTERVAL_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) this.d.clock.clearInterval(this.timer);
    this.timer = null;
    for (const t of this.cleanups) this.d.clock.clearTimeout(t);
    this.cleanups.clear();
    // Machines still being created are found by the reconciliation at the next start.
    this.driver.stop();
    this.d.s3.close();
  }

  // ---- limits

  running(): number {
    return this.d.registry.list().filter((n) => n.isAutoSpawned()).length;
  }

  pending(): number {
    return this.places.pending;
  }

  canHandle(images: number): boolean {
    return this.d.provider.canHandle(images);
  }

  /**
   * Takes a place for a new machine if the limit allows it and the provider can handle the task; null otherwise.
   * Synchronous, so concurrent tasks can never exceed the limit (the original checked, awaited, then counted).
   * Several instances: confirm() it before use (the place is then taken in the shared state too).
   */
  reserve(images: number): Reservation | null {
    if (this.stopped || !this.canHandle(images)) return null;
    return this.places.reserve(images);
  }

  release(r: Reservation): void {
    if (r.released) return;
    this.places.release(r);
    this.capacityChanged('released');
  }

  /**
   * Calls `fn` when a place under the limit may have freed: a reservation was released (a creation ended either
   * way) or a machine was destroyed. The task queue retries then. Returns the unsubscribe function.
   */
  onCapacity(fn: (why: CapacityChange) => void): () => void {
    this.capacityListeners.add(fn);
    return () => this.capacityListeners.delete(fn);
  }

  private capacityChanged(why: CapacityChange): void {
    for (const fn of this.capacityListeners) fn(why);
  }

  /** Whether places under the limit are shared by several instances (then confirm() each reservation). */
  get sharedLimit(): boolean {
    return this.places.shared;
  }

  /** See MachinePlaces.confirm: the reservation, or null (released) when the cluster is at its limit. */
  confirm(r: Reservation): Promise<Reservation | null> {
    return this.places.confirm(r);
  }

  generateHostname(images: number): string {
    return this.builder.generateHostname(images);
  }

  // ---- creation

  /**
   * Creates, sets up and registers a machine for one task (machine-builder.ts). On any failure, or when `signal`
   * aborts, the machine is destroyed before this rejects. The reservation is released when this settles.
   */
  async createNode(r: Reservation, req: MachineRequest, signal: AbortSignal): Promise<ClusterNode> {
    // Several instances: a place taken here alone (a queued task's) is taken in the shared state now, or it queues again.
    if (this.places.shared && !(await this.places.confirm(r))) {
      throw new ClusterError('NO_CAPACITY', 'The cluster has reached its machine limit (dropletsLimit)');
    }
    try {
      return await this.builder.build(r, req, signal);
    } finally {
      this.release(r);
    }
  }

  /** What the machines running and being created cost per hour (prices as recorded at their creation). */
  hourlySpend(except: string | null = null): number {
    return this.builder.hourlySpend(except);
  }

  // ---- teardown

  /** Destroys the machine behind an autospawned node (NODE DEL, web delete, vacuum, after the webhook). */
  async destroyMachine(node: ClusterNode): Promise<void> {
    const name = node.record.dockerMachine?.name;
    if (!name) return;
    if (this.destroying.has(name)) return;
    this.destroying.add(name);
    try {
      this.d.logger.info(`Autoscaler: destroying machine ${name} (${node.name})`);
      await this.driver.destroy(node.record.dockerMachine ?? { name, created: 0, maxRuntime: -1, maxUploadTime: -1 });
      this.runtimeSecrets.drop(name);
      this.capacityChanged('destroyed');
    } finally {
      this.destroying.delete(name);
    }
  }

  /** Destroys the machine, then drops its routes and the node (saving both files). */
  async destroyNode(node: ClusterNode): Promise<void> {
    await this.destroyMachine(node);
    await this.d.routes.removeByNode(node);
    await this.d.registry.remove(node);
    this.capacityChanged('destroyed');
  }

  /** After a task's webhook: the machine goes 10 s later (the original's delay, so NodeODM can finish answering). */
  scheduleCleanup(node: ClusterNode, delayMs = this.d.cleanupDelayMs ?? CLEANUP_DELAY_MS): void {
    const t = this.d.clock.setTimeout(() => {
      this.cleanups.delete(t);
      if (!this.d.registry.list().includes(node)) return;
      this.destroyNode(node).catch((e: unknown) =>
        this.d.logger.error(`Autoscaler: cannot destroy ${node.name}: ${this.mask(errorMessage(e))}`),
      );
    }, delayMs);
    this.cleanups.add(t);
  }

  /**
   * A task on an autospawned node is done (its webhook): its final info and output go to the durable task table
   * (so info/output keep answering once the machine is gone), then the caller schedules the machine's removal.
   * `reported` is the webhook's body, used when the node cannot be asked.
   */
  finishTask(uuid: string, node: ClusterNode, token: string | undefined, reported: unknown): Promise<TaskInfo | null> {
    return this.records.finish(uuid, node, token, reported);
  }

  /** Whether `secret` is the one given to this node's machine (constant time). */
  verifySecret(node: ClusterNode, secret: string): boolean {
    return secretMatches(node.record.dockerMachine?.secretHash, secret);
  }

  /** Where NodeODM's public results are: `https://<bucket>.<endpoint>`. */
  downloadsBaseUrl(): string {
    return downloadsBaseUrl(this.d.provider.s3);
  }

  get s3(): S3Store {
    return this.d.s3;
  }

  // ---- vacuum

  /** One pass of the vacuum rules (vacuum.ts) and the reconciliation. Concurrent calls share one pass. */
  vacuum(): Promise<void> {
    this.vacuuming ??= this.doVacuum().finally(() => {
      this.vacuuming = null;
    });
    return this.vacuuming;
  }

  private async doVacuum(): Promise<void> {
    const { logger } = this.d;
    // Several instances: the leader alone vacuums and reconciles.
    if (!(await this.fence())) return;
    await this.vacuumRules.pass();
    await this.reconcile().catch((e: unknown) => logger.error(`Autoscaler: reconciliation failed: ${this.mask(errorMessage(e))}`));
  }

  /** Destroys machines that are ours but unknown to nodes.json (reconcile.ts). */
  async reconcile(): Promise<number> {
    const { registry } = this.d;
    if (!(await this.fence())) return 0;
    // Machines other instances are making (several instances) are as good as known.
    const elsewhere = this.d.slots ? await this.d.slots.creating() : new Set<string>();
    const known = (name: string, id: string | null): boolean =>
      elsewhere.has(name) ||
      registry.list().some((n) => n.record.dockerMachine?.name === name || (id !== null && n.record.dockerMachine?.machineId === id));
    return this.driver.reconcile(known, (name) => this.builder.creating.has(name));
  }

  // ---- admin views

  /** `ASR VIEWCMD <images>`: the create command, secrets masked (the original printed them). */
  async viewCommand(images: number): Promise<string> {
    return this.mask(await this.driver.viewCommand(images));
  }

  status(): AsrStatus {
    const p = this.d.provider;
    return {
      provider: p.name,
      pending: this.places.pending,
      running: this.running(),
      limit: p.machinesLimit(),
      maxRuntime: p.maxRuntime(),
      maxUploadTime: p.maxUploadTime(),
      creating: [...this.builder.creating.values()].map((c) => ({ ...c })),
      machines: this.d.registry
        .list()
        .filter((n) => n.isAutoSpawned())
        .map((n) => {
          const dm = n.record.dockerMachine;
          return {
            name: dm?.name ?? n.name,
            node: n.name,
            size: dm?.size ?? null,
            region: dm?.region ?? null,
            created: dm?.created ?? 0,
            hourlyPrice: dm?.hourlyPrice ?? null,
            currency: dm?.currency ?? null,
          };
        }),
      hourlySpend: this.hourlySpend(),
      maxHourlySpend: p.maxHourlySpend?.() ?? -1,
    };
  }
}
