import type { ClusterNode } from '../nodes';
import type { RouteEntry } from './route-table';

/**
 * uuid → route, with Map semantics (get/set/delete/has/size, iteration in insertion order, live iterators), built
 * for a routes.json of 1,000,000 routes.
 *
 * Routes read from routes.json by the fast reader go into a compact base: the uuid bytes in one byte array, the
 * node, `accessed` and token in typed arrays, and an open-addressing hash over the uuid bytes. No string, object
 * or Map entry is made per route at load (with a Map, 1,000,000 inserts and their strings and objects were about
 * half of a ~3 s load, and ~150 MiB of heap). A base route becomes a RouteEntry object when it is first read
 * (`get`), and that object is kept, so callers see one object per route, as with a Map. Routes added later live
 * in an ordinary Map after the base (a base route re-set keeps its place, as in a Map).
 */
export class RouteMap implements Iterable<[string, RouteEntry]> {
  // ---- the compact base
  private keyBytes = new Uint8Array(0);
  private keyUsed = 0;
  private keyStart = new Int32Array(0);
  private keyLen = new Int32Array(0);
  private nodeIdx = new Uint32Array(0);
  private accessedAt = new Float64Array(0);
  /** -1: no token; otherwise an index into `tokens`. */
  private tokenIdx = new Int32Array(0);
  private deleted = new Uint8Array(0);
  private baseCount = 0;
  private baseLive = 0;
  /** Hash slots: base index + 1, 0 = empty. */
  private slots = new Int32Array(0);
  private readonly nodes: ClusterNode[] = [];
  private readonly nodeIndex = new Map<ClusterNode, number>();
  private readonly tokens: string[] = [];
  private readonly tokenIndex = new Map<string, number>();
  /** Base routes read at least once: their RouteEntry objects. */
  private readonly promoted = new Map<number, RouteEntry>();
  /** Routes not in the base (added after load, or re-added after a delete). */
  private readonly extra = new Map<string, RouteEntry>();

  /** Room for about `count` base routes of `keyBytes` bytes of uuids in all (a hint; the base grows as needed). */
  constructor(hint: { count: number; keyBytes: number } = { count: 0, keyBytes: 0 }) {
    if (hint.count > 0) this.reserve(hint.count, hint.keyBytes);
  }

  get size(): number {
    return this.baseLive + this.extra.size;
  }

  /**
   * Adds a route whose uuid is the plain-ASCII bytes b[start..end) to the base (the fast reader). A uuid already
   * present gets the new values in its place, as Map.set would.
   */
  addBytes(b: Uint8Array, start: number, end: number, node: ClusterNode, token: string | undefined, accessed: number): void {
    const h = hashBytes(b, start, end);
    const i = this.findBytes(b, start, end, h);
    if (i >= 0 && this.deleted[i] === 0) {
      this.promoted.delete(i);
      this.writeFields(i, node, token, accessed);
      return;
    }
    if (i >= 0 || this.extra.size > 0) {
      // Deleted from the base before (a Map would put it at the end), or routes were set after the base: the base
      // only grows while it holds every route, so iteration order stays a Map's.
      this.extra.set(latin1String(b, start, end), { node, token, accessed });
      return;
    }
    this.appendBase(b, start, end, h, node, token, accessed);
  }

  /** Gives back the room a size hint reserved beyond the routes actually read (after a load). */
  trim(): void {
    const n = this.baseCount;
    if (this.keyStart.length === n && this.keyBytes.length === this.keyUsed) return;
    this.keyStart = this.keyStart.slice(0, n);
    this.keyLen = this.keyLen.slice(0, n);
    this.nodeIdx = this.nodeIdx.slice(0, n);
    this.accessedAt = this.accessedAt.slice(0, n);
    this.tokenIdx = this.tokenIdx.slice(0, n);
    this.deleted = this.deleted.slice(0, n);
    this.keyBytes = this.keyBytes.slice(0, this.keyUsed);
    let cap = 16;
    while (cap < n * 2) cap *= 2;
    if (cap < this.slots.length) this.rehash(cap);
  }

  get(uuid: string): RouteEntry | undefined {
    const i = this.findString(uuid);
    if (i >= 0 && this.deleted[i] === 0) {
      let r = this.promoted.get(i);
      if (!r) {
        r = this.materialize(i);
        this.promoted.set(i, r);
      }
      return r;
    }
    return this.extra.get(uuid);
  }

  has(uuid: string): boolean {
    const i = this.findString(uuid);
    return (i >= 0 && this.deleted[i] === 0) || this.extra.has(uuid);
  }

  set(uuid: string, entry: RouteEntry): this {
    const i = this.findString(uuid);
    if (i >= 0 && this.deleted[i] === 0) this.promoted.set(i, entry);
    else this.extra.set(uuid, entry);
    return this;
  }

  delete(uuid: string): boolean {
    const i = this.findString(uuid);
    if (i >= 0 && this.deleted[i] === 0) {
      this.deleted[i] = 1;
      this.promoted.delete(i);
      this.baseLive--;
      return true;
    }
    return this.extra.delete(uuid);
  }

  /** The uuids of routes for which `pred` holds, without making an object per route (expiry, node removal). */
  keysWhere(pred: (node: ClusterNode, accessed: number, token: string | undefined) => boolean): string[] {
    const out: string[] = [];
    this.scan(pred, (uuid) => out.push(uuid));
    return out;
  }

  /**
   * Calls `found` with the uuid, node, access time and token of each route for which `pred` (given the same but the
   * uuid) holds; no object per route, and no uuid string for a route `pred` rules out.
   */
  scan(
    pred: (node: ClusterNode, accessed: number, token: string | undefined) => boolean,
    found: (uuid: string, node: ClusterNode, accessed: number, token: string | undefined) => void,
  ): void {
    for (let i = 0; i < this.baseCount; i++) {
      if (this.deleted[i] !== 0) continue;
      const p = this.promoted.get(i);
      if (p) {
        if (pred(p.node, p.accessed, p.token)) found(this.keyString(i), p.node, p.accessed, p.token);
        continue;
      }
      const node = this.nodes[this.nodeIdx[i] ?? 0] as ClusterNode;
      const t = this.tokenIdx[i] ?? -1;
      const accessed = this.accessedAt[i] ?? 0;
      const token = t < 0 ? undefined : this.tokens[t];
      if (pred(node, accessed, token)) found(this.keyString(i), node, accessed, token);
    }
    for (const [uuid, r] of this.extra) if (pred(r.node, r.accessed, r.token)) found(uuid, r.node, r.accessed, r.token);
  }

  /** Live, as a Map's: routes deleted meanwhile are skipped, routes added meanwhile after the base are seen. */
  *entries(): IterableIterator<[string, RouteEntry]> {
    for (let i = 0; i < this.baseCount; i++) {
      if (this.deleted[i] !== 0) continue;
      yield [this.keyString(i), this.promoted.get(i) ?? this.materialize(i)];
    }
    yield* this.extra.entries();
  }

  *keys(): IterableIterator<string> {
    for (const [k] of this.entries()) yield k;
  }

  [Symbol.iterator](): IterableIterator<[string, RouteEntry]> {
    return this.entries();
  }

  // ---- internals

  private materialize(i: number): RouteEntry {
    const t = this.tokenIdx[i] ?? -1;
    return { node: this.nodes[this.nodeIdx[i] ?? 0] as ClusterNode, token: t < 0 ? undefined : this.tokens[t], accessed: this.accessedAt[i] ?? 0 };
  }

  private keyString(i: number): string {
    const s = this.keyStart[i] ?? 0;
    return latin1String(this.keyBytes, s, s + (this.keyLen[i] ?? 0));
  }

  private writeFields(i: number, node: ClusterNode, token: string | undefined, accessed: number): void {
    this.nodeIdx[i] = intern(this.nodes, this.nodeIndex, node);
    this.accessedAt[i] = accessed;
    this.tokenIdx[i] = token === undefined ? -1 : intern(this.tokens, this.tokenIndex, token);
  }

  private appendBase(b: Uint8Array, start: number, end: number, h: number, node: ClusterNode, token: string | undefined, accessed: number): void {
    const len = end - start;
    if (this.baseCount === this.keyStart.length || this.keyUsed + len > this.keyBytes.length) {
      this.reserve(Math.max(16, this.baseCount * 2), Math.max(this.keyUsed + len, this.keyBytes.length * 2));
    }
    const i = this.baseCount++;
    // A loop, not set(subarray): no view object per route.
    const kb = this.keyBytes;
    for (let k = 0, o = this.keyUsed; k < len; k++) kb[o + k] = b[start + k] ?? 0;
    this.keyStart[i] = this.keyUsed;
    this.keyLen[i] = len;
    this.keyUsed += len;
    this.writeFields(i, node, token, accessed);
    this.baseLive++;
    if (this.baseCount * 2 > this.slots.length) this.rehash(this.slots.length * 2);
    else this.insertSlot(h, i);
  }

  private reserve(count: number, keyBytes: number): void {
    const grow = <T extends Int32Array | Uint32Array | Float64Array | Uint8Array>(a: T, make: (n: number) => T, n: number): T => {
      if (a.length >= n) return a;
      const out = make(n);
      out.set(a);
      return out;
    };
    this.keyStart = grow(this.keyStart, (n) => new Int32Array(n), count);
    this.keyLen = grow(this.keyLen, (n) => new Int32Array(n), count);
    this.nodeIdx = grow(this.nodeIdx, (n) => new Uint32Array(n), count);
    this.accessedAt = grow(this.accessedAt, (n) => new Float64Array(n), count);
    this.tokenIdx = grow(this.tokenIdx, (n) => new Int32Array(n), count);
    this.deleted = grow(this.deleted, (n) => new Uint8Array(n), count);
    this.keyBytes = grow(this.keyBytes, (n) => new Uint8Array(n), keyBytes);
    let cap = 16;
    while (cap < count * 2) cap *= 2;
    if (cap > this.slots.length) this.rehash(cap);
  }

  private rehash(cap: number): void {
    this.slots = new Int32Array(cap);
    for (let i = 0; i < this.baseCount; i++) {
      const s = this.keyStart[i] ?? 0;
      this.insertSlot(hashBytes(this.keyBytes, s, s + (this.keyLen[i] ?? 0)), i);
    }
  }

  private insertSlot(h: number, i: number): void {
    const mask = this.slots.length - 1;
    let p = h & mask;
    while (this.slots[p] !== 0) p = (p + 1) & mask;
    this.slots[p] = i + 1;
  }

  private findBytes(b: Uint8Array, start: number, end: number, h: number): number {
    return this.probe(h, end - start, (s, len) => {
      for (let k = 0; k < len; k++) if (this.keyBytes[s + k] !== b[start + k]) return false;
      return true;
    });
  }

  private findString(uuid: string): number {
    if (this.baseCount === 0) return -1;
    let h = FNV_OFFSET;
    for (let k = 0; k < uuid.length; k++) {
      const c = uuid.charCodeAt(k);
      if (c >= 0x80) return -1; // base keys are plain ASCII
      h = Math.imul(h ^ c, FNV_PRIME);
    }
    return this.probe(h, uuid.length, (s, len) => {
      for (let k = 0; k < len; k++) if (this.keyBytes[s + k] !== uuid.charCodeAt(k)) return false;
      return true;
    });
  }

  /** The base index of the key of length `len` with hash `h` for which `same(keyStart, len)` holds; -1 if none. */
  private probe(h: number, len: number, same: (start: number, len: number) => boolean): number {
    if (this.slots.length === 0) return -1;
    const mask = this.slots.length - 1;
    for (let p = h & mask; ; p = (p + 1) & mask) {
      const v = this.slots[p] ?? 0;
      if (v === 0) return -1;
      const i = v - 1;
      if (this.keyLen[i] === len && same(this.keyStart[i] ?? 0, len)) return i;
    }
  }
}

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

function hashBytes(b: Uint8Array, start: number, end: number): number {
  let h = FNV_OFFSET;
  for (let k = start; k < end; k++) h = Math.imul(h ^ (b[k] ?? 0), FNV_PRIME);
  return h;
}

/** The index of `v` in `list`, appending it the first time (`index` maps values to their indexes). */
function intern<T>(list: T[], index: Map<T, number>, v: T): number {
  let n = index.get(v);
  if (n === undefined) {
    n = list.length;
    list.push(v);
    index.set(v, n);
  }
  return n;
}

function latin1String(b: Uint8Array, start: number, end: number): string {
  return Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('latin1');
}
