/** Stream plumbing of a staged upload (upload-staging.ts): byte limits, feeding busboy's parts, write slots. */
import { Transform, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { StagingError, TRUNCATED } from './staging-errors';

/** Passes bytes through, asking `admit` before each chunk so per-file and per-request byte limits cut the write. */
export class ByteLimiter extends Transform {
  bytes = 0;

  constructor(private readonly admit: (fileBytes: number, chunkBytes: number) => StagingError | null) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const problem = this.admit(this.bytes, chunk.length);
    if (problem) {
      callback(problem);
      return;
    }
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/**
 * Feeds a busboy file stream into `limiter`. busboy's own stream is never destroyed by us: a destroyed part
 * stream never emits 'end', which leaves busboy waiting forever. Instead, when the write side stops early, the
 * part is drained so busboy can reach the next boundary.
 */
export function feed(part: Readable, limiter: ByteLimiter): void {
  // The limiter can fail (byte limit) before the pipeline that reports its error is attached (file still
  // opening); without a listener that error would be an uncaught exception. The pipeline still sees it.
  limiter.on('error', () => undefined);
  part.pipe(limiter);
  part.once('error', (err: Error) => limiter.destroy(err));
  part.once('close', () => {
    if (!part.readableEnded) limiter.destroy(new StagingError('malformed', TRUNCATED));
  });
  limiter.once('close', () => {
    if (part.readableEnded) return;
    part.unpipe(limiter);
    part.resume();
  });
}

/** Counting semaphore: `acquire` waits for a free slot, `release` hands it to the next waiter. */
export class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(size: number) {
    this.free = size;
  }

  acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.free++;
  }
}

export function waitClosed(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.closed) resolve();
    else stream.once('close', () => resolve());
  });
}
