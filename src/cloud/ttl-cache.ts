import type { Clock } from '../core';

interface Entry<V> {
  value: V;
  expires: number;
}

/**
 * A keyed cache whose entries expire after a fixed time measured on the injected Clock (the
 * original's ValueCache). When disabled it stores nothing, so every get misses (--debug, lightningDev).
 */
export class TtlCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private nextSweep: number;

  constructor(
    private readonly clock: Clock,
    private readonly ttlMs: number,
    private readonly enabled = true,
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
    this.entries.set(key, { value, expires: this.clock.now() + this.ttlMs });
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
