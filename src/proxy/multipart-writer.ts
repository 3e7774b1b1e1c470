/**
 * multipart/form-data request bodies streamed from disk.
 *
 * Files are never read into memory: the body is a sequence of small header buffers and file
 * ranges, read lazily as the socket drains. The exact Content-Length is computed up front from
 * the files' sizes, so requests to nodes are never chunked (some proxies in front of NodeODM
 * reject chunked uploads) and a node can refuse an oversized body before it is sent.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Readable } from 'node:stream';

export interface FieldPart {
  name: string;
  value: string;
}

export interface FilePart {
  name: string;
  /** Where the bytes are read from. */
  filePath: string;
  /** The name the receiver sees (multer stores the file under it). */
  fileName: string;
}

export type MultipartPart = FieldPart | FilePart;

export interface MultipartBody {
  /** `multipart/form-data; boundary=...` */
  contentType: string;
  /** Exact size of the body in bytes. */
  contentLength: number;
  /** A fresh stream of the whole body on every call, so a failed request can be re-sent. */
  stream: () => Readable;
}

/** A file range of the body; its size is fixed when the body is built. */
interface FileSegment {
  filePath: string;
  fileName: string;
  size: number;
}

type Segment = Buffer | FileSegment;

const CRLF = Buffer.from('\r\n');

export async function buildMultipart(parts: readonly MultipartPart[]): Promise<MultipartBody> {
  // 32 random hex digits cannot plausibly occur inside a file, which is all RFC 2046 asks.
  const boundary = `----ClusterODMFormBoundary${randomBytes(16).toString('hex')}`;
  const segments = (await Promise.all(parts.map((part) => partSegments(boundary, part)))).flat();
  segments.push(Buffer.from(`--${boundary}--\r\n`));
  const contentLength = segments.reduce((sum, s) => sum + (Buffer.isBuffer(s) ? s.length : s.size), 0);
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    contentLength,
    stream: () => Readable.from(bodyChunks(segments), { objectMode: false }),
  };
}

async function partSegments(boundary: string, part: MultipartPart): Promise<Segment[]> {
  if (!('filePath' in part)) {
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="${quoteParam(part.name)}"\r\n\r\n`;
    return [Buffer.from(head + part.value + '\r\n', 'utf8')];
  }
  const { size } = await fsp.stat(part.filePath);
  const head =
    `--${boundary}\r\nContent-Disposition: form-data; name="${quoteParam(part.name)}"; ${fileNameParams(part.fileName)}\r\n` +
    'Content-Type: application/octet-stream\r\n\r\n';
  return [Buffer.from(head, 'utf8'), { filePath: part.filePath, fileName: part.fileName, size }, CRLF];
}

async function* bodyChunks(segments: readonly Segment[]): AsyncGenerator<Buffer> {
  for (const segment of segments) {
    if (Buffer.isBuffer(segment)) yield segment;
    else yield* fileChunks(segment);
  }
}

/**
 * Reads exactly the stat'ed number of bytes. A file that shrank or grew since would make the
 * announced Content-Length a lie and corrupt the upload, so that fails loudly instead.
 */
async function* fileChunks(file: FileSegment): AsyncGenerator<Buffer> {
  let read = 0;
  if (file.size > 0) {
    // Reading one byte past the end tells "grew" apart from "same size".
    for await (const chunk of fs.createReadStream(file.filePath, { start: 0, end: file.size })) {
      const buf = chunk as Buffer;
      const keep = Math.min(buf.length, file.size - read);
      read += buf.length;
      if (keep > 0) yield keep === buf.length ? buf : buf.subarray(0, keep);
    }
  } else {
    read = (await fsp.stat(file.filePath)).size;
  }
  if (read !== file.size) {
    throw new Error(`File ${file.fileName} changed size while being uploaded (${file.size} → ${read} bytes)`);
  }
}

/** Control characters (CR/LF included) could end the header line; they never belong in a name. */
function stripControls(value: string): string {
  return value.replace(/[\u0000-\u001f\u007f]/g, '');
}

/** Quoted-string content the way browsers write it (WHATWG): `"` becomes %22. */
function quoteParam(value: string): string {
  return stripControls(value).replace(/"/g, '%22');
}

/**
 * `filename="..."`, plus the RFC 5987 `filename*=UTF-8''...` form when the plain form would lose
 * information: busboy ≥1 decodes the plain form as latin1 (mangling UTF-8) and cannot carry a
 * quote or backslash back, but prefers `filename*` when present; busboy 0.x takes the last one.
 */
function fileNameParams(fileName: string): string {
  const clean = stripControls(fileName);
  const plain = `filename="${quoteParam(clean)}"`;
  if (!/[^\x20-\x7e]|["\\%]/.test(clean)) return plain;
  return `${plain}; filename*=UTF-8''${percentEncodeUtf8(clean)}`;
}

/** RFC 5987 value-chars: alphanumerics and a few marks stay, every other UTF-8 byte is %XX. */
function percentEncodeUtf8(value: string): string {
  let out = '';
  // Buffer.from replaces lone surrogates with U+FFFD, where encodeURIComponent would throw.
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    out += /[A-Za-z0-9.\-_~]/.test(ch) ? ch : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
