import * as http from 'node:http';
import express, { Router, type Express } from 'express';
import type { AsrStatus } from '../autoscaler';
import type { Clock, Logger, Service } from '../core';
import { errorMessage, listen } from '../core';
import { NodeClient } from '../nodeodm';
import type { LoadHistory, NodeRegistry } from '../nodes';
import type { NodeOps, TaskOps } from '../ops';
import type { LocalTasks } from '../proxy/local-tasks';
import type { RouteTable, TaskTable } from '../routing';
import { basicAuth } from './auth';
import { csrfGuard } from './csrf';
import { healthRoutes, type Readiness } from './health';
import { hostCheck } from './host-check';
import { errorHandler, noStore, securityHeaders, sendError } from './http-util';
import { nodeRoutes } from './node-routes';
import { taskRoutes } from './task-routes';

/** What the admin page shows of the autoscaler. */
export interface AsrWebView {
  status(): AsrStatus;
}

export interface AdminWebOptions {
  port: number;
  /** Interface to bind; all interfaces when absent (as the original). */
  host?: string;
  /** Admin password; "" means no login (a warning is logged). */
  password: string;
  /** Host names answered besides IP literals and localhost (--admin-web-hosts; `*` = any). */
  allowedHosts?: readonly string[];
  version: string;
  /** The admin page (index.html, app.mjs, ...), served at `/`. */
  publicDir: string;
  nodeOps: NodeOps;
  taskOps: TaskOps;
  registry: NodeRegistry;
  routes: RouteTable;
  tasks: TaskTable;
  local: LocalTasks;
  history: LoadHistory;
  asr: AsrWebView | null;
  clock: Clock;
  logger: Logger;
  /** Delay of a refused login (default 1 s). */
  loginDelayMs?: number;
  /** What /readyz answers (default: ready once the admin web listens). */
  readiness?: () => Promise<Readiness>;
  /** Reads task info for /r/tasks (default: a NodeClient with its 10 s timeout). */
  client?: NodeClient;
}

const PRODUCT_NAME = 'ClusterODM';
export const SIGNED_OUT_BODY = 'Signed out. <br /> <a href="/">Sign back in</a>';
/** Admin requests are small JSON bodies; anything larger is refused before parsing. */
export const MAX_BODY_BYTES = 64 * 1024;
const DEFAULT_LOGIN_DELAY_MS = 1000;

/** The admin web (port 10000 by default): a JSON API under /r/ and the admin page, behind Basic auth. */
export class AdminWeb implements Service {
  readonly name = 'admin web';
  private readonly opts: AdminWebOptions;
  private server: http.Server | null = null;

  constructor(opts: AdminWebOptions) {
    this.opts = opts;
  }

  /** The bound port (useful when started on port 0), or the configured one before start. */
  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address !== null ? address.port : this.opts.port;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = http.createServer(this.app());
    await listen(server, this.opts.port, this.opts.host);
    server.on('error', (e: Error) => this.opts.logger.error(`Admin web server error: ${errorMessage(e)}`));
    this.server = server;
    this.opts.logger.info(`Admin web listening on port ${this.port}`);
    if (!this.opts.password) this.opts.logger.warn(`No admin password specified, make sure port ${this.port} is secured`);
  }

  /** Closes the listener and every open connection (keep-alive ones included), so stop never hangs. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  }

  /**
   * Order matters: the health probes first (they tell nothing, see health.ts), then the Host check (a rebound name
   * gets nothing else, not even /signout), signout before auth, auth before anything else, the CSRF check before
   * any body is read.
   */
  private app(): Express {
    const o = this.opts;
    const app = express();
    app.disable('x-powered-by');
    app.set('etag', false);
    app.use(securityHeaders);
    app.use(healthRoutes(o.readiness ?? (() => Promise.resolve({ ready: true, failing: [] }))));
    app.use(hostCheck(o.allowedHosts ?? [], o.logger));
    app.get('/signout', (_req, res) => {
      res.status(401).type('html').send(SIGNED_OUT_BODY);
    });
    if (o.password) {
      app.use(basicAuth({ password: o.password, delayMs: o.loginDelayMs ?? DEFAULT_LOGIN_DELAY_MS, clock: o.clock, logger: o.logger }));
    }
    app.use(csrfGuard);
    app.use(express.json({ limit: MAX_BODY_BYTES, strict: true }));
    app.use('/r', noStore, this.api());
    app.use(express.static(o.publicDir, { index: 'index.html' }));
    app.use(errorHandler(o.logger));
    return app;
  }

  private api(): Router {
    const o = this.opts;
    const api = Router();
    api.get('/info', (_req, res) => {
      res.json({ name: PRODUCT_NAME, version: o.version });
    });
    api.get('/asr', (_req, res) => {
      res.json(o.asr ? { enabled: true, ...asrStatus(o.asr) } : { enabled: false });
    });
    api.use(nodeRoutes(o));
    api.use(taskRoutes({ ...o, client: o.client ?? new NodeClient() }));
    api.use((_req, res) => sendError(res, 404, 'Not found'));
    return api;
  }
}

/** Only the documented fields, whatever else the provider's object carries. */
function asrStatus(asr: AsrWebView): Record<string, unknown> {
  const s = asr.status();
  return {
    provider: s.provider,
    pending: s.pending,
    running: s.running,
    limit: s.limit,
    maxRuntime: s.maxRuntime,
    maxUploadTime: s.maxUploadTime,
    creating: s.creating.map((c) => ({ name: c.name, uuid: c.uuid, step: c.step, since: c.since })),
    // Cost in sight: each machine's size, region, creation time and hourly price, and their total.
    ...(s.machines
      ? {
          machines: s.machines.map((m) => ({
            name: m.name,
            node: m.node,
            size: m.size,
            region: m.region,
            created: m.created,
            hourlyPrice: m.hourlyPrice,
            currency: m.currency,
          })),
        }
      : {}),
    ...(s.hourlySpend !== undefined ? { hourlySpend: s.hourlySpend } : {}),
    ...(s.maxHourlySpend !== undefined ? { maxHourlySpend: s.maxHourlySpend } : {}),
  };
}
