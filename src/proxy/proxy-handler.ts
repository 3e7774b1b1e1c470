import type * as http from 'node:http';
import type { CloudProvider } from '../cloud';
import type { Clock, Logger } from '../core';
import { errorMessage, mapLimit } from '../core';
import type { Limits, NodeClient } from '../nodeodm';
import type { NodeRegistry } from '../nodes';
import type { RouteEntry, RouteTable } from '../routing';
import { Forwarder, redactUrl } from './forwarder';
import { nodePath } from './node-path';
import type { LocalTasks } from './local-tasks';
import type { CommitWindow } from './guards';
import type { CommitWebhook } from './commit-webhook';
import type { OptionsCache } from './options-cache';
import { hasUnexpectedBody, refuseBody } from './framing';
import { sendError, sendJson, sendUnauthorized } from './respond';
import { s3AssetPath, type S3Downloads } from './s3-downloads';
import { BodyError, parseFields, readBody } from './small-body';
import type { InstanceRelay } from './instance-relay';

/** The API version ClusterODM speaks (hard-coded in the original, clients check it). */
export const API_VERSION = '1.5.3';
const HUGE = 99999999999;

/** Five dash-separated word runs, as the original's route pattern (not strictly hex). */
const TASK_ROUTE = /^\/task\/([\w]+-[\w]+-[\w]+-[\w]+-[\w]+)\/(.+)$/;
/**
 * The NodeODM web UI's own files, which it loads before it knows a token: those of its public/ folder (css/, js/,
 * fonts/, img/, and top-level ones such as favicon.ico). Never a path of the API (`/task/…` in any case): the
 * original matched the suffix alone, so `/task/<uuid>/download/all.zip.js` went to the node without a token.
 * No `..` segments (checked apart), no encoded tricks.
 */
const PUBLIC_ASSET = /^\/(?:(?:css|js|fonts|img)\/(?:[\w.-]+\/)*)?[\w.-]+\.(?:css|js|woff|woff2|ttf|ico)$/;

export interface RequestContext {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly url: URL;
  readonly token: string;
  readonly limits: Limits | null;
}

/** Task-creation endpoints, provided by the task pipeline. */
export interface TaskCreationHandlers {
  init(ctx: RequestContext): Promise<void>;
  upload(ctx: RequestContext): Promise<void>;
  commit(ctx: RequestContext): Promise<void>;
  newTask(ctx: RequestContext): Promise<void>;
}

export interface ProxyHandlerDeps {
  registry: NodeRegistry;
  routes: RouteTable;
  local: LocalTasks;
  cloud: CloudProvider;
  client: NodeClient;
  forwarder: Forwarder;
  clock: Clock;
  logger: Logger;
  options: OptionsCache;
  /** The commit window of the concurrency limit; cancel, remove and restart give a commit back. */
  commits?: CommitWindow;
  creation?: TaskCreationHandlers | null;
  /** How many /task/<uuid>/info pings /task/list sends at once. */
  listConcurrency?: number;
  /** `POST /commit` (the autoscaled nodes' webhook). */
  webhook?: CommitWebhook | null;
  /** Downloads of tasks whose results are in S3 (--asr, --downloads-from-s3). */
  s3?: S3Downloads | null;
  /** Several instances: a task this instance does not know may be an upload another one stages. */
  relay?: InstanceRelay | null;
}

/** The NodeODM-compatible request pipeline, in the original's order (SPEC §4.1). */
export class ProxyHandler {
  private readonly d: ProxyHandlerDeps;

  constructor(deps: ProxyHandlerDeps) {
    this.d = deps;
  }

  /** Entry point for every request; never throws, never leaves a request unanswered. */
  handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.dispatch(req, res).catch((e: unknown) => {
      this.d.logger.error(`Uncaught exception: ${errorMessage(e)} (${req.method ?? ''} ${redactUrl(req.url ?? '')})`);
      if (!res.headersSent) sendError(res, 'exception');
      else res.destroy();
    });
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    setCors(req, res);
    const method = req.method ?? 'GET';
    // A GET/HEAD/OPTIONS/DELETE with a body: refused on every route, before anything reads it (request smuggling).
    if (hasUnexpectedBody(req)) {
      this.d.logger.warn(`Refused a ${method} request with a body: ${redactUrl(req.url ?? '')}`);
      refuseBody(req, res);
      return;
    }
    if (method === 'OPTIONS' && req.headers['access-control-request-method']) {
      // A CORS preflight gets an empty 204, as NodeODM answers (the original answered a JSON error).
      res.writeHead(204, { 'Content-Length': 0 });
      res.end();
      return;
    }
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://clusterodm.invalid');
    } catch {
      sendError(res, `Cannot handle ${req.url ?? ''}`);
      return;
    }
    const pathname = url.pathname;

    if ((method === 'GET' || method === 'HEAD') && PUBLIC_ASSET.test(rawPath(req)) && !rawPath(req).includes('..')) {
      this.toReferenceNode(req, res, rawPath(req));
      return;
    }
    if (pathname === '/commit' && method === 'POST') {
      await this.commitWebhook(req, res, url);
      return;
    }
    if (pathname === '/auth/info') {
      sendJson(res, this.d.cloud.authInfo());
      return;
    }

    const token = url.searchParams.get('token') ?? '';
    const auth = await this.d.cloud.validate(token);
    if (!auth.valid || url.searchParams.has('_debugUnauthorized')) {
      req.resume();
      sendUnauthorized(res);
      return;
    }
    const ctx: RequestContext = { req, res, url, token, limits: auth.limits };
    await this.route(ctx, method, pathname);
  }

  private async route(ctx: RequestContext, method: string, pathname: string): Promise<void> {
    const { req, res } = ctx;
    if (pathname === '/') return this.toReferenceNode(req, res, '/');
    if (pathname === '/info') return this.info(ctx);
    if (pathname === '/options') return this.optionsRoute(ctx);
    if (pathname === '/cache/clear') {
      this.d.options.clear(ctx.limits);
      this.d.cloud.clearCache(ctx.token);
      return sendJson(res, { ok: true });
    }
    const creation = this.d.creation;
    if (method === 'POST' && creation) {
      if (pathname === '/task/new/init') return creation.init(ctx);
      if (pathname.startsWith('/task/new/upload')) return creation.upload(ctx);
      if (pathname.startsWith('/task/new/commit')) return creation.commit(ctx);
      if (pathname === '/task/new') return creation.newTask(ctx);
    }
    if (method === 'POST' && /^\/task\/(restart|cancel|remove)$/.test(pathname)) return this.taskAction(ctx, pathname);
    if (method === 'GET' && pathname === '/task/list') return this.taskList(ctx);
    const m = TASK_ROUTE.exec(pathname);
    if (m && m[1] && m[2]) {
      // Only while a shared table is still being read after start; null (no wait) in steady state.
      const reading = this.d.routes.fetch(m[1]);
      if (reading) await reading;
      return this.taskRoute(ctx, m[1], m[2]);
    }
    req.resume();
    sendError(res, `Cannot handle ${pathname}`);
  }

  /** Forwards to the first online node without any token (the NodeODM web UI and its assets). */
  private toReferenceNode(req: http.IncomingMessage, res: http.ServerResponse, pathAndQuery: string): void {
    const node = this.d.registry.referenceNode();
    if (!node) {
      req.resume();
      sendError(res, 'No nodes available');
      return;
    }
    this.d.forwarder.forward(req, res, node, pathAndQuery);
  }

  private info(ctx: RequestContext): void {
    const ref = this.d.registry.referenceNode();
    const limits = ctx.limits;
    ctx.req.resume();
    sendJson(ctx.res, {
      version: API_VERSION,
      taskQueueCount: 0,
      totalMemory: HUGE,
      availableMemory: HUGE,
      cpuCores: HUGE,
      maxImages: limits?.maxImages || null,
      maxParallelTasks: limits?.maxConcurrentTasks ?? HUGE,
      engineVersion: ref?.info.engineVersion ?? '?',
      engine: ref?.info.engine ?? '?',
    });
  }

  private async optionsRoute(ctx: RequestContext): Promise<void> {
    ctx.req.resume();
    const ref = this.d.registry.referenceNode();
    if (!ref) return sendError(ctx.res, 'Cannot compute /options, no nodes are online.');
    try {
      sendJson(ctx.res, await this.d.options.get(ctx.limits, ref));
    } catch (e: unknown) {
      // The original left this request hanging (an unhandled rejection).
      sendError(ctx.res, errorMessage(e));
    }
  }

  /** The route of a task the caller may see: another token's task is invisible (per-task ownership). */
  private ownedRoute(uuid: string, token: string): RouteEntry | undefined {
    const r = this.d.routes.lookup(uuid);
    return r && ownedBy(r.token, token) ? r : undefined;
  }

  private ownedLocal(uuid: string, token: string): boolean {
    return this.d.local.has(uuid) && ownedBy(this.d.local.owner(uuid), token);
  }

  private taskRoute(ctx: RequestContext, uuid: string, action: string): void | Promise<void> {
    const { req, res, url } = ctx;
    const route = this.ownedRoute(uuid, ctx.token);
    // Results of tasks that ran on autoscaled nodes are in S3 (tasks of static nodes never are: SPEC §12 item 1).
    if (this.d.s3 && action.startsWith('download/')) {
      const inS3 = route ? route.node.isAutoSpawned() : this.ownedLocal(uuid, ctx.token) && this.d.local.inS3(uuid);
      if (inS3) {
        const asset = s3AssetPath(action);
        if (!asset) {
          req.resume();
          return sendError(res, `Invalid asset ${action.slice('download/'.length)}`);
        }
        return this.d.s3.serve(req, res, uuid, asset);
      }
    }
    if (route) {
      this.d.forwarder.forward(req, res, route.node, nodePath(url, route.node));
      return;
    }
    const local = this.ownedLocal(uuid, ctx.token);
    if (!local && this.d.relay) return this.viaRelay(ctx, this.d.relay, uuid, action);
    req.resume();
    if (local) {
      if (action === 'info') return sendJson(res, this.d.local.info(uuid, intParam(url, 'with_output')));
      if (action === 'output') return sendJson(res, this.d.local.output(uuid, intParam(url, 'line') ?? 0));
      return sendError(res, `Invalid route for taskId ${uuid}:${action}, no valid route possible.`);
    }
    sendError(res, `Invalid route for taskId ${uuid}:${action}, no task table entry.`);
  }

  /** A task this instance does not know: passed to the instance staging it, answered as failed, or unknown. */
  private async viaRelay(ctx: RequestContext, relay: InstanceRelay, uuid: string, action: string): Promise<void> {
    try {
      if (await relay.handle(ctx, uuid, 'route', action)) return;
    } catch (e: unknown) {
      this.d.logger.warn(`Task ${uuid}: cannot look it up in the shared state: ${errorMessage(e)}`);
    }
    ctx.req.resume();
    sendError(ctx.res, `Invalid route for taskId ${uuid}:${action}, no task table entry.`);
  }

  /** cancel / remove / restart, with a urlencoded, multipart or JSON body (bounded). */
  private async taskAction(ctx: RequestContext, pathname: string): Promise<void> {
    const { req, res } = ctx;
    let fields: Map<string, string>;
    let body: Buffer;
    try {
      body = await readBody(req);
      fields = await parseFields(body, req.headers['content-type']);
    } catch (e: unknown) {
      if (e instanceof BodyError) return sendError(res, e.message);
      throw e;
    }
    const uuid = fields.get('uuid');
    if (!uuid) return sendError(res, `No uuid found in ${pathname}`);
    const action = pathname.slice('/task/'.length);
    await this.d.routes.fetch(uuid);
    const route = this.ownedRoute(uuid, ctx.token);
    // Several instances: a task this one does not know may be another's (passed there, body and all).
    if (!route && this.d.relay && (!this.d.local.has(uuid) || this.d.local.heldElsewhere?.(uuid) === true) && (await this.d.relay.handle(ctx, uuid, 'upload', '', body).catch(() => false))) return;
    this.d.commits?.release(ctx.token);
    if (route) return this.nodeTaskAction(ctx, route, uuid, action, fields);
    if (this.ownedLocal(uuid, ctx.token)) {
      if (action === 'restart') return sendError(res, 'Action not supported. Please create a new task.');
      this.d.logger.info(`Task ${uuid} aborted via ${pathname}`);
      if (action === 'cancel') await this.d.local.cancel(uuid);
      else await this.d.local.remove(uuid);
      return sendJson(res, { success: true });
    }
    sendError(res, `Invalid route for taskId ${uuid}, no nodes in routing table.`);
  }

  /** Sends the action to the task's node (as urlencoded, which every NodeODM accepts) and relays its answer. */
  private async nodeTaskAction(
    ctx: RequestContext,
    route: RouteEntry,
    uuid: string,
    action: string,
    fields: Map<string, string>,
  ): Promise<void> {
    let answer: unknown;
    try {
      answer = await this.d.client.postForm(route.node, `/task/${action}`, fields);
    } catch (e: unknown) {
      this.d.logger.warn(`Cannot ${action} task ${uuid} on ${route.node.name}: ${errorMessage(e)}`);
      // As a refused or reset connection: drop the client's socket so it retries.
      ctx.req.socket.destroy();
      return;
    }
    if (action === 'remove' && isSuccess(answer)) {
      // The original kept routes of removed tasks for days.
      await this.d.routes.remove(uuid).catch((e: unknown) => this.d.logger.error(`Cannot remove route ${uuid}: ${errorMessage(e)}`));
    }
    sendJson(ctx.res, answer);
  }

  /** The caller's tasks: local ones plus routed ones whose node still knows them. */
  private async taskList(ctx: RequestContext): Promise<void> {
    ctx.req.resume();
    const token = ctx.token;
    const local = this.d.local.list(token || undefined);
    await this.d.routes.loaded();
    // Listing is by token equality, as the original: tasks created without a token are listed for the tokenless.
    const routed = this.d.routes.ownedBy(token);
    const alive = await mapLimit(routed, this.d.listConcurrency ?? 16, async ([uuid, node]) => {
      try {
        const info = await this.d.client.getJson(node, `/task/${uuid}/info`);
        return typeof info === 'object' && info !== null && !('error' in info) ? uuid : null;
      } catch {
        return null;
      }
    });
    const seen = new Set<string>();
    const out: Array<{ uuid: string }> = [];
    for (const uuid of [...local, ...alive]) {
      if (uuid && !seen.has(uuid)) {
        seen.add(uuid);
        out.push({ uuid });
      }
    }
    sendJson(ctx.res, out);
  }

  private async commitWebhook(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    if (this.d.webhook) return this.d.webhook.handle(req, res, url);
    let body: Buffer;
    try {
      body = await readBody(req);
    } catch (e: unknown) {
      return sendError(res, errorMessage(e));
    }
    try {
      JSON.parse(body.toString('utf8'));
    } catch {
      this.d.logger.warn('Malformed /commit request');
      return sendError(res, 'Malformed /commit request');
    }
    sendJson(res, { ok: true });
  }
}

/** A task created without a token is everyone's; one created with a token is only its owner's. */
function ownedBy(owner: string | undefined, token: string): boolean {
  return !owner || owner === token;
}

function isSuccess(v: unknown): boolean {
  return typeof v === 'object' && v !== null && (v as { success?: unknown }).success === true;
}

/** The path and query as sent, for the static-asset rule (URL parsing would resolve `..`). */
function rawPath(req: http.IncomingMessage): string {
  const u = req.url ?? '/';
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
}

function intParam(url: URL, name: string): number | null {
  const v = url.searchParams.get(name);
  if (v === null || v.trim() === '') return null;
  const n = Number.parseInt(v, 10);
  return Number.isFinite(n) ? n : null;
}

function setCors(req: http.IncomingMessage, res: http.ServerResponse): void {
  // Tokens travel in the query, never in cookies, so no credentials are allowed (the original reflected any
  // Origin with credentials).
  res.setHeader('Access-Control-Allow-Origin', '*');
  const m = req.headers['access-control-request-method'];
  if (typeof m === 'string') res.setHeader('Access-Control-Allow-Methods', m);
  const h = req.headers['access-control-request-headers'];
  if (typeof h === 'string') res.setHeader('Access-Control-Allow-Headers', h);
}
