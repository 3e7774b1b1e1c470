/** The options fixture, request fields and the responders of the test node. (split from test-node.ts) */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as path from 'node:path';


// ---------------------------------------------------------------------------------------------
// Options fixture (the answer of a real NodeODM 2.2.4 to GET /options)
// ---------------------------------------------------------------------------------------------

export interface OptionsFixture {
  /** Served byte for byte, as the real node answered. */
  raw: Buffer;
  /** Option names the node knows; NodeODM silently drops the others. */
  names: ReadonlySet<string>;
}

export let fixturePromise: Promise<OptionsFixture> | undefined;

export function loadOptionsFixture(): Promise<OptionsFixture> {
  fixturePromise ??= readOptionsFixture();
  return fixturePromise;
}

export async function readOptionsFixture(): Promise<OptionsFixture> {
  // Compiled to dist/test/helpers/test-node/, but the JSON stays in test/fixtures/ (no resolveJsonModule).
  const candidates = [
    path.resolve(__dirname, '../../fixtures/nodeodm-options.json'),
    path.resolve(__dirname, '../../../../test/fixtures/nodeodm-options.json'),
  ];
  const file = candidates.find((candidate) => fs.existsSync(candidate));
  if (file === undefined) throw new Error(`nodeodm-options.json not found in ${candidates.join(', ')}`);
  const raw = await fsp.readFile(file);
  const parsed: unknown = JSON.parse(raw.toString('utf8'));
  const names = new Set<string>();
  if (Array.isArray(parsed)) {
    for (const entry of parsed) {
      const name = isRecord(entry) ? entry['name'] : undefined;
      if (typeof name === 'string') names.add(name);
    }
  }
  return { raw, names };
}

// ---------------------------------------------------------------------------------------------
// Small helpers: values, responses, bodies
// ---------------------------------------------------------------------------------------------

export type Fields = Record<string, unknown>;

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function fieldString(fields: Fields, key: string): string | undefined {
  const value = fields[key];
  return typeof value === 'string' ? value : undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-7][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

// NodeODM runs the `cors` middleware and Express on every route.
export const COMMON_HEADERS = { 'Access-Control-Allow-Origin': '*', 'X-Powered-By': 'Express' } as const;

export function canRespond(res: http.ServerResponse): boolean {
  return !res.headersSent && !res.destroyed && !res.writableEnded;
}

/** Express's res.json(): status 200, compact JSON, utf-8 content type. */
export function sendJson(res: http.ServerResponse, body: unknown): void {
  sendBody(res, 200, 'application/json; charset=utf-8', Buffer.from(JSON.stringify(body)));
}

export function sendBody(res: http.ServerResponse, status: number, type: string, data: Buffer, extra: http.OutgoingHttpHeaders = {}): void {
  if (!canRespond(res)) return;
  res.writeHead(status, { ...COMMON_HEADERS, ...extra, 'Content-Type': type, 'Content-Length': data.length });
  res.end(data);
}

export const HTML_ESCAPES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => HTML_ESCAPES[ch] ?? ch);
}

/** Express's finalhandler page for unmatched routes. */
export function sendNotFound(req: http.IncomingMessage, res: http.ServerResponse, rawPath: string): void {
  const message = escapeHtml(`Cannot ${req.method ?? 'GET'} ${rawPath}`);
  const html =
    '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Error</title>\n</head>\n' +
    `<body>\n<pre>${message}</pre>\n</body>\n</html>\n`;
  sendBody(res, 404, 'text/html; charset=utf-8', Buffer.from(html), {
    'Content-Security-Policy': "default-src 'none'",
    'X-Content-Type-Options': 'nosniff',
  });
}

/** Reads the rest of a request and throws it away, so an early answer leaves the connection usable. */
export function drain(req: http.IncomingMessage): void {
  req.resume();
}

export function contentType(req: http.IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

export function isMultipart(req: http.IncomingMessage): boolean {
  return contentType(req).startsWith('multipart/');
}

export const MAX_SIMPLE_BODY_BYTES = 1024 * 1024;

/** Buffers a small urlencoded / JSON body (never used for uploads). */
export async function readSmallBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_SIMPLE_BODY_BYTES) throw new Error('request entity too large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** body-parser's urlencoded and json parsers; anything else leaves the body empty. */
export async function readUrlencodedOrJson(req: http.IncomingMessage): Promise<Fields> {
  const type = contentType(req);
  if (type !== 'application/json' && type !== 'application/x-www-form-urlencoded') {
    drain(req);
    return {};
  }
  const text = (await readSmallBody(req)).toString('utf8');
  if (type === 'application/x-www-form-urlencoded') return Object.fromEntries(new URLSearchParams(text));
  if (text.length === 0) return {};
  const parsed: unknown = JSON.parse(text); // its message is what NodeODM answers
  return isRecord(parsed) ? parsed : {};
}

/** Mirrors busboy 0.x (the one multer uses) wording, which is what NodeODM answers. */
export function multipartError(err: unknown): Error {
  const message = errorMessage(err);
  if (message === 'Unexpected end of form' || message === 'Unexpected end of file') {
    return new Error('Unexpected end of multipart data');
  }
  return err instanceof Error ? err : new Error(message);
}

