/** Uploads as NodeODM (multer) stores them, and task options as it parses them. (split from test-node.ts) */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import { TaskOption } from './api';
import { Fields, isRecord, drain, multipartError } from './http-util';
/** Name under which an uploaded file is stored: like multer + NodeODM's utils.sanitize. */
export function storedFileName(original: string | undefined): string {
  const base = path.basename((original ?? '').replace(/\\/g, '/')).replace(/[/\\]/g, '_');
  if (base === '' || base === '.' || base === '..') return 'unnamed';
  return base === 'body.json' ? '_body.json' : base;
}

export interface MultipartResult {
  fields: Fields;
  files: string[];
}

/**
 * Streams a multipart body: fields are collected, `images` file parts are written to `fileDir`
 * (a null dir accepts no files, like multer().none()). Any other file field is multer's
 * "Unexpected field". On failure the files written by this request are deleted.
 */
/** How the files of an upload are stored (see the TestNodeOptions of the same names). */
export interface StoreRules {
  uniqueUploadNames: boolean;
  keepPartialUploads: boolean;
}

export const OVERWRITE: StoreRules = { uniqueUploadNames: false, keepPartialUploads: false };

/** NodeODM's assureUniqueFilename: `_` before the last extension until the name is free. */
export function uniqueFileName(dir: string, name: string, taken: ReadonlySet<string>): string {
  let candidate = name;
  while (taken.has(candidate) || fs.existsSync(path.join(dir, candidate))) {
    const dot = candidate.lastIndexOf('.');
    candidate = dot > 0 ? `${candidate.slice(0, dot)}_${candidate.slice(dot)}` : `${candidate}_`;
  }
  return candidate;
}

export function receiveMultipart(req: http.IncomingMessage, fileDir: string | null, rules: StoreRules = OVERWRITE,
  gate: Transform | null = null,
): Promise<MultipartResult> {
  return new Promise((resolve, reject) => {
    const source: Readable = gate ?? req;
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: req.headers });
    } catch (err) {
      drain(req);
      reject(multipartError(err));
      return;
    }
    const fields: Fields = {};
    const files: string[] = [];
    const writes: Promise<void>[] = [];
    const outputs: { out: fs.WriteStream; target: string }[] = [];
    let failed = false;

    const fail = (err: unknown, dropped = false): void => {
      if (failed) return;
      failed = true;
      source.unpipe(parser);
      if (gate) {
        req.unpipe(gate);
        gate.destroy();
      }
      drain(req);
      // multer leaves what a dropped connection cut short on disk; every other failure removes the request's files.
      if (dropped && rules.keepPartialUploads) {
        for (const { out } of outputs) out.end();
        reject(multipartError(err));
        return;
      }
      // As multer: the request's error is passed on once its files are removed.
      void Promise.all(outputs.map(({ out, target }) => discardFile(out, target))).then(() => reject(multipartError(err)));
    };

    parser.on('field', (name, value) => {
      fields[name] = value;
    });
    parser.on('file', (name, stream, info) => {
      if (fileDir === null || name !== 'images') {
        stream.resume();
        fail(new Error('Unexpected field'));
        return;
      }
      const wanted = storedFileName(info.filename);
      const fileName = rules.uniqueUploadNames ? uniqueFileName(fileDir, wanted, new Set(files)) : wanted;
      const target = path.join(fileDir, fileName);
      const out = fs.createWriteStream(target);
      files.push(fileName);
      outputs.push({ out, target });
      // Each write handles its own error so a late failure never becomes an unhandled rejection.
      writes.push(pipeline(stream, out).catch(fail));
    });
    parser.on('error', fail);
    parser.on('close', () => {
      void Promise.all(writes).then(() => {
        if (!failed) resolve({ fields, files });
      });
    });
    req.on('close', () => {
      if (!req.complete) fail(new Error('Request aborted'), true);
    });
    if (gate) req.pipe(gate);
    source.pipe(parser);
  });
}

/**
 * Passes the first chunk of a body on, then holds every later one: backpressure pauses the request and the
 * socket stops being read (the `stallUploads` knob).
 */
export function stallAfterFirstChunk(): { gate: Transform; release: () => void } {
  let first = true;
  let released = false;
  let held: (() => void) | null = null;
  const gate = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      if (first || released) {
        first = false;
        callback(null, chunk);
        return;
      }
      // Later chunks: the callback is not called (until release), so nothing more is read.
      held = () => callback(null, chunk);
    },
  });
  const release = (): void => {
    released = true;
    const h = held;
    held = null;
    h?.();
  };
  return { gate, release };
}

export function discardFile(out: fs.WriteStream, target: string): Promise<void> {
  return new Promise((resolve) => {
    const unlink = (): void => fs.rm(target, { force: true }, () => resolve());
    if (out.closed) unlink();
    else {
      out.once('close', unlink);
      out.destroy();
    }
  });
}

/** Parses the `options` field like NodeODM's odmInfo.filterOptions (minus value/range checks). */
export function parseTaskOptions(raw: unknown, known: ReadonlySet<string>): TaskOption[] {
  const parsed: unknown = typeof raw === 'string' ? JSON.parse(raw) : raw;
  if (!Array.isArray(parsed)) return [];
  const result: TaskOption[] = [];
  for (const entry of parsed) {
    if (!isRecord(entry)) continue;
    const name = entry['name'];
    if (typeof name === 'string' && known.has(name)) result.push({ name, value: entry['value'] });
  }
  return result;
}

