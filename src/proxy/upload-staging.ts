/**
 * Streams a client's multipart upload (`/task/new/init`, `/task/new/upload/<uuid>`, `/task/new`) into `tmp/<uuid>/`.
 *
 * Defects of the original `formDataParser` that this module deliberately does not copy (SPEC §12 items 21 and 30,
 * TRANSCRIPTS §4 E):
 * - it replied before the write streams had flushed: here the promise settles only after every file is closed;
 * - unique names were check-then-create: here names are reserved synchronously, and a complete file gets its name
 *   with a hard link, which never replaces an existing file;
 * - files were written under their final names, so a crash left a cut image that was later sent as a whole one:
 *   here a file is written under a temporary name (staging-names.ts) and named only once complete;
 * - busboy had no `error` listener, so a truncated body hung forever and leaked files: here every parser error
 *   rejects, and every file this call created is removed;
 * - a non-`images` file part was never consumed, stalling the request for 30 s: here it is drained;
 * - there were no size or count limits: here there are (see {@link StagingLimits}).
 *
 * Contract: whatever the outcome, the promise settles only once the request body has been consumed (or the request
 * destroyed, on abort or idle timeout), so the caller can answer at once. On rejection nothing from this call is left
 * on disk: a failed request is all-or-nothing, so a client retrying a failed chunk does not leave `a_.jpg` duplicates.
 */
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import { finished, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import { errorMessage } from '../core/errors';
import { FileSink } from './file-sink';
import { fromBusboy, shortName, StagingError, unexpectedField, writeError } from './staging-errors';
import { StagedFileSet } from './staged-file-set';
import { partialName } from './staging-names';
import { busboyLimits, resolveLimits, type StagingLimits } from './staging-limits';
import { ByteLimiter, feed, Slots, waitClosed } from './staging-streams';

export { StagingError, type StagingErrorKind } from './staging-errors';
export { isPartialName, NameReserver, sanitizeFilename, uniqueVariant } from './staging-names';
export { DEFAULT_STAGING_LIMITS, type StagingLimits } from './staging-limits';

export interface StagedFile {
  /** Stored name (sanitised, unique in the directory). */
  name: string;
  /** Filename as the client sent it (may contain anything; never use it as a path). */
  originalName: string;
  bytes: number;
}

export interface StagingResult {
  /** Last value wins for a repeated field. */
  fields: Map<string, string>;
  /** In upload order. */
  files: StagedFile[];
}

export interface StageOptions {
  /** Where `images` parts are written; null = fields only (file parts are drained and reported as unexpected). */
  dir: string | null;
  /** false = fields only, like `dir: null`. */
  acceptFiles: boolean;
  limits?: Partial<StagingLimits>;
  /** Token limit on images; counts `existingFiles` too. null/undefined = no limit. */
  maxImages?: number | null;
  /** Images already staged for this task by earlier requests (chunked upload), not counting `body.json`. */
  existingFiles?: number;
  /**
   * Called after each file is fully written and closed. Progress only: if the call later rejects, the files
   * reported here are removed again.
   */
  onFile?: (file: StagedFile) => void;
  /**
   * Returns a free name for `wanted`, and must never hand out the same name twice (a {@link NameReserver} does
   * this). Share one per task directory between concurrent calls. Default: a reserver private to this call, seeded
   * with the directory listing; concurrent calls then still never overwrite each other (a complete file gets its
   * name with a hard link, which fails on an existing name, and that name is simply skipped).
   */
  reserveName?: (wanted: string) => string;
  /** Gives back a name from `reserveName` whose file this call removed (failed request). */
  releaseName?: (name: string) => void;
}

/**
 * Files open at once per call. busboy does not wait for parts smaller than a stream buffer, so a body of thousands
 * of tiny files would otherwise open thousands of files at once (EMFILE). The request is also paused while this
 * many files are pending, which bounds what is buffered to about one socket read.
 */
const MAX_PARALLEL_WRITES = 16;

// ---------------------------------------------------------------------------------------------------------------
// One call

class StagingSession {
  private readonly limits: StagingLimits;
  private readonly filesAllowed: boolean;
  private readonly set: StagedFileSet;
  private readonly fields = new Map<string, string>();
  private readonly writes: Promise<void>[] = [];
  /** Files not yet fully written (queued for a slot or writing). */
  private readonly active = new Set<ByteLimiter>();
  private readonly slots = new Slots(MAX_PARALLEL_WRITES);
  private error: StagingError | null = null;
  private parser: busboy.Busboy | null = null;
  private fieldCount = 0;
  private readonly idleTimer: NodeJS.Timeout;

  constructor(
    private readonly req: http.IncomingMessage,
    private readonly opts: StageOptions,
  ) {
    this.limits = resolveLimits(opts.limits);
    this.filesAllowed = opts.acceptFiles && opts.dir !== null;
    this.set = new StagedFileSet(opts.dir, opts, this.limits);
    this.idleTimer = setTimeout(() => this.onIdle(), this.limits.idleTimeoutMs);
  }

  async run(): Promise<StagingResult> {
    // All listeners and the pipe are attached in this same tick, so no chunk can be missed.
    this.req.on('data', () => this.idleTimer.refresh());
    const requestDone = this.watchRequest();
    const parserDone = this.startParser();
    await Promise.all([parserDone, requestDone]);
    // Every file event happened before the parser closed, so `writes` is complete here.
    await Promise.all(this.writes);
    if (this.error) {
      await this.set.removeCreated();
      throw this.error;
    }
    return { fields: this.fields, files: this.set.files() };
  }

  /** First error wins; later ones are consequences. Any error stops the writes in progress. */
  private fail(err: StagingError): void {
    if (this.error) return;
    this.error = err;
    for (const limiter of this.active) limiter.destroy(err);
  }

  // -- request lifecycle --------------------------------------------------------------------------------------

  private onIdle(): void {
    this.fail(new StagingError('aborted', 'Upload timed out'));
    this.req.destroy(); // the watcher below then stops the parser
  }

  /** Resolves when the body has ended, or the client went away (which stops the parser: no more data will come). */
  private watchRequest(): Promise<void> {
    return new Promise((resolve) => {
      finished(this.req, { writable: false }, (err) => {
        // Once the body is in, only local disk writes remain: they are not the client's idleness.
        clearTimeout(this.idleTimer);
        if (err) this.onRequestAborted(err);
        resolve();
      });
    });
  }

  private onRequestAborted(cause: unknown): void {
    this.fail(new StagingError('aborted', 'Upload aborted by client', { cause }));
    const parser = this.parser;
    if (parser && !parser.destroyed) {
      this.req.unpipe(parser);
      parser.destroy(this.error ?? undefined);
    }
  }

  // -- parsing ------------------------------------------------------------------------------------------------

  /** Resolves when the parser has closed (or at once when there is none and the body is only drained). */
  private startParser(): Promise<void> {
    const contentType = this.req.headers['content-type'];
    if (contentType === undefined || contentType.trim() === '') {
      // Clients send init without any body (NodeODM accepts that); a body we cannot interpret is an error.
      this.req.on('data', (chunk: Buffer) => {
        if (chunk.length > 0) this.fail(new StagingError('malformed', 'Missing Content-Type'));
      });
      this.req.resume();
      return Promise.resolve();
    }
    let parser: busboy.Busboy;
    try {
      parser = busboy({
        headers: this.req.headers,
        limits: busboyLimits(this.limits),
        // We take the basename ourselves (sanitizeFilename), which also turns `..` into a safe name.
        preservePath: true,
        // Filenames are UTF-8 from every current client; busboy's latin1 default would garble them, and
        // gcp_list.txt refers to images by name.
        defParamCharset: 'utf8',
      });
    } catch (err) {
      this.fail(fromBusboy(err, contentType));
      this.req.resume();
      return Promise.resolve();
    }
    return this.attachParser(parser);
  }

  private attachParser(parser: busboy.Busboy): Promise<void> {
    this.parser = parser;
    // busboy passes `undefined` as the name of a part without one, whatever its typings say.
    parser.on('field', (name: string | undefined, value, info) => this.onField(name, value, info));
    parser.on('file', (name: string | undefined, stream, info) => this.onFile(name, stream, info));
    parser.on('fieldsLimit', () => this.fail(new StagingError('limit', 'Too many fields')));
    parser.on('filesLimit', () => this.fail(new StagingError('limit', 'Max images count exceeded.')));
    parser.on('error', (err: unknown) => {
      this.fail(fromBusboy(err));
      // busboy reports a malformed part header with a bare emit('error') and then waits for more input forever;
      // destroying it makes it close. Deferred: the emit happens in the middle of busboy's own parsing loop.
      process.nextTick(() => {
        this.req.unpipe(parser);
        parser.destroy();
      });
    });
    const closed = new Promise<void>((resolve) => {
      parser.once('close', () => {
        // After a parser error the request is unpiped and paused: drain the rest so the caller can reply.
        this.req.resume();
        resolve();
      });
    });
    this.req.pipe(parser);
    return closed;
  }

  private onField(name: string | undefined, value: string, info: busboy.FieldInfo): void {
    if (name === undefined) return; // a value nobody can ask for
    this.fieldCount++;
    if (this.fieldCount > this.limits.maxFields) {
      this.fail(new StagingError('limit', 'Too many fields'));
    } else if (info.valueTruncated) {
      this.fail(new StagingError('limit', `Field too large: ${shortName(name)}`));
    } else if (info.nameTruncated) {
      this.fail(new StagingError('limit', 'Field name too long'));
    } else {
      this.fields.set(name, value);
    }
  }

  // -- files --------------------------------------------------------------------------------------------------

  private onFile(field: string | undefined, part: Readable, info: busboy.FileInfo): void {
    // busboy reports a truncated form on its own 'error' too; this listener only keeps the part's copy from
    // becoming an uncaught exception.
    part.on('error', () => undefined);
    const problem = this.error ?? (field !== 'images' || !this.filesAllowed ? unexpectedField(field) : this.set.checkCount());
    if (problem) {
      this.fail(problem);
      part.resume(); // drained, never stored: the original stalled here until its 30 s timeout
      return;
    }
    let slot: number;
    let name: string;
    try {
      ({ slot, name } = this.set.next(info.filename));
    } catch (err) {
      this.fail(err as StagingError);
      part.resume();
      return;
    }
    const originalName = info.filename ?? '';
    const limiter = new ByteLimiter((fileBytes, chunkBytes) => this.set.admitBytes(fileBytes, chunkBytes));
    this.active.add(limiter);
    feed(part, limiter);
    this.writes.push(this.writeFile(name, originalName, limiter, slot));
    if (this.active.size >= MAX_PARALLEL_WRITES) this.req.pause();
  }

  private async writeFile(first: string, originalName: string, limiter: ByteLimiter, slot: number): Promise<void> {
    await this.slots.acquire();
    try {
      // The call may have failed while this file waited for a slot: then there is nothing to create.
      if (limiter.destroyed) throw limiter.errored ?? new StagingError('aborted', 'Upload aborted');
      const dir = this.set.dirOrThrow();
      // Written under a temporary name, so that a crash never leaves a cut file under an image's name.
      const temp = partialName();
      const handle = await fs.promises.open(path.join(dir, temp), 'wx');
      this.set.noteCreated(temp);
      const out = new FileSink(handle);
      try {
        await pipeline(limiter, out);
      } finally {
        // 'finish' means every write completed; also wait for the close so 20000 files do not pile up open fds.
        await waitClosed(out);
      }
      const name = await this.set.publish(temp, first);
      const file: StagedFile = { name, originalName, bytes: limiter.bytes };
      this.set.place(slot, file);
      this.report(file);
    } catch (err) {
      this.fail(writeError(err));
      limiter.destroy(); // keeps the part draining if the failure came before the pipeline started
    } finally {
      this.slots.release();
      this.active.delete(limiter);
      // Harmless if the pipe into busboy also paused it: the pipe pauses again on its next full write.
      if (this.active.size < MAX_PARALLEL_WRITES && this.req.isPaused()) this.req.resume();
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
 * Parses a request body (multipart/form-data or urlencoded) into fields and, for `images` parts, files written to
 * `opts.dir`. Rejects with a {@link StagingError}; see the module comment for the guarantees.
 */
export function stageMultipart(req: http.IncomingMessage, opts: StageOptions): Promise<StagingResult> {
  return new StagingSession(req, opts).run();
}
