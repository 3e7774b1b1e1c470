import * as path from 'node:path';
import type { Service } from './core';
import { errorMessage } from './core';
import type { AdminWeb, Readiness } from './admin-web';
import { buildAdminListeners } from './app-admin';
import { buildAppState } from './app-state';
import { buildClusterParts, instanceAddress, type ClusterParts } from './app-cluster';
import { autoscalerFromFile, type Autoscaler } from './autoscaler';
import type { AdminCli } from './cli';
import { createCloudProvider, type CloudProvider } from './cloud';
import * as fsp from 'node:fs/promises';
import {
  CommitLedger,
  CommitWebhook,
  CommitWindow,
  downloadsBase,
  FloodMonitor,
  Forwarder,
  NodeUploader,
  OpenUploads,
  OptionsCache,
  ProxyHandler,
  ProxyServer,
  S3Downloads,
  StrayCopies,
  StreamForwarder,
  TaskDispatcher,
  TaskIntake,
  TmpCleanup,
} from './proxy';
import { NodeClient } from './nodeodm';
import { HealthPoller, LoadHistory, type NodeRegistry } from './nodes';
import { NodeOps, TaskOps } from './ops';
import { ExpiryService, type RouteTable, type TaskTable } from './routing';
import type { StateBackend } from './store';
import { exportState } from './state-export';

import type { AppDeps } from './app-deps';

export type { AppDeps };

export const PRODUCT_NAME = 'ClusterODM';


/**
 * Builds every object of the daemon and wires them together. State is loaded before any listener opens
 * (the original listened first, so an early NODE LIST showed an empty list).
 */
export class ClusterOdm {
  /** Where the state lives (data/ or Redis); only src/store knows which. */
  readonly state: StateBackend;
  readonly registry: NodeRegistry;
  readonly poller: HealthPoller;
  readonly history = new LoadHistory();
  readonly routes: RouteTable;
  readonly nodeOps: NodeOps;
  readonly taskOps: TaskOps;
  readonly cli: AdminCli | null;
  readonly web: AdminWeb | null;
  readonly cloud: CloudProvider;
  readonly forwarder: Forwarder;
  readonly proxy: ProxyServer;
  readonly tasks: TaskTable;
  readonly dispatcher: TaskDispatcher;
  readonly intake: TaskIntake;
  readonly tmpCleanup: TmpCleanup;
  readonly expiry: ExpiryService;
  readonly flood: FloodMonitor;
  /** The options cache and the open upload sessions: bounded, whatever clients send. */
  readonly options: OptionsCache;
  readonly uploads: OpenUploads;
  readonly streaming: StreamForwarder;
  /** Copies of tasks that may be left on nodes they moved away from (data/strays.json). */
  readonly strays: StrayCopies;
  /** Tasks whose /commit webhook was counted (data/webhooks.json). */
  readonly ledger: CommitLedger;
  private readonly uploader: NodeUploader;
  /** The autoscaler (--asr), or null. */
  readonly autoscaler: Autoscaler | null;
  /** Coordination with the other instances sharing the state (--redis): heartbeat, leader lease, upload relay. */
  readonly cluster: ClusterParts;
  private readonly deps: AppDeps;
  /** A bad --asr file or --downloads-from-s3: reported by start(), which then fails (exit 1). */
  private readonly setupError: string | null = null;
  private readonly started: Service[] = [];
  /** For /readyz: the state is loaded; every listener is up (false again once stop() begins). */
  private stateLoaded = false;
  private listening = false;

  constructor(deps: AppDeps) {
    this.deps = deps;
    const { config, clock, logger } = deps;
    const nodeTimeoutMs = deps.tuning?.nodeTimeoutMs;
    const client = new NodeClient(nodeTimeoutMs !== undefined ? { timeoutMs: nodeTimeoutMs } : {});
    ({ state: this.state, registry: this.registry, routes: this.routes, tasks: this.tasks } = buildAppState({
      redis: config.redis,
      dataDir: config.dataDir,
      clock,
      logger,
    }));
    this.cluster = buildClusterParts({
      state: this.state,
      routes: this.routes,
      tasks: this.tasks,
      clock,
      logger,
      address: () => instanceAddress(config.instanceAddress ?? '', deps.host, this.proxy.ports),
      tuning: deps.tuning,
    });
    this.poller = new HealthPoller({
      registry: this.registry,
      client,
      clock,
      logger,
      history: this.history,
      board: this.cluster.coordination?.nodeHealth ?? null,
      ...(deps.tuning?.healthIntervalMs !== undefined ? { intervalMs: deps.tuning.healthIntervalMs } : {}),
    });
    let autoscaler: Autoscaler | null = null;
    if (config.asr) {
      try {
        autoscaler = autoscalerFromFile(path.resolve(config.asr), {
          registry: this.registry,
          poller: this.poller,
          routes: this.routes,
          tasks: this.tasks,
          client,
          clock,
          logger,
          downloadsFromS3: config.downloadsFromS3 ? downloadsBase(config.downloadsFromS3) : '',
          dataDir: config.dataDir,
          ...(deps.tuning?.asrCleanupDelayMs !== undefined ? { cleanupDelayMs: deps.tuning.asrCleanupDelayMs } : {}),
          ...(deps.tuning?.asrPollMs !== undefined ? { apiPollMs: deps.tuning.asrPollMs } : {}),
          leader: this.cluster.lease.shared ? this.cluster.lease : null,
          slots: this.cluster.coordination?.machines ?? null,
        });
      } catch (e: unknown) {
        this.setupError = `Cannot initialize ASR: ${errorMessage(e)}`;
      }
    }
    this.autoscaler = autoscaler;
    let s3: S3Downloads | null = null;
    try {
      const base = config.downloadsFromS3 ? downloadsBase(config.downloadsFromS3) : (autoscaler?.downloadsBaseUrl() ?? '');
      const privateStore = autoscaler && !autoscaler.s3.isPublic ? autoscaler.s3 : null;
      if (base) s3 = new S3Downloads({ base, store: privateStore, logger });
    } catch (e: unknown) {
      this.setupError ??= `Invalid --downloads-from-s3 ${config.downloadsFromS3}: ${errorMessage(e)}`;
    }
    this.nodeOps = new NodeOps({
      registry: this.registry,
      poller: this.poller,
      routes: this.routes,
      logger,
      history: this.history,
      machines: autoscaler,
      connections: { forget: (node) => this.forwarder.forget(node) },
    });
    this.taskOps = new TaskOps({ routes: this.routes, client, queued: () => this.dispatcher.queue?.list() ?? [] });
    this.cloud = deps.cloud ?? createCloudProvider(config.cloudProvider, { token: config.token, clock, logger, debug: config.debug });
    this.forwarder = new Forwarder({
      logger,
      ...(nodeTimeoutMs !== undefined ? { idleTimeoutMs: nodeTimeoutMs } : {}),
      ...(deps.tuning?.forwardViaNodeHttp === 1 ? { client: 'node:http' as const } : {}),
    });
    const options = new OptionsCache({ client, clock, enabled: !config.debug });
    this.options = options;
    // One keep-alive pool per node, shared by proxied calls and task uploads.
    const uploader = (this.uploader = new NodeUploader({
      clock,
      logger,
      maxSendBytesPerSec: config.uploadMaxSpeed,
      agentFor: (node) => this.forwarder.agentFor(node),
      ...(deps.tuning?.uploadRetrySleepMs !== undefined ? { retrySleepMs: deps.tuning.uploadRetrySleepMs } : {}),
      ...(nodeTimeoutMs !== undefined ? { requestTimeoutMs: nodeTimeoutMs } : {}),
    }));
    this.streaming = new StreamForwarder({
      registry: this.registry,
      uploader,
      clock,
      logger,
      needFreeSlot: autoscaler !== null,
      ...(deps.tuning?.teeWaitMs !== undefined ? { teeWaitMs: deps.tuning.teeWaitMs } : {}),
    });
    this.strays = new StrayCopies({
      file: path.join(config.dataDir, 'strays.json'),
      registry: this.registry,
      routes: this.routes,
      table: this.tasks,
      client,
      clock,
      logger,
      ...(deps.tuning?.straySweepMs !== undefined ? { intervalMs: deps.tuning.straySweepMs } : {}),
    });
    this.dispatcher = new TaskDispatcher({
      registry: this.registry,
      poller: this.poller,
      routes: this.routes,
      table: this.tasks,
      cloud: this.cloud,
      options,
      uploader,
      streaming: this.streaming,
      client,
      clock,
      logger,
      splitmerge: config.splitmerge,
      tmpDir: config.tmpDir,
      autoscaler,
      strays: this.strays,
      waitForNodeMs: config.waitForNode * 1000,
      queueMax: config.queueMax,
      ...(deps.tuning?.queueTickMs !== undefined ? { queueTickMs: deps.tuning.queueTickMs } : {}),
      ...(deps.tuning?.capacityRetryMs !== undefined ? { capacityRetryMs: deps.tuning.capacityRetryMs } : {}),
      ...(deps.tuning?.forwardRetryBaseMs !== undefined ? { retryBaseMs: deps.tuning.forwardRetryBaseMs } : {}),
      ...(deps.tuning?.nodeWaitRetryMs !== undefined ? { nodeWaitRetryMs: deps.tuning.nodeWaitRetryMs } : {}),
    });
    // Counted for the cluster when the state is shared (null: in this process).
    const counters = this.state.counters();
    this.flood = new FloodMonitor({ limit: config.floodLimit, clock, shared: counters?.flood ?? null });
    this.uploads = new OpenUploads({
      table: this.tasks,
      tmpDir: config.tmpDir,
      maxTotal: config.maxOpenUploads,
      maxPerAddress: config.maxOpenUploadsPerAddress,
    });
    const commits = new CommitWindow({ clock, shared: counters?.commits ?? null });
    this.ledger = new CommitLedger({
      file: path.join(config.dataDir, 'webhooks.json'),
      clock,
      logger,
      // While a shared route table is still being read after start, every record is kept.
      keep: (uuid) => !this.routes.complete() || this.routes.has(uuid) || this.tasks.has(uuid),
    });
    this.intake = new TaskIntake({
      registry: this.registry,
      routes: this.routes,
      table: this.tasks,
      options,
      dispatcher: this.dispatcher,
      clock,
      logger,
      tmpDir: config.tmpDir,
      splitmerge: config.splitmerge,
      useSsl: config.useSsl,
      publicAddress: config.publicAddress,
      flood: this.flood,
      commits,
      uploads: this.uploads,
      statusesOf: (token) => this.taskOps.statusesOf(token),
      streaming: this.streaming,
      cluster: this.cluster.placement,
      ...(deps.tuning?.uploadIdleMs !== undefined ? { stagingLimits: { idleTimeoutMs: deps.tuning.uploadIdleMs } } : {}),
    });
    this.tmpCleanup = new TmpCleanup({
      tmpDir: config.tmpDir,
      table: this.tasks,
      clock,
      logger,
      staleUploadsHours: config.staleUploadsTimeout,
      onUploadRemoved: (uuid) => this.intake.abandoned(uuid),
    });
    this.expiry = new ExpiryService({ routes: this.routes, tasks: this.tasks, clock, logger });
    const handler = new ProxyHandler({
      registry: this.registry,
      routes: this.routes,
      local: this.dispatcher,
      cloud: this.cloud,
      client,
      forwarder: this.forwarder,
      clock,
      logger,
      options,
      commits,
      creation: this.intake,
      webhook: new CommitWebhook({
        routes: this.routes,
        tasks: this.tasks,
        autoscaler,
        cloud: this.cloud,
        client,
        commits,
        ledger: this.ledger,
        logger,
      }),
      s3,
      relay: this.cluster.relay,
    });
    this.proxy = new ProxyServer({
      port: config.port,
      securePort: config.securePort,
      ephemeral: deps.ephemeralPorts === true,
      sslKey: config.sslKey,
      sslCert: config.sslCert,
      ...(deps.host !== undefined ? { host: deps.host } : {}),
      logger,
      handle: (req, res) => handler.handle(req, res),
      ...(deps.tuning?.proxyTimeouts ? { timeouts: deps.tuning.proxyTimeouts } : {}),
    });
    const admin = buildAdminListeners(deps, {
      nodeOps: this.nodeOps,
      taskOps: this.taskOps,
      registry: this.registry,
      routes: this.routes,
      tasks: this.tasks,
      local: this.dispatcher,
      history: this.history,
      asr: autoscaler,
      client,
      readiness: () => this.readiness(),
    });
    this.web = admin.web;
    this.cli = admin.cli;
  }

  async start(): Promise<void> {
    const { logger } = this.deps;
    if (this.setupError) throw new Error(this.setupError);
    await this.state.open();
    await this.registry.load();
    await this.routes.load(this.registry);
    await this.tasks.load();
    await this.ledger.load();
    await this.strays.load();
    this.stateLoaded = true;
    // Tasks that were uploading or being forwarded may be partly on any node: sent there again, they start clean.
    this.uploader.sentByEarlierRun(
      this.tasks
        .entries({ stagedHere: true })
        .filter((e) => e.phase === 'uploading' || e.phase === 'forwarding')
        .map((e) => e.uuid),
    );
    await fsp.mkdir(this.deps.config.tmpDir, { recursive: true });
    if (this.autoscaler) {
      try {
        await this.autoscaler.initialize();
      } catch (e: unknown) {
        throw new Error(`Cannot initialize ASR: ${errorMessage(e)}`);
      }
    }
    this.flood.start();
    // The leader lease first: the autoscaler's vacuum runs on the leader only.
    await this.startService(this.cluster.lease);
    await this.startService(this.poller);
    // Vacuum and reconciliation now and every 10 minutes (nodes are loaded, so nothing of ours is mistaken for a leak).
    if (this.autoscaler) await this.startService(this.autoscaler);
    await this.startService(this.expiry);
    await this.startService(this.tmpCleanup);
    await this.startService(this.strays);
    await this.startService(this.proxy);
    // Registered once the proxy listens (its port is the address's default); then uploads can be passed here.
    if (this.cluster.presence) await this.startService(this.cluster.presence);
    if (this.cluster.sweep) await this.startService(this.cluster.sweep);
    // Forwards interrupted by a stop are finished, resumed or failed clearly, in the background.
    // (once every route is in memory: a shared table is read after start, see below)
    void this.routes
      .loaded()
      .then(() => this.dispatcher.resume((uuid) => this.intake.readParams(uuid)))
      .catch((e: unknown) => logger.error(`Cannot resume tasks: ${errorMessage(e)}`));
    if (this.web) await this.startService(this.web);
    if (this.cli) {
      await this.startService(this.cli);
      if (!this.deps.config.adminPass) {
        logger.warn(`No admin password specified, make sure port ${this.cli.port} is secured`);
      }
    }
    this.listening = true;
    // A shared route table is read now, with every listener up (see RouteTable.loaded).
    this.routes.readInBackground();
  }

  /** /readyz: ready once the state is loaded and every listener is up, while the state store answers. */
  async readiness(): Promise<Readiness> {
    const failing: string[] = [];
    if (!this.stateLoaded) failing.push('state');
    if (!this.listening) failing.push('listeners');
    if (!(await this.state.reachable())) failing.push('store');
    return { ready: failing.length === 0, failing };
  }

  /** --export-state: the state, wherever it lives, written to `dir` as the data folder holds it (see state-export.ts). */
  exportState(dir: string): Promise<void> {
    return exportState(this, { ...this.deps, dataDir: this.deps.config.dataDir }, dir);
  }

  private async startService(s: Service): Promise<void> {
    await s.start();
    this.started.push(s);
  }

  /** Stops services in reverse order, then saves state. Never rejects. */
  async stop(): Promise<void> {
    const { logger } = this.deps;
    // Balancers stop sending new requests while the rest shuts down.
    this.listening = false;
    for (const s of this.started.reverse()) {
      await s.stop().catch((e: unknown) => logger.error(`Cannot stop ${s.name}: ${errorMessage(e)}`));
    }
    this.started.length = 0;
    this.dispatcher.stop();
    this.flood.stop();
    this.streaming.stop();
    this.forwarder.close();
    this.cluster.relay?.close();
    try {
      await this.registry.save();
      logger.info('Saved nodes to disk');
    } catch (e: unknown) {
      logger.error(`Cannot save nodes: ${errorMessage(e)}`);
    }
    await this.tasks.flush().catch((e: unknown) => logger.error(`Cannot save tasks: ${errorMessage(e)}`));
    await this.ledger.flush();
    try {
      await this.routes.flush();
      logger.info('Saved routes to disk');
    } catch (e: unknown) {
      logger.error(`Cannot save routes: ${errorMessage(e)}`);
    }
    await this.state.close().catch((e: unknown) => logger.error(`Cannot close the state: ${errorMessage(e)}`));
  }
}
