import { errorMessage, mapLimit } from '../core';
import type { NodeClient } from '../nodeodm';
import type { ClusterNode } from '../nodes';
import type { RouteTable } from '../routing';

/** Task operations the admin interfaces run against the node that holds a task. */
export class TaskOps {
  private readonly routes: RouteTable;
  private readonly client: NodeClient;
  private readonly listConcurrency: number;

  /** Tasks waiting for a processing node (--asr): listed after the routed ones by TASK LIST. */
  private readonly queued: () => unknown[];

  constructor(opts: { routes: RouteTable; client: NodeClient; listConcurrency?: number; queued?: () => unknown[] }) {
    this.routes = opts.routes;
    this.client = opts.client;
    this.queued = opts.queued ?? (() => []);
    this.listConcurrency = opts.listConcurrency ?? 16;
  }

  /** The node's /task/<uuid>/info, `{error}` on failure, or null when no route exists. */
  async info(uuid: string): Promise<unknown> {
    await this.routes.fetch(uuid);
    const route = this.routes.lookup(uuid);
    if (!route) return null;
    return redactTokens(await this.call(() => this.client.getJson(route.node, `/task/${encodeURIComponent(uuid)}/info`)));
  }

  async output(uuid: string, line: number): Promise<unknown> {
    await this.routes.fetch(uuid);
    const route = this.routes.lookup(uuid);
    if (!route) return null;
    return redactTokens(
      await this.call(() => this.client.getJson(route.node, `/task/${encodeURIComponent(uuid)}/output`, { line })),
    );
  }

  async cancel(uuid: string): Promise<unknown> {
    return this.post(uuid, '/task/cancel');
  }

  async remove(uuid: string): Promise<unknown> {
    return this.post(uuid, '/task/remove');
  }

  private async post(uuid: string, pathname: string): Promise<unknown> {
    await this.routes.fetch(uuid);
    const route = this.routes.lookup(uuid);
    if (!route) return null;
    return this.call(() => this.client.postJson(route.node, pathname, { uuid }));
  }

  /** Info of every routed task (of one node, if given) that its node still knows. */
  async list(node?: ClusterNode): Promise<unknown[]> {
    await this.routes.loaded();
    const entries = this.routes.entries(node);
    const results = await mapLimit(entries, this.listConcurrency, ([uuid, route]) =>
      this.call(() => this.client.getJson(route.node, `/task/${encodeURIComponent(uuid)}/info`)),
    );
    // Queued tasks are on no node; TASK LIST without a node number shows them too, with `ahead`.
    return [...results.filter((r) => !hasError(r)).map(redactTokens), ...(node ? [] : this.queued())];
  }

  /** Status codes of the routed tasks owned by `token` (the concurrency limit counts QUEUED and RUNNING ones). */
  async statusesOf(token: string): Promise<number[]> {
    await this.routes.loaded();
    const mine = this.routes.ownedBy(token);
    const infos = await mapLimit(mine, this.listConcurrency, ([uuid, node]) =>
      this.call(() => this.client.getJson(node, `/task/${encodeURIComponent(uuid)}/info`)),
    );
    return infos.flatMap((i) => {
      const code = typeof i === 'object' && i !== null ? (i as { status?: { code?: unknown } }).status?.code : undefined;
      return typeof code === 'number' ? [code] : [];
    });
  }

  private async call(fn: () => Promise<unknown>): Promise<unknown> {
    try {
      return await fn();
    } catch (e: unknown) {
      return { error: errorMessage(e) };
    }
  }
}

function hasError(v: unknown): boolean {
  return typeof v === 'object' && v !== null && 'error' in v;
}

/**
 * A token's key and its value in text: `token=x` (also in a query string), `token: x`, `"token":"x"`, `'token': 'x'`,
 * and keys ending in token (`access_token=x`, `X-Auth-Token: x`). Group 1 is the key part, kept; group 2 the value.
 * It starts at the word "token" itself (no leading `[\w-]*`), so a long line costs linear time.
 */
const TOKEN_IN_TEXT = /(token["']?[ \t]*[:=][ \t]*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s&"'#,;]+)/gi;
/** Object keys whose value is a token. */
const TOKEN_KEY = /token$/i;

function redactValue(value: string): string {
  const quote = value[0] === '"' || value[0] === "'" ? value[0] : '';
  return `${quote}***${quote}`;
}

/**
 * Admin answers never show a user's token: a split-merge task's `sm-cluster` option (and ODM's output echoing it)
 * holds `?token=<user token>`, and a console line may print one in other forms. Every token value in any string,
 * and every string under a key ending in "token", is masked.
 */
export function redactTokens(v: unknown): unknown {
  if (typeof v === 'string') return v.replace(TOKEN_IN_TEXT, (_m, key: string, value: string) => `${key}${redactValue(value)}`);
  if (Array.isArray(v)) return v.map(redactTokens);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [k, TOKEN_KEY.test(k) && typeof x === 'string' && x !== '' ? '***' : redactTokens(x)]),
    );
  }
  return v;
}
