import type { Clock, Logger, TimerHandle } from '../core';
import { errorMessage, isRecord } from '../core';
import type { SharedTable, TableChange } from '../store';
import type { NodeResolver, LoadedRoutes } from './routes-file';
import { RouteMap } from './route-map';
import type { LazyRoutes, RemoteRouteChange, RouteEntry, RouteStore, StoredRoute } from './route-table';

/** Entries per HSCAN call of the background fill. */
const FILL_BATCH = 5000;

/** One route as stored in a shared table: `{"node":"host:port","token":"…","accessed":ms}` (token omitted if none). */
function encode(nodeKey: string, token: string | undefined, accessed: number): string {
  return JSON.stringify(token === undefined ? { node: nodeKey, accessed } : { node: nodeKey, token, accessed });
}

function decode(text: string): StoredRoute | null {
  let v: unknown;
  try {
    v = JSON.parse(text) as unknown;
  } catch {
    return null;
  }
  if (!isRecord(v) || typeof v['node'] !== 'string') return null;
  const token = typeof v['token'] === 'string' ? v['token'] : undefined;
  const accessed = typeof v['accessed'] === 'number' && Number.isFinite(v['accessed']) ? v['accessed'] : 0;
  return { nodeKey: v['node'], token, accessed };
}

/**
 * The route table kept in a table shared by instances (`--redis`): each route is one entry, so adding one is one
 * small write whatever the table size, and every instance applies the others' changes to its own copy as they
 * come (see RouteTable.applyRemote). `accessed` bumps are written in batches, as the file store does.
 */
export class SharedRouteStore implements RouteStore {
  private readonly table: SharedTable;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly touchFlushMs: number;
  /**
   * Routes looked up since the last flush, by uuid: the live entry itself (its `accessed` is the latest lookup),
   * encoded only when written. A lookup costs one Map.set, no string: task info at concurrency 1 is a few hundred
   * microseconds of CPU in all, and a JSON.stringify per request was a measurable part of the Redis mode's extra.
   */
  private pendingTouches = new Map<string, RouteEntry>();
  private touchTimer: TimerHandle | null = null;

  /** data/routes.json (and its journal), imported on the first start if the shared table never had an import. */
  private readonly importFrom: RouteStore | null;

  constructor(opts: { table: SharedTable; clock: Clock; logger: Logger; touchFlushMs?: number; importFrom?: RouteStore }) {
    this.table = opts.table;
    this.importFrom = opts.importFrom ?? null;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.touchFlushMs = opts.touchFlushMs ?? 60_000;
  }

  setEntriesSource(_src: () => Iterable<[string, RouteEntry]>): void {
    // Nothing to compact: every change is its own entry.
  }

  /**
   * Once per shared table: the routes of data/ are written in batches, then the table is marked imported (a start
   * that dies midway imports again; writing a route twice is harmless).
   */
  private async importOnce(resolve: NodeResolver): Promise<void> {
    if (!this.importFrom || (await this.table.imported())) return;
    const { routes, dropped } = await this.importFrom.load(resolve);
    let batch: Array<[string, string]> = [];
    let count = 0;
    for (const [uuid, r] of routes) {
      batch.push([uuid, encode(r.node.key, r.token, r.accessed)]);
      if (batch.length >= 50_000) {
        await this.table.importEntries(batch);
        count += batch.length;
        batch = [];
      }
    }
    await this.table.importEntries(batch);
    count += batch.length;
    await this.importFrom.flush(() => routes.entries());
    await this.table.markImported();
    this.logger.info(`Imported ${count} routes from data/routes.json into the shared state${dropped.length ? ` (${dropped.length} of unknown nodes left out)` : ''}`);
  }

  /** Imports data/ on the first start, then lets the table be read after start (RouteTable.load). */
  async openLazy(resolve: NodeResolver): Promise<LazyRoutes> {
    await this.importOnce(resolve);
    this.touchTimer ??= this.clock.setInterval(() => void this.flushTouches(), this.touchFlushMs);
    const table = this.table;
    return {
      async *batches(): AsyncIterable<Array<[string, StoredRoute]>> {
        for await (const batch of table.scan(FILL_BATCH)) {
          const out: Array<[string, StoredRoute]> = [];
          for (const [uuid, text] of batch) {
            const r = decode(text);
            if (r) out.push([uuid, r]);
          }
          yield out;
        }
      },
      get: async (uuid: string): Promise<StoredRoute | null> => {
        const text = await table.get(uuid);
        return text === null ? null : decode(text);
      },
    };
  }

  async load(resolve: NodeResolver): Promise<LoadedRoutes> {
    await this.importOnce(resolve);
    const out: LoadedRoutes = { routes: new RouteMap(), dropped: [] };
    for await (const batch of this.table.scan()) {
      for (const [uuid, text] of batch) {
        const r = decode(text);
        const node = r ? resolve(r.nodeKey) : undefined;
        if (r && node) out.routes.set(uuid, { node, token: r.token, accessed: r.accessed });
        else out.dropped.push(uuid);
      }
    }
    this.touchTimer ??= this.clock.setInterval(() => void this.flushTouches(), this.touchFlushMs);
    return out;
  }

  put(uuid: string, entry: RouteEntry): Promise<void> {
    this.pendingTouches.delete(uuid);
    return this.table.put([[uuid, encode(entry.node.key, entry.token, entry.accessed)]]);
  }

  delete(uuids: string[]): Promise<void> {
    for (const u of uuids) this.pendingTouches.delete(u);
    return this.table.delete(uuids);
  }

  touch(uuid: string, _accessed: number, entry?: RouteEntry): void {
    // RouteTable.lookup sets entry.accessed to `accessed` before calling this.
    if (entry) this.pendingTouches.set(uuid, entry);
  }

  private async flushTouches(): Promise<void> {
    if (this.pendingTouches.size === 0) return;
    const entries: Array<[string, string]> = [];
    for (const [uuid, e] of this.pendingTouches) entries.push([uuid, encode(e.node.key, e.token, e.accessed)]);
    this.pendingTouches = new Map();
    await this.table.put(entries).catch((e: unknown) => this.logger.warn(`Cannot save route access times: ${errorMessage(e)}`));
  }

  onRemoteChange(listener: (c: RemoteRouteChange) => void): void {
    this.table.onRemoteChange((c: TableChange) => {
      if (c.op === 'del') {
        // A pending access-time write would bring the route back.
        for (const u of c.keys) this.pendingTouches.delete(u);
        listener({ op: 'del', uuids: c.keys });
        return;
      }
      const routes: Array<[string, StoredRoute]> = [];
      for (const [uuid, text] of c.entries) {
        const r = decode(text);
        if (r) routes.push([uuid, r]);
      }
      listener({ op: 'put', routes });
    });
  }

  async flush(_entries: () => Iterable<[string, RouteEntry]>): Promise<void> {
    if (this.touchTimer) this.clock.clearInterval(this.touchTimer);
    this.touchTimer = null;
    await this.flushTouches();
  }
}
