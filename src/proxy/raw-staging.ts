/**
 * Stages a client's `/task/new/upload/<uuid>` body without a multipart parser's streams: a boundary scan
 * (multipart-scan.ts) reads the request's chunks as they arrive, checks each part (names, counts, sizes, the same
 * errors and texts as upload-staging.ts) and hands each file's bytes, as subarrays of those chunks, to a writer
 * (part-writer.ts). The bytes themselves are not touched again: a copy of the same chunks can go to a node as they
 * are (upload-tee.ts), and what is staged is each file's data, written once.
 *
 * The guarantees are those of {@link stageMultipart}: the promise settles once the body is consumed (or the request
 * destroyed); on rejection nothing of this call is left on disk; each file is written under a temporary name and
 * named (a hard link, never replacing a file) only once its part is complete; names are reserved in upload order.
 */
import type * as http from 'node:http';
import { finished } from 'node:stream';
import { errorMessage } from '../core/errors';
import { MultipartScanner, type PartInfo, type ScanHandler } from './multipart-scan';
import { abortedWrite, PartWriter } from './part-writer';
import { RequestFlow } from './request-flow';
import { shortName, StagingError, unexpectedField, writeError } from './staging-errors';
import { StagedFileSet } from './staged-file-set';
import { resolveLimits, type StagingLimits } from './staging-limits';
import { Slots } from './staging-streams';
import type { StagedFile, StageOptions, StagingResult } from './upload-staging';

/** Files being written at once (each holds an fd), as in upload-staging.ts. */
const MAX_PARALLEL_WRITES = 16;
/** Bytes held for the disk before the request is paused: two write batches. */
const MAX_BUFFERED_BYTES = 512 * 1024;

/** A field part being read (its value is kept up to the limit: the upload route reads none, but checks them). */
interface FieldPart {
  name: string | undefined;
  chunks: Buffer[];
  bytes: number;
}

class RawStagingSession implements ScanHandler {
  private readonly limits: StagingLimits;
  private readonly set: StagedFileSet;
  private readonly scanner: MultipartScanner;
  private readonly fields = new Map<string, string>();
  private readonly writes: Promise<void>[] = [];
  private readonly active = new Set<PartWriter>();
  private readonly slots = new Slots(MAX_PARALLEL_WRITES);
  private file: PartWriter | null = null;
  private field: FieldPart | null = null;
  private error: StagingError | null = null;
  /** Field parts seen (busboy's count, nameless ones included) and fields kept (named ones). */
  private fieldParts = 0;
  private fieldCount = 0;
  private buffered = 0;
  private readonly idleTimer: NodeJS.Timeout;
  private readonly flow: RequestFlow;

  constructor(
    private readonly req: http.IncomingMessage,
    boundary: string,
    private readonly dir: string,
    private readonly opts: StageOptions,
    flow: RequestFlow | undefined,
  ) {
    this.flow = flow ?? new RequestFlow(req);
    this.limits = resolveLimits(opts.limits);
    this.set = new StagedFileSet(dir, opts, this.limits);
    this.scanner = new MultipartScanner(boundary, this);
    this.idleTimer = setTimeout(() => this.onIdle(), this.limits.idleTimeoutMs);
  }

  async run(): Promise<StagingResult> {
    this.req.on('data', (chunk: Buffer) => this.onData(chunk));
    await new Promise<void>((resolve) => {
      finished(this.req, { writable: false }, (err) => {
        clearTimeout(this.idleTimer);
        if (err) this.fail(new StagingError('aborted', 'Upload aborted by client', { cause: err }));
        else if (!this.error) {
          const incomplete = this.scanner.finish();
          if (incomplete) this.fail(incomplete);
        }
        resolve();
      });
    });
    // Every part started before the body ended, so `writes` is complete here.
    await Promise.all(this.writes);
    if (this.error) {
      await this.set.removeCreated();
      throw this.error;
    }
    return { fields: this.fields, files: this.set.files() };
  }

  private onData(chunk: Buffer): void {
    this.idleTimer.refresh();
    if (this.error) return;
    this.scanner.push(chunk);
    const problem = this.scanner.error;
    if (problem) this.fail(problem);
    else if (this.buffered > MAX_BUFFERED_BYTES || this.active.size >= MAX_PARALLEL_WRITES) this.flow.hold('disk');
  }

  private onIdle(): void {
    this.fail(new StagingError('aborted', 'Upload timed out'));
    this.req.destroy();
  }

  /** First error wins. The rest of the body is read and ignored, so the caller can answer once it is in. */
  private fail(err: StagingError): void {
    if (this.error) return;
    this.error = err;
    for (const writer of this.active) writer.destroy(err);
    this.file = null;
    this.field = null;
    this.flow.drain();
  }

  private maybeResume(): void {
    if (this.buffered <= MAX_BUFFERED_BYTES && this.active.size < MAX_PARALLEL_WRITES) this.flow.release('disk');
  }

  // -- ScanHandler --------------------------------------------------------------------------------------------

  start(part: PartInfo): void {
    if (this.error) return;
    if (!part.file) {
      this.fieldParts++;
      if (this.fieldParts > this.limits.maxFields + 1) this.fail(new StagingError('limit', 'Too many fields'));
      else this.field = { name: part.field, chunks: [], bytes: 0 };
      return;
    }
    const problem = part.field !== 'images' ? unexpectedField(part.field) : this.set.checkCount();
    if (problem) {
      this.fail(problem);
      return;
    }
    let slot: number;
    let name: string;
    try {
      ({ slot, name } = this.set.next(part.filename));
    } catch (err) {
      this.fail(err as StagingError);
      return;
    }
    const writer = new PartWriter({
      released: (n) => {
        this.buffered -= n;
        this.maybeResume();
      },
      created: (temp) => this.set.noteCreated(temp),
    });
    this.file = writer;
    this.active.add(writer);
    this.writes.push(this.writeFile(writer, name, part.filename ?? '', slot));
  }

  data(bytes: Buffer): void {
    const file = this.file;
    if (file) {
      const problem = this.set.admitBytes(file.bytes, bytes.length);
      if (problem) this.fail(problem);
      else {
        this.buffered += bytes.length;
        file.push(bytes);
      }
      return;
    }
    const field = this.field;
    if (field && field.bytes <= this.limits.maxFieldBytes) {
      const keep = bytes.subarray(0, this.limits.maxFieldBytes + 1 - field.bytes);
      // Copied: a field is small, and must not hold the request's chunk.
      field.chunks.push(Buffer.from(keep));
      field.bytes += keep.length;
    }
  }

  end(): void {
    const file = this.file;
    const field = this.field;
    this.file = null;
    this.field = null;
    if (file) file.end();
    else if (field) this.onField(field);
  }

  // -- checks -------------------------------------------------------------------------------------------------

  private onField(field: FieldPart): void {
    if (field.name === undefined) return; // a value nobody can ask for
    this.fieldCount++;
    if (this.fieldCount > this.limits.maxFields) this.fail(new StagingError('limit', 'Too many fields'));
    else if (field.bytes > this.limits.maxFieldBytes) this.fail(new StagingError('limit', `Field too large: ${shortName(field.name)}`));
    else this.fields.set(field.name, Buffer.concat(field.chunks).toString('utf8'));
  }

  // -- files --------------------------------------------------------------------------------------------------

  private async writeFile(writer: PartWriter, first: string, originalName: string, slot: number): Promise<void> {
    await this.slots.acquire();
    try {
      if (writer.destroyed || this.error) throw this.error ?? abortedWrite();
      const temp = await writer.write(this.dir);
      const name = await this.set.publish(temp, first);
      const file: StagedFile = { name, originalName, bytes: writer.bytes };
      this.set.place(slot, file);
      this.report(file);
    } catch (err) {
      this.fail(writeError(err));
    } finally {
      this.slots.release();
      this.active.delete(writer);
      this.maybeResume();
    }
  }

  private report(file: StagedFile): void {
    try {
      this.opts.onFile?.(file);
    } catch (err) {
      this.fail(new StagingError('io', `onFile failed: ${errorMessage(err)}`, { cause: err }));
    }
  }

}

/**
 * Stages the `images` of a multipart/form-data body with the given boundary (see multipartBoundary) into `dir`.
 * Fields are checked against the limits and returned, but read no further than that. Rejects with a
 * {@link StagingError}; see the module comment for the guarantees.
 */
export function stageRawMultipart(
  req: http.IncomingMessage,
  boundary: string,
  dir: string,
  opts: Omit<StageOptions, 'dir' | 'acceptFiles'> & { flow?: RequestFlow },
): Promise<StagingResult> {
  return new RawStagingSession(req, boundary, dir, { ...opts, dir, acceptFiles: true }, opts.flow).run();
}
