import type * as http from 'node:http';
import busboy from 'busboy';

/** Bodies ClusterODM reads whole (cancel/remove/restart, the /commit webhook) are small; anything larger is refused. */
export const SMALL_BODY_LIMIT = 1024 * 1024;

export class BodyError extends Error {}

/** Reads the whole body, refusing more than `limit` bytes (the original buffered without any bound). */
export function readBody(req: http.IncomingMessage, limit = SMALL_BODY_LIMIT): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      reject(new BodyError('Request body too large'));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new BodyError('Request body too large'));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
    req.on('aborted', () => reject(new BodyError('Request aborted')));
  });
}

/**
 * Form fields of a small body, whatever its encoding: urlencoded, multipart (fields only) or a JSON object
 * (NodeODM accepts JSON; the original's busboy-only parsing failed on it, its issue #138). Non-string JSON values
 * are kept as JSON text.
 */
export async function parseFields(body: Buffer, contentType: string | undefined): Promise<Map<string, string>> {
  const type = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  const text = body.toString('utf8');
  if (type === 'application/json' || (type === '' && /^\s*\{/.test(text))) return jsonFields(text);
  if (type === 'multipart/form-data') return multipartFields(body, contentType ?? '');
  if (type === 'application/x-www-form-urlencoded' || type === '' || type === 'text/plain') {
    return new Map(new URLSearchParams(text));
  }
  throw new BodyError(`Unsupported content type: ${type}`);
}

function jsonFields(text: string): Map<string, string> {
  if (text.trim() === '') return new Map();
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e: unknown) {
    throw new BodyError(e instanceof Error ? e.message : 'Invalid JSON');
  }
  const out = new Map<string, string>();
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return out;
  for (const [k, val] of Object.entries(v)) {
    if (val === undefined || val === null) continue;
    out.set(k, typeof val === 'string' ? val : JSON.stringify(val));
  }
  return out;
}

function multipartFields(body: Buffer, contentType: string): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    const out = new Map<string, string>();
    let bb: busboy.Busboy;
    try {
      bb = busboy({ headers: { 'content-type': contentType }, limits: { fields: 100, fieldSize: SMALL_BODY_LIMIT } });
    } catch (e: unknown) {
      reject(new BodyError(e instanceof Error ? e.message : 'Malformed multipart body'));
      return;
    }
    bb.on('field', (name, value) => out.set(name, value));
    bb.on('file', (_name, stream) => {
      // A form cut off inside a file part errors that part too: without a listener, an uncaught exception.
      stream.on('error', () => undefined);
      stream.resume();
    });
    bb.on('close', () => resolve(out));
    bb.on('error', (e: unknown) => reject(new BodyError(e instanceof Error ? e.message : 'Malformed multipart body')));
    bb.end(body);
  });
}
