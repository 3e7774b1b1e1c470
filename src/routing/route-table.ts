import type { Clock, Logger, TimerHandle } from '../core';
import { errorMessage } from '../core';
import type { ClusterNode, NodeRegistry } from '../nodes';
import { RouteMap } from './route-map';

/** Routes not accessed for this long are dropped (as the original). */
export const ROUTE_EXPIRY_MS = 5 * 24 * 60 * 60 * 1000;

export interface RouteEntry {
  readonly node: ClusterNode;
  /** The user token that created the task (undefined when the user sent none). */
  readonly token: string | undefined;
  accessed: number;
}

/** A route as read from disk, before its node is resolved. */
export interface StoredRoute {
  /** nodeKey(hostname, port): how the route finds its node. */
  nodeKey: string;
  token: string | undefined;
  accessed: number;
}

/** Routes another instance added, changed (access time) or removed (shared state). */
export type RemoteRouteChange = { op: 'put'; routes: Array<[string, StoredRoute]> } | { op: 'del'; uuids: string[] };

/** A table read after start (shared stores): every route in batches, and one route on demand meanwhile. */
export interface LazyRoutes {
  batches(): AsyncIterable<Array<[string, StoredRoute]>>;
  /** One route as stored now (null: none), for a lookup the background fill has not reached yet. */
  get(uuid: string): Promise<StoredRoute | null>;
}

/** Persistence of the route table (routes.json + journal, see route-store.ts; or shared, see shared-route-store.ts). */
export interface RouteStore {
  /** Loads every route, resolving nodes with `resolve`; routes whose node is unknown come back in `dropped`. */
  load(resolve: (nodeKey: string) => ClusterNode | undefined): Promise<{ routes: RouteMap; dropped: string[] }>;
  /** Lets the store snapshot the live table when it compacts. */
  setEntriesSource(src: () => Iterable<[string, RouteEntry]>): void;
  put(uuid: string, entry: RouteEntry): Promise<void>;
  delete(uuids: string[]): Promise<void>;
  touch(uuid: string, accessed: number, entry?: RouteEntry): void;
  flush(entries: () => Iterable<[string, RouteEntry]>): Promise<void>;
  /**
   * Shared stores: prepares the table (an import on the first start) and hands it over to be read in the
   * background after start (see RouteTable.load); load() is then not used.
   */
  openLazy?(resolve: (nodeKey: string) => ClusterNode | undefined): Promise<LazyRoutes>;
  /** Shared stores only: changes other instances made, applied to this instance's table as they come. */
  onRemoteChange?(listener: (change: RemoteRouteChange) => void): void;
}

/** Keys the compact base of a RouteMap takes as bytes: printable ASCII (every uuid). */
const PLAIN_KEY = /^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/;

/** Pause before a failed background read of a shared table starts over. */
const FILL_RETRY_MS = 5000;

/** Remote routes kept while their node is not known here yet (see RouteTable.unresolved). */
const MAX_UNRESOLVED = 10_000;

/** task uuid → node and owner token. */
export class RouteTable {
  private routes = new RouteMap();
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly store: RouteStore;

  constructor(opts: { store: RouteStore; clock: Clock; logger: Logger }) {
    this.store = opts.store;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.store.setEntriesSource(() => this.routes.entries());
    this.store.onRemoteChange?.((c) => this.applyRemote(c));
  }

  /**
   * While a lazy table is being read in the background: the table being filled (the compact base), the routes
   * deleted meanwhile (the fill must not bring them back), and the reader for lookups the fill has not reached.
   * `this.routes` meanwhile holds what was looked up, added or changed since start; it wins when they merge.
   */
  private fill: { into: RouteMap; deleted: Set<string>; lazy: LazyRoutes } | null = null;
  private filled: Promise<void> = Promise.resolve();

  /** Until load() is done, remote changes wait here (the load would replace what they changed). */
  private pendingRemote: RemoteRouteChange[] | null = [];
  private resolveNode: (nodeKey: string) => ClusterNode | undefined = () => undefined;
  /**
   * Remote routes whose node this instance has not merged yet (the node list is reloaded with a round trip, the
   * route came with its notification): resolved when asked for. Bounded; the oldest go first.
   */
  private readonly unresolved = new Map<string, StoredRoute>();

  /** The route of `uuid`, taking in a remote one whose node has arrived since. */
  private get(uuid: string): RouteEntry | undefined {
    const r = this.routes.get(uuid);
    if (r || this.unresolved.size === 0) return r;
    const waiting = this.unresolved.get(uuid);
    const node = waiting ? this.resolveNode(waiting.nodeKey) : undefined;
    if (!waiting || !node) return undefined;
    this.unresolved.delete(uuid);
    const entry: RouteEntry = { node, token: waiting.token, accessed: waiting.accessed };
    this.routes.set(uuid, entry);
    return entry;
  }

  private applyRemote(c: RemoteRouteChange): void {
    if (this.pendingRemote) {
      this.pendingRemote.push(c);
      return;
    }
    if (c.op === 'del') {
      for (const uuid of c.uuids) {
        this.routes.delete(uuid);
        this.unresolved.delete(uuid);
        this.fill?.deleted.add(uuid);
      }
      return;
    }
    for (const [uuid] of c.routes) this.fill?.deleted.delete(uuid);
    for (const [uuid, r] of c.routes) {
      const cur = this.routes.get(uuid);
      if (cur && cur.node.key === r.nodeKey) {
        cur.accessed = Math.max(cur.accessed, r.accessed);
        continue;
      }
      const node = this.resolveNode(r.nodeKey);
      if (node) this.routes.set(uuid, { node, token: r.token, accessed: r.accessed });
      else {
        this.unresolved.set(uuid, r);
        if (this.unresolved.size > MAX_UNRESOLVED) {
          const oldest = this.unresolved.keys().next();
          if (!oldest.done) this.unresolved.delete(oldest.value);
        }
      }
    }
  }

  /** Loads routes, resolving each to a registered node (by host and port); routes of unknown nodes are dropped. */
  async load(registry: NodeRegistry): Promise<number> {
    const byKey = new Map(registry.list().map((n) => [n.key, n]));
    if (this.store.openLazy) return this.loadLazily(registry, await this.store.openLazy((key) => byKey.get(key)));
    const { routes, dropped } = await this.store.load((key) => byKey.get(key));
    this.routes = routes;
    // Later changes from other instances find their node in the registry as it is then.
    this.resolveNode = (key) => registry.list().find((n) => n.key === key);
    const pending = this.pendingRemote ?? [];
    this.pendingRemote = null;
    for (const c of pending) this.applyRemote(c);
    if (dropped.length > 0) await this.store.delete(dropped);
    await this.expire();
    this.logger.info(`Loaded ${this.routes.size} routes`);
    return this.routes.size;
  }

  /**
   * A shared table is read after start, in the background, so an instance starts in well under a second with
   * millions of routes. Until the fill is done, a lookup it has not reached yet is read on demand (fetch()),
   * and whatever needs every route waits for loaded().
   */
  private async loadLazily(registry: NodeRegistry, lazy: LazyRoutes): Promise<number> {
    this.routes = new RouteMap();
    this.resolveNode = (key) => registry.list().find((n) => n.key === key);
    this.fill = { into: new RouteMap(), deleted: new Set(), lazy };
    const pending = this.pendingRemote ?? [];
    this.pendingRemote = null;
    for (const c of pending) this.applyRemote(c);
    // Started by readInBackground() (the daemon calls it once every listener is up): reading millions of routes
    // must not slow the start down.
    let begin: () => void = () => undefined;
    const begun = new Promise<void>((resolve) => (begin = resolve));
    this.filled = begun.then(() => this.fillUntilDone(registry));
    this.startFill = () => {
      this.startFill = null;
      begin();
    };
    return 0;
  }

  private startFill: (() => void) | null = null;

  /** Set by flush() (shutdown): a fill still running or waiting to retry gives up. */
  private stopping = false;
  private retryTimer: TimerHandle | null = null;

  /** A fill that fails (Redis went away) starts over after a pause; lookups meanwhile read routes one by one. */
  private async fillUntilDone(registry: NodeRegistry): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.fillInBackground(registry);
        return;
      } catch (e: unknown) {
        if (this.stopping) return;
        this.logger.error(`Cannot read the shared routes (attempt ${attempt}): ${errorMessage(e)}; trying again in ${FILL_RETRY_MS / 1000} s`);
        if (this.fill) this.fill.into = new RouteMap();
        await new Promise<void>((resolve) => {
          this.retryTimer = this.clock.setTimeout(resolve, FILL_RETRY_MS);
        });
        this.retryTimer = null;
        if (this.stopping) return;
      }
    }
  }

  private async fillInBackground(registry: NodeRegistry): Promise<void> {
    const fill = this.fill;
    if (!fill) return;
    const started = this.clock.now();
    const dropped: string[] = [];
    let byKey = new Map(registry.list().map((n) => [n.key, n]));
    for await (const batch of fill.lazy.batches()) {
      if (this.stopping) return;
      for (const [uuid, r] of batch) {
        let node = byKey.get(r.nodeKey);
        if (!node) {
          byKey = new Map(registry.list().map((n) => [n.key, n]));
          node = byKey.get(r.nodeKey);
        }
        if (!node) dropped.push(uuid);
        else if (PLAIN_KEY.test(uuid)) {
          // Into the compact base (no object per route): a million routes take ~100 MB less.
          const bytes = Buffer.from(uuid, 'latin1');
          fill.into.addBytes(bytes, 0, bytes.length, node, r.token, r.accessed);
        } else fill.into.set(uuid, { node, token: r.token, accessed: r.accessed });
      }
    }
    // What happened since start wins over what the fill read.
    for (const uuid of fill.deleted) fill.into.delete(uuid);
    for (const [uuid, entry] of this.routes) fill.into.set(uuid, entry);
    this.routes = fill.into;
    this.fill = null;
    const gone = dropped.filter((u) => !this.routes.has(u));
    if (gone.length > 0) await this.store.delete(gone);
    await this.expireNow();
    this.logger.info(`Loaded ${this.routes.size} routes (read in the background in ${this.clock.now() - started} ms)`);
  }

  /** Whether every route is in memory (false while a shared table is still being read after start). */
  complete(): boolean {
    return this.fill === null;
  }

  /** Resolves once every route is in memory (at once unless a shared table is still being read after start). */
  loaded(): Promise<void> {
    return this.filled;
  }

  /** Starts reading a shared table loaded lazily (once; nothing to do for a table read whole at load()). */
  readInBackground(): void {
    this.startFill?.();
  }

  /**
   * Before a lookup while the table is still being read: reads that route from the store. Null (nothing to wait
   * for) in steady state, so a lookup never costs a round trip once the table is in memory.
   */
  fetch(uuid: string): Promise<void> | null {
    const fill = this.fill;
    if (!fill || this.routes.has(uuid) || fill.deleted.has(uuid)) return null;
    return fill.lazy.get(uuid).then(
      (r) => {
        if (!r || this.fill !== fill || this.routes.has(uuid) || fill.deleted.has(uuid)) return;
        const node = this.resolveNode(r.nodeKey);
        if (node) this.routes.set(uuid, { node, token: r.token, accessed: r.accessed });
      },
      (e: unknown) => this.logger.warn(`Cannot read route ${uuid}: ${errorMessage(e)}`),
    );
  }

  size(): number {
    return this.routes.size;
  }

  has(uuid: string): boolean {
    return this.routes.has(uuid) || (this.unresolved.size > 0 && this.get(uuid) !== undefined);
  }

  /** Finds a route without counting it as an access. */
  peek(uuid: string): RouteEntry | undefined {
    return this.get(uuid);
  }

  /** Finds a route and refreshes its `accessed` time (persisted in batches). */
  lookup(uuid: string): RouteEntry | undefined {
    const r = this.get(uuid);
    if (r) {
      r.accessed = this.clock.now();
      this.store.touch(uuid, r.accessed, r);
    }
    return r;
  }

  async add(uuid: string, node: ClusterNode, token: string | undefined): Promise<void> {
    const entry: RouteEntry = { node, token: token || undefined, accessed: this.clock.now() };
    this.routes.set(uuid, entry);
    this.fill?.deleted.delete(uuid);
    await this.store.put(uuid, entry);
  }

  async remove(uuid: string): Promise<void> {
    const fill = this.fill;
    if (fill) {
      // Maybe not read yet: deleted from the store either way.
      this.routes.delete(uuid);
      fill.deleted.add(uuid);
      await this.store.delete([uuid]);
      return;
    }
    if (!this.routes.delete(uuid)) return;
    await this.store.delete([uuid]);
  }

  async removeByNode(node: ClusterNode): Promise<number> {
    await this.loaded();
    const gone = this.routes.keysWhere((n) => n === node);
    for (const uuid of gone) this.routes.delete(uuid);
    if (gone.length > 0) await this.store.delete(gone);
    return gone.length;
  }

  /** The routes in table order; with `node`, a copy of each of its routes, the others skipped by a scan unmade. */
  entries(node?: ClusterNode): Array<[string, RouteEntry]> {
    if (!node) return [...this.routes];
    const out: Array<[string, RouteEntry]> = [];
    this.routes.scan(
      (n) => n === node,
      (uuid, n, accessed, token) => out.push([uuid, { node: n, token, accessed }]),
    );
    return out;
  }

  /**
   * Every route for which `pred` holds, in table order, without an object per route (`pred` sees no uuid, so
   * ruling a route out there costs no string either): the admin web's task pages over millions of routes.
   */
  scan(
    pred: (node: ClusterNode, accessed: number, token: string | undefined) => boolean,
    found: (uuid: string, node: ClusterNode, accessed: number, token: string | undefined) => void,
  ): void {
    this.routes.scan(pred, found);
  }

  /**
   * The routes created with `token` ('' = without one), with their nodes: one pass over the table, no object per
   * route (the task list and the per-token task limit ask this on every call, with up to millions of routes).
   */
  ownedBy(token: string): Array<[string, ClusterNode]> {
    const out: Array<[string, ClusterNode]> = [];
    this.routes.scan(
      (_n, _a, t) => (t ?? '') === token,
      (uuid, node) => out.push([uuid, node]),
    );
    return out;
  }

  /** The uuids routed to each of `nodes`, in one pass (the autoscaler's vacuum). */
  uuidsByNode(nodes: ReadonlySet<ClusterNode>): Map<ClusterNode, string[]> {
    const out = new Map<ClusterNode, string[]>();
    if (nodes.size === 0) return out;
    this.routes.scan(
      (n) => nodes.has(n),
      (uuid, node) => {
        const list = out.get(node);
        if (list) list.push(uuid);
        else out.set(node, [uuid]);
      },
    );
    return out;
  }

  /** Drops routes idle for more than 5 days. */
  async expire(): Promise<number> {
    await this.loaded();
    return this.expireNow();
  }

  private async expireNow(): Promise<number> {
    const limit = this.clock.now() - ROUTE_EXPIRY_MS;
    const old = this.routes.keysWhere((_, accessed) => accessed < limit);
    for (const uuid of old) this.routes.delete(uuid);
    if (old.length > 0) {
      await this.store.delete(old);
      this.logger.info(`Expired ${old.length} routes`);
    }
    return old.length;
  }

  /** The routes in table order, without a copy (an export of millions). */
  entriesIterator(): Iterable<[string, RouteEntry]> {
    return this.routes.entries();
  }

  /** Writes everything (shutdown). A table still being read has nothing of its own to write but access times. */
  async flush(): Promise<void> {
    this.stopping = true;
    if (this.retryTimer) this.clock.clearTimeout(this.retryTimer);
    await this.store.flush(() => this.routes.entries());
  }
}

/** A route as shown to admins: node token masked, user token kept out (it is a secret too). */
export function routeToPublicJSON(r: RouteEntry): Record<string, unknown> {
  const out: Record<string, unknown> = { node: r.node.toPublicJSON(false) };
  if (r.token !== undefined) out['token'] = r.token ? '****' : '';
  out['accessed'] = r.accessed;
  return out;
}
