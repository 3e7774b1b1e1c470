import type * as http from 'node:http';
import type { Autoscaler } from '../autoscaler';
import type { CloudProvider } from '../cloud';
import type { Logger } from '../core';
import { errorMessage } from '../core';
import { isFinalStatus, type NodeClient } from '../nodeodm';
import { isValidUuid, type RouteEntry, type RouteTable, type TaskTable } from '../routing';
import type { CommitLedger } from './commit-ledger';
import type { CommitWindow } from './guards';
import { sendError, sendJson } from './respond';
import { BodyError, readBody } from './small-body';

export interface CommitWebhookDeps {
  routes: RouteTable;
  tasks: TaskTable;
  autoscaler: Autoscaler | null;
  cloud: CloudProvider;
  client: NodeClient;
  commits: CommitWindow | undefined;
  /** Tasks already counted: a replayed webhook is answered as the first was, and counts nothing. */
  ledger: CommitLedger;
  logger: Logger;
}

const MALFORMED = 'Malformed /commit request';

/**
 * `POST /commit`: NodeODM's webhook when a task is done (SPEC §8.6). The original trusted anyone (§12 item 24);
 * here a task on an autoscaled node needs the secret only its machine was given (`&secret=` on the same URL), and a
 * task on a static node counts only when the node itself says it is done. The body is never trusted for billing.
 * Each task counts once (billing, commit window), however often its webhook is replayed, even across restarts.
 */
export class CommitWebhook {
  constructor(private readonly d: CommitWebhookDeps) {}

  async handle(req: http.IncomingMessage, res: http.ServerResponse, url: URL): Promise<void> {
    const { d } = this;
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req)).toString('utf8'));
    } catch (e: unknown) {
      if (e instanceof BodyError) return sendError(res, e.message);
      d.logger.warn(MALFORMED);
      return sendError(res, MALFORMED);
    }
    const uuid = typeof body === 'object' && body !== null ? (body as { uuid?: unknown }).uuid : undefined;
    if (!isValidUuid(uuid)) {
      d.logger.warn(`${MALFORMED}: no valid uuid`);
      return sendError(res, MALFORMED);
    }
    await d.routes.fetch(uuid);
    const route = d.routes.peek(uuid);
    if (!route) {
      // A repeated webhook of a task already finished and saved: nothing more to do.
      if (d.tasks.get(uuid)?.phase === 'finished') return sendJson(res, { ok: true });
      d.logger.warn(`Refused /commit for task ${uuid}: no such task`);
      return sendJson(res, { error: 'Unknown task' }, 403);
    }
    if (!d.ledger.claim(uuid)) {
      d.logger.info(`Repeated /commit for task ${uuid} ignored: already counted`);
      return sendJson(res, { ok: true });
    }
    let taskInfo: unknown = REFUSED;
    try {
      taskInfo = await this.verify(uuid, route, url, body, res);
    } finally {
      // Refused (or failed): not counted, so a later webhook may still count.
      if (taskInfo === REFUSED) d.ledger.release(uuid);
    }
    if (taskInfo === REFUSED) return;
    // Recorded before anything is counted: a replay (or a crash and a replay) can only find it counted.
    await d.ledger.confirm(uuid).catch((e: unknown) => d.logger.error(`Cannot save that task ${uuid} was counted: ${errorMessage(e)}`));
    d.logger.info(`Task ${uuid} is done (webhook from ${route.node.name})`);
    d.commits?.release(route.token ?? '');
    void d.cloud.taskFinished(route.token ?? '', taskInfo).catch(() => undefined);
    sendJson(res, { ok: true });
  }

  /** The task info to count, from the node (never from the body); REFUSED once the refusal was answered. */
  private async verify(uuid: string, route: RouteEntry, url: URL, body: unknown, res: http.ServerResponse): Promise<unknown> {
    const { d } = this;
    const node = route.node;
    if (node.isAutoSpawned()) {
      const asr = d.autoscaler;
      if (!asr || !asr.verifySecret(node, url.searchParams.get('secret') ?? '')) {
        d.logger.warn(`Refused /commit for task ${uuid}: wrong or missing secret`);
        sendJson(res, { error: 'Unauthorized /commit request' }, 403);
        return REFUSED;
      }
      const taskInfo = await asr.finishTask(uuid, node, route.token, body);
      asr.scheduleCleanup(node);
      return taskInfo;
    }
    let taskInfo: unknown;
    try {
      taskInfo = await d.client.getJson(node, `/task/${uuid}/info`);
    } catch (e: unknown) {
      d.logger.warn(`Refused /commit for task ${uuid}: cannot read it from ${node.name}: ${errorMessage(e)}`);
      sendJson(res, { error: 'Cannot verify the task with its node' }, 403);
      return REFUSED;
    }
    const code = (taskInfo as { status?: { code?: unknown } } | null)?.status?.code;
    if (typeof code !== 'number' || !isFinalStatus(code)) {
      d.logger.warn(`Refused /commit for task ${uuid}: ${node.name} says it is not done`);
      sendJson(res, { error: 'Task is not done' }, 403);
      return REFUSED;
    }
    return taskInfo;
  }
}

const REFUSED: unique symbol = Symbol('refused');
