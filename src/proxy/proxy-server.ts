import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Logger, Service } from '../core';
import { ClusterError, errorMessage, listen } from '../core';

export interface ProxyServerOptions {
  port: number;
  /** With SSL: HTTPS here and plain HTTP on `port`; 0 = HTTPS only, on `port` (as the original). */
  securePort: number;
  /** Tests: bind every listener of the plan above to an ephemeral port. */
  ephemeral?: boolean;
  sslKey: string;
  sslCert: string;
  host?: string;
  logger: Logger;
  handle: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** Tests: shorter socket timeouts than the defaults below. */
  timeouts?: Partial<ProxyTimeouts>;
}

export interface ProxyTimeouts {
  /** A client must send its request headers within this time (slowloris). */
  headersMs: number;
  /** An idle keep-alive connection is closed after this long. */
  keepAliveMs: number;
  /** A connection on which nothing moves in either direction for this long is closed (a stalled body or reader). */
  idleMs: number;
}

export const DEFAULT_PROXY_TIMEOUTS: Readonly<ProxyTimeouts> = { headersMs: 60_000, keepAliveMs: 65_000, idleMs: 5 * 60_000 };

interface Listener {
  server: http.Server;
  secure: boolean;
  port: number;
}

/** The proxy's listeners (HTTP and/or HTTPS), all running the same request handler. */
export class ProxyServer implements Service {
  readonly name = 'proxy';
  private readonly opts: ProxyServerOptions;
  private listeners: Listener[] = [];

  constructor(opts: ProxyServerOptions) {
    this.opts = opts;
  }

  /** Bound ports, e.g. `{http: 3000}` or `{https: 3000}` or both. */
  get ports(): { http?: number; https?: number } {
    const out: { http?: number; https?: number } = {};
    for (const l of this.listeners) out[l.secure ? 'https' : 'http'] = l.port;
    return out;
  }

  async start(): Promise<void> {
    const o = this.opts;
    const useSsl = Boolean(o.sslKey && o.sslCert);
    const plan: Array<{ secure: boolean; port: number }> = !useSsl
      ? [{ secure: false, port: o.port }]
      : o.securePort
        ? [
            { secure: true, port: o.securePort },
            { secure: false, port: o.port },
          ]
        : [{ secure: true, port: o.port }];
    const tls = useSsl ? readTls(o.sslKey, o.sslCert) : null;
    if (o.ephemeral) for (const p of plan) p.port = 0;
    for (const p of plan) {
      const to = { ...DEFAULT_PROXY_TIMEOUTS, ...o.timeouts };
      // headersTimeout is only enforced at this interval (30 s by default, longer than a short test timeout).
      const checking = { connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(to.headersMs / 4))) };
      const server =
        p.secure && tls ? https.createServer({ ...tls, ...checking }, o.handle) : http.createServer(checking, o.handle);
      // Slow or idle clients must not hold sockets forever (slowloris); uploads keep their own idle timer too.
      server.headersTimeout = to.headersMs;
      server.requestTimeout = 0; // an upload may take hours
      server.keepAliveTimeout = to.keepAliveMs;
      // A body that stops arriving (e.g. a cancel request trickled byte by byte, then nothing) ends the connection.
      server.timeout = to.idleMs;
      const port = await listen(server, p.port, o.host);
      this.listeners.push({ server, secure: p.secure, port });
      o.logger.info(`Starting ${p.secure ? 'https' : 'http'} proxy on ${port}`);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.listeners.map(
        (l) =>
          new Promise<void>((resolve) => {
            l.server.close(() => resolve());
            l.server.closeAllConnections();
          }),
      ),
    );
    this.listeners = [];
  }
}

function readTls(keyFile: string, certFile: string): { key: Buffer; cert: Buffer } {
  try {
    return { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) };
  } catch (e: unknown) {
    throw new ClusterError('CONFIG_INVALID', `Cannot read the SSL key or certificate: ${errorMessage(e)}`);
  }
}
