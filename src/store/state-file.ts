import * as path from 'node:path';
import type { Clock, Logger } from '../core';
import { errorMessage } from '../core';
import { isNotFound, realFs, writeFileAtomic, type StoreFs } from './atomic-file';
import type { StateDoc } from './port';

export interface StateFileOptions<T> {
  file: string;
  /** Validates parsed JSON; throws with a clear message if the shape is wrong. */
  parse: (raw: unknown) => T;
  /**
   * Optional fast path for large files: parses the file's bytes directly, or returns null to fall back to
   * JSON.parse + `parse` (it must accept exactly what that path accepts, or less).
   */
  parseBuffer?: (bytes: Buffer) => T | null;
  logger: Logger;
  clock: Clock;
  fs?: StoreFs;
}

/**
 * A JSON state file (nodes.json, routes.json): loads with recovery from corruption, saves atomically,
 * one write at a time, coalescing saves requested while a write is in progress.
 */
export class JsonStateFile<T> implements StateDoc<T> {
  private readonly opts: StateFileOptions<T>;
  private readonly fs: StoreFs;
  private writing: Promise<void> | null = null;
  private queued: { serialize: () => string | AsyncIterable<string>; waiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> } | null =
    null;

  constructor(opts: StateFileOptions<T>) {
    this.opts = opts;
    this.fs = opts.fs ?? realFs;
  }

  get file(): string {
    return this.opts.file;
  }

  /**
   * Reads the file. Missing → null. Corrupt or invalid → the file is kept aside as `<file>.corrupt-<time>`,
   * an error is logged, and the last good copy (`<file>.bak`) is used if it is valid.
   */
  async load(): Promise<T | null> {
    const main = await this.tryRead(this.opts.file);
    if (main.kind === 'ok') return main.value;
    if (main.kind === 'bad') {
      const aside = `${this.opts.file}.corrupt-${this.opts.clock.now()}`;
      await this.fs.rename(this.opts.file, aside).catch(() => undefined);
      this.opts.logger.error(
        `${path.basename(this.opts.file)} is corrupt (${main.reason}); kept aside as ${path.basename(aside)}`,
      );
    }
    const backup = await this.tryRead(`${this.opts.file}.bak`);
    if (backup.kind === 'ok') {
      if (main.kind === 'bad') this.opts.logger.warn(`Using the last good copy ${path.basename(this.opts.file)}.bak`);
      else this.opts.logger.warn(`${path.basename(this.opts.file)} is missing, using ${path.basename(this.opts.file)}.bak`);
      return backup.value;
    }
    if (main.kind === 'bad') this.opts.logger.error(`No good copy of ${path.basename(this.opts.file)} found, starting empty`);
    return null;
  }

  private async tryRead(
    file: string,
  ): Promise<{ kind: 'ok'; value: T } | { kind: 'missing' } | { kind: 'bad'; reason: string }> {
    let bytes: Buffer;
    try {
      bytes = await this.fs.readFile(file);
    } catch (e: unknown) {
      if (isNotFound(e)) return { kind: 'missing' };
      return { kind: 'bad', reason: errorMessage(e) };
    }
    try {
      const fast = this.opts.parseBuffer?.(bytes) ?? null;
      if (fast !== null) return { kind: 'ok', value: fast };
      return { kind: 'ok', value: this.opts.parse(JSON.parse(bytes.toString('utf8')) as unknown) };
    } catch (e: unknown) {
      return { kind: 'bad', reason: errorMessage(e) };
    }
  }

  /**
   * Saves the state produced by `serialize` (called when the write actually starts, so it sees the newest state).
   * Resolves once a write that includes the state at the time of the call is durable; rejects if that write failed.
   */
  save(serialize: () => string | AsyncIterable<string>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.queued) {
        this.queued.serialize = serialize;
        this.queued.waiters.push({ resolve, reject });
      } else {
        this.queued = { serialize, waiters: [{ resolve, reject }] };
      }
      if (!this.writing) this.writing = this.drain();
    });
  }

  private async drain(): Promise<void> {
    while (this.queued) {
      const job = this.queued;
      this.queued = null;
      try {
        await writeFileAtomic(this.opts.file, job.serialize(), { fs: this.fs, backup: true });
        for (const w of job.waiters) w.resolve();
      } catch (e: unknown) {
        this.opts.logger.error(`Cannot save ${this.opts.file}: ${errorMessage(e)}`);
        for (const w of job.waiters) w.reject(e);
      }
    }
    this.writing = null;
  }

  /** A file in data/ has no other writer. */
  onRemoteChange(_listener: () => void): void {
    // Nothing to watch.
  }

  /** Waits for any write in progress (used at shutdown). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
  }
}
