/** Progress of an upload to a node (node-uploader.ts): per-request lanes summed into one stream, and body pacing. */
import { Transform, type TransformCallback } from 'node:stream';
import { errorMessage, type Clock, type Logger, type TimerHandle } from '../core';

export interface UploadProgress {
  filesSent: number;
  filesTotal: number;
  /** Multipart body bytes (file bytes plus part headers) handed to the sockets. */
  bytesSent: number;
  bytesTotal: number;
}

export interface ProgressLane {
  bytes(n: number): void;
  /** A retry starts over: forget the bytes of the failed attempt. */
  restart(): void;
  done(files: number): void;
}

/** Sums the progress of parallel requests into one UploadProgress stream. */
export class ProgressMeter {
  private filesSent = 0;
  private bytesSent = 0;

  constructor(
    private readonly filesTotal: number,
    private readonly bytesTotal: number,
    private readonly logger: Logger,
    private readonly onProgress?: (p: UploadProgress) => void,
  ) {}

  lane(): ProgressLane {
    let sent = 0;
    return {
      bytes: (n) => {
        sent += n;
        this.add(0, n);
      },
      restart: () => {
        if (sent > 0) this.add(0, -sent);
        sent = 0;
      },
      done: (files) => this.add(files, 0),
    };
  }

  private add(files: number, bytes: number): void {
    this.filesSent += files;
    this.bytesSent += bytes;
    if (!this.onProgress) return;
    try {
      this.onProgress({ filesSent: this.filesSent, filesTotal: this.filesTotal, bytesSent: this.bytesSent, bytesTotal: this.bytesTotal });
    } catch (e: unknown) {
      // A broken progress listener must not break (or crash) the upload.
      this.logger.warn(`Upload progress listener failed: ${errorMessage(e)}`);
    }
  }
}

/**
 * Counts body bytes for progress and, given a rate, paces them with the injected clock
 * (--upload-max-speed). Slices of ~100 ms keep the pace smooth; each slice leaves no earlier
 * than the rate allows, so the cap holds over any window starting at the first byte.
 */
export class BodyMeter extends Transform {
  private sent = 0;
  private startedAt: number | undefined;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly bytesPerSec: number,
    private readonly onBytes: (n: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.bytesPerSec <= 0) {
      this.forward(chunk);
      done();
      return;
    }
    this.startedAt ??= this.clock.now();
    this.paceFrom(chunk, 0, done);
  }

  override _destroy(error: Error | null, done: (error: Error | null) => void): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    done(error);
  }

  private paceFrom(chunk: Buffer, offset: number, done: TransformCallback): void {
    if (offset >= chunk.length) return done();
    const slice = chunk.subarray(offset, offset + Math.max(1, Math.floor(this.bytesPerSec / 10)));
    const due = (this.startedAt ?? 0) + ((this.sent + slice.length) * 1000) / this.bytesPerSec;
    const send = (): void => {
      this.timer = undefined;
      this.forward(slice);
      this.paceFrom(chunk, offset + slice.length, done);
    };
    const wait = due - this.clock.now();
    if (wait <= 0) send();
    else this.timer = this.clock.setTimeout(send, wait);
  }

  private forward(slice: Buffer): void {
    this.sent += slice.length;
    this.onBytes(slice.length);
    this.push(slice);
  }
}
