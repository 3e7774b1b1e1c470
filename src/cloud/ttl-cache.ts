import type { Clock } from '../core';

interface Entry<V> {
  value: V;
  expires: number;
}

/** Entries a cache holds at most (its keys are user tokens); past it the oldest entry goes. */
export const MAX_TTL_CACHE_ENTRIES = 10_000;

/**
 * A keyed cache whose entries expire after a fixed time measured on the injected Clock (the
 * original's ValueCache). When disabled it stores nothing, so every get misses (--debug, lightningDev).
 * Bounded: at most `maxEntries`, the oldest entry going first.
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private nextSweep: number;

  constructor(
    private readonly clock: Clock,
    private readonly ttlMs: number,
    private readonly enabled = true,
    private readonly maxEntries = MAX_TTL_CACHE_ENTRIES,
  ) {
    this.nextSweep = clock.now() + ttlMs;
  }

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.clock.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: V): void {
    if (!this.enabled) return;
    this.sweepIfDue();
    // Re-inserted, so that the Map's order stays the order of expiry (every entry lives ttlMs).
    this.entries.delete(key);
    this.entries.set(key, { value, expires: this.clock.now() + this.ttlMs });
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries) break;
      this.entries.delete(oldest);
    }
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Drops expired entries at most once per TTL, so keys that are never read again do not pile up. */
  private sweepIfDue(): void {
    const now = this.clock.now();
    if (now < this.nextSweep) return;
    this.nextSweep = now + this.ttlMs;
    for (const [k, e] of this.entries) if (e.expires <= now) this.entries.delete(k);
  }
}
