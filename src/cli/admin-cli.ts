import * as net from 'node:net';
import type { Clock, Logger, Service } from '../core';
import { errorMessage, listen } from '../core';
import type { NodeOps, TaskOps } from '../ops';
import type { RouteTable } from '../routing';
import type { AsrCli } from './context';
import { DEFAULT_MAX_LINE_BYTES } from './line-framer';
import { CliSession } from './session';

export type { AsrCli } from './context';

export interface AdminCliOptions {
  port: number;
  /** Interface to bind; all interfaces when absent (as the original). */
  host?: string;
  /** Admin password; "" means no login is needed. */
  password: string;
  /** Shown in the welcome banner (`ClusterODM:<version>`). */
  version: string;
  nodeOps: NodeOps;
  taskOps: TaskOps;
  routes: RouteTable;
  asr: AsrCli | null;
  clock: Clock;
  logger: Logger;
  /** Idle connections are closed after this long (default 30 min). */
  idleTimeoutMs?: number;
  /** With a password, connections must log in within this long (default 60 s). */
  loginTimeoutMs?: number;
  /** Wait before closing a connection after a wrong password (default 1 s). */
  loginDelayMs?: number;
  /** Longer input lines are dropped and answered INVALID (default 4096 bytes). */
  maxLineBytes?: number;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60 * 1000;
const DEFAULT_LOGIN_DELAY_MS = 1000;
const DEFAULT_LOGIN_TIMEOUT_MS = 60 * 1000;

/** The telnet admin CLI (port 8080 by default): one CliSession per connection. */
export class AdminCli implements Service {
  readonly name = 'admin CLI';
  private readonly opts: AdminCliOptions;
  private server: net.Server | null = null;
  private readonly sockets = new Set<net.Socket>();
  /** Failed-login penalties per address, shared by every session. */
  private readonly penalties = new Map<string, number>();

  constructor(opts: AdminCliOptions) {
    this.opts = opts;
  }

  /** The bound port (useful when started on port 0), or the configured one before start. */
  get port(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address !== null ? address.port : this.opts.port;
  }

  async start(): Promise<void> {
    if (this.server) return;
    const server = net.createServer((socket) => this.accept(socket));
    await listen(server, this.opts.port, this.opts.host);
    server.on('error', (e: Error) => this.opts.logger.error(`Admin CLI server error: ${errorMessage(e)}`));
    this.server = server;
    this.opts.logger.info(`Admin CLI listening on port ${this.port}`);
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    await closed;
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    const { nodeOps, taskOps, routes, asr, clock, logger } = this.opts;
    try {
      new CliSession(socket, {
        deps: { nodeOps, taskOps, routes, asr, clock, logger },
        password: this.opts.password,
        version: this.opts.version,
        idleTimeoutMs: this.opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        loginTimeoutMs: this.opts.loginTimeoutMs ?? DEFAULT_LOGIN_TIMEOUT_MS,
        loginDelayMs: this.opts.loginDelayMs ?? DEFAULT_LOGIN_DELAY_MS,
        maxLineBytes: this.opts.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES,
        penalties: this.penalties,
      });
    } catch (e: unknown) {
      logger.error(`Admin CLI cannot serve ${socket.remoteAddress ?? '?'}: ${errorMessage(e)}`);
      socket.destroy();
    }
  }
}
