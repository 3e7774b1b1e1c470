import { randomUUID } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import type * as http from 'node:http';
import * as path from 'node:path';
import type { Clock, Logger } from '../core';
import { errorMessage } from '../core';
import { augmentTaskOptions, filterOptions, parseTaskOptions } from '../nodeodm';
import type { ClusterNode, NodeRegistry } from '../nodes';
import { isValidUuid, type RouteTable, type TaskTable } from '../routing';
import { writeFileAtomic } from '../store';
import type { StagingPlacement } from './instance-relay';
import {
  COMMIT_WINDOW_MESSAGE,
  concurrencyLimitReached,
  FLOOD_MESSAGE,
  MAX_CONCURRENT_COMMIT,
  MAX_CONCURRENT_INIT,
  type CommitWindow,
  type FloodMonitor,
} from './guards';
import { clientAddress, type OpenUploads } from './open-uploads';
import type { OptionsCache } from './options-cache';
import type { RequestContext, TaskCreationHandlers } from './proxy-handler';
import { sendError, sendJson } from './respond';
import type { StreamForwarder, UploadTeeHandle } from './stream-forward';
import { listStagedFiles, nodeTaskParams, removeDir, taskName, type BodyParams, type TaskDispatcher } from './task-dispatch';
import { multipartBoundary } from './multipart-scan';
import { stageRawMultipart } from './raw-staging';
import { RequestFlow } from './request-flow';
import { resolveLimits } from './staging-limits';
import { NameReserver, stageMultipart, type StagedFile, type StagingLimits, type StagingResult } from './upload-staging';

export interface TaskIntakeDeps {
  registry: NodeRegistry;
  routes: RouteTable;
  table: TaskTable;
  options: OptionsCache;
  dispatcher: TaskDispatcher;
  clock: Clock;
  logger: Logger;
  tmpDir: string;
  splitmerge: boolean;
  useSsl: boolean;
  publicAddress: string;
  flood: FloodMonitor;
  commits: CommitWindow;
  /** Open upload sessions: their caps, and the state each one holds until it ends. */
  uploads: OpenUploads;
  /** Status codes of the token's routed tasks, for the max-concurrency limit. */
  statusesOf: (token: string) => Promise<number[]>;
  /** Sends images on to a node while the client is still uploading (null: stage everything, then forward). */
  streaming?: StreamForwarder | null;
  /** Tests: e.g. a shorter idle timeout of client uploads. */
  stagingLimits?: Partial<StagingLimits>;
  /**
   * Several instances (--redis): where each upload is staged is recorded, and a request for an upload staged on
   * another instance is passed there (null: one instance).
   */
  cluster?: StagingPlacement | null;
}

const UPLOAD_PATH = /^\/task\/new\/upload\/([^/]+)$/;
const COMMIT_PATH = /^\/task\/new\/commit\/([^/]+)$/;

/**
 * The task-creation endpoints: init / upload (repeatable) / commit, and single-shot /task/new. Files are staged
 * in tmp/<uuid>/ with the original's body.json; a task being uploaded is in the durable task table, so an upload
 * session continues after a restart.
 */
export class TaskIntake implements TaskCreationHandlers {
  private readonly d: TaskIntakeDeps;

  constructor(deps: TaskIntakeDeps) {
    this.d = deps;
  }

  private limits(): { limits?: Partial<StagingLimits> } {
    return this.d.stagingLimits ? { limits: this.d.stagingLimits } : {};
  }

  private dirOf(uuid: string): string {
    return path.join(this.d.tmpDir, uuid);
  }

  /** The uuid of a new task: the client's `set-uuid` (validated, unused) or a fresh one. */
  private async newUuid(req: http.IncomingMessage): Promise<string> {
    const wanted = req.headers['set-uuid'];
    if (wanted === undefined) return randomUUID();
    const v = Array.isArray(wanted) ? wanted.join(',') : wanted;
    if (isValidUuid(v)) await this.d.routes.fetch(v);
    if (!isValidUuid(v) || this.d.table.has(v) || this.d.routes.has(v)) throw new Error(`Invalid set-uuid: ${v}`);
    return v;
  }

  async init(ctx: RequestContext): Promise<void> {
    let uuid = '';
    let staged: StagingResult;
    let opened = false;
    let created = false;
    try {
      uuid = await this.newUuid(ctx.req);
      // --max-open-uploads(-per-address): checked first, so a refused init costs nothing more.
      this.d.uploads.open(uuid, clientAddress(ctx.req));
      opened = true;
      staged = await stageMultipart(ctx.req, { dir: null, acceptFiles: false, ...this.limits() });
      const params = bodyParams(staged.fields);
      await this.validate(ctx, staged.fields, params);
      await fsp.mkdir(this.dirOf(uuid), { recursive: false });
      created = true;
      // Other instances pass this task's uploads and commit here (refused at once while Redis is away).
      await this.d.cluster?.claim(uuid);
      await this.writeBody(uuid, params);
      const now = this.d.clock.now();
      const name = taskName(params, now);
      const dateCreated = params.dateCreated ?? now;
      await this.d.table.put({
        uuid,
        token: ctx.token || undefined,
        phase: 'uploading',
        taskInfo: {
          uuid,
          name,
          dateCreated,
          status: { code: 10 },
          options: [],
          imagesCount: 0,
        },
        output: [],
      });
      this.d.uploads.recorded(uuid);
      this.d.streaming?.begin(uuid, this.dirOf(uuid), async (node) =>
        nodeTaskParams(params, await this.nodeOptions(ctx, node, params), name, dateCreated),
      );
    } catch (e: unknown) {
      ctx.req.resume();
      // A full or read-only disk fails body.json or the task table after the dir was made: no dir is left behind.
      if (created) await this.die(uuid);
      else if (opened) this.d.uploads.close(uuid);
      return sendError(ctx.res, errorMessage(e));
    }
    this.d.logger.info(`Task ${uuid} initialized`);
    sendJson(ctx.res, { uuid });
  }

  /** tmp/<uuid>/body.json, in the original's shape. */
  private writeBody(uuid: string, params: BodyParams): Promise<void> {
    const body = { ...params, error: null, fileNames: [], imagesCount: 0 };
    return writeFileAtomic(path.join(this.dirOf(uuid), 'body.json'), JSON.stringify(body));
  }

  /** The checks of init: URL uploads, a node to validate against, and the options themselves. */
  private async validate(ctx: RequestContext, fields: Map<string, string>, params: BodyParams): Promise<void> {
    if (fields.get('zipurl')) throw new Error('File upload via URL is not available. Sorry :(');
    const ref = this.d.registry.referenceNode();
    if (!ref) throw new Error('Cannot create task, no nodes are online.');
    await this.checkConcurrency(ctx, MAX_CONCURRENT_INIT(ctx.limits?.maxConcurrentTasks ?? 0));
    await this.nodeOptions(ctx, ref, params);
    await this.checkFlood(ctx.token);
  }

  /** The task's options, augmented and checked against one node's option list (throws the client's error). */
  private async nodeOptions(ctx: RequestContext, node: ClusterNode, params: BodyParams): Promise<unknown[]> {
    const specs = await this.d.options.get(ctx.limits, node);
    return filterOptions(
      augmentTaskOptions(parseTaskOptions(params.options || '[]'), {
        limits: ctx.limits,
        splitmerge: this.d.splitmerge,
        smClusterUrl: this.smClusterUrl(ctx),
      }),
      specs,
    );
  }

  /** --flood-limit: counted at init (a refused init still counts, as the original), forgiven at commit. */
  private async checkFlood(token: string): Promise<void> {
    if (await this.d.flood.admit(token)) throw new Error(FLOOD_MESSAGE);
  }

  private async checkConcurrency(ctx: RequestContext, message: string): Promise<void> {
    const max = ctx.limits?.maxConcurrentTasks;
    if (await concurrencyLimitReached(max, () => this.d.statusesOf(ctx.token))) throw new Error(message);
  }

  /** The limits a commit passes (also applied to single-shot /task/new, which the original let through). */
  private async checkCommit(ctx: RequestContext): Promise<void> {
    if (await this.d.commits.admit(ctx.limits?.maxConcurrentTasks, ctx.token)) throw new Error(COMMIT_WINDOW_MESSAGE);
    await this.checkConcurrency(ctx, MAX_CONCURRENT_COMMIT);
    await this.d.flood.committed(ctx.token);
  }

  /** The uploading task named by a path, if the caller owns it. */
  private uploadingTask(ctx: RequestContext, uuid: string): boolean {
    const e = this.d.table.get(uuid);
    return e !== undefined && e.phase === 'uploading' && (!e.token || e.token === ctx.token);
  }

  async upload(ctx: RequestContext): Promise<void> {
    const { req, res, url } = ctx;
    const uuid = UPLOAD_PATH.exec(url.pathname)?.[1];
    if (!uuid || !isValidUuid(uuid)) {
      req.resume();
      return sendError(res, `No uuid found in ${url.pathname}`);
    }
    if (await this.d.cluster?.elsewhere(ctx, uuid, this.dirOf(uuid))) return;
    if (!this.uploadingTask(ctx, uuid)) {
      req.resume();
      return sendError(res, 'Invalid taskId: the task no longer exists.');
    }
    const dir = this.dirOf(uuid);
    let tee: UploadTeeHandle | null = null;
    try {
      const maxImages = ctx.limits?.maxImages ?? null;
      // Counting staged files lists the dir: only worth it when there is a limit to check.
      const existing = maxImages === null ? 0 : (await listStagedFiles(dir)).length;
      // The body goes to the node as it arrives (or else each file once staged); start() and the staging's pipe are
      // attached in one synchronous block, so both copies see every byte.
      // A multipart body is scanned as it is (raw-staging.ts); anything else gets busboy's answer for it.
      const boundary = multipartBoundary(req.headers['content-type']);
      // Shared by the staging and the copy for the node: each may hold the client, neither resumes the other's hold.
      const flow = new RequestFlow(req);
      const idleMs = resolveLimits(this.d.stagingLimits).idleTimeoutMs;
      tee = (await this.d.streaming?.tee(uuid, dir, req, boundary === null ? undefined : flow, idleMs / 3)) ?? null;
      tee?.start();
      const opts = {
        ...this.limits(),
        maxImages,
        existingFiles: existing,
        flow,
        ...reserving(this.d.uploads.reserver(uuid)),
        onFile: (f: StagedFile) => {
          if (tee) tee.file(f.name, f.originalName);
          else this.d.streaming?.add(uuid, { path: path.join(dir, f.name), name: f.name });
        },
      };
      const staged =
        boundary === null ? await stageMultipart(req, { dir, acceptFiles: true, ...opts }) : await stageRawMultipart(req, boundary, dir, opts);
      tee?.staged(staged.files.length > 0);
      if (staged.files.length === 0) return sendError(res, 'No files uploaded.');
      await this.d.table.update(uuid, {}, { durable: false });
      this.d.logger.debug(`Task ${uuid}: ${staged.files.length} files uploaded`);
      sendJson(res, { success: true });
    } catch (e: unknown) {
      req.resume();
      tee?.staged(false);
      // Files of a failed request are removed again; the node may have some of them: stream no more.
      this.d.streaming?.discard(uuid);
      sendError(res, errorMessage(e));
    }
  }

  async commit(ctx: RequestContext): Promise<void> {
    const { req, res, url } = ctx;
    const uuid = COMMIT_PATH.exec(url.pathname)?.[1];
    // Passed on as it came, body and all, when another instance stages it.
    if (uuid && isValidUuid(uuid) && (await this.d.cluster?.elsewhere(ctx, uuid, this.dirOf(uuid)))) return;
    req.resume();
    if (!uuid || !isValidUuid(uuid)) return sendError(res, `No uuid found in ${url.pathname}`);
    if (!this.uploadingTask(ctx, uuid)) return sendError(res, 'Invalid taskId: the task no longer exists.');
    const params = await readBodyJson(this.dirOf(uuid));
    if (!params) return sendError(res, `Cannot commit task ${uuid}: its upload data is missing`);
    try {
      await this.checkCommit(ctx);
    } catch (e: unknown) {
      await this.die(uuid);
      return sendError(res, errorMessage(e));
    }
    await this.dispatch(ctx, uuid, params);
  }

  async newTask(ctx: RequestContext): Promise<void> {
    const { req, res } = ctx;
    let uuid: string;
    try {
      uuid = await this.newUuid(req);
      // Checked before any byte is stored: a refused task costs no disk.
      await this.checkFlood(ctx.token);
      await this.checkConcurrency(ctx, MAX_CONCURRENT_INIT(ctx.limits?.maxConcurrentTasks ?? 0));
      await this.checkCommit(ctx);
      await fsp.mkdir(this.dirOf(uuid), { recursive: false });
      await this.d.cluster?.claim(uuid).catch(async (e: unknown) => {
        this.d.commits.decrease(ctx.token);
        await removeDir(this.dirOf(uuid));
        throw e;
      });
    } catch (e: unknown) {
      req.resume();
      return sendError(res, errorMessage(e));
    }
    let params: BodyParams;
    try {
      const staged = await stageMultipart(req, {
        dir: this.dirOf(uuid),
        acceptFiles: true,
        ...this.limits(),
        maxImages: ctx.limits?.maxImages ?? null,
        // One request fills this dir: no other request shares its names.
        ...reserving(new NameReserver(this.dirOf(uuid))),
      });
      if (staged.fields.get('zipurl')) throw new Error('File upload via URL is not available. Sorry :(');
      params = bodyParams(staged.fields);
      // Kept beside the files, as for init: a forward interrupted by a restart is resumed from them.
      await this.writeBody(uuid, params);
    } catch (e: unknown) {
      req.resume();
      this.d.commits.release(ctx.token);
      await this.die(uuid);
      return sendError(res, errorMessage(e));
    }
    await this.dispatch(ctx, uuid, params);
  }

  private async dispatch(ctx: RequestContext, uuid: string, params: BodyParams): Promise<void> {
    const dir = this.dirOf(uuid);
    try {
      await this.d.dispatcher.accept({
        uuid,
        token: ctx.token || undefined,
        limits: ctx.limits,
        params,
        dir,
        files: await listStagedFiles(dir),
        smClusterUrl: this.smClusterUrl(ctx),
        commitUrl: this.publicUrl(ctx, '/commit'),
      });
    } catch (e: unknown) {
      // The commit that was counted did not happen.
      this.d.commits.release(ctx.token);
      await this.die(uuid);
      return sendError(ctx.res, errorMessage(e));
    }
    this.d.uploads.close(uuid);
    sendJson(ctx.res, { uuid });
  }

  /** A task that cannot go on: its staged files and table entry are removed. */
  private async die(uuid: string): Promise<void> {
    this.d.uploads.close(uuid);
    this.d.streaming?.discard(uuid);
    await removeDir(this.dirOf(uuid));
    await this.d.table.delete(uuid).catch(() => false);
    // Not waited for: while Redis is away the command waits for it, and the client gets its answer now.
    void this.d.cluster?.release(uuid);
  }

  /** An upload session removed by the tmp sweep (abandoned by its client): nothing of it is kept. */
  abandoned(uuid: string): void {
    this.d.uploads.close(uuid);
    this.d.streaming?.discard(uuid);
    void this.d.cluster?.release(uuid);
  }

  /** `<public address>/?token=<user token>` (the public address defaults to the request's Host). */
  private smClusterUrl(ctx: RequestContext): string {
    return this.publicUrl(ctx, '/');
  }

  /** `<public address><path>?token=<user token>`, as the original's publicAddressPath. */
  private publicUrl(ctx: RequestContext, pathname: string): string {
    const base = this.d.publicAddress || `${this.d.useSsl ? 'https' : 'http'}://${ctx.req.headers.host ?? 'localhost'}`;
    const u = new URL(pathname, base);
    if (ctx.token) u.search = `token=${encodeURIComponent(ctx.token)}`;
    return u.toString();
  }

  /** Parameters of a staged task, for resuming forwards after a restart. */
  readParams(uuid: string): Promise<BodyParams | null> {
    return readBodyJson(this.dirOf(uuid));
  }
}

function reserving(r: NameReserver): { reserveName: (n: string) => string; releaseName: (n: string) => void } {
  return { reserveName: (n) => r.reserve(n), releaseName: (n) => r.release(n) };
}

/** The init fields as the original keeps them. */
export function bodyParams(fields: Map<string, string>): BodyParams {
  const dc = Number.parseInt(fields.get('dateCreated') ?? '', 10);
  return {
    options: fields.get('options') ?? null,
    taskName: fields.get('name') ?? '',
    skipPostProcessing: fields.get('skipPostProcessing') === 'true',
    outputs: fields.get('outputs') ?? null,
    dateCreated: Number.isFinite(dc) ? dc : null,
    webhook: fields.get('webhook') ?? '',
  };
}

async function readBodyJson(dir: string): Promise<BodyParams | null> {
  try {
    const v = JSON.parse(await fsp.readFile(path.join(dir, 'body.json'), 'utf8')) as Record<string, unknown>;
    return {
      options: typeof v['options'] === 'string' ? v['options'] : null,
      taskName: typeof v['taskName'] === 'string' ? v['taskName'] : '',
      skipPostProcessing: v['skipPostProcessing'] === true,
      outputs: typeof v['outputs'] === 'string' ? v['outputs'] : null,
      dateCreated: typeof v['dateCreated'] === 'number' ? v['dateCreated'] : null,
      webhook: typeof v['webhook'] === 'string' ? v['webhook'] : '',
    };
  } catch {
    return null;
  }
}
