/**
 * The bench's HTTP client side: node:http with keep-alive agents, request bodies generated as streams (never held
 * in memory), a bounded closed-loop load generator and latency statistics.
 */
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import { Readable } from 'node:stream';
import { onCleanup } from './cleanup';

export function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export const MiB = 1024 * 1024;

/** A keep-alive agent that is destroyed by the bench's cleanup if nobody closes it first. */
export function keepAliveAgent(maxSockets = 64): http.Agent {
  const agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets });
  const unregister = onCleanup(() => agent.destroy());
  const destroy = agent.destroy.bind(agent);
  agent.destroy = () => {
    unregister();
    destroy();
  };
  return agent;
}

export interface StreamBody {
  contentType: string;
  contentLength: number;
  /** A fresh stream of the whole body on each call. */
  stream(): Readable;
}

let pattern: Buffer | undefined;
const FILE_CHUNK = 256 * 1024;

/** Incompressible file content: one random 256 KiB block, repeated (the same Buffer each time, never copied). */
function filler(): Buffer {
  pattern ??= randomBytes(FILE_CHUNK);
  return pattern;
}

export interface FileSpec {
  name: string;
  size: number;
}

/**
 * multipart/form-data with text fields and `images` file parts, as NodeODM clients send. The exact Content-Length is
 * known up front (clients such as PyODM send one); file bytes are produced chunk by chunk as the socket drains.
 */
export function multipartBody(fields: Array<[string, string]>, files: FileSpec[]): StreamBody {
  const boundary = `----ClusterOdmBench${randomBytes(12).toString('hex')}`;
  const fieldParts = fields.map(([k, v]) => Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  const fileHeads = files.map((f) =>
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="${f.name}"\r\nContent-Type: image/jpeg\r\n\r\n`,
    ),
  );
  const crlf = Buffer.from('\r\n');
  const end = Buffer.from(`--${boundary}--\r\n`);
  const contentLength =
    fieldParts.reduce((s, b) => s + b.length, 0) +
    files.reduce((s, f, i) => s + (fileHeads[i]?.length ?? 0) + f.size + crlf.length, 0) +
    end.length;
  function* chunks(): Generator<Buffer> {
    yield* fieldParts;
    const block = filler();
    for (const [i, f] of files.entries()) {
      const head = fileHeads[i];
      if (head) yield head;
      for (let left = f.size; left > 0; left -= FILE_CHUNK) yield left >= FILE_CHUNK ? block : block.subarray(0, left);
      yield crlf;
    }
    yield end;
  }
  return {
    contentType: `multipart/form-data; boundary=${boundary}`,
    contentLength,
    stream: () => Readable.from(chunks(), { objectMode: false }),
  };
}

export function formBody(fields: Record<string, string>): Buffer {
  return Buffer.from(new URLSearchParams(fields).toString());
}

export interface Answer {
  status: number;
  body: Buffer;
}

/** One request; the answer body is buffered (answers are small JSON), request bodies stream. */
export function request(
  url: string,
  opts: { method?: string; agent: http.Agent; body?: StreamBody | Buffer; contentType?: string; timeoutMs?: number } ,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = {};
    const body = opts.body;
    if (Buffer.isBuffer(body)) {
      headers['content-type'] = opts.contentType ?? 'application/x-www-form-urlencoded';
      headers['content-length'] = body.length;
    } else if (body) {
      headers['content-type'] = body.contentType;
      headers['content-length'] = body.contentLength;
    } else if (opts.method === 'POST') {
      headers['content-length'] = 0;
    }
    const req = http.request(url, { method: opts.method ?? 'GET', agent: opts.agent, headers });
    req.setTimeout(opts.timeoutMs ?? 600_000, () => req.destroy(new Error(`no data for ${opts.timeoutMs ?? 600_000} ms: ${url}`)));
    req.once('error', reject);
    req.once('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.once('error', reject);
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
    });
    if (Buffer.isBuffer(body)) req.end(body);
    else if (body) body.stream().pipe(req);
    else req.end();
  });
}

/** A JSON answer that is not a NodeODM/ClusterODM `{error}`; throws with the error text otherwise. */
export async function requestJson(url: string, opts: Parameters<typeof request>[1]): Promise<Record<string, unknown>> {
  const a = await request(url, opts);
  const text = a.body.toString('utf8');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${opts.method ?? 'GET'} ${url}: HTTP ${a.status}, not JSON: ${text.slice(0, 200)}`);
  }
  if (typeof v !== 'object' || v === null) throw new Error(`${url}: unexpected answer ${text.slice(0, 200)}`);
  const o = v as Record<string, unknown>;
  if (typeof o['error'] === 'string') throw new Error(`${opts.method ?? 'GET'} ${url}: ${o['error']}`);
  return o;
}

/** Streams a download to nowhere; resolves with its size and duration. */
export function download(url: string, agent: http.Agent): Promise<{ bytes: number; ms: number; status: number }> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const req = http.get(url, { agent }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.once('error', reject);
      res.once('end', () => resolve({ bytes, ms: now() - t0, status: res.statusCode ?? 0 }));
    });
    req.setTimeout(600_000, () => req.destroy(new Error(`download stalled: ${url}`)));
    req.once('error', reject);
  });
}

export interface LoadResult {
  concurrency: number;
  /** Requests completed inside the measuring window(s). */
  count: number;
  errors: number;
  /** Length of the measuring window(s), ms. */
  windowMs: number;
  rps: number;
  p50: number;
  p99: number;
  max: number;
  /** Every counted request's latency, ms (unsorted). */
  latencies: number[];
  /** What the first failed request got (an HTTP status or an error message). */
  firstError?: string;
}

function getStatus(url: URL, agent: http.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
      res.once('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.once('error', reject);
  });
}

function summarizeLoad(concurrency: number, latencies: number[], errors: number, windowMs: number): LoadResult {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    concurrency,
    count: latencies.length,
    errors,
    windowMs,
    rps: (latencies.length / windowMs) * 1000,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1] ?? NaN,
    latencies,
  };
}

/**
 * Closed loop: `concurrency` workers each send GET `url` again as soon as the previous answer has been read, through
 * `agent` (keep-alive, `concurrency` sockets; pass the same agent to several calls so connections are reused). After
 * `warmupMs`, requests that complete within the next `durationMs` are counted and timed. Bounded: nothing starts
 * after the window closes.
 */
export async function closedLoop(
  url: string,
  o: { concurrency: number; warmupMs: number; durationMs: number; agent?: http.Agent },
): Promise<LoadResult> {
  const agent = o.agent ?? keepAliveAgent(o.concurrency);
  const target = new URL(url);
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const from = now() + o.warmupMs;
  const to = from + o.durationMs;
  const worker = async (): Promise<void> => {
    for (;;) {
      const t0 = now();
      if (t0 >= to) return;
      let ok = false;
      let why = '';
      try {
        const status = await getStatus(target, agent);
        ok = status === 200;
        why = `HTTP ${status}`;
      } catch (e: unknown) {
        why = e instanceof Error ? e.message : String(e);
      }
      const t1 = now();
      if (t1 < from || t1 > to) continue;
      if (ok) latencies.push(t1 - t0);
      else if (errors++ === 0) firstError = why;
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency }, worker));
  } finally {
    if (!o.agent) agent.destroy();
  }
  return { ...summarizeLoad(o.concurrency, latencies, errors, o.durationMs), ...(firstError === undefined ? {} : { firstError }) };
}

/** Several measuring windows of the same load as one result. */
export function mergeLoads(parts: readonly LoadResult[]): LoadResult {
  const latencies = parts.flatMap((p) => p.latencies);
  const merged = summarizeLoad(
    parts[0]?.concurrency ?? 0,
    latencies,
    parts.reduce((s, p) => s + p.errors, 0),
    parts.reduce((s, p) => s + p.windowMs, 0),
  );
  const firstError = parts.find((p) => p.firstError !== undefined)?.firstError;
  return firstError === undefined ? merged : { ...merged, firstError };
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? NaN;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 0.5);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
