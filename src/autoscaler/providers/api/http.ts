import { errorMessage, isRecord } from '../../../core';
import { MachineApiError, type MachineFailure } from '../../machine-api';

/** `fetch` as the clients use it; injected so tests (or a proxy) can stand in. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/** What every JSON cloud client is built with. */
export interface HttpClientOptions {
  /** API base, e.g. `https://api.hetzner.cloud` (tests: a loopback fake). */
  baseUrl: string;
  fetch?: FetchLike;
  /** Per request (default 30 s). */
  timeoutMs?: number;
}

export interface HttpAnswer {
  status: number;
  headers: Headers;
  /** Parsed JSON, or null for an empty body. */
  body: unknown;
}

/** Turns a non-2xx answer into the cloud's failure (each cloud reads its own error body). */
export type Classifier = (a: HttpAnswer) => { failure: MachineFailure; cloudCode: string | null; message: string; retryAfterMs: number | null };

export interface RequestInitJson {
  method: string;
  path: string;
  /** Sent as JSON, unless `text` is given. */
  json?: unknown;
  /** Sent as text/plain (Scaleway user data). */
  text?: string;
  /** Answer statuses that are not errors (default: any 2xx). */
  ok?: readonly number[];
}

/**
 * A small JSON-over-HTTPS client: auth header from the caller (never in a URL, never logged), a timeout on every
 * call, non-2xx answers classified by the cloud's classifier into a MachineApiError.
 */
export class JsonHttp {
  private readonly base: string;
  private readonly fetch: FetchLike;
  private readonly timeoutMs: number;

  constructor(
    readonly provider: string,
    o: HttpClientOptions,
    private readonly headers: () => Record<string, string>,
    private readonly classify: Classifier,
  ) {
    this.base = o.baseUrl.replace(/\/+$/, '');
    this.fetch = o.fetch ?? ((u, i) => fetch(u, i));
    this.timeoutMs = o.timeoutMs ?? 30_000;
  }

  url(pathAndQuery: string): string {
    return `${this.base}${pathAndQuery}`;
  }

  /** Sends the request; a 2xx (or an `ok` status) answer is returned, anything else thrown as a MachineApiError. */
  async request(r: RequestInitJson): Promise<HttpAnswer> {
    const a = await this.send(r);
    const ok = r.ok ? r.ok.includes(a.status) : a.status >= 200 && a.status < 300;
    if (ok) return a;
    throw this.error(a, `${r.method} ${r.path.split('?')[0] ?? ''}`);
  }

  error(a: HttpAnswer, what: string): MachineApiError {
    const c = this.classify(a);
    return new MachineApiError({
      provider: this.provider,
      failure: c.failure,
      message: `${what}: ${c.message}`,
      httpStatus: a.status,
      cloudCode: c.cloudCode,
      retryAfterMs: c.retryAfterMs,
    });
  }

  /** Sends the request and returns any answer (the caller judges the status). */
  async send(r: RequestInitJson): Promise<HttpAnswer> {
    const headers: Record<string, string> = { Accept: 'application/json', ...this.headers() };
    let body: string | undefined;
    if (r.text !== undefined) {
      headers['Content-Type'] = 'text/plain';
      body = r.text;
    } else if (r.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = JSON.stringify(r.json);
    }
    let res: Response;
    try {
      res = await this.fetch(this.url(r.path), {
        method: r.method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (e: unknown) {
      throw new MachineApiError({ provider: this.provider, failure: 'network', message: `${r.method} ${r.path.split('?')[0] ?? ''}: ${errorMessage(e)}`, cause: e });
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e: unknown) {
      throw new MachineApiError({ provider: this.provider, failure: 'network', message: `${r.method} ${r.path}: answer cut: ${errorMessage(e)}`, cause: e });
    }
    let parsed: unknown = null;
    if (text.trim() !== '') {
      try {
        parsed = JSON.parse(text) as unknown;
      } catch {
        // A proxy's HTML error page: classified by status alone.
        parsed = null;
        if (res.status >= 200 && res.status < 300) {
          throw new MachineApiError({ provider: this.provider, failure: 'server', message: `${r.method} ${r.path}: answer is not JSON`, httpStatus: res.status });
        }
      }
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }
}

/** `retry-after` in seconds → milliseconds. */
/** A string field of an error answer's JSON body, or null (clouds answer errors as `{"<key>": "..."}`). */
export function bodyString(body: unknown, key: string): string | null {
  if (!isRecord(body)) return null;
  const v = body[key];
  return typeof v === 'string' ? v : null;
}

export function retryAfterMs(headers: Headers): number | null {
  const v = headers.get('retry-after');
  if (v === null) return null;
  const n = Number(v);
  return Number.isFinite(n) && n >= 0 ? n * 1000 : null;
}
