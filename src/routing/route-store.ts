import * as fsp from 'node:fs/promises';
import type { Clock, Logger, TimerHandle } from '../core';
import { errorMessage } from '../core';
import { nodeKey, parseNodeRecord } from '../nodes';
import { isNotFound, JsonStateFile } from '../store';
import type { ClusterNode } from '../nodes';
import { RouteMap } from './route-map';
import type { RouteEntry, RouteStore, StoredRoute } from './route-table';
import { isRecord } from '../core';


type JournalLine =
  | { op: 'put'; uuid: string; node: Record<string, unknown>; token?: string; accessed: number }
  | { op: 'del'; uuids: string[] }
  | { op: 'touch'; at: Array<[string, number]> };

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
  routes: RouteMap;
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
  const out: LoadedRoutes = { routes: new RouteMap(), dropped: [] };
  for (const [uuid, v] of Object.entries(raw)) addRoute(out, uuid, parseStoredRoute(v, `route ${uuid}`), resolve);
  return out;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN = 0x7b;
const CLOSE = 0x7d;
const NODE_PREFIX = Buffer.from(':{"node":');
const TOKEN_PREFIX = Buffer.from(',"token":"');
const ACCESSED_PREFIX = Buffer.from(',"accessed":');

/**
 * Fast path for large routes.json files (1,000,000 routes): a byte scanner for exactly what JSON.stringify writes
 * (the original's writer and ours): `"<uuid>":{"node":{...},"token":"...","accessed":N}`, token before or after
 * accessed. It works on the file's bytes, so no 100 MB string is built, and the uuid bytes go straight into the
 * RouteMap's compact base (no string or object per route). Each distinct node object is parsed once. Anything
 * unexpected (whitespace, other keys, non-ASCII or escaped uuids) returns null and the generic JSON.parse path
 * decides.
 */
export function parseRoutesBuffer(b: Buffer, resolve: NodeResolver): LoadedRoutes | null {
  // Room for one route per 90 bytes (JSON.stringify writes ~115 per route with a plain node), so the base rarely
  // regrows; trim() gives the slack back at the end.
  const estimate = Math.ceil(b.length / 90);
  const out: LoadedRoutes = { routes: new RouteMap({ count: estimate, keyBytes: estimate * 36 }), dropped: [] };
  let end = b.length;
  while (end > 0 && isSpace(b[end - 1] ?? 0)) end--;
  let p = 0;
  while (p < end && isSpace(b[p] ?? 0)) p++;
  if (b[p] !== OPEN || b[end - 1] !== CLOSE) return null;
  p++;
  if (p === end - 1) return out;
  const nodes: Array<{ bytes: Buffer; node: ClusterNode | undefined }> = [];
  for (;;) {
    if (b[p] !== QUOTE) return null;
    const uuidEnd = plainAsciiEnd(b, p + 1);
    if (uuidEnd < 0) return null;
    const keyFrom = p + 1;
    const keyTo = uuidEnd;
    p = uuidEnd + 1;
    if (!bytesAt(b, p, NODE_PREFIX)) return null;
    p += NODE_PREFIX.length;
    // Distinct node objects are few: the bytes of a known one right here are that object (a complete JSON object
    // ends where its bytes end), so most routes need no scan for the closing brace.
    let node: ClusterNode | undefined;
    let nodeEnd = -1;
    for (let k = 0; k < nodes.length; k++) {
      const n = nodes[k];
      if (n !== undefined && bytesAt(b, p, n.bytes)) {
        node = n.node;
        nodeEnd = p + n.bytes.length - 1;
        break;
      }
    }
    if (nodeEnd < 0) {
      nodeEnd = closingBrace(b, p);
      if (nodeEnd < 0) return null;
      node = knownNode(nodes, b, p, nodeEnd + 1, latin1(b, keyFrom, keyTo), resolve);
    }
    p = nodeEnd + 1;
    let token: string | undefined;
    let accessed: number | undefined;
    while (b[p] === COMMA) {
      if (token === undefined && bytesAt(b, p, TOKEN_PREFIX)) {
        const from = p + TOKEN_PREFIX.length;
        const to = stringEnd(b, from);
        if (to < 0) return null;
        const raw = b.toString('utf8', from, to);
        token = raw.includes('\\') ? (JSON.parse(`"${raw}"`) as string) : raw;
        p = to + 1;
      } else if (accessed === undefined && bytesAt(b, p, ACCESSED_PREFIX)) {
        const from = p + ACCESSED_PREFIX.length;
        const to = numberEnd(b, from);
        if (to === from) return null;
        accessed = readNumber(b, from, to);
        p = to;
      } else {
        return null;
      }
    }
    if (accessed === undefined || !Number.isFinite(accessed) || b[p] !== CLOSE) return null;
    if (node) out.routes.addBytes(b, keyFrom, keyTo, node, token, accessed);
    else {
      const uuid = latin1(b, keyFrom, keyTo);
      out.routes.delete(uuid);
      out.dropped.push(uuid);
    }
    p++;
    if (b[p] === CLOSE) {
      if (p !== end - 1) return null;
      out.routes.trim();
      return out;
    }
    if (b[p] !== COMMA) return null;
    p++;
  }
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

type Latin1Slicer = Buffer & { latin1Slice?: (start: number, end: number) => string };

/** b.toString('latin1', from, to) without its argument checks (1,000,000 calls at load), where Node has the binding. */
function latin1(b: Buffer, from: number, to: number): string {
  const slicer = b as Latin1Slicer;
  return typeof slicer.latin1Slice === 'function' ? slicer.latin1Slice(from, to) : b.toString('latin1', from, to);
}

/** Index of the quote ending a non-empty string of plain ASCII (no escapes) starting at `from`; -1 otherwise. */
function plainAsciiEnd(b: Buffer, from: number): number {
  const n = b.length;
  for (let i = from; i < n; i++) {
    const c = b[i] as number;
    if (c === QUOTE) return i > from ? i : -1;
    if (c >= 0x80 || c === BACKSLASH || c < 0x20) return -1;
  }
  return -1;
}

/** Plain loops: for a few dozen bytes they beat Buffer.compare, which crosses into C++ on every call. */
function bytesAt(b: Buffer, at: number, bytes: Buffer): boolean {
  if (at + bytes.length > b.length) return false;
  for (let i = 0; i < bytes.length; i++) if (b[at + i] !== bytes[i]) return false;
  return true;
}

/** The node of the object bytes b[start..end); distinct node objects are few, so they are compared, not parsed. */
function knownNode(
  nodes: Array<{ bytes: Buffer; node: ClusterNode | undefined }>,
  b: Buffer,
  start: number,
  end: number,
  uuid: string,
  resolve: NodeResolver,
): ClusterNode | undefined {
  const len = end - start;
  for (const n of nodes) if (n.bytes.length === len && bytesAt(b, start, n.bytes)) return n.node;
  const bytes = Buffer.from(b.subarray(start, end));
  const key = parseStoredRoute({ node: JSON.parse(bytes.toString('utf8')) as unknown }, `route ${uuid}`).nodeKey;
  const entry = { bytes, node: resolve(key) };
  nodes.push(entry);
  return entry.node;
}

/** Index of the "}" closing the object opened at `start`, skipping strings; -1 if none. */
function closingBrace(b: Buffer, start: number): number {
  let depth = 0;
  for (let i = start; i < b.length; i++) {
    const c = b[i];
    if (c === QUOTE) {
      i = stringEnd(b, i + 1);
      if (i < 0) return -1;
    } else if (c === OPEN) depth++;
    else if (c === CLOSE && --depth === 0) return i;
  }
  return -1;
}

/** Index of the quote ending a JSON string whose content starts at `from`; -1 if none. */
function stringEnd(b: Buffer, from: number): number {
  for (let i = from; i < b.length; i++) {
    const c = b[i];
    if (c === BACKSLASH) i++;
    else if (c === QUOTE) return i;
  }
  return -1;
}

/** A JSON number; whole numbers (what `accessed` always is) without building a string. */
function readNumber(b: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = b[i] ?? 0;
    if (c < 0x30 || c > 0x39) return Number(b.toString('latin1', from, to));
    n = n * 10 + (c - 0x30);
  }
  return n;
}

function numberEnd(b: Buffer, from: number): number {
  let i = from;
  for (;;) {
    const c = b[i] ?? 0;
    if ((c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x2b || c === 0x65 || c === 0x45) i++;
    else return i;
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
      parseBuffer: (buf) => parseRoutesBuffer(buf, this.resolve),
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
      const loaded = (await this.snapshot.load()) ?? { routes: new RouteMap(), dropped: [] };
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
    const swapped = this.queue.then(async () => {
      try {
        await fsp.rename(this.journal, this.oldJournal);
      } catch (e: unknown) {
        if (!isNotFound(e)) throw e;
      }
      this.journalLines = 0;
      this.pendingTouches.clear();
    });
    this.queue = swapped.catch(() => undefined);
    // Written in slices with the event loop free in between (1,000,000 routes took 2-4 s in one piece, during
    // which the proxy answered nothing). Routes changed meanwhile may or may not be in the slices, but each change
    // is also in the fresh journal, replayed on top at load (replay is idempotent), so nothing is lost.
    return swapped
      .then(() => this.snapshot.save(() => serializeRoutes(entries())))
      .then(() => fsp.unlink(this.oldJournal).catch(() => undefined));
  }

  /** Writes the whole table to routes.json and empties the journal (shutdown). */
  async flush(entries: () => Iterable<[string, RouteEntry]>): Promise<void> {
    if (this.touchTimer) this.opts.clock.clearInterval(this.touchTimer);
    this.touchTimer = null;
    await this.compact(entries);
  }
}

/** Routes per slice of a compaction: a few milliseconds of work between two turns of the event loop. */
const SLICE_ROUTES = 5000;

/**
 * routes.json, as JSON.stringify of the whole table would write it, in slices. Each node's JSON is built once per
 * compaction (1,000,000 routes share a handful of nodes).
 */
async function* serializeRoutes(entries: Iterable<[string, RouteEntry]>): AsyncGenerator<string> {
  const nodeJson = new Map<ClusterNode, string>();
  let parts: string[] = [];
  let first = true;
  yield '{';
  for (const [uuid, r] of entries) {
    let node = nodeJson.get(r.node);
    if (node === undefined) {
      node = JSON.stringify(r.node.toJSON());
      nodeJson.set(r.node, node);
    }
    const token = r.token !== undefined ? `,"token":${JSON.stringify(r.token)}` : '';
    parts.push(`${JSON.stringify(uuid)}:{"node":${node}${token},"accessed":${JSON.stringify(r.accessed)}}`);
    if (parts.length >= SLICE_ROUTES) {
      yield (first ? '' : ',') + parts.join(',');
      first = false;
      parts = [];
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }
  if (parts.length > 0) yield (first ? '' : ',') + parts.join(',');
  yield '}';
}
