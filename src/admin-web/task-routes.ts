import { Router, type Request, type Response } from 'express';
import type { Logger } from '../core';
import { errorMessage, isRecord, mapLimit } from '../core';
import type { NodeClient } from '../nodeodm';
import type { ClusterNode, NodeRegistry } from '../nodes';
import type { TaskOps } from '../ops';
import type { LocalTasks } from '../proxy/local-tasks';
import type { RouteTable, TaskEntry, TaskTable } from '../routing';
import { bodyOf, field } from './http-util';
import { PageSelector, parsePageRequest } from './paging';

/** Node calls in flight at once while filling a page (at most 200 rows). */
export const PAGE_INFO_CONCURRENCY = 10;
/** Task names learnt from nodes, so `q` can match routed tasks by name once they have been shown. */
const MAX_CACHED_NAMES = 10_000;

export interface TaskRoutesDeps {
  taskOps: TaskOps;
  registry: NodeRegistry;
  routes: RouteTable;
  tasks: TaskTable;
  local: LocalTasks;
  /** Reads task info from nodes; its timeout bounds a page's wait for a slow node. */
  client: NodeClient;
  logger: Logger;
}

export interface TaskRow {
  uuid: string;
  name: string;
  node: string | null;
  status: number | null;
  progress: number | null;
  imagesCount: number | null;
  dateCreated: number | null;
  where: 'node' | 'local';
  /** A queued task (waiting for a processing node): how many tasks are ahead of it. */
  ahead?: number;
}

/** A listed task before its page is chosen: only what ranking and filtering need, no node call yet. */
type Candidate = { uuid: string; accessed: number; node: ClusterNode } | { uuid: string; accessed: number; entry: Readonly<TaskEntry> };

/** Newest accessed first; uuid breaks ties so that the order is total and pages are stable. */
function ranks(a: Candidate, b: Candidate): boolean {
  return a.accessed !== b.accessed ? a.accessed > b.accessed : a.uuid < b.uuid;
}

/** A bounded uuid → name map; the oldest name goes first. */
class NameCache {
  private readonly names = new Map<string, string>();

  get(uuid: string): string | undefined {
    return this.names.get(uuid);
  }

  set(uuid: string, name: string): void {
    this.names.delete(uuid);
    this.names.set(uuid, name);
    if (this.names.size > MAX_CACHED_NAMES) {
      const oldest = this.names.keys().next();
      if (!oldest.done) this.names.delete(oldest.value);
    }
  }

  delete(uuid: string): void {
    this.names.delete(uuid);
  }
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function matches(q: string, uuid: string, name: string | undefined): boolean {
  return q === '' || uuid.toLowerCase().includes(q) || (name !== undefined && name.toLowerCase().includes(q));
}

/** The fields of a node's /task/<uuid>/info answer; nulls when it failed or is an `{error}`. */
function fromNodeInfo(info: unknown): Omit<TaskRow, 'uuid' | 'node' | 'where'> & { known: boolean } {
  if (!isRecord(info) || 'error' in info) {
    return { known: false, name: '', status: null, progress: null, imagesCount: null, dateCreated: null };
  }
  const status = info['status'];
  return {
    known: true,
    name: typeof info['name'] === 'string' ? info['name'] : '',
    status: isRecord(status) ? num(status['code']) : null,
    progress: num(info['progress']),
    imagesCount: num(info['imagesCount']),
    dateCreated: num(info['dateCreated']),
  };
}

/** GET /r/tasks, /r/task/cancel and /r/task/remove. */
class TaskApi {
  private readonly names = new NameCache();

  constructor(private readonly d: TaskRoutesDeps) {}

  /**
   * Every routed task, then every local one that is complete enough to list (not uploading, not also routed). The
   * page refreshes every few seconds and the proxy shares this event loop, so routes are scanned in place: without
   * a search text, a route older than the page's worst row is only counted (with 1,000,000 routes: ~1.3 s per
   * page when every route became a candidate object).
   */
  private select(q: string, offset: number, limit: number): { total: number; page: Candidate[] } {
    const sel = new PageSelector<Candidate>(offset, limit, ranks);
    this.d.routes.scan(
      (_node, accessed) => {
        const worst = q === '' ? sel.worst() : undefined;
        if (worst === undefined || accessed >= worst.accessed) return true;
        sel.countRuledOut();
        return false;
      },
      (uuid, node, accessed) => {
        if (matches(q, uuid, this.names.get(uuid))) sel.offer({ uuid, accessed, node });
      },
    );
    for (const entry of this.d.tasks.entries()) {
      if (entry.phase === 'uploading' || this.d.routes.has(entry.uuid)) continue;
      if (matches(q, entry.uuid, entry.taskInfo.name)) sel.offer({ uuid: entry.uuid, accessed: entry.accessed, entry });
    }
    return { total: sel.total, page: sel.page() };
  }

  async list(req: Request, res: Response): Promise<void> {
    const { offset, limit, q } = parsePageRequest(req);
    await this.d.routes.loaded();
    const { total, page } = this.select(q, offset, limit);
    // Names of registered nodes by key: a local task records its target node only by key.
    const nodeNames = new Map(this.d.registry.list().map((n) => [n.key, n.name]));
    const tasks = await mapLimit(page, PAGE_INFO_CONCURRENCY, (c) =>
      'node' in c ? this.routedRow(c.uuid, c.node) : Promise.resolve(localRow(c.entry, nodeNames, this.d.tasks.queuedAhead(c.uuid))),
    );
    res.json({ total, offset, limit, tasks });
  }

  /**
   * Asks the node directly rather than through TaskOps.info: that one counts as an access of the route, which
   * would reorder the list (newest accessed first) each time a page is looked at.
   */
  private async routedRow(uuid: string, node: ClusterNode): Promise<TaskRow> {
    let info: unknown;
    try {
      info = await this.d.client.getJson(node, `/task/${encodeURIComponent(uuid)}/info`);
    } catch (e: unknown) {
      this.d.logger.debug(`Admin web cannot get info of task ${uuid} from ${node.name}: ${errorMessage(e)}`);
      info = null;
    }
    const { known, ...fields } = fromNodeInfo(info);
    if (known) this.names.set(uuid, fields.name);
    return { uuid, ...fields, name: known ? fields.name : (this.names.get(uuid) ?? ''), node: node.name, where: 'node' };
  }

  /** Cancel or remove: on the task's node if it has a route, else in the local table. */
  async act(action: 'cancel' | 'remove', req: Request, res: Response): Promise<void> {
    const uuid = field(bodyOf(req), 'uuid');
    if (typeof uuid !== 'string' || uuid === '') {
      res.json({ error: 'Unknown task' });
      return;
    }
    await this.d.routes.fetch(uuid);
    if (this.d.routes.has(uuid)) {
      const answer = await (action === 'cancel' ? this.d.taskOps.cancel(uuid) : this.d.taskOps.remove(uuid));
      if (answer !== null) {
        if (action === 'remove' && isRecord(answer) && answer['success'] === true) await this.forgetRoute(uuid);
        res.json(answer);
        return;
      }
    }
    if (this.d.local.has(uuid)) {
      res.json(await this.actLocally(action, uuid));
      return;
    }
    res.json({ error: 'Unknown task' });
  }

  /** As the proxy's /task/remove: a task its node removed keeps no route (the original kept it for days). */
  private async forgetRoute(uuid: string): Promise<void> {
    this.names.delete(uuid);
    await this.d.routes
      .remove(uuid)
      .catch((e: unknown) => this.d.logger.error(`Cannot remove route ${uuid}: ${errorMessage(e)}`));
  }

  private async actLocally(action: 'cancel' | 'remove', uuid: string): Promise<unknown> {
    try {
      if (action === 'cancel') await this.d.local.cancel(uuid);
      else await this.d.local.remove(uuid);
      this.d.logger.info(`Task ${uuid} ${action === 'cancel' ? 'canceled' : 'removed'} via the admin web`);
      return { success: true };
    } catch (e: unknown) {
      this.d.logger.error(`Admin web cannot ${action} task ${uuid}: ${errorMessage(e)}`);
      return { error: errorMessage(e) };
    }
  }
}

/** A task ClusterODM holds itself: everything is in its table entry (read without counting as an access). */
function localRow(e: Readonly<TaskEntry>, nodeNames: ReadonlyMap<string, string>, ahead: number | null): TaskRow {
  const info = e.taskInfo;
  return {
    ...(ahead !== null ? { ahead } : {}),
    uuid: e.uuid,
    name: info.name,
    node: e.nodeKey === undefined ? null : (nodeNames.get(e.nodeKey) ?? e.nodeKey),
    status: info.status.code,
    progress: num(info.progress),
    imagesCount: info.imagesCount,
    dateCreated: info.dateCreated,
    where: 'local',
  };
}

export function taskRoutes(deps: TaskRoutesDeps): Router {
  const api = new TaskApi(deps);
  const router = Router();
  router.get('/tasks', (req, res) => api.list(req, res));
  router.post('/task/cancel', (req, res) => api.act('cancel', req, res));
  router.post('/task/remove', (req, res) => api.act('remove', req, res));
  return router;
}
