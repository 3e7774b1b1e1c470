import * as http from 'node:http';
import * as https from 'node:https';
import { isIP } from 'node:net';
import type { Logger } from '../core';
import { ClusterError, errorMessage, systemErrorCode } from '../core';
import type { NodeEndpoint } from '../nodeodm';
import type { Dispatcher, Pool } from 'undici';
import { framingOf, hasUnexpectedBody, refuseBody } from './framing';
import { AnswerRelay, HOP_BY_HOP, nodePool, SMALL_ANSWER } from './node-dispatch';
import { sendError } from './respond';

/**
 * The client headers a node ever sees (see the README, Security). Host is the node's own and the body's framing
 * (Content-Length or Transfer-Encoding: chunked) is set from how the body arrived; everything else stays with
 * ClusterODM: credentials meant for it (Authorization, Cookie), hop-by-hop headers, and whatever a client adds.
 */
const TO_NODE: ReadonlySet<string> = new Set([
  'accept',
  'accept-encoding',
  'accept-language',
  'cache-control',
  'content-encoding',
  'content-type',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'origin',
  'pragma',
  'range',
  'user-agent',
]);

export interface ForwardTarget extends NodeEndpoint {
  readonly name: string;
}

export interface ForwarderOptions {
  logger: Logger;
  /** A request whose upstream socket is idle this long is aborted (a node that never answers). */
  idleTimeoutMs?: number;
  maxSocketsPerNode?: number;
  /**
   * The client of requests without a streamed body: undici (default, node-dispatch.ts) or node:http (kept for the
   * bench's A/B, bench/client-ab.ts). Streamed bodies always go through node:http.
   */
  client?: 'undici' | 'node:http';
}

/** What a request to one node needs, computed once per node (base URL) instead of per request. */
interface Upstream {
  readonly agent: http.Agent;
  /** https.request or http.request (the latter ignores the TLS options). */
  readonly request: typeof https.request;
  readonly hostname: string;
  readonly port: number;
  /** The node's own host[:port], sent as Host (the client's Host names ClusterODM). */
  readonly host: string;
  /** TLS server name (SNI, and the name the certificate is checked against): the node's name, '' for an address. */
  readonly servername: string;
  /** scheme://host:port: the key of undici's pool (node-dispatch.ts) for requests without a streamed body. */
  readonly origin: string;
}

/**
 * Streams a client request to a node and the node's answer back, with one keep-alive agent per node (the
 * original opened a new connection per request). A node that refuses or resets the connection drops the client's
 * socket, as the original does, so NodeODM clients retry instead of assuming failure.
 *
 * Requests without a streamed body (every GET: task info, output, downloads, the web UI) go through undici's
 * `Pool.dispatch` (node-dispatch.ts): 20–50% less CPU per request than node:http with a keep-alive agent in the
 * bench's A/B (bench/client-ab.ts). Streamed bodies stay on node:http, hand-written rather than `http-proxy`: no
 * URL parsing on the hot path (the per-node part is cached), headers copied in one loop, `.pipe()` with explicit
 * error handling instead of `stream.pipeline()` (whose AbortSignal/DOMException setup cost about a fifth of the CPU
 * of a small request). Both keep one keep-alive pool per node, the idle timeout and the client-gone abort.
 */
export class Forwarder {
  private readonly upstreams = new Map<string, Upstream>();
  /** undici pools by origin, made on first use. */
  private readonly pools = new Map<string, Pool>();
  private readonly opts: Required<ForwarderOptions>;

  constructor(opts: ForwarderOptions) {
    this.opts = { idleTimeoutMs: 5 * 60 * 1000, maxSocketsPerNode: 256, client: 'undici', ...opts };
  }

  agentFor(node: NodeEndpoint): http.Agent {
    return this.upstreamFor(node).agent;
  }

  private upstreamFor(node: NodeEndpoint): Upstream {
    const base = node.baseUrl;
    let up = this.upstreams.get(base);
    if (!up) {
      const url = new URL(base);
      const secure = url.protocol === 'https:';
      const hostname = unbracket(url.hostname);
      // Agents are per origin: two spellings of one base URL share the agent.
      const shared = [...this.upstreams.values()].find((u) => u.hostname === unbracket(url.hostname) && u.port === portOf(url));
      const o = { keepAlive: true, maxSockets: this.opts.maxSocketsPerNode, maxFreeSockets: 64, scheduling: 'lifo' as const };
      up = {
        agent: shared?.agent ?? (secure ? new https.Agent(o) : new http.Agent(o)),
        request: secure ? https.request : http.request,
        hostname,
        port: portOf(url),
        host: url.host,
        servername: isIP(hostname) ? '' : hostname,
        origin: url.origin,
      };
      this.upstreams.set(base, up);
    }
    return up;
  }

  /**
   * Forwards `req` to `node` at `pathAndQuery` (already rewritten by the caller). With `body`, that buffer is sent
   * instead of the client's stream (the client's body was already read).
   *
   * A client's body goes to the node framed as it arrived (chunked stays chunked, a length stays that length), so
   * the node reads it as a body and never as requests of its own; a body on a method that carries none is refused
   * (400, connection closed). A connection to a node whose request body was not sent whole is destroyed, never
   * given back to the pool.
   */
  forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    node: ForwardTarget,
    pathAndQuery: string,
    opts: { body?: Buffer } = {},
  ): void {
    if (node.addressable === false) {
      // A bad hostname loaded from nodes.json: its token goes nowhere (NodeClient refuses it the same way).
      this.onError(new ClusterError('INVALID_INPUT', 'The node has an invalid hostname'), node, req, res, false);
      return;
    }
    const framing = framingOf(req);
    if (framing !== 'none' && hasUnexpectedBody(req)) {
      this.opts.logger.warn(`Refused a ${req.method ?? 'GET'} request with a body for ${node.name}: ${redactUrl(req.url ?? '')}`);
      refuseBody(req, res);
      return;
    }
    const target = this.upstreamFor(node);
    const headers = copyHeaders(req.headers);
    headers['host'] = target.host;
    const body = opts.body;
    if ((body || framing === 'none') && this.opts.client === 'undici') {
      this.dispatch(target, req, res, node, pathAndQuery, headers, body ?? null);
      return;
    }
    if (body) headers['content-length'] = String(body.length);
    else if (framing === 'chunked') headers['transfer-encoding'] = 'chunked';
    else if (req.headers['content-length'] !== undefined) headers['content-length'] = req.headers['content-length'];
    const upstream = target.request({
      hostname: target.hostname,
      port: target.port,
      servername: target.servername,
      method: req.method,
      path: pathAndQuery,
      headers,
      agent: target.agent,
    });
    upstream.setTimeout(this.opts.idleTimeoutMs, () => upstream.destroy(new Error('node did not answer in time')));

    let answered = false;
    let failed = false;
    upstream.on('response', (up: http.IncomingMessage) => {
      answered = true;
      res.writeHead(up.statusCode ?? 502, up.statusMessage, filterResponseHeaders(up.rawHeaders));
      // A node that goes away mid-answer ends the client's answer too (no hang, no truncated "success").
      up.on('close', () => {
        if (!up.complete) res.destroy();
      });
      const length = Number(up.headers['content-length']);
      if (length >= 0 && length <= SMALL_ANSWER) sendSmall(up, res);
      else up.pipe(res);
    });
    upstream.on('error', (e: unknown) => {
      if (failed) return;
      failed = true;
      this.onError(e, node, req, res, answered);
    });
    // A client that goes away cancels the upstream request.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });

    // A body cut off (the client went away before sending what it announced) must not leave the node waiting
    // for the rest on a pooled connection: the next request on it would be read as that rest. Once the node has
    // answered early, the request gets no event when its client goes away, so the connection itself is watched.
    if (body) return void upstream.end(body);
    if (framing === 'none') return void upstream.end();
    req.on('error', () => upstream.destroy());
    const socket = req.socket;
    const onGone = (): void => {
      if (!req.complete) upstream.destroy();
    };
    socket.once('close', onGone);
    req.once('end', () => socket.off('close', onGone));
    req.pipe(upstream);
  }

  /** A request without a streamed body, through undici (node-dispatch.ts). */
  private dispatch(
    target: Upstream,
    req: http.IncomingMessage,
    res: http.ServerResponse,
    node: ForwardTarget,
    path: string,
    headers: http.OutgoingHttpHeaders,
    body: Buffer | null,
  ): void {
    let pool = this.pools.get(target.origin);
    if (pool === undefined) {
      pool = nodePool(target.origin, this.opts.maxSocketsPerNode, this.opts.idleTimeoutMs);
      this.pools.set(target.origin, pool);
    }
    const relay = new AnswerRelay(res, (e, answered, clientGone) => {
      if (!clientGone) this.onError(e, node, req, res, answered);
    });
    // A client that goes away cancels the node request.
    res.on('close', () => {
      if (!res.writableFinished) relay.clientGone();
    });
    pool.dispatch({ method: (req.method ?? 'GET') as Dispatcher.HttpMethod, path, headers: headers as Record<string, string | string[]>, body }, relay);
  }

  private onError(e: unknown, node: ForwardTarget, req: http.IncomingMessage, res: http.ServerResponse, answered: boolean): void {
    const code = systemErrorCode(e);
    const msg = errorMessage(e);
    this.opts.logger.warn(`Proxy redirect error: ${msg} (${node.name}, ${req.method ?? 'GET'} ${redactUrl(req.url ?? '')})`);
    // UND_ERR_SOCKET: undici's word for a connection the node closed or reset.
    if (answered || res.headersSent || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') {
      req.socket.destroy();
      return;
    }
    sendError(res, `Proxy redirect error: ${msg}`);
  }

  /** A removed node: its kept-alive connections are closed now rather than when the node closes them. */
  forget(node: NodeEndpoint): void {
    const up = this.upstreams.get(node.baseUrl);
    if (!up) return;
    const pool = this.pools.get(up.origin);
    this.pools.delete(up.origin);
    pool?.destroy().catch(() => undefined);
    for (const [base, u] of this.upstreams) if (u.agent === up.agent) this.upstreams.delete(base);
    up.agent.destroy();
  }

  close(): void {
    for (const u of new Set([...this.upstreams.values()].map((x) => x.agent))) u.destroy();
    this.upstreams.clear();
    for (const p of this.pools.values()) p.destroy().catch(() => undefined);
    this.pools.clear();
  }
}

/** A small answer goes out with its headers in one write (piping costs a write per chunk plus one for the end). */
function sendSmall(up: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  up.on('data', (c: Buffer) => chunks.push(c));
  up.on('end', () => {
    res.end(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
  });
}

/**
 * The client's headers a node may see (TO_NODE), minus those its Connection header names (hop-by-hop by
 * declaration). The usual `keep-alive`/`close` costs no parsing.
 */
function copyHeaders(h: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  const conn = h['connection'];
  const named = conn === undefined || conn === 'keep-alive' || conn === 'close' ? null : conn.toLowerCase().split(',').map((s) => s.trim());
  for (const k in h) {
    const v = h[k];
    if (v === undefined || !TO_NODE.has(k) || (named !== null && named.includes(k))) continue;
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

function unbracket(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

function portOf(url: URL): number {
  return url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}

/** URLs in logs never carry tokens. */
export function redactUrl(url: string): string {
  return url.replace(/([?&]token=)[^&]*/gi, '$1***');
}
