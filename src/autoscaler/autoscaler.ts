import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock, Logger, Service, TimerHandle } from '../core';
import { abortableSleep, errorMessage } from '../core';
import type { NodeClient } from '../nodeodm';
import { ClusterNode, type HealthPoller, type NodeRegistry } from '../nodes';
import type { RouteTable, TaskInfo, TaskTable } from '../routing';
import type { DockerMachine } from './docker-machine';
import type { AsrProvider } from './provider';
import { downloadsBaseUrl, type S3Store } from './s3';
import { maskSecrets } from './shell';

export const VACUUM_INTERVAL_MS = 10 * 60 * 1000;
/** How long after a task's webhook its machine is destroyed (as the original). */
export const CLEANUP_DELAY_MS = 10_000;
/** An autospawned node holding no task for this long after its creation is destroyed (no leaked machines). */
const ONLINE_ROUNDS = 5;
export const IDLE_GRACE_MS = 30 * 60 * 1000;
/** Names of the machines we create: clusterodm-<images>-<random>. */
export const MACHINE_NAME = /^clusterodm-\d+-[A-Za-z0-9]+$/;

/** A place under the machines limit, taken synchronously when a task decides to autoscale. */
export interface Reservation {
  readonly images: number;
  released: boolean;
}

/** What a task tells the autoscaler when it needs a machine. */
export interface MachineRequest {
  uuid: string;
  images: number;
  /** `<public address>/commit?token=<user token>`; the machine's secret is added to it. */
  commitUrl: string;
  /** Progress of the steps (also logged). */
  onStep?: (message: string) => void;
}

/** A creation in progress, for the admin page. */
export interface MachineProgress {
  name: string;
  uuid: string;
  step: string;
  since: number;
}

/** What the admin page shows of the autoscaler. */
export interface AsrStatus {
  provider: string;
  pending: number;
  running: number;
  limit: number;
  maxRuntime: number;
  maxUploadTime: number;
  /** Machines being created and their current step. */
  creating: MachineProgress[];
}

export interface AutoscalerDeps {
  provider: AsrProvider;
  machines: DockerMachine;
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
}

const ALNUM = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

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
  private pendingCount = 0;
  /** Machines being created (never reconciled away). */
  private readonly creating = new Map<string, MachineProgress>();
  private readonly destroying = new Set<string>();
  private readonly cleanups = new Set<TimerHandle>();
  private timer: TimerHandle | null = null;
  private startedAt = 0;
  private vacuuming: Promise<void> | null = null;
  private stopped = false;
  /** Secrets generated at run time (node tokens, webhook secrets): masked in logs too. */
  private readonly runtimeSecrets = new Set<string>();

  constructor(deps: AutoscalerDeps) {
    this.d = deps;
    this.random = deps.random ?? randomBytes;
  }

  get provider(): AsrProvider {
    return this.d.provider;
  }

  /** Secrets to mask wherever a command or a message is shown. */
  secrets(): string[] {
    return [...this.d.provider.secrets(), ...this.runtimeSecrets];
  }

  mask(text: string): string {
    return maskSecrets(text, this.secrets());
  }

  /** Checks S3 and docker-machine (SPEC §8.1; the configuration was validated when it was read). Throws the operator's message. */
  async initialize(): Promise<void> {
    await this.d.s3.testBucket();
    await this.d.machines.checkInstalled();
  }

  /** Vacuum (and reconciliation) now and every 10 minutes. */
  async start(): Promise<void> {
    this.startedAt = this.d.clock.now();
    this.stopped = false;
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
    this.d.machines.killAll();
    this.d.s3.close();
  }

  // ---- limits

  running(): number {
    return this.d.registry.list().filter((n) => n.isAutoSpawned()).length;
  }

  pending(): number {
    return this.pendingCount;
  }

  canHandle(images: number): boolean {
    return this.d.provider.canHandle(images);
  }

  /**
   * Takes a place for a new machine if the limit allows it and the provider can handle the task; null otherwise.
   * Synchronous, so concurrent tasks can never exceed the limit (the original checked, awaited, then counted).
   */
  reserve(images: number): Reservation | null {
    if (this.stopped || !this.canHandle(images)) return null;
    const limit = this.d.provider.machinesLimit();
    if (limit !== -1 && this.pendingCount + this.running() >= limit) return null;
    this.pendingCount++;
    return { images, released: false };
  }

  release(r: Reservation): void {
    if (r.released) return;
    r.released = true;
    this.pendingCount--;
  }

  generateHostname(images: number): string {
    const bytes = this.random(16);
    let id = '';
    for (const b of bytes) id += ALNUM[b % ALNUM.length];
    return `clusterodm-${images}-${id}`;
  }

  private token(): string {
    const t = this.random(24).toString('base64url');
    this.runtimeSecrets.add(t);
    return t;
  }

  // ---- creation

  /**
   * Creates, sets up and registers a machine for one task (SPEC §8.3). On any failure, or when `signal` aborts, the
   * machine is destroyed before this rejects. The reservation is released when this settles.
   */
  async createNode(r: Reservation, req: MachineRequest, signal: AbortSignal): Promise<ClusterNode> {
    const { provider, machines, logger, clock } = this.d;
    const name = this.generateHostname(r.images);
    const progress: MachineProgress = { name, uuid: req.uuid, step: 'Creating machine', since: clock.now() };
    this.creating.set(name, progress);
    const step = (message: string): void => {
      progress.step = message;
      progress.since = clock.now();
      logger.info(`Autoscaler: ${name} (task ${req.uuid}): ${message}`);
      req.onStep?.(message);
    };
    const checkAbort = (): void => {
      if (signal.aborted) throw new Error('Aborted');
    };
    let created = false;
    try {
      if (!this.canHandle(r.images)) throw new Error(`Cannot handle ${r.images} images.`);
      const nodeToken = this.token();
      const secret = this.token();
      const retries = provider.createRetries();
      for (let attempt = 1; attempt <= retries && !created; attempt++) {
        checkAbort();
        step(`Trying to create machine... (${attempt})`);
        try {
          await machines.create(name, ['--driver', provider.driver, ...(await provider.createArgs(r.images, attempt))]);
          created = true;
        } catch (e: unknown) {
          logger.warn(`Cannot create machine ${name}: ${this.mask(errorMessage(e))}`);
          await machines.rm(name, true).catch(() => undefined);
          if (attempt < retries) await abortableSleep(clock, provider.failureSleepMs(attempt), signal);
        }
      }
      if (!created) throw new Error(`Cannot create machine (attempted ${retries} times)`);
      checkAbort();
      const webhook = new URL(req.commitUrl);
      webhook.searchParams.set('secret', secret);
      await provider.setupMachine(
        {
          ssh: (cmd) => {
            checkAbort();
            return machines.ssh(name, cmd);
          },
          step,
        },
        { nodeToken, webhookUrl: webhook.toString() },
      );
      checkAbort();
      const ip = await machines.getIP(name);
      const node = new ClusterNode({
        hostname: ip,
        port: provider.servicePort,
        token: nodeToken,
        dockerMachine: {
          name,
          created: clock.now(),
          maxRuntime: provider.maxRuntime(),
          maxUploadTime: provider.maxUploadTime(),
          secretHash: sha256(secret).toString('hex'),
        },
      });
      await this.waitOnline(node, step, signal);
      checkAbort();
      await this.d.registry.add(node);
      step(`Machine ready at ${node.name}`);
      return node;
    } catch (e: unknown) {
      if (created) {
        await machines.rm(name, true).catch(() => {
          logger.warn(`Could not remove docker-machine ${name}, it's likely that the machine was not created, but double-check!`);
        });
      }
      throw e;
    } finally {
      this.creating.delete(name);
      this.release(r);
    }
  }

  private async waitOnline(node: ClusterNode, step: (m: string) => void, signal: AbortSignal): Promise<void> {
    // As the original: 5 rounds, round i sleeping i seconds.
    for (let i = 1; i <= ONLINE_ROUNDS; i++) {
      if (signal.aborted) throw new Error('Aborted');
      if (await this.d.poller.refresh(node)) return;
      step(`Waiting for ${node.name} to get online... (${i})`);
      await abortableSleep(this.d.clock, 1000 * i, signal);
    }
    if (await this.d.poller.refresh(node)) return;
    throw new Error('No nodes available (spawned a new node, but the node did not get online).');
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
      try {
        await this.d.machines.rm(name, true);
      } catch (e: unknown) {
        // docker-machine may have lost it: ask the provider directly.
        const known = (await this.d.provider.listTaggedMachines()).filter((m) => m.name === name);
        if (known.length === 0) throw e;
        for (const m of known) await this.d.provider.deleteMachine(m.id);
      }
    } finally {
      this.destroying.delete(name);
    }
  }

  /** Destroys the machine, then drops its routes and the node (saving both files). */
  async destroyNode(node: ClusterNode): Promise<void> {
    await this.destroyMachine(node);
    await this.d.routes.removeByNode(node);
    await this.d.registry.remove(node);
  }

  /** After a task's webhook: the machine goes 10 s later (the original's delay, so NodeODM can finish answering). */
  scheduleCleanup(node: ClusterNode, delayMs = CLEANUP_DELAY_MS): void {
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
   * A task on an autospawned node is done (its webhook, or the vacuum found the node idle): its final info and
   * output go to the durable task table (so info/output keep answering once the machine is gone; the original
   * saved no output and lost everything at a restart), then the machine is destroyed 10 s later.
   * `reported` is the webhook's body, used when the node cannot be asked.
   */
  async finishTask(uuid: string, node: ClusterNode, token: string | undefined, reported: unknown): Promise<TaskInfo | null> {
    const { client, tasks, logger } = this.d;
    let info: unknown = null;
    let output: string[] = [];
    try {
      // Info and the last lines of output in one request.
      info = await client.getJson(node, `/task/${uuid}/info`, { with_output: -MAX_OUTPUT_LINES });
      const out = (info as { output?: unknown } | null)?.output;
      if (Array.isArray(out)) output = out.filter((l): l is string => typeof l === 'string');
    } catch (e: unknown) {
      logger.warn(`Autoscaler: cannot read task ${uuid} from ${node.name}: ${errorMessage(e)}`);
    }
    const taskInfo = asTaskInfo(info, uuid) ?? asTaskInfo(reported, uuid);
    if (taskInfo) {
      if (this.d.downloadsBase) taskInfo['s3Path'] = this.d.downloadsBase;
      await tasks.put({ uuid, token, phase: 'finished', taskInfo, output });
    }
    return taskInfo;
  }

  /** Whether `secret` is the one given to this node's machine (constant time). */
  verifySecret(node: ClusterNode, secret: string): boolean {
    const stored = node.record.dockerMachine?.secretHash;
    if (!stored || !/^[0-9a-f]{64}$/.test(stored)) return false;
    return timingSafeEqual(sha256(secret), Buffer.from(stored, 'hex'));
  }

  /** Where NodeODM's public results are: `https://<bucket>.<endpoint>`. */
  downloadsBaseUrl(): string {
    return downloadsBaseUrl(this.d.provider.s3);
  }

  get s3(): S3Store {
    return this.d.s3;
  }

  // ---- vacuum

  /** One pass of the vacuum rules (SPEC §8.6, measured from when a node was last seen online) and reconciliation. */
  vacuum(): Promise<void> {
    this.vacuuming ??= this.doVacuum().finally(() => {
      this.vacuuming = null;
    });
    return this.vacuuming;
  }

  private async doVacuum(): Promise<void> {
    const { registry, logger, clock } = this.d;
    const now = clock.now();
    const spawned = registry.list().filter((n) => n.isAutoSpawned());
    const routed = this.d.routes.uuidsByNode(new Set(spawned));
    for (const node of spawned) {
      const reason = this.vacuumReason(node, now, routed.get(node) ?? []);
      if (!reason) continue;
      logger.warn(`${node.name} ${reason}`);
      try {
        // Tasks whose info is not saved yet are saved first, so they keep answering.
        for (const uuid of routed.get(node) ?? []) {
          if (this.d.tasks.get(uuid)?.phase === 'finished') continue;
          await this.finishTask(uuid, node, this.d.routes.peek(uuid)?.token, null);
        }
        await this.destroyNode(node);
      } catch (e: unknown) {
        logger.error(`Autoscaler: cannot destroy ${node.name}: ${this.mask(errorMessage(e))}`);
      }
    }
    await this.reconcile().catch((e: unknown) => logger.error(`Autoscaler: reconciliation failed: ${this.mask(errorMessage(e))}`));
  }

  private vacuumReason(node: ClusterNode, now: number, uuids: readonly string[]): string | null {
    const dm = node.record.dockerMachine;
    if (!dm) return null;
    const online = node.isOnline(now);
    const age = (now - dm.created) / 1000;
    if (online && dm.maxRuntime > 0 && age > dm.maxRuntime) {
      return 'has exceeded its maximum runtime and will be forcibly deleted!';
    }
    if (online && dm.maxUploadTime > 0 && node.queueCount() === 0 && age > dm.maxUploadTime) {
      return 'has exceeded its maximum upload time and will be forcibly deleted!';
    }
    // Offline since it was last seen online (or since we started, if we never saw it): one failed poll is not enough.
    const lastSeen = node.lastSeenOnline > 0 ? Math.max(node.lastSeenOnline, dm.created) : Math.max(dm.created, this.startedAt);
    if (!online && dm.maxUploadTime > 0 && (now - lastSeen) / 1000 > dm.maxUploadTime) {
      return 'has been offline for too long and will be forcibly deleted!';
    }
    // Its tasks are done and saved, but the removal after the webhook did not happen (e.g. a restart in between).
    if (uuids.length > 0 && uuids.every((u) => this.d.tasks.get(u)?.phase === 'finished') && !this.forwardingTo(node)) {
      return 'has finished its task and will be deleted';
    }
    // No webhook came (or its machine was never destroyed): a node with nothing queued or running, and no task on
    // its way to it, is idle. The original kept such machines forever with the default limits.
    if (online && now - dm.created > IDLE_GRACE_MS && node.queueCount() === 0 && !this.forwardingTo(node)) {
      return uuids.length > 0 ? 'is idle (its tasks are done) and will be deleted' : 'holds no task and will be deleted';
    }
    return null;
  }

  private forwardingTo(node: ClusterNode): boolean {
    return this.d.tasks.entries({ phase: 'forwarding' }).some((e) => e.nodeKey === node.key);
  }

  /**
   * Destroys machines that are ours but that nodes.json does not know (a crash between creation and registration,
   * a failed removal): at docker-machine, names of our pattern; at the provider, machines carrying our tag.
   */
  async reconcile(): Promise<number> {
    const { machines, provider, registry, logger } = this.d;
    const known = new Set(registry.list().flatMap((n) => (n.record.dockerMachine ? [n.record.dockerMachine.name] : [])));
    const orphan = (name: string): boolean => MACHINE_NAME.test(name) && !known.has(name) && !this.creating.has(name);
    let removed = 0;
    const local = await machines.list().catch((e: unknown) => {
      logger.warn(`Autoscaler: cannot list docker-machine machines: ${this.mask(errorMessage(e))}`);
      return [] as string[];
    });
    for (const name of local.filter(orphan)) {
      logger.warn(`Autoscaler: machine ${name} is not in nodes.json, destroying it`);
      await machines.rm(name, true).then(
        () => removed++,
        (e: unknown) => logger.error(`Autoscaler: cannot remove ${name}: ${this.mask(errorMessage(e))}`),
      );
    }
    const tagged = await provider.listTaggedMachines();
    for (const m of tagged.filter((x) => orphan(x.name))) {
      logger.warn(`Autoscaler: ${provider.name} machine ${m.name} (${m.id}) is not in nodes.json, destroying it`);
      await provider.deleteMachine(m.id).then(
        () => removed++,
        (e: unknown) => logger.error(`Autoscaler: cannot delete ${m.name}: ${this.mask(errorMessage(e))}`),
      );
    }
    return removed;
  }

  // ---- admin views

  /** `ASR VIEWCMD <images>`: the create command, secrets masked (the original printed them). */
  async viewCommand(images: number): Promise<string> {
    const args = ['--driver', this.d.provider.driver, ...(await this.d.provider.createArgs(images, 1))];
    return this.mask(['docker-machine', 'create', ...args, 'debug-machine'].join(' '));
  }

  status(): AsrStatus {
    const p = this.d.provider;
    return {
      provider: p.name,
      pending: this.pendingCount,
      running: this.running(),
      limit: p.machinesLimit(),
      maxRuntime: p.maxRuntime(),
      maxUploadTime: p.maxUploadTime(),
      creating: [...this.creating.values()].map((c) => ({ ...c })),
    };
  }
}

/** Lines of output kept for a finished autoscaled task. */
const MAX_OUTPUT_LINES = 10_000;

/** A NodeODM task info with the fields the task table needs, or null. */
function asTaskInfo(v: unknown, uuid: string): TaskInfo | null {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const status = o['status'];
  if (o['uuid'] !== uuid || typeof status !== 'object' || status === null) return null;
  const code = (status as { code?: unknown }).code;
  if (typeof code !== 'number') return null;
  const num = (x: unknown, d: number): number => (typeof x === 'number' && Number.isFinite(x) ? x : d);
  const { output: _output, ...rest } = o;
  const info: TaskInfo = {
    ...rest,
    uuid,
    name: typeof o['name'] === 'string' ? o['name'] : '',
    dateCreated: num(o['dateCreated'], 0),
    status: typeof (status as { errorMessage?: unknown }).errorMessage === 'string' ? { code, errorMessage: (status as { errorMessage: string }).errorMessage } : { code },
    options: Array.isArray(o['options']) ? o['options'] : [],
    imagesCount: num(o['imagesCount'], 0),
  };
  if (o['processingTime'] !== undefined) info.processingTime = num(o['processingTime'], -1);
  if (o['progress'] !== undefined) info.progress = num(o['progress'], 0);
  return info;
}

