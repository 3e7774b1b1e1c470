import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Clock, Logger, Service, TimerHandle } from '../core';
import { errorMessage } from '../core';
import type { TaskTable } from '../routing';
import { isPartialName } from './staging-names';
import { removeDir } from './task-dispatch';

const HOUR = 60 * 60 * 1000;
/** Anything not being forwarded is removed after this long without activity, whatever the settings. */
const MAX_AGE_MS = 48 * HOUR;
/** A dir with no task behind it (left by a crash) is removed once it is this old; newer ones may be an init in progress. */
const ORPHAN_GRACE_MS = HOUR;

export interface TmpCleanupOptions {
  tmpDir: string;
  table: TaskTable;
  clock: Clock;
  logger: Logger;
  /** --stale-uploads-timeout in hours; 0 = off. */
  staleUploadsHours: number;
  intervalMs?: number;
  /** An upload session was removed (its client abandoned it): whatever else it holds can go. */
  onUploadRemoved?: (uuid: string) => void;
}

/**
 * Sweeps tmp/ at start and every 30 minutes (SPEC §4.13); the first pass also removes, from the task dirs it keeps,
 * files that a crash cut short while they were being staged. Activity is the task table's `updated` time (bumped by
 * every upload), not a file count seen by an earlier sweep, so a restart does not reset it; and a task being
 * forwarded is never touched, however old (the original's 48 h rule could delete it mid-forward).
 */
export class TmpCleanup implements Service {
  readonly name = 'tmp cleanup';
  private readonly o: Required<TmpCleanupOptions>;
  private timer: TimerHandle | null = null;
  private running: Promise<number> | null = null;
  /** Dirs older than this start with no task behind them were left by the previous run (a crash): no grace. */
  private startedAt = Number.NEGATIVE_INFINITY;
  /** Files being written when the previous run stopped are removed by the first pass. */
  private partialsSwept = false;

  constructor(opts: TmpCleanupOptions) {
    this.o = { intervalMs: 30 * 60 * 1000, onUploadRemoved: () => undefined, ...opts };
  }

  async start(): Promise<void> {
    this.startedAt = this.o.clock.now();
    void this.sweep();
    this.timer = this.o.clock.setInterval(() => void this.sweep(), this.o.intervalMs);
  }

  async stop(): Promise<void> {
    if (this.timer) this.o.clock.clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }

  /** One pass; resolves to the number of dirs removed. Never rejects; passes never overlap. */
  sweep(): Promise<number> {
    if (!this.running) {
      this.running = this.pass()
        .catch((e: unknown) => {
          this.o.logger.error(`Cannot clean up ${this.o.tmpDir}: ${errorMessage(e)}`);
          return 0;
        })
        .finally(() => {
          this.running = null;
        });
    }
    return this.running;
  }

  private async pass(): Promise<number> {
    let names: string[];
    try {
      names = await fsp.readdir(this.o.tmpDir);
    } catch {
      return 0;
    }
    const firstPass = !this.partialsSwept;
    this.partialsSwept = true;
    let removed = 0;
    for (const name of names) {
      if (name === '.gitignore') continue;
      const reason = await this.reasonToRemove(name);
      if (!reason) {
        if (firstPass) await this.removePartials(name);
        continue;
      }
      this.o.logger.info(`Cleaning up ${name}${reason === 'stale' ? ' [stale]' : ''}`);
      await removeDir(path.join(this.o.tmpDir, name));
      // An abandoned upload session ends with its files; failed or canceled tasks stay listed.
      if (this.o.table.get(name)?.phase === 'uploading') {
        await this.o.table.delete(name).catch(() => false);
        this.o.onUploadRemoved(name);
      }
      removed++;
    }
    return removed;
  }

  /**
   * Files of a kept task dir that a crash cut short while they were being written (staging-names.ts): written before
   * this start, so no upload of this run is writing them. The task's complete files stay.
   */
  private async removePartials(name: string): Promise<void> {
    const dir = path.join(this.o.tmpDir, name);
    let files: string[];
    try {
      files = (await fsp.readdir(dir)).filter(isPartialName);
    } catch {
      return; // not a dir, or gone meanwhile
    }
    for (const file of files) {
      const at = path.join(dir, file);
      const mtime = await fsp.stat(at).then(
        (st) => st.mtimeMs,
        () => Number.POSITIVE_INFINITY,
      );
      if (mtime >= this.startedAt) continue;
      await fsp.rm(at, { force: true }).catch(() => undefined);
      this.o.logger.info(`Removed ${file} of task ${name}: cut short by a restart`);
    }
  }

  private async reasonToRemove(name: string): Promise<'stale' | 'old' | null> {
    const now = this.o.clock.now();
    const entry = this.o.table.get(name);
    // Being forwarded, or queued (waiting for a processing node): its files are what it will be sent with.
    if (entry?.phase === 'forwarding' || entry?.phase === 'queued') return null;
    if (entry?.phase === 'uploading') {
      const idle = now - entry.updated;
      const staleAfter = this.o.staleUploadsHours * HOUR;
      if (staleAfter > 0 && idle > staleAfter) return 'stale';
      return idle > MAX_AGE_MS ? 'old' : null;
    }
    // A finished, failed or canceled task needs its files no more.
    if (entry) return 'old';
    // No task behind the dir at all: left by a crash, or an init that has not recorded its task yet.
    let mtime: number;
    try {
      mtime = (await fsp.stat(path.join(this.o.tmpDir, name))).mtimeMs;
    } catch {
      return null;
    }
    return now - mtime > ORPHAN_GRACE_MS || mtime < this.startedAt - 1000 ? 'old' : null;
  }
}
