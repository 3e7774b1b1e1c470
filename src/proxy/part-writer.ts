/**
 * One file of a raw upload (raw-staging.ts) written as its bytes are scanned: the scan pushes subarrays of the
 * request's own chunks, which are gathered into `writev` calls of about {@link FILE_SINK_BATCH_BYTES} (no copies,
 * as FileSink does for busboy's parts). The file is written under a `.partial-<hex>` name and gets its stored name
 * only once its part is complete, so a cut body never becomes a staged file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FILE_SINK_BATCH_BYTES, writeAll } from './file-sink';
import { StagingError } from './staging-errors';
import { partialName } from './staging-names';

/** Tiny chunks (a client sending a few bytes per packet) are flushed by count too, well under IOV_MAX (1024). */
const MAX_BATCH_CHUNKS = 256;

export interface PartWriterHooks {
  /** Bytes taken out of the queue (written, or dropped on failure). */
  released(bytes: number): void;
  /** A temporary file was created in the dir (removed again if the upload fails). */
  created(name: string): void;
}

export class PartWriter {
  /** Bytes of the part received so far. */
  bytes = 0;
  private queue: Buffer[] = [];
  private queued = 0;
  private ended = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;

  constructor(private readonly hooks: PartWriterHooks) {}

  push(bytes: Buffer): void {
    this.queue.push(bytes);
    this.queued += bytes.length;
    this.bytes += bytes.length;
    if (this.queued >= FILE_SINK_BATCH_BYTES || this.queue.length >= MAX_BATCH_CHUNKS) this.poke();
  }

  /** The part's closing delimiter was read: the file is complete once written. */
  end(): void {
    this.ended = true;
    this.poke();
  }

  /** Stops the write; `write` then rejects with `err` (its temporary file is the caller's to remove). */
  destroy(err: Error): void {
    this.failure ??= err;
    this.poke();
  }

  get destroyed(): boolean {
    return this.failure !== null;
  }

  /**
   * Writes the part into a new temporary file in `dir`, resolving with its name once the part has ended and every
   * byte is on disk and the file closed.
   */
  async write(dir: string): Promise<string> {
    try {
      this.check();
      const temp = partialName();
      const handle = await fs.promises.open(path.join(dir, temp), 'wx');
      this.hooks.created(temp);
      try {
        for (;;) {
          this.check();
          const full = this.queued >= FILE_SINK_BATCH_BYTES || this.queue.length >= MAX_BATCH_CHUNKS;
          if (this.queued > 0 && (full || this.ended)) {
            const batch = this.queue;
            const n = this.queued;
            this.queue = [];
            this.queued = 0;
            await writeAll(handle, batch);
            this.hooks.released(n);
            continue;
          }
          if (this.ended) break;
          await new Promise<void>((resolve) => (this.wake = resolve));
        }
      } finally {
        await handle.close();
      }
      return temp;
    } finally {
      this.hooks.released(this.queued);
      this.queue = [];
      this.queued = 0;
    }
  }

  private check(): void {
    if (this.failure) throw this.failure;
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

export function abortedWrite(): StagingError {
  return new StagingError('aborted', 'Upload aborted');
}
