/**
 * A streaming scan of a multipart/form-data body: finds the part delimiters with `Buffer.indexOf` (native memmem)
 * and hands each part's headers and its data to a handler, as subarrays of the input chunks (nothing is copied but
 * header blocks and a delimiter cut between two chunks, both a few hundred bytes). It reads nothing into streams of
 * its own, so the body can go on as it is (to a node) while the scan counts and checks its parts.
 *
 * The parts are read the way busboy 1.x (which the other upload routes use) reads them, so a file gets the same name
 * either way: the body behaves as if it started with CRLF (a first delimiter without the CRLF before it), a delimiter
 * is CRLF `--` boundary, then `--` ends the body (the rest is ignored) and CRLF starts a part's header block; a
 * delimiter followed by anything else starts a part that is skipped. A header block is at most 16 KiB of
 * `name: value` lines (busboy's rules, folded lines included), a part without a `form-data` disposition is skipped,
 * and the disposition is parsed by busboy's own functions (UTF-8 parameters, `filename*` preferred).
 */
import { StagingError, TRUNCATED } from './staging-errors';

/** busboy's lib/utils.js (no typings): the same parsing of Content-Type and Content-Disposition. */
interface BusboyUtils {
  parseContentType(str: string): { type: string; subtype: string; params: Record<string, string> } | undefined;
  parseDisposition(str: string, decoder: unknown): { type: string; params: Record<string, string> } | undefined;
  getDecoder(charset: string): unknown;
}
// eslint-disable-next-line @typescript-eslint/no-require-imports
const busboyUtils = require('busboy/lib/utils.js') as BusboyUtils;
const UTF8_PARAMS = busboyUtils.getDecoder('utf8');

/** busboy's (and Node's) cap on a header block. */
const MAX_HEADER_BYTES = 16 * 1024;
/** busboy keeps the first 1999 header lines of a part and drops the rest. */
const MAX_HEADER_PAIRS = 2000;
const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');

/** What a part's headers say about it. */
export interface PartInfo {
  /** `name` of the disposition (undefined when there is none). */
  field: string | undefined;
  /** undefined: a field (no filename, not application/octet-stream). */
  filename: string | undefined;
  file: boolean;
}

export interface ScanHandler {
  /** A part begins (its data follows, through `data`, until `end`). */
  start(part: PartInfo): void;
  /** Bytes of the current part: a subarray of a chunk given to `push` (keep it, it is not reused). */
  data(bytes: Buffer): void;
  /** The current part is complete (its closing delimiter was seen). */
  end(): void;
}

/** The boundary of a multipart/form-data type, or null when the type is anything else (or has no boundary). */
export function multipartBoundary(contentType: string | undefined): string | null {
  if (typeof contentType !== 'string') return null;
  const t = busboyUtils.parseContentType(contentType);
  if (!t || t.type !== 'multipart' || t.subtype !== 'form-data') return null;
  const boundary = t.params['boundary'];
  return typeof boundary === 'string' ? boundary : null;
}

const enum State {
  /** Looking for a delimiter; bytes before it are the current part's data (or skipped). */
  Search,
  /** Right after a delimiter: `--` or CRLF decides. */
  AfterDelimiter,
  /** In a header block. */
  Headers,
  /** After the closing delimiter: the epilogue, ignored. */
  Done,
}

export class MultipartScanner {
  private readonly delimiter: Buffer;
  private state = State.Search;
  /** The tail of the last chunk that may begin a delimiter (a prefix of it; a subarray, no copy). */
  private carry: Buffer;
  /** In Search: whether the bytes before the next delimiter belong to a part the handler gets. */
  private inPart = false;
  /** AfterDelimiter: the first of the two bytes, when a chunk ended between them (-1: none). */
  private afterByte = -1;
  /** A header block cut across chunks (copied: small, and rare). */
  private header: Buffer | null = null;
  private failure: StagingError | null = null;

  constructor(
    boundary: string,
    private readonly handler: ScanHandler,
  ) {
    this.delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
    // As if the body began with CRLF: a first delimiter needs none before it.
    this.carry = CRLF;
  }

  /** True once the closing delimiter was read. */
  get complete(): boolean {
    return this.state === State.Done;
  }

  get error(): StagingError | null {
    return this.failure;
  }

  /** Scans the next chunk of the body. After an error (see `error`), further chunks are ignored. */
  push(chunk: Buffer): void {
    let pos = 0;
    if (this.carry.length > 0 && this.state === State.Search) pos = this.joinCarry(chunk);
    while (pos < chunk.length && this.failure === null) {
      switch (this.state) {
        case State.Search:
          pos = this.search(chunk, pos);
          break;
        case State.AfterDelimiter:
          pos = this.afterDelimiter(chunk, pos);
          break;
        case State.Headers:
          pos = this.headers(chunk, pos);
          break;
        case State.Done:
          return;
      }
    }
  }

  /** The body has ended: an error unless the closing delimiter was read. */
  finish(): StagingError | null {
    if (this.failure === null && this.state !== State.Done) {
      // Cut inside a header block too: busboy checks for the closing delimiter first.
      this.failure = new StagingError('malformed', TRUNCATED);
    }
    return this.failure;
  }

  private fail(message: string): void {
    this.failure ??= new StagingError('malformed', message);
  }

  /**
   * The carry (a delimiter's beginning at the end of the last chunk) against the start of this one. A delimiter
   * that starts in the carry ends within the first `delimiter.length - 1` bytes of the chunk, so only those are
   * joined to it. Returns where the scan of the chunk goes on.
   */
  private joinCarry(chunk: Buffer): number {
    const carry = this.carry;
    const d = this.delimiter;
    if (carry.length + chunk.length < 2 * d.length) {
      // A tiny chunk: scan carry and chunk as one (a copy of a few bytes); the rest of this call has nothing left.
      this.carry = Buffer.alloc(0);
      const joined = Buffer.concat([carry, chunk]);
      let pos = 0;
      while (pos < joined.length && this.failure === null && this.state !== State.Done) {
        if (this.state === State.Search) pos = this.search(joined, pos);
        else if (this.state === State.AfterDelimiter) pos = this.afterDelimiter(joined, pos);
        else pos = this.headers(joined, pos);
      }
      return chunk.length;
    }
    const head = Buffer.concat([carry, chunk.subarray(0, d.length - 1)]);
    const at = head.indexOf(d);
    this.carry = Buffer.alloc(0);
    if (at !== -1 && at < carry.length) {
      this.emit(carry.subarray(0, at));
      this.onDelimiter();
      return at + d.length - carry.length;
    }
    // No delimiter starts in the carry: all of it is data.
    this.emit(carry);
    return 0;
  }

  private search(chunk: Buffer, pos: number): number {
    const d = this.delimiter;
    const at = chunk.indexOf(d, pos);
    if (at !== -1) {
      this.emit(chunk.subarray(pos, at));
      this.onDelimiter();
      return at + d.length;
    }
    // The earliest position in the last delimiter.length - 1 bytes from which the rest is a delimiter's beginning.
    const first = d[0] as number;
    let tail = chunk.indexOf(first, Math.max(pos, chunk.length - d.length + 1));
    while (tail !== -1 && d.compare(chunk, tail, chunk.length, 0, chunk.length - tail) !== 0) {
      tail = chunk.indexOf(first, tail + 1);
    }
    if (tail === -1) tail = chunk.length;
    this.emit(chunk.subarray(pos, tail));
    this.carry = chunk.subarray(tail);
    return chunk.length;
  }

  private emit(bytes: Buffer): void {
    if (this.inPart && bytes.length > 0) this.handler.data(bytes);
  }

  private onDelimiter(): void {
    if (this.inPart) {
      this.inPart = false;
      this.handler.end();
    }
    this.state = State.AfterDelimiter;
    this.afterByte = -1;
  }

  private afterDelimiter(chunk: Buffer, pos: number): number {
    let a = this.afterByte;
    let p = pos;
    if (a === -1) {
      a = chunk[p++] as number;
      if (p === chunk.length) {
        this.afterByte = a;
        return p;
      }
    }
    const b = chunk[p++] as number;
    this.afterByte = -1;
    if (a === 0x2d && b === 0x2d) {
      this.state = State.Done;
      return chunk.length;
    }
    if (a === 0x0d && b === 0x0a) {
      this.state = State.Headers;
      // The header block is looked for as CRLF ... CRLF CRLF: an empty block is then found too (and refused).
      this.header = pos === p - 2 ? null : Buffer.from(CRLF);
      return this.header === null ? p - 2 : p;
    }
    // Neither: busboy skips such a part. The bytes are scanned again (they may begin a delimiter; a byte left from
    // the last chunk cannot, as a delimiter begins with CRLF).
    this.state = State.Search;
    return pos;
  }

  private headers(chunk: Buffer, pos: number): number {
    let block: Buffer;
    let next: number;
    if (this.header === null) {
      const at = chunk.indexOf(HEADER_END, pos);
      if (at - pos > MAX_HEADER_BYTES + 2) return this.failHeader(chunk);
      if (at === -1) {
        if (chunk.length - pos > MAX_HEADER_BYTES + 5) return this.failHeader(chunk);
        this.header = Buffer.from(chunk.subarray(pos));
        return chunk.length;
      }
      block = chunk.subarray(pos + 2, at);
      next = at + 4;
    } else {
      const had = this.header.length;
      const joined = Buffer.concat([this.header, chunk.subarray(pos, pos + MAX_HEADER_BYTES + 6)]);
      const at = joined.indexOf(HEADER_END, Math.max(0, had - 3));
      if (at === -1 || at > MAX_HEADER_BYTES + 2) {
        if (joined.length > MAX_HEADER_BYTES + 5) return this.failHeader(chunk);
        this.header = joined;
        return pos + (joined.length - had);
      }
      block = joined.subarray(2, at);
      next = pos + at + 4 - had;
    }
    this.header = null;
    const part = parsePartHeaders(block);
    if (part === null) return this.failHeader(chunk);
    this.state = State.Search;
    if (part !== 'skip') {
      this.inPart = true;
      this.handler.start(part);
    }
    return next;
  }

  private failHeader(chunk: Buffer): number {
    this.fail('Malformed part header');
    return chunk.length;
  }
}

/** busboy's header-name characters (RFC 7230 tchar) and header-value characters (VCHAR, SP, HTAB, obs-text). */
const TOKEN = new Uint8Array(256);
const VCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0; c < 256; c++) {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) TOKEN[c] = 1;
  if (c === 0x09 || (c >= 0x20 && c !== 0x7f)) VCHAR[c] = 1;
}

/**
 * A part's header block (without the CRLF CRLF that ends it) as busboy reads it: null when it is malformed, 'skip'
 * for a part busboy ignores (no form-data disposition).
 */
export function parsePartHeaders(block: Buffer): PartInfo | 'skip' | null {
  if (block.length === 0) return null;
  const headers = new Map<string, string>();
  let pairs = 0;
  let name = '';
  let value = '';
  const lines = block.toString('latin1').split('\r\n');
  const store = (): void => {
    if (++pairs < MAX_HEADER_PAIRS) {
      const key = name.toLowerCase();
      if (!headers.has(key)) headers.set(key, value);
    }
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    if (i > 0 && (line.startsWith(' ') || line.startsWith('\t'))) {
      // A folded line continues the value (busboy keeps the whitespace).
      if (!validValue(line)) return null;
      value += line;
      continue;
    }
    if (i > 0) store();
    const colon = line.indexOf(':');
    if (colon <= 0) return null;
    for (let k = 0; k < colon; k++) if (TOKEN[line.charCodeAt(k)] !== 1) return null;
    name = line.slice(0, colon);
    value = line.slice(colon + 1).replace(/^[ \t]+/, '');
    if (!validValue(value)) return null;
  }
  store();
  const disposition = headers.get('content-disposition');
  if (disposition === undefined) return 'skip';
  const disp = busboyUtils.parseDisposition(disposition, UTF8_PARAMS);
  if (!disp || disp.type !== 'form-data') return 'skip';
  const field = disp.params['name'] || undefined;
  // busboy's tests are truthiness tests: an empty filename is no filename.
  const fileName = disp.params['filename*'] || disp.params['filename'] || undefined;
  let type = 'text/plain';
  const contentType = headers.get('content-type');
  if (contentType !== undefined) {
    const t = busboyUtils.parseContentType(contentType);
    if (t) type = `${t.type}/${t.subtype}`;
  }
  return { field, filename: fileName, file: type === 'application/octet-stream' || fileName !== undefined };
}

function validValue(v: string): boolean {
  for (let k = 0; k < v.length; k++) if (VCHAR[v.charCodeAt(k)] !== 1) return false;
  return true;
}
