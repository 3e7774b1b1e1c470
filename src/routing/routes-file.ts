import type { ClusterNode } from '../nodes';
import { nodeKey, parseNodeRecord } from '../nodes';
import { isRecord } from '../core';
import { RouteMap } from './route-map';
import type { RouteEntry, StoredRoute } from './route-table';

/**
 * routes.json, the format (the original's): `{"<uuid>": {"node": {...}, "token": "...", "accessed": ms}}`. Its
 * readers (a generic one and a byte scanner for 1,000,000 routes) and its sliced writer; the store that keeps
 * the file and its journal is route-store.ts.
 */
export function parseStoredRoute(v: unknown, where: string): StoredRoute {
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

export function addRoute(out: LoadedRoutes, uuid: string, r: StoredRoute, resolve: NodeResolver): void {
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

export function routeToFileJSON(r: RouteEntry): Record<string, unknown> {
  const o: Record<string, unknown> = { node: r.node.toJSON() };
  if (r.token !== undefined) o['token'] = r.token;
  o['accessed'] = r.accessed;
  return o;
}

/** Routes per slice of a compaction: a few milliseconds of work between two turns of the event loop. */
const SLICE_ROUTES = 5000;

/**
 * routes.json, as JSON.stringify of the whole table would write it, in slices. Each node's JSON is built once per
 * compaction (1,000,000 routes share a handful of nodes).
 */
export async function* serializeRoutes(entries: Iterable<[string, RouteEntry]>): AsyncGenerator<string> {
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
