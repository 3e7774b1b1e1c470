import * as http from 'node:http';
import * as https from 'node:https';
import { pipeline } from 'node:stream';
import type { Logger } from '../core';
import { errorMessage, systemErrorCode } from '../core';
import type { NodeEndpoint } from '../nodeodm';
import { sendError } from './respond';

/** Headers that describe one connection, not the message: never copied across the proxy. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

export interface ForwardTarget extends NodeEndpoint {
  readonly name: string;
}

export interface ForwarderOptions {
  logger: Logger;
  /** A request whose upstream socket is idle this long is aborted (a node that never answers). */
  idleTimeoutMs?: number;
  maxSocketsPerNode?: number;
}

/**
 * Streams a client request to a node and the node's answer back, with one keep-alive agent per node (the
 * original opened a new connection per request). A node that refuses or resets the connection drops the client's
 * socket, as the original does, so NodeODM clients retry instead of assuming failure.
 */
export class Forwarder {
  private readonly agents = new Map<string, http.Agent>();
  private readonly opts: Required<ForwarderOptions>;

  constructor(opts: ForwarderOptions) {
    this.opts = { idleTimeoutMs: 5 * 60 * 1000, maxSocketsPerNode: 256, ...opts };
  }

  agentFor(node: NodeEndpoint): http.Agent {
    const key = new URL(node.baseUrl).origin;
    let agent = this.agents.get(key);
    if (!agent) {
      const o = { keepAlive: true, maxSockets: this.opts.maxSocketsPerNode, maxFreeSockets: 64, scheduling: 'lifo' as const };
      agent = key.startsWith('https:') ? new https.Agent(o) : new http.Agent(o);
      this.agents.set(key, agent);
    }
    return agent;
  }

  /**
   * Forwards `req` to `node` at `pathAndQuery` (already rewritten by the caller). With `body`, that buffer is sent
   * instead of the client's stream (the client's body was already read).
   */
  forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    node: ForwardTarget,
    pathAndQuery: string,
    opts: { body?: Buffer } = {},
  ): void {
    const url = new URL(pathAndQuery, node.baseUrl);
    const headers = copyHeaders(req.headers);
    if (opts.body) {
      headers['content-length'] = String(opts.body.length);
      delete headers['transfer-encoding'];
    }
    const lib = url.protocol === 'https:' ? https : http;
    const upstream = lib.request(url, { method: req.method, headers, agent: this.agentFor(node) });
    upstream.setTimeout(this.opts.idleTimeoutMs, () => upstream.destroy(new Error('node did not answer in time')));

    let answered = false;
    upstream.on('response', (up) => {
      answered = true;
      res.writeHead(up.statusCode ?? 502, up.statusMessage, filterResponseHeaders(up.rawHeaders));
      pipeline(up, res, () => undefined);
    });
    upstream.on('error', (e: unknown) => this.onError(e, node, req, res, answered));
    // A client that goes away cancels the upstream request.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });

    if (opts.body) upstream.end(opts.body);
    else pipeline(req, upstream, () => undefined);
  }

  private onError(e: unknown, node: ForwardTarget, req: http.IncomingMessage, res: http.ServerResponse, answered: boolean): void {
    const code = systemErrorCode(e);
    const msg = errorMessage(e);
    this.opts.logger.warn(`Proxy redirect error: ${msg} (${node.name}, ${req.method ?? 'GET'} ${redactUrl(req.url ?? '')})`);
    if (answered || res.headersSent || code === 'ECONNREFUSED' || code === 'ECONNRESET') {
      req.socket.destroy();
      return;
    }
    sendError(res, `Proxy redirect error: ${msg}`);
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}

function copyHeaders(h: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k)) continue;
    out[k] = v;
  }
  return out;
}

function filterResponseHeaders(raw: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = raw[i] ?? '';
    if (HOP_BY_HOP.has(k.toLowerCase())) continue;
    out.push(k, raw[i + 1] ?? '');
  }
  return out;
}

/** URLs in logs never carry tokens. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&]*/gi, '$1***');
}
