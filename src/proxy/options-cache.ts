import type { Clock } from '../core';
import { errorMessage } from '../core';
import { optionsWithLimits, parseOptionSpecs, type Limits, type NodeClient, type OdmOptionSpec } from '../nodeodm';
import type { ClusterNode } from '../nodes';

const OPTIONS_TTL_MS = 60 * 60 * 1000;
/** Distinct (node, option limits) pairs kept; the least recently used goes first. */
export const MAX_CACHED_OPTION_LISTS = 256;

interface CachedOptions {
  expires: number;
  /** The limits part of the key, so that /cache/clear can drop every node's list for those limits. */
  limitsKey: string;
  value: OdmOptionSpec[];
}

/**
 * A node's /options passed through the caller's option limits, cached for an hour. The original keyed this by user
 * token, so every new token (any token, without --token) added a ~40 KB entry: the key here is what the answer is
 * made of, the node and the option limits, and the number of entries is capped.
 */
export class OptionsCache {
  private readonly cache = new Map<string, CachedOptions>();
  /** Fetches on their way, so that concurrent misses of one key ask the node once (at most one per key). */
  private readonly inflight = new Map<string, Promise<OdmOptionSpec[]>>();
  private readonly client: NodeClient;
  private readonly clock: Clock;
  private readonly enabled: boolean;
  private readonly maxEntries: number;

  constructor(opts: { client: NodeClient; clock: Clock; enabled: boolean; maxEntries?: number }) {
    this.client = opts.client;
    this.clock = opts.clock;
    this.enabled = opts.enabled;
    this.maxEntries = Math.max(1, opts.maxEntries ?? MAX_CACHED_OPTION_LISTS);
  }

  async get(limits: Limits | null, node: ClusterNode): Promise<OdmOptionSpec[]> {
    const now = this.clock.now();
    const limitsKey = limitsKeyOf(limits);
    const key = `${node.key} ${limitsKey}`;
    const hit = this.enabled ? this.cache.get(key) : undefined;
    if (hit && hit.expires > now) {
      // Most recently used last: eviction takes the first key.
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit.value;
    }
    if (!this.enabled) return this.fetch(limits, node);
    const pending = this.inflight.get(key);
    if (pending) return pending;
    const p = this.fetch(limits, node)
      .then((value) => {
        if (this.inflight.get(key) === p) {
          this.cache.delete(key);
          this.cache.set(key, { expires: this.clock.now() + OPTIONS_TTL_MS, limitsKey, value });
          this.evict(this.clock.now());
        }
        return value;
      })
      .finally(() => {
        if (this.inflight.get(key) === p) this.inflight.delete(key);
      });
    this.inflight.set(key, p);
    return p;
  }

  private async fetch(limits: Limits | null, node: ClusterNode): Promise<OdmOptionSpec[]> {
    let specs: OdmOptionSpec[];
    try {
      specs = parseOptionSpecs(await this.client.getJson(node, '/options'));
    } catch (e: unknown) {
      throw new Error(`Cannot get options for ${node.name}: ${errorMessage(e)}`);
    }
    return optionsWithLimits(specs, limits);
  }

  /** `/cache/clear`: the lists computed for these limits are fetched again. */
  clear(limits: Limits | null): void {
    const limitsKey = limitsKeyOf(limits);
    for (const [key, e] of this.cache) if (e.limitsKey === limitsKey) this.cache.delete(key);
    // A fetch already on its way does not fill the entry that was just cleared.
    for (const key of this.inflight.keys()) if (key.endsWith(` ${limitsKey}`)) this.inflight.delete(key);
  }

  /** Entries held; for tests and diagnostics. */
  get size(): number {
    return this.cache.size;
  }

  private evict(now: number): void {
    if (this.cache.size <= this.maxEntries) return;
    for (const [key, e] of this.cache) if (e.expires <= now) this.cache.delete(key);
    for (const key of this.cache.keys()) {
      if (this.cache.size <= this.maxEntries) break;
      this.cache.delete(key);
    }
  }
}

/** Only `limits.options` changes the list (optionsWithLimits); the same option limits give the same key. */
function limitsKeyOf(limits: Limits | null): string {
  const options = limits?.options;
  return options === undefined ? '-' : canonicalJson(options);
}

/** JSON with object keys sorted, so that equal limits written in another order share an entry. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const entries = Object.entries(v)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
