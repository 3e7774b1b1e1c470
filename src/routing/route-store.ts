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

/**
 * Fast path for large routes.json files (1,000,000 routes): a scanner for exactly what JSON.stringify writes (the
 * original's writer and ours): `"<uuid>":{"node":{...},"token":"...","accessed":N}` with token before or after
 * accessed, each distinct node object parsed once, and no intermediate objects per route. Anything unexpected
 * (whitespace, other keys, escapes in uuids) returns null and the generic JSON.parse path decides.
 */
export function parseRoutesText(text: string, resolve: NodeResolver): LoadedRoutes | null {
  const s = text.trim();
  const out: LoadedRoutes = { routes: new Map(), dropped: [] };
  if (s === '{}') return out;
  if (s.charCodeAt(0) !== 123 /* { */) return null;
  const nodes: Array<{ text: string; node: ClusterNode | undefined }> = [];
  let p = 1;
  for (;;) {
    // "<uuid>":{"node":
    if (s.charCodeAt(p) !== 34) return null;
    const uuidEnd = s.indexOf('"', p + 1);
    if (uuidEnd < 0) return null;
    const uuid = s.slice(p + 1, uuidEnd);
    if (uuid.includes('\\') || !s.startsWith(':{"node":{', uuidEnd + 1)) return null;
    p = uuidEnd + 10; // at the node's "{"
    const nodeEnd = closingBrace(s, p);
    if (nodeEnd < 0) return null;
    const known = knownNode(nodes, s, p, nodeEnd, uuid, resolve);
    p = nodeEnd + 1;
    let token: string | undefined;
    let accessed = NaN;
    for (let field = 0; field < 2 && s.charCodeAt(p) === 44; field++) {
      if (token === undefined && s.startsWith(',"token":"', p)) {
        const end = stringEnd(s, p + 10);
        if (end < 0) return null;
        const raw = s.slice(p + 10, end);
        token = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        p = end + 1;
      } else if (Number.isNaN(accessed) && s.startsWith(',"accessed":', p)) {
        const numEnd = numberEnd(s, p + 12);
        if (numEnd === p + 12) return null;
        accessed = Number(s.slice(p + 12, numEnd));
        p = numEnd;
      } else {
        return null;
      }
    }
    if (Number.isNaN(accessed) || s.charCodeAt(p) !== 125 /* } */) return null;
    if (known) out.routes.set(uuid, { node: known, token, accessed });
    else {
      out.routes.delete(uuid);
      out.dropped.push(uuid);
    }
    const sep = s.charCodeAt(p + 1);
    p += 2;
    if (sep === 125) return p === s.length ? out : null;
    if (sep !== 44) return null;
  }
}

/** The node of the object text s[start..end]; distinct node objects are few, so they are compared, not parsed. */
function knownNode(
  nodes: Array<{ text: string; node: ClusterNode | undefined }>,
  s: string,
  start: number,
  end: number,
  uuid: string,
  resolve: NodeResolver,
): ClusterNode | undefined {
  const len = end + 1 - start;
  for (const n of nodes) if (n.text.length === len && s.startsWith(n.text, start)) return n.node;
  const text = s.slice(start, end + 1);
  const key = parseStoredRoute({ node: JSON.parse(text) as unknown }, `route ${uuid}`).nodeKey;
  const entry = { text, node: resolve(key) };
  nodes.push(entry);
  return entry.node;
}

/** Index of the "}" closing the object opened at `start`, skipping strings; -1 if none. */
function closingBrace(s: string, start: number): number {
  let depth = 0;
  for (let i = start; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 34) {
      i = stringEnd(s, i + 1);
      if (i < 0) return -1;
    } else if (c === 123) depth++;
    else if (c === 125 && --depth === 0) return i;
  }
  return -1;
}

/** Index of the quote ending a JSON string whose content starts at `from`; -1 if none. */
function stringEnd(s: string, from: number): number {
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 92) i++;
    else if (c === 34) return i;
  }
  return -1;
}

function numberEnd(s: string, from: number): number {
  let i = from;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if ((c >= 48 && c <= 57) || c === 45 || c === 46 || c === 43 || c === 101 || c === 69) i++;
    else break;
  }
  return i;
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
