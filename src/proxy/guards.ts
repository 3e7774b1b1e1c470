/**
 * Per-token request guards of the task-creation routes (SPEC §4.12): the flood limit on `/task/new/init`, the 60 s
 * commit window on `/task/new/commit`, and the "tasks still queued or running" limit. Each is a small class on an
 * injected Clock so the proxy handlers stay thin and the timing is testable without sleeps.
 */
import type { Clock, TimerHandle } from '../core';
import type { SharedCommitWindow, SharedFloodCounts } from '../store';
import { TaskStatus } from '../nodeodm/types';

export const FLOOD_MESSAGE =
  'Uuh, slow down! It seems like you are sending a lot of tasks. Check that your connection is not dropping, or wait 15 minutes and try again.';
/** `/task/new/init` and `/task/new` (the two wordings differ in the original; clients may match on them). */
export const MAX_CONCURRENT_INIT = (n: number): string =>
  'Reached maximum number of concurrent tasks: ' + n + '. Please wait until other tasks have finished, then restart the task.';
export const COMMIT_WINDOW_MESSAGE =
  'Reached maximum number of concurrent tasks, please wait until other tasks have finished, then restart the task.';
export const MAX_CONCURRENT_COMMIT =
  'Reached maximum number of concurrent tasks. Please wait until other tasks have finished, then restart the task.';

const FORGIVE_MS = 15 * 60_000;
const COMMIT_WINDOW_MS = 60_000;
/**
 * Tokens each monitor keeps records for. Tokens come from clients (any token is valid without --token), so the
 * maps are capped; past the cap the record touched longest ago goes (per-address caps on open uploads still apply).
 */
export const MAX_TRACKED_TOKENS = 10_000;

/** Sets `key` as the most recently touched entry, and drops the oldest ones beyond `max`. */
function setBounded<V>(map: Map<string, V>, key: string, value: V, max: number): void {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= max) break;
    map.delete(oldest);
  }
}

/** Both monitors share the original's bucket for requests without a token. */
const keyOf = (token: string): string => token || 'default';

/** `--flood-limit`: counts inits not yet committed per token; a slow decay forgives dropped uploads. */
export class FloodMonitor {
  private readonly limit: number;
  private readonly clock: Clock;
  private readonly forgiveMs: number;
  private readonly counts = new Map<string, number>();
  private readonly maxTracked: number;
  private timer: TimerHandle | null = null;
  /** Counts kept for every instance (shared state); null: in this process's memory. */
  private readonly shared: SharedFloodCounts | null;

  constructor(opts: { limit: number; clock: Clock; forgiveMs?: number; maxTracked?: number; shared?: SharedFloodCounts | null }) {
    this.shared = opts.shared ?? null;
    this.limit = opts.limit;
    this.clock = opts.clock;
    this.forgiveMs = opts.forgiveMs ?? FORGIVE_MS;
    this.maxTracked = Math.max(1, opts.maxTracked ?? MAX_TRACKED_TOKENS);
  }

  /** Starts the forgive timer; calling it twice keeps a single timer. */
  start(): void {
    if (this.timer !== null) return;
    const shared = this.shared;
    // Shared counts: one forgive pass per interval for the cluster, whichever instance gets there first.
    const pass = shared ? () => void shared.forgive(this.forgiveMs).catch(() => undefined) : () => this.forgive();
    this.timer = this.clock.setInterval(pass, this.forgiveMs);
  }

  /** An init: counted (a refused init still counts, as the original), then true if the token is flooding. */
  async admit(token: string): Promise<boolean> {
    if (!this.shared) {
      this.recordInit(token);
      return this.isFlooding(token);
    }
    if (!this.enabled()) return false;
    return (await this.shared.add(keyOf(token))) > this.limit;
  }

  /** A commit: forgives one init of the token (see recordCommit). */
  async committed(token: string): Promise<void> {
    if (!this.shared) return this.recordCommit(token);
    if (this.enabled()) await this.shared.commit(keyOf(token));
  }

  stop(): void {
    if (this.timer === null) return;
    this.clock.clearInterval(this.timer);
    this.timer = null;
  }

  recordInit(token: string): void {
    // With the limit off nothing is ever read, so keeping counts would only cost memory.
    if (!this.enabled()) return;
    const key = keyOf(token);
    setBounded(this.counts, key, (this.counts.get(key) ?? 0) + 1, this.maxTracked);
  }

  /**
   * Fix of §12 item 13: the original created a NaN record for a commit without an init, and never deleted it.
   * Here a missing record stays missing and a record reaching 0 goes away (0 and absent behave the same).
   */
  recordCommit(token: string): void {
    const key = keyOf(token);
    const count = this.counts.get(key);
    if (count === undefined) return;
    if (count <= 1) this.counts.delete(key);
    else this.counts.set(key, count - 1);
  }

  /** Called after recordInit, as the original does, so the (limit+1)-th pending init is the first rejected one. */
  isFlooding(token: string): boolean {
    if (!this.enabled()) return false;
    return (this.counts.get(keyOf(token)) ?? 0) > this.limit;
  }

  /** Current count of a token (0 when it has no record); for tests and diagnostics. */
  count(token: string): number {
    return this.counts.get(keyOf(token)) ?? 0;
  }

  /** Number of records held: at most maxTracked, and every forgive pass deletes the ones at 0. */
  get size(): number {
    return this.counts.size;
  }

  /** One FORGIVE_TIME pass: counts shrink by a third (rounded down) and records at 0 are deleted. */
  forgive(): void {
    for (const [key, count] of this.counts) {
      const next = Math.floor(count * 0.66);
      if (next <= 0) this.counts.delete(key);
      else this.counts.set(key, next);
    }
  }

  private enabled(): boolean {
    // `<= 0` as the original: a negative limit also means off.
    return this.limit > 0;
  }
}

/** `concurrencyMonitor` of the original: at most `max` commits per token within the last minute. */
export class CommitWindow {
  private readonly clock: Clock;
  private readonly windowMs: number;
  /** Commit timestamps per token, oldest first; empty lists are removed. */
  private readonly commits = new Map<string, number[]>();
  private readonly maxTracked: number;
  /** Times kept for every instance (shared state); null: in this process's memory. */
  private readonly shared: SharedCommitWindow | null;

  constructor(opts: { clock: Clock; windowMs?: number; maxTracked?: number; shared?: SharedCommitWindow | null }) {
    this.shared = opts.shared ?? null;
    this.clock = opts.clock;
    this.windowMs = opts.windowMs ?? COMMIT_WINDOW_MS;
    this.maxTracked = Math.max(1, opts.maxTracked ?? MAX_TRACKED_TOKENS);
  }

  /** true = blocked. The current commit is recorded even when it is rejected, as in the original. */
  check(max: number | undefined, token: string): boolean {
    if (max === 0) return true;
    // `!max` covers undefined and also NaN (a bad provider value), which never blocks in the original either.
    if (!max) return false;

    const now = this.clock.now();
    // Pruning every token (not just this one) is what keeps the map bounded by the tokens active in the window.
    for (const [key, times] of this.commits) {
      const kept = times.filter((t) => now - t <= this.windowMs);
      if (kept.length === 0) this.commits.delete(key);
      else this.commits.set(key, kept);
    }

    const key = keyOf(token);
    const times = this.commits.get(key) ?? [];
    times.push(now);
    setBounded(this.commits, key, times, this.maxTracked);
    return times.length > max;
  }

  /** check(), for the cluster when the times are shared. */
  async admit(max: number | undefined, token: string): Promise<boolean> {
    if (!this.shared) return this.check(max, token);
    if (max === 0) return true;
    if (!max) return false;
    return (await this.shared.add(keyOf(token), this.clock.now(), this.windowMs)) > max;
  }

  /** decrease(), for the cluster when the times are shared (in the background: nothing waits for a freed slot). */
  release(token: string): void {
    if (!this.shared) return this.decrease(token);
    void this.shared.release(keyOf(token)).catch(() => undefined);
  }

  /** Frees one slot (commit, cancel, remove, restart); the oldest timestamp goes. */
  decrease(token: string): void {
    const key = keyOf(token);
    const times = this.commits.get(key);
    if (times === undefined) return;
    times.shift();
    if (times.length === 0) this.commits.delete(key);
  }

  /** Commits currently held for a token; for tests and diagnostics. */
  count(token: string): number {
    return this.commits.get(keyOf(token))?.length ?? 0;
  }

  get size(): number {
    return this.commits.size;
  }
}

const ACTIVE: ReadonlySet<number> = new Set<number>([TaskStatus.QUEUED, TaskStatus.RUNNING]);

/**
 * `maxConcurrencyLimitReached`: true when the token already has `max` tasks queued or running on nodes.
 * `tasksOfToken` yields the status codes of the token's routed tasks; it is only called when a limit applies,
 * because it costs one `/task/<id>/info` request per task.
 */
export async function concurrencyLimitReached(
  max: number | undefined,
  tasksOfToken: () => Promise<number[]>,
): Promise<boolean> {
  if (max === 0) return true;
  if (!max) return false;
  const codes = await tasksOfToken();
  return codes.filter((c) => ACTIVE.has(c)).length >= max;
}
