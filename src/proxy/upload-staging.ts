/**
 * Streams a client's multipart upload (`/task/new/init`, `/task/new/upload/<uuid>`, `/task/new`) into `tmp/<uuid>/`.
 *
 * Defects of the original `formDataParser` that this module deliberately does not copy (SPEC §12 items 21 and 30,
 * TRANSCRIPTS §4 E):
 * - it replied before the write streams had flushed: here the promise settles only after every file is closed;
 * - unique names were check-then-create: here names are reserved synchronously and files are opened with `wx`;
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
import { Transform, finished, type Readable, type TransformCallback, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import { errorMessage, systemErrorCode } from '../core/errors';
import { FileSink } from './file-sink';

export interface StagingLimits {
  /** Files stored by one call. */
  maxFiles: number;
  maxFileBytes: number;
  /** Sum of the stored files' bytes in one call. */
  maxTotalBytes: number;
  maxFieldBytes: number;
  maxFields: number;
  /**
   * The request is destroyed when no body bytes are read for this long (the original used a 30 s socket timeout).
   * Reads pause only when the client stops sending or the disk stops taking data, so this catches both.
   */
  idleTimeoutMs: number;
}

export const DEFAULT_STAGING_LIMITS: StagingLimits = Object.freeze({
  maxFiles: 20000,
  maxFileBytes: 4 * 1024 ** 3,
  // 1 TiB: in practice the disk is the bound; the limit exists so that the caller can lower it per token.
  maxTotalBytes: 1024 ** 4,
  maxFieldBytes: 1024 * 1024,
  maxFields: 100,
  idleTimeoutMs: 30_000,
});

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
   * with the directory listing; concurrent calls then still never overwrite each other (files are opened with
   * `wx`, and an existing name is simply skipped).
   */
  reserveName?: (wanted: string) => string;
  /** Gives back a name from `reserveName` whose file this call removed (failed request). */
  releaseName?: (name: string) => void;
}

export type StagingErrorKind = 'malformed' | 'limit' | 'unexpected-field' | 'aborted' | 'io';

export class StagingError extends Error {
  readonly kind: StagingErrorKind;
  constructor(kind: StagingErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StagingError';
    this.kind = kind;
  }
}

/** Longest file name most filesystems accept, in bytes. */
const MAX_NAME_BYTES = 255;
/** A sane `reserveName` succeeds at once; this only stops a broken one from looping forever on EEXIST. */
const MAX_OPEN_ATTEMPTS = 1000;
/**
 * Files open at once per call. busboy does not wait for parts smaller than a stream buffer, so a body of thousands
 * of tiny files would otherwise open thousands of files at once (EMFILE). The request is also paused while this
 * many files are pending, which bounds what is buffered to about one socket read.
 */
const MAX_PARALLEL_WRITES = 16;
/** User-controlled names are echoed in error messages; keep those short. */
const MAX_NAME_IN_MESSAGE = 200;

// ---------------------------------------------------------------------------------------------------------------
// File names

/**
 * The stored name for a client-supplied filename: basename on both `/` and `\` (so no separator is left), control
 * characters removed, never empty/`.`/`..`, `body.json` (any case) renamed `_body.json` so it cannot shadow the
 * task's own `body.json`, and at most 255 UTF-8 bytes (keeping the extension).
 */
export function sanitizeFilename(raw: string | undefined): string {
  // C0, DEL and C1 controls: NUL truncates paths in C code and the others corrupt logs and terminals.
  let name = (raw ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
  name = name.slice(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1);
  if (name === '.' || name === '..' || name === '') return 'file';
  // The commit step drops every file whose lower-cased name is body.json (SPEC §4.7): rename it rather than lose it.
  if (name.toLowerCase() === 'body.json') name = `_${name}`;
  return capNameBytes(name, MAX_NAME_BYTES);
}

/**
 * The n-th unique variant of `name`, as the original did it: `a.jpg` → `a_.jpg` → `a__.jpg`, and a name without
 * an extension gets `_` appended. The stem is shortened when needed so the result stays within 255 bytes.
 */
export function uniqueVariant(name: string, n: number): string {
  if (n === 0) return name;
  const ext = path.extname(name);
  const stem = name.slice(0, name.length - ext.length);
  const budget = MAX_NAME_BYTES - Buffer.byteLength(ext) - n;
  return truncateUtf8(stem, Math.max(0, budget)) + '_'.repeat(n) + ext;
}

function capNameBytes(name: string, max: number): string {
  if (Buffer.byteLength(name) <= max) return name;
  const ext = path.extname(name);
  const extBytes = Buffer.byteLength(ext);
  // An absurdly long "extension" is not worth keeping; cut the whole name instead.
  if (extBytes > max / 2) return truncateUtf8(name, max);
  return truncateUtf8(name.slice(0, name.length - ext.length), max - extBytes) + ext;
}

/** Longest prefix of `s` within `maxBytes` UTF-8 bytes, never splitting a character. */
function truncateUtf8(s: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const b = Buffer.byteLength(ch);
    if (bytes + b > maxBytes) break;
    out += ch;
    bytes += b;
  }
  return out;
}

/**
 * Hands out unique names for one directory. Reservation is synchronous, so concurrent requests in this process
 * can never pick the same name (the original's check-then-create race). Seeded lazily with the directory listing.
 * Create one per task directory and share it between that task's uploads.
 */
export class NameReserver {
  private readonly taken = new Set<string>();
  private seeded = false;

  constructor(private readonly dir: string | null) {}

  reserve(wanted: string): string {
    this.seed();
    for (let n = 0; ; n++) {
      const candidate = uniqueVariant(wanted, n);
      if (!this.taken.has(candidate)) {
        this.taken.add(candidate);
        return candidate;
      }
    }
  }

  release(name: string): void {
    this.taken.delete(name);
  }

  private seed(): void {
    if (this.seeded) return;
    this.seeded = true;
    if (this.dir === null) return;
    try {
      for (const entry of fs.readdirSync(this.dir)) this.taken.add(entry);
    } catch {
      // A missing or unreadable dir: opening the file reports the real error.
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/** busboy 1.x says "Unexpected end of form"/"... of file"; NodeODM (multer) says this, and clients know that text. */
const TRUNCATED = 'Unexpected end of multipart data';

function parserError(err: unknown): StagingError {
  if (err instanceof StagingError) return err;
  const message = errorMessage(err);
  if (/^Unexpected end of (form|file)$/.test(message)) return new StagingError('malformed', TRUNCATED, { cause: err });
  return new StagingError('malformed', message, { cause: err });
}

/** Errors from a file's write path: our own limits, the filesystem, or the part's source stream (parser). */
function writeError(err: unknown): StagingError {
  if (err instanceof StagingError) return err;
  const isSystemError = err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string';
  // The client sees the message: give the code, not the server's paths (the cause keeps them for the logs).
  if (isSystemError) {
    const reason = systemErrorCode(err) ?? errorMessage(err);
    return new StagingError('io', `Cannot store uploaded file: ${reason}`, { cause: err });
  }
  return parserError(err);
}

function contentTypeError(err: unknown, contentType: string): StagingError {
  const message = errorMessage(err);
  // Same text as NodeODM answers (TRANSCRIPTS §4 E).
  if (message === 'Multipart: Boundary not found') return new StagingError('malformed', message);
  return new StagingError('malformed', `Unsupported content type: ${contentType}`);
}

function shortName(name: string): string {
  return name.length > MAX_NAME_IN_MESSAGE ? `${name.slice(0, MAX_NAME_IN_MESSAGE)}…` : name;
}

// ---------------------------------------------------------------------------------------------------------------
// Streaming

/** Passes bytes through, asking `admit` before each chunk so per-file and per-request byte limits cut the write. */
class ByteLimiter extends Transform {
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
function feed(part: Readable, limiter: ByteLimiter): void {
  // The limiter can fail (byte limit) before the pipeline that reports its error is attached (file still
  // opening); without a listener that error would be an uncaught exception. The pipeline still sees it.
  limiter.on('error', () => undefined);
  part.pipe(limiter);
  part.once('error', (err: Error) => limiter.destroy(err));
  part.once('close', () => {
    if (!part.readableEnded) limiter.destroy(new Error('Unexpected end of file'));
  });
  limiter.once('close', () => {
    if (part.readableEnded) return;
    part.unpipe(limiter);
    part.resume();
  });
}

/** Counting semaphore: `acquire` waits for a free slot, `release` hands it to the next waiter. */
class Slots {
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

function waitClosed(stream: Writable): Promise<void> {
  return new Promise((resolve) => {
    if (stream.closed) resolve();
    else stream.once('close', () => resolve());
  });
}

function resolveLimits(partial: Partial<StagingLimits> | undefined): StagingLimits {
  const limits = { ...DEFAULT_STAGING_LIMITS };
  for (const [key, value] of Object.entries(partial ?? {}) as [keyof StagingLimits, number | undefined][]) {
    if (value !== undefined) limits[key] = value;
  }
  return limits;
}

/** busboy's limits are inclusive ("reached" at exactly N), ours are "more than N is too much": hence the +1s. */
function busboyLimits(limits: StagingLimits): busboy.Limits {
  return {
    fieldSize: limits.maxFieldBytes + 1,
    fields: limits.maxFields + 1,
    files: limits.maxFiles + 1,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// One call

class StagingSession {
  private readonly limits: StagingLimits;
  private readonly filesAllowed: boolean;
  private readonly reserve: (wanted: string) => string;
  private readonly fields = new Map<string, string>();
  /** Indexed by upload order; filled when each file is closed. */
  private readonly staged: (StagedFile | undefined)[] = [];
  private readonly writes: Promise<void>[] = [];
  /** Files not yet fully written (queued for a slot or writing). */
  private readonly active = new Set<ByteLimiter>();
  private readonly slots = new Slots(MAX_PARALLEL_WRITES);
  /** Names of every file this call created (or may have), removed if the call fails (names, not paths: a call can create thousands). */
  private readonly created: string[] = [];
  private readonly reserved: string[] = [];
  private error: StagingError | null = null;
  private parser: busboy.Busboy | null = null;
  private fieldCount = 0;
  private totalBytes = 0;
  private readonly idleTimer: NodeJS.Timeout;

  constructor(
    private readonly req: http.IncomingMessage,
    private readonly opts: StageOptions,
  ) {
    this.limits = resolveLimits(opts.limits);
    this.filesAllowed = opts.acceptFiles && opts.dir !== null;
    const fallback = new NameReserver(opts.dir);
    this.reserve = opts.reserveName ?? ((wanted) => fallback.reserve(wanted));
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
      await this.removeCreated();
      throw this.error;
    }
    return { fields: this.fields, files: this.staged.filter((f): f is StagedFile => f !== undefined) };
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
      this.fail(contentTypeError(err, contentType));
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
      this.fail(parserError(err));
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
    const problem = this.error ?? this.checkFilePart(field);
    if (problem) {
      this.fail(problem);
      part.resume(); // drained, never stored: the original stalled here until its 30 s timeout
      return;
    }
    const slot = this.staged.length;
    this.staged.push(undefined);
    let name: string;
    try {
      // Reserved now, synchronously and in upload order, so two parts named alike get a.jpg then a_.jpg.
      name = this.reserveChecked(sanitizeFilename(info.filename));
    } catch (err) {
      this.fail(err instanceof StagingError ? err : new StagingError('io', errorMessage(err), { cause: err }));
      part.resume();
      return;
    }
    const originalName = info.filename ?? '';
    const limiter = new ByteLimiter((fileBytes, chunkBytes) => this.admitBytes(fileBytes, chunkBytes));
    this.active.add(limiter);
    feed(part, limiter);
    this.writes.push(this.writeFile(name, originalName, limiter, slot));
    if (this.active.size >= MAX_PARALLEL_WRITES) this.req.pause();
  }

  private checkFilePart(field: string | undefined): StagingError | null {
    if (field !== 'images' || !this.filesAllowed) {
      return new StagingError('unexpected-field', `Unexpected field ${shortName(field ?? '(unnamed)')}`);
    }
    const count = this.staged.length + 1;
    const maxImages = this.opts.maxImages;
    const overImages =
      maxImages !== null && maxImages !== undefined && (this.opts.existingFiles ?? 0) + count > maxImages;
    if (count > this.limits.maxFiles || overImages) return new StagingError('limit', 'Max images count exceeded.');
    return null;
  }

  private admitBytes(fileBytes: number, chunkBytes: number): StagingError | null {
    if (fileBytes + chunkBytes > this.limits.maxFileBytes) return new StagingError('limit', 'File too large');
    if (this.totalBytes + chunkBytes > this.limits.maxTotalBytes) return new StagingError('limit', 'Upload too large');
    this.totalBytes += chunkBytes;
    return null;
  }

  /** A reserved name, refusing one from a custom `reserveName` that could escape the directory. */
  private reserveChecked(wanted: string): string {
    const name = this.reserve(wanted);
    this.reserved.push(name);
    if (sanitizeFilename(name) !== name) {
      throw new StagingError('io', `Refusing unsafe file name from reserveName: ${shortName(name)}`);
    }
    return name;
  }

  private async writeFile(first: string, originalName: string, limiter: ByteLimiter, slot: number): Promise<void> {
    await this.slots.acquire();
    try {
      // The call may have failed while this file waited for a slot: then there is nothing to create.
      if (limiter.destroyed) throw limiter.errored ?? new StagingError('aborted', 'Upload aborted');
      const { name, handle } = await this.openUnique(first);
      const out = new FileSink(handle);
      try {
        await pipeline(limiter, out);
      } finally {
        // 'finish' means every write completed; also wait for the close so 20000 files do not pile up open fds.
        await waitClosed(out);
      }
      const file: StagedFile = { name, originalName, bytes: limiter.bytes };
      this.staged[slot] = file;
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

  /** Opens `dir/name` with `wx`, so an existing file is never overwritten; on EEXIST asks for another name. */
  private async openUnique(first: string): Promise<{ name: string; handle: fs.promises.FileHandle }> {
    const dir = this.dirOrThrow();
    let name = first;
    for (let attempt = 1; ; attempt++) {
      const filePath = path.join(dir, name);
      try {
        const handle = await fs.promises.open(filePath, 'wx');
        this.created.push(name);
        return { name, handle };
      } catch (err) {
        if (systemErrorCode(err) !== 'EEXIST' || attempt >= MAX_OPEN_ATTEMPTS) throw err;
        name = this.reserveChecked(name);
      }
    }
  }

  private dirOrThrow(): string {
    if (this.opts.dir === null) throw new StagingError('io', 'No upload directory');
    return this.opts.dir;
  }

  private async removeCreated(): Promise<void> {
    const dir = this.opts.dir;
    if (dir !== null) {
      await Promise.all(this.created.map((name) => fs.promises.rm(path.join(dir, name), { force: true }).catch(() => undefined)));
    }
    for (const name of this.reserved) this.opts.releaseName?.(name);
  }
}

/**
 * Parses a request body (multipart/form-data or urlencoded) into fields and, for `images` parts, files written to
 * `opts.dir`. Rejects with a {@link StagingError}; see the module comment for the guarantees.
 */
export function stageMultipart(req: http.IncomingMessage, opts: StageOptions): Promise<StagingResult> {
  return new StagingSession(req, opts).run();
}
