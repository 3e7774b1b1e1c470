/** A small typed client for the NodeODM calls ClusterODM makes itself (not the proxied ones). */
import { ClusterError } from '../core';

export interface NodeEndpoint {
  /** Base URL, e.g. http://host:3000 */
  readonly baseUrl: string;
  /** The node's own token ("" if none). */
  readonly token: string;
  /** False: the node's hostname is invalid and no request may be sent to it (the default is true). */
  readonly addressable?: boolean;
}

export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

export const DEFAULT_NODE_TIMEOUT_MS = 10_000;

export class NodeClient {
  private readonly fetchImpl: FetchLike;
  private readonly timeoutMs: number;

  constructor(opts: { fetch?: FetchLike; timeoutMs?: number } = {}) {
    this.fetchImpl = opts.fetch ?? ((url, init) => fetch(url, init));
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_NODE_TIMEOUT_MS;
  }

  url(node: NodeEndpoint, pathname: string, query: Record<string, string | number> = {}): string {
    if (node.addressable === false) throw new ClusterError('INVALID_INPUT', 'The node has an invalid hostname');
    const u = new URL(pathname, node.baseUrl);
    for (const [k, v] of Object.entries(query)) u.searchParams.set(k, String(v));
    if (node.token) u.searchParams.set('token', node.token);
    return u.toString();
  }

  /** GET returning parsed JSON; throws on network errors, timeouts, non-200 or non-JSON answers. */
  async getJson(node: NodeEndpoint, pathname: string, query: Record<string, string | number> = {}): Promise<unknown> {
    const res = await this.fetchImpl(this.url(node, pathname, query), {
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    return readJson(res);
  }

  /** POST urlencoded fields (what every NodeODM version accepts), returning parsed JSON. */
  async postForm(node: NodeEndpoint, pathname: string, fields: Map<string, string>): Promise<unknown> {
    const res = await this.fetchImpl(this.url(node, pathname), {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams([...fields]).toString(),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    return readJson(res);
  }

  /** POST a JSON body, returning parsed JSON. */
  async postJson(node: NodeEndpoint, pathname: string, body: unknown): Promise<unknown> {
    const res = await this.fetchImpl(this.url(node, pathname), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(this.timeoutMs),
    });
    return readJson(res);
  }
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new Error('invalid JSON answer');
  }
}
