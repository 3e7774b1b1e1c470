import * as fsp from 'node:fs/promises';
import type { Clock, Logger, TimerHandle } from '../core';
import { errorMessage, isRecord } from '../core';
import { isNotFound, JsonStateFile } from '../store';
import { RouteMap } from './route-map';
import type { RouteEntry, RouteStore } from './route-table';
import {
  addRoute,
  parseRoutesBuffer,
  parseRoutesFile,
  parseStoredRoute,
  routeToFileJSON,
  serializeRoutes,
  type LoadedRoutes,
  type NodeResolver,
} from './routes-file';

/** One line of routes.json.journal. */
type JournalLine =
  | { op: 'put'; uuid: string; node: Record<string, unknown>; token?: string; accessed: number }
  | { op: 'del'; uuids: string[] }
  | { op: 'touch'; at: Array<[string, number]> };

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
