/**
 * A Writable that stores a stream into an open file, gathering the chunks it is given into one `writev` of about
 * {@link FILE_SINK_BATCH_BYTES}. An upload arrives in socket reads of at most 64 KiB, and each write is a round trip
 * to libuv's thread pool: 100 MiB written in 64 KiB pieces cost ~120 ms of CPU on the 2-core test machine, in
 * 256 KiB pieces ~55 ms. The chunks are kept as they are (no copy into a buffer of our own), so what is held per file
 * is at most two batches of the socket's own buffers: one being written, and the next gathering (the Writable's
 * high-water mark, after which the upload waits).
 *
 * The file handle is closed when the stream is destroyed, which a Writable does by itself after 'finish' or an error;
 * 'close' is emitted after the handle is closed.
 */
import { Writable } from 'node:stream';

export const FILE_SINK_BATCH_BYTES = 256 * 1024;
/** Tiny chunks (a client sending a few bytes per packet) are flushed by count too, well under IOV_MAX (1024). */
const MAX_BATCH_CHUNKS = 256;

/** What the sink needs of a `fs.promises.FileHandle` (writes at the file's current position). */
export interface SinkFile {
  writev(buffers: Buffer[]): Promise<{ bytesWritten: number }>;
  close(): Promise<void>;
}

export class FileSink extends Writable {
  private chunks: Buffer[] = [];
  private bytes = 0;

  constructor(
    private readonly handle: SinkFile,
    private readonly batchBytes: number = FILE_SINK_BATCH_BYTES,
  ) {
    // The Writable's own buffer only fills while a batch is being written.
    super({ highWaterMark: batchBytes });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.add(chunk);
    if (this.bytes >= this.batchBytes || this.chunks.length >= MAX_BATCH_CHUNKS) this.flush(callback);
    else callback();
  }

  override _writev(entries: { chunk: Buffer }[], callback: (error?: Error | null) => void): void {
    for (const { chunk } of entries) this.add(chunk);
    if (this.bytes >= this.batchBytes || this.chunks.length >= MAX_BATCH_CHUNKS) this.flush(callback);
    else callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.flush(callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.chunks = [];
    this.bytes = 0;
    this.handle.close().then(
      () => callback(error),
      (closeError: unknown) => callback(error ?? (closeError instanceof Error ? closeError : new Error(String(closeError)))),
    );
  }

  private add(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  private flush(callback: (error?: Error | null) => void): void {
    const chunks = this.chunks;
    this.chunks = [];
    this.bytes = 0;
    if (chunks.length === 0) {
      callback();
      return;
    }
    writeAll(this.handle, chunks).then(
      () => callback(),
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
    );
  }
}

/** `writev` until every byte is written: a regular file may take fewer bytes than asked (a full disk, a signal). */
export async function writeAll(handle: SinkFile, chunks: Buffer[]): Promise<void> {
  let rest = chunks;
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest);
    if (bytesWritten <= 0) throw new Error('writev wrote nothing');
    rest = dropBytes(rest, bytesWritten);
  }
}

function dropBytes(chunks: Buffer[], count: number): Buffer[] {
  let left = count;
  let i = 0;
  while (i < chunks.length && left >= (chunks[i] as Buffer).length) {
    left -= (chunks[i] as Buffer).length;
    i++;
  }
  const rest = chunks.slice(i);
  if (left > 0 && rest.length > 0) rest[0] = (rest[0] as Buffer).subarray(left);
  return rest;
}
