import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Clock, Logger } from '../core';
import { errorMessage } from '../core';
import type { InstanceDirectory, StagingDirectory } from '../store';
import type { RequestContext } from './proxy-handler';
import { sendError, sendJson } from './respond';

/** Set on a request one instance passes to another: the receiver never passes it on again (no loops). */
export const RELAY_HEADER = 'x-clusterodm-relayed-by';
const FAILED = 30;

/** The message of an upload whose staging instance is gone: names the task and says what to do. */
export function lostUploadMessage(uuid: string, owner: string): string {
  return `Task ${uuid} was being uploaded through ClusterODM instance ${owner}, which is gone; its uploaded files are lost. Please upload the task again.`;
}

export interface InstanceRelayDeps {
  staging: StagingDirectory;
  instances: InstanceDirectory;
  clock: Clock;
  logger: Logger;
  /** A task given up because its staging instance is gone: e.g. marked FAILED in the task table. */
  onLost?: (uuid: string, reason: string) => Promise<void>;
}

/**
 * Several instances (--redis): an upload's files are staged on the instance that got its init. A request for such
 * a task reaching another instance is passed, as it came and streaming, to the staging instance's proxy port (its
 * heartbeat's address), and its answer back; the client sees no difference. If that instance is gone (heartbeat
 * expired), the task fails with a message naming it, the same on every instance.
 */
export class InstanceRelay {
  private readonly d: InstanceRelayDeps;
  private readonly agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

  constructor(deps: InstanceRelayDeps) {
    this.d = deps;
  }

  /**
   * Handles a request for `uuid` if another instance stages it (passed there) or it failed that way (answered
   * here): true. False when it is this instance's, unknown, or already relayed once (the caller answers).
   * `mode` 'route' answers a failed task's info and output as a FAILED task; 'upload' answers the error.
   */
  async handle(ctx: RequestContext, uuid: string, mode: 'upload' | 'route', action = '', body?: Buffer): Promise<boolean> {
    const { staging, instances, clock } = this.d;
    const rec = await staging.lookup(uuid);
    if (!rec) return false;
    if (!rec.failed) {
      if (rec.owner === instances.self() || ctx.req.headers[RELAY_HEADER] !== undefined) return false;
      if (await instances.alive(rec.owner)) {
        this.pass(ctx, rec.owner, body);
        return true;
      }
      const reason = lostUploadMessage(uuid, rec.owner);
      const final = await staging.fail(uuid, reason, clock.now());
      this.d.logger.warn(`Task ${uuid}: its staging instance ${rec.owner} is gone, the task failed`);
      await this.d.onLost?.(uuid, final.failed ?? reason).catch((e: unknown) =>
        this.d.logger.error(`Task ${uuid}: cannot record its failure: ${errorMessage(e)}`),
      );
      rec.failed = final.failed ?? reason;
      rec.at = final.at;
    }
    ctx.req.resume();
    const reason = rec.failed ?? '';
    if (mode === 'route' && action === 'info') return answered(sendJson(ctx.res, failedInfo(uuid, reason, rec.at)));
    if (mode === 'route' && action === 'output') return answered(sendJson(ctx.res, [reason]));
    return answered(sendError(ctx.res, reason));
  }

  /**
   * The request as it came (method, path, headers, body streamed, or `body` when the caller already read it) to the
   * instance at `address`; its answer back.
   */
  private pass(ctx: RequestContext, address: string, body?: Buffer): void {
    const { req, res } = ctx;
    const target = new URL(/^https?:\/\//.test(address) ? address : `http://${address}`);
    const secure = target.protocol === 'https:';
    const headers = withoutHopByHop(req.headers);
    if (body) {
      delete headers['transfer-encoding'];
      headers['content-length'] = String(body.length);
    }
    headers[RELAY_HEADER] = this.d.instances.self() || 'unknown';
    const out = (secure ? https : http).request({
      host: target.hostname,
      port: target.port || (secure ? 443 : 80),
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      headers,
      agent: secure ? this.agents.https : this.agents.http,
    });
    out.on('response', (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage ?? '', withoutHopByHop(answer.headers));
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    });
    out.on('error', (e: unknown) => {
      this.d.logger.warn(`Cannot pass ${req.method ?? ''} ${ctx.url.pathname} to instance ${address}: ${errorMessage(e)}`);
      req.resume();
      if (!res.headersSent) sendError(res, `Cannot reach the ClusterODM instance holding this upload (${address}), please try again`);
      else res.destroy();
    });
    req.on('aborted', () => out.destroy());
    res.on('close', () => {
      if (!res.writableFinished) out.destroy();
    });
    if (body) out.end(body);
    else req.pipe(out);
  }

  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }
}

/** Headers that describe one connection, not the message (each hop frames its own). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

function withoutHopByHop(h: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const k in h) {
    const v = h[k];
    if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  }
  return out;
}

/**
 * Several instances: what task creation does about where uploads are staged. `claim` records this instance as an
 * upload's (a clear error when the shared state is down), `elsewhere` passes a request for an upload staged on
 * another instance there (asked only when the task's folder is not here), `release` forgets the record.
 */
export class StagingPlacement {
  constructor(private readonly d: { staging: StagingDirectory; relay: InstanceRelay; clock: Clock; logger: Logger }) {}

  async claim(uuid: string): Promise<void> {
    try {
      await this.d.staging.claim(uuid, this.d.clock.now());
    } catch (e: unknown) {
      // A record written late (Redis answering after the deadline) is taken back: nothing was given to the client.
      this.d.staging.release(uuid).catch(() => undefined);
      this.d.logger.warn(`Task ${uuid} refused: cannot record it in the shared state: ${errorMessage(e)}`);
      throw new Error(`Cannot create a task now: the shared state (Redis) is unreachable (${errorMessage(e)}). Please try again later.`);
    }
  }

  async elsewhere(ctx: RequestContext, uuid: string, dir: string): Promise<boolean> {
    if (await isDirectory(dir)) return false;
    try {
      return await this.d.relay.handle(ctx, uuid, 'upload');
    } catch (e: unknown) {
      ctx.req.resume();
      this.d.logger.warn(`Task ${uuid}: cannot look up where it is staged: ${errorMessage(e)}`);
      sendError(ctx.res, `Cannot look up task ${uuid} in the shared state, please try again: ${errorMessage(e)}`);
      return true;
    }
  }

  async release(uuid: string): Promise<void> {
    await this.d.staging.release(uuid).catch((e: unknown) => this.d.logger.warn(`Task ${uuid}: cannot forget where it was staged: ${errorMessage(e)}`));
  }
}

async function isDirectory(dir: string): Promise<boolean> {
  try {
    return (await fsp.stat(dir)).isDirectory();
  } catch {
    return false;
  }
}

function answered(_: void): true {
  return true;
}

/** A FAILED task's info, as NodeODM shapes it. */
function failedInfo(uuid: string, reason: string, at: number): Record<string, unknown> {
  return {
    uuid,
    name: '',
    dateCreated: at,
    processingTime: -1,
    status: { code: FAILED, errorMessage: reason },
    options: [],
    imagesCount: 0,
    progress: 0,
  };
}
