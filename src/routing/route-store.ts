import * as fsp from 'node:fs/promises';
import type { Clock, Logger, TimerHandle } from '../core';
import { errorMessage } from '../core';
import { nodeKey, parseNodeRecord } from '../nodes';
import { isNotFound, JsonStateFile } from '../store';
import type { ClusterNode } from '../nodes';
import type { RouteEntry, RouteStore, StoredRoute } from './route-table';


type JournalLine =
  | { op: 'put'; uuid: string; node: Record<string, unknown>; token?: string; accessed: number }
  | { op: 'del'; uuids: string[] }
  | { op: 'touch'; at: Array<[string, number]> };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseStoredRoute(v: unknown, where: string): StoredRoute {
  if (!isRecord(v)) throw new Error(`${where} is not an object`);
  const node = parseNodeRecord(v['node'], `${where}.node`);
  const token = v['token'];
  if (token !== undefined && typeof token !== 'string') throw new Error(`${where}.token is not a string`);
  const accessed = typeof v['accessed'] === 'number' && Number.isFinite(v['accessed']) ? v['accessed'] : 0;
  return { nodeKey: nodeKey(node.hostname, node.port), token, accessed };
}

/** Routes as loaded: each resolved to a registered node; routes whose node is gone are listed in `dropped`. */
export interface LoadedRoutes {
  routes: Map<string, RouteEntry>;
  dropped: string[];
}

/** Finds the registered node of a nodeKey. */
export type NodeResolver = (nodeKey: string) => ClusterNode | undefined;

function addRoute(out: LoadedRoutes, uuid: string, r: StoredRoute, resolve: NodeResolver): void {
  const node = resolve(r.nodeKey);
  if (node) out.routes.set(uuid, { node, token: r.token, accessed: r.accessed });
  else {
    out.routes.delete(uuid);
    out.dropped.push(uuid);
  }
}

/** routes.json in the original format: `{"<uuid>": {"node": {...}, "token": "...", "accessed": ms}}`. */
export function parseRoutesFile(raw: unknown, resolve: NodeResolver): LoadedRoutes {
  if (!isRecord(raw)) throw new Error('routes.json is not a JSON object');
  const out: LoadedRoutes = { routes: new Map(), dropped: [] };
  for (const [uuid, v] of Object.entries(raw)) addRoute(out, uuid, parseStoredRoute(v, `route ${uuid}`), resolve);
  return out;
}

const TOKEN = '"((?:[^"\\\\]|\\\\.)*)"';
/**
 * One route as JSON.stringify writes it (the original's writer and ours): node (one level of nesting for
 * dockerMachine), then token and accessed in either order.
 */
const ROUTE_ENTRY = new RegExp(
  `"([^"\\\\]+)":\\{"node":(\\{(?:[^{}]|\\{[^{}]*\\})*\\})(?:,"token":${TOKEN})?,"accessed":(-?\\d+(?:\\.\\d+)?)(?:,"token":${TOKEN})?\\}([,}])`,
  'y',
);

/**
 * Fast path for large routes.json files (1,000,000 routes): one sticky regex over the text, with each distinct node
 * object parsed once, instead of materialising the whole document. Anything unexpected (whitespace, other key
 * orders, escapes in uuids) returns null and the generic JSON.parse path decides.
 */
export function parseRoutesText(text: string, resolve: NodeResolver): LoadedRoutes | null {
  const body = text.trim();
  const out: LoadedRoutes = { routes: new Map(), dropped: [] };
  if (body === '{}') return out;
  if (!body.startsWith('{"')) return null;
  const nodes = new Map<string, { key: string; node: ClusterNode | undefined }>();
  ROUTE_ENTRY.lastIndex = 1;
  for (;;) {
    const m = ROUTE_ENTRY.exec(body);
    if (!m) return null;
    const [, uuid = '', nodeText = '', tokenA, accessed = '0', tokenB, end] = m;
    let node = nodes.get(nodeText);
    if (!node) {
      const key = parseStoredRoute({ node: JSON.parse(nodeText) as unknown }, `route ${uuid}`).nodeKey;
      node = { key, node: resolve(key) };
      nodes.set(nodeText, node);
    }
    const tokenText = tokenA ?? tokenB;
    const token = tokenText === undefined ? undefined : tokenText.includes('\\') ? (JSON.parse(`"${tokenText}"`) as string) : tokenText;
    if (node.node) out.routes.set(uuid, { node: node.node, token, accessed: Number(accessed) });
    else {
      out.routes.delete(uuid);
      out.dropped.push(uuid);
    }
    if (end === '}') return ROUTE_ENTRY.lastIndex === body.length ? out : null;
  }
}

function routeToFileJSON(r: RouteEntry): Record<string, unknown> {
  const o: Record<string, unknown> = { node: r.node.toJSON() };
  if (r.token !== undefined) o['token'] = r.token;
  o['accessed'] = r.accessed;
  return o;
}

export interface FileRouteStoreOptions {
  file: string;
  clock: Clock;
  logger: Logger;
  /** Compact the journal into routes.json once it holds this many lines. */
  compactAfter?: number;
  /** How often `accessed` bumps are written (batched). */
  touchFlushMs?: number;
}

/**
 * routes.json plus an append-only journal (`routes.json.journal`, one JSON line per change, fsynced), so adding
 * a route costs one small append whatever the table size. The journal is compacted into routes.json (atomic
 * write) in the background; a journal being compacted is renamed `.journal.old` and replayed at load until the
 * new routes.json is durable. Replaying is idempotent, so a crash at any point loses no acknowledged change.
 */
export class FileRouteStore implements RouteStore {
  private readonly opts: Required<FileRouteStoreOptions>;
  private readonly snapshot: JsonStateFile<LoadedRoutes>;
  /** Set for the duration of load(): how stored routes find their nodes. */
  private resolve: NodeResolver = () => undefined;
  private queue: Promise<void> = Promise.resolve();
  private journalLines = 0;
  private pendingTouches = new Map<string, number>();
  private touchTimer: TimerHandle | null = null;
  private compacting = false;
  private entriesSource: (() => Iterable<[string, RouteEntry]>) | null = null;

  constructor(opts: FileRouteStoreOptions) {
    this.opts = { compactAfter: 10_000, touchFlushMs: 60_000, ...opts };
    this.snapshot = new JsonStateFile({
      file: opts.file,
      parse: (raw) => parseRoutesFile(raw, this.resolve),
      parseText: (text) => parseRoutesText(text, this.resolve),
      logger: opts.logger,
      clock: opts.clock,
    });
  }

  private get journal(): string {
    return `${this.opts.file}.journal`;
  }

  private get oldJournal(): string {
    return `${this.opts.file}.journal.old`;
  }

  setEntriesSource(src: () => Iterable<[string, RouteEntry]>): void {
    this.entriesSource = src;
  }

  async load(resolve: NodeResolver): Promise<LoadedRoutes> {
    this.resolve = resolve;
    try {
      const loaded = (await this.snapshot.load()) ?? { routes: new Map<string, RouteEntry>(), dropped: [] };
      await this.replay(this.oldJournal, loaded);
      this.journalLines = await this.replay(this.journal, loaded);
      this.touchTimer = this.opts.clock.setInterval(() => void this.flushTouches(), this.opts.touchFlushMs);
      return loaded;
    } finally {
      this.resolve = () => undefined;
    }
  }

  private async replay(file: string, routes: LoadedRoutes): Promise<number> {
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (e: unknown) {
      if (isNotFound(e)) return 0;
      throw e;
    }
    const lines = text.split('\n');
    let count = 0;
    for (const [i, line] of lines.entries()) {
      if (!line.trim()) continue;
      try {
        this.apply(JSON.parse(line) as unknown, routes);
        count++;
      } catch (e: unknown) {
        // A torn last line is what a crash mid-append leaves; anything else is worth an error.
        const last = i >= lines.length - 2;
        if (last) this.opts.logger.warn(`Ignoring an incomplete last line in ${file}`);
        else this.opts.logger.error(`Ignoring a bad line ${i + 1} in ${file}: ${errorMessage(e)}`);
      }
    }
    return count;
  }

  private apply(v: unknown, loaded: LoadedRoutes): void {
    if (!isRecord(v)) throw new Error('not an object');
    if (v['op'] === 'put' && typeof v['uuid'] === 'string') {
      addRoute(loaded, v['uuid'], parseStoredRoute(v, `journal route ${v['uuid']}`), this.resolve);
    } else if (v['op'] === 'del' && Array.isArray(v['uuids'])) {
      for (const u of v['uuids']) if (typeof u === 'string') loaded.routes.delete(u);
    } else if (v['op'] === 'touch' && Array.isArray(v['at'])) {
      for (const pair of v['at']) {
        if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'number') continue;
        const r = loaded.routes.get(pair[0]);
        if (r) r.accessed = pair[1];
      }
    } else {
      throw new Error('unknown journal entry');
    }
  }

  put(uuid: string, entry: RouteEntry): Promise<void> {
    const o = routeToFileJSON(entry);
    return this.append({ op: 'put', uuid, ...(o as { node: Record<string, unknown>; accessed: number }) });
  }

  delete(uuids: string[]): Promise<void> {
    for (const u of uuids) this.pendingTouches.delete(u);
    return this.append({ op: 'del', uuids });
  }

  touch(uuid: string, accessed: number): void {
    this.pendingTouches.set(uuid, accessed);
  }

  private flushTouches(): Promise<void> {
    if (this.pendingTouches.size === 0) return Promise.resolve();
    const at = [...this.pendingTouches];
    this.pendingTouches = new Map();
    return this.append({ op: 'touch', at }).catch(() => undefined);
  }

  /** Serialised appends: each change is one line, fsynced before the caller hears back. */
  private append(line: JournalLine): Promise<void> {
    const data = `${JSON.stringify(line)}\n`;
    const p = this.queue.then(async () => {
      const h = await fsp.open(this.journal, 'a', 0o600);
      try {
        await h.appendFile(data);
        await h.datasync();
      } finally {
        await h.close();
      }
      this.journalLines++;
    });
    this.queue = p.catch(() => undefined);
    void p.then(() => this.maybeCompact(), () => undefined);
    return p;
  }

  private maybeCompact(): void {
    if (this.compacting || this.journalLines < this.opts.compactAfter || !this.entriesSource) return;
    const src = this.entriesSource;
    this.compacting = true;
    this.compact(src)
      .catch((e: unknown) => this.opts.logger.error(`Cannot compact routes: ${errorMessage(e)}`))
      .finally(() => {
        this.compacting = false;
      });
  }

  /**
   * Folds the journal into routes.json. Inside the append queue: the journal is renamed `.old` and the snapshot
   * is taken in the same step, so later appends go to a fresh journal; `.old` is deleted once routes.json is durable.
   */
  private compact(entries: () => Iterable<[string, RouteEntry]>): Promise<void> {
    let text = '';
    const swapped = this.queue.then(async () => {
      try {
        await fsp.rename(this.journal, this.oldJournal);
      } catch (e: unknown) {
        if (!isNotFound(e)) throw e;
      }
      this.journalLines = 0;
      this.pendingTouches.clear();
      text = serializeRoutes(entries());
    });
    this.queue = swapped.catch(() => undefined);
    return swapped
      .then(() => this.snapshot.save(() => text))
      .then(() => fsp.unlink(this.oldJournal).catch(() => undefined));
  }

  /** Writes the whole table to routes.json and empties the journal (shutdown). */
  async flush(entries: () => Iterable<[string, RouteEntry]>): Promise<void> {
    if (this.touchTimer) this.opts.clock.clearInterval(this.touchTimer);
    this.touchTimer = null;
    await this.compact(entries);
  }
}

function serializeRoutes(entries: Iterable<[string, RouteEntry]>): string {
  const parts: string[] = [];
  for (const [uuid, r] of entries) parts.push(`${JSON.stringify(uuid)}:${JSON.stringify(routeToFileJSON(r))}`);
  return `{${parts.join(',')}}`;
}
