import type { Clock, Logger } from '../core';
import { isRecord } from '../core';
import { isValidUuid } from '../routing';
import { JsonStateFile, type StoreFs } from '../store';

/**
 * Tasks whose `POST /commit` webhook was counted (billing through `taskFinished`, a place given back in the commit
 * window), so a replayed webhook counts nothing: `data/webhooks.json`, `{"<uuid>": <ms when counted>}`.
 *
 * A record is only needed while the webhook could otherwise count again, i.e. while the task has a route or a
 * task-table entry (`keep`); the others are dropped at load and at each save, so the file stays as small as the
 * tables it follows.
 */
export interface CommitLedgerOptions {
  file: string;
  clock: Clock;
  logger: Logger;
  keep: (uuid: string) => boolean;
  fs?: StoreFs;
}

export function parseLedgerFile(raw: unknown): Map<string, number> {
  if (!isRecord(raw)) throw new Error('webhooks.json is not a JSON object keyed by task uuid');
  const out = new Map<string, number>();
  for (const [uuid, at] of Object.entries(raw)) {
    if (!isValidUuid(uuid)) throw new Error(`webhooks.json: ${JSON.stringify(uuid)} is not a task uuid`);
    if (typeof at !== 'number' || !Number.isFinite(at)) throw new Error(`webhooks.json: the time of ${uuid} is not a number`);
    out.set(uuid, at);
  }
  return out;
}

export class CommitLedger {
  private readonly o: CommitLedgerOptions;
  private readonly state: JsonStateFile<Map<string, number>>;
  private counted = new Map<string, number>();
  /** Webhooks being verified right now: a concurrent replay must not count too. */
  private readonly claimed = new Set<string>();

  constructor(opts: CommitLedgerOptions) {
    this.o = opts;
    this.state = new JsonStateFile({
      file: opts.file,
      parse: parseLedgerFile,
      logger: opts.logger,
      clock: opts.clock,
      ...(opts.fs ? { fs: opts.fs } : {}),
    });
  }

  /** Loads the file (after the route and task tables), keeping only records of tasks still known. */
  async load(): Promise<void> {
    const loaded = (await this.state.load()) ?? new Map<string, number>();
    this.counted = new Map([...loaded].filter(([uuid]) => this.o.keep(uuid)));
  }

  /**
   * True if this webhook is the first for the task: it is claimed at once (synchronously), so replays arriving
   * while it is verified answer as repeats. Follow with `confirm` (it counts) or `release` (it was refused).
   */
  claim(uuid: string): boolean {
    if (this.counted.has(uuid) || this.claimed.has(uuid)) return false;
    this.claimed.add(uuid);
    return true;
  }

  release(uuid: string): void {
    this.claimed.delete(uuid);
  }

  /** Records the task as counted; durable when it resolves (in memory at once, even if the write fails). */
  async confirm(uuid: string): Promise<void> {
    this.counted.set(uuid, this.o.clock.now());
    this.claimed.delete(uuid);
    for (const u of this.counted.keys()) if (!this.o.keep(u)) this.counted.delete(u);
    await this.state.save(() => JSON.stringify(Object.fromEntries(this.counted)));
  }

  async flush(): Promise<void> {
    await this.state.flush();
  }
}
