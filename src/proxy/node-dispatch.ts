import type * as http from 'node:http';
import type { Dispatcher, Pool } from 'undici';

/**
 * The node client of the forwarder for requests whose body is not streamed (every GET: task info, output,
 * downloads, the web UI; and buffered bodies): undici's `Pool.dispatch` with a handler that writes the node's
 * answer straight into the client's response. No ClientRequest, no IncomingMessage, no stream in between:
 * measured against node:http with a keep-alive agent on the same bare proxy (bench/client-ab.ts), 20–26% less CPU
 * per small request (README, Performance). Streamed request bodies stay on node:http (forwarder.ts), whose
 * framing rules and socket handling the smuggling tests pin down.
 */

/** Headers that describe one connection, not the message: never copied from a node's answer to the client. */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Answers up to this size (with a Content-Length) are sent on in one write instead of chunk by chunk. */
export const SMALL_ANSWER = 64 * 1024;

let PoolClass: typeof Pool | undefined;

/**
 * One pool of keep-alive connections per node (origin); `timeoutMs` bounds the wait for headers and between body
 * chunks. undici is loaded on the first call, and only its Pool: its index also loads fetch, WebSocket, caches and
 * more, ~3× the load time of the Pool alone, which the daemon's start (1,000,000 routes in < 3 s) would pay for
 * nothing. undici has no `exports` map and is pinned to one version, so the path is stable.
 */
export function nodePool(origin: string, connections: number, timeoutMs: number): Pool {
  PoolClass ??= require('undici/lib/dispatcher/pool') as typeof Pool;
  return new PoolClass(origin, { connections, pipelining: 1, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** undici's errors as the forwarder reports them: a timeout says so in the words node:http's path uses. */
export function relayError(e: Error): Error {
  const code = (e as { code?: unknown }).code;
  return typeof code === 'string' && TIMEOUT_CODES.has(code) ? Object.assign(new Error('node did not answer in time'), { code }) : e;
}

/**
 * Relays one node answer into `res`: status and end-to-end headers at once, small bodies in one write, larger ones
 * chunk by chunk with backpressure (the node's socket is paused while the client's is full). A client that goes away
 * aborts the node request (`clientGone`); every failure is reported once to `onFail` with whether headers went out.
 */
export class AnswerRelay implements Dispatcher.DispatchHandler {
  private abortFn: ((e?: Error) => void) | null = null;
  private resumeFn: (() => void) | null = null;
  private small: Buffer[] | null = null;
  private answered = false;
  private done = false;
  private gone = false;

  constructor(
    private readonly res: http.ServerResponse,
    private readonly onFail: (e: Error, answered: boolean, clientGone: boolean) => void,
  ) {}

  clientGone(): void {
    if (this.done) return;
    this.gone = true;
    this.abortFn?.(new Error('client went away'));
  }

  onConnect(abort: (e?: Error) => void): void {
    this.abortFn = abort;
    if (this.gone) abort(new Error('client went away'));
  }

  onHeaders(statusCode: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
    this.answered = true;
    this.resumeFn = resume;
    const headers: string[] = [];
    let length = -1;
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const k = (raw[i] as Buffer).toString('latin1');
      const lower = k.toLowerCase();
      if (HOP_BY_HOP.has(lower)) continue;
      const v = (raw[i + 1] as Buffer).toString('latin1');
      if (lower === 'content-length') length = Number(v);
      headers.push(k, v);
    }
    this.res.writeHead(statusCode, statusText, headers);
    if (length >= 0 && length <= SMALL_ANSWER) this.small = [];
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.small !== null) {
      this.small.push(chunk);
      return true;
    }
    const ok = this.res.write(chunk);
    if (!ok && this.resumeFn) this.res.once('drain', this.resumeFn);
    return ok;
  }

  onComplete(): void {
    this.done = true;
    const small = this.small;
    if (small === null) this.res.end();
    else this.res.end(small.length === 1 ? small[0] : Buffer.concat(small));
  }

  onError(e: Error): void {
    if (this.done) return;
    this.done = true;
    this.onFail(relayError(e), this.answered, this.gone);
  }
}
