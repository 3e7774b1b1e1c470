/** Shared pieces of the reliability suite: a seeded PRNG, task forms, JSON calls, handle counting. */
import * as fs from 'node:fs';

/** mulberry32: a tiny seeded PRNG, so a failing run can be replayed from its printed seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of a test: `env` when set (to replay a failure), else a fresh one. Printed either way. */
export function seedFrom(env: string, label: string): number {
  const raw = process.env[env];
  const seed = raw !== undefined && raw !== '' ? Number(raw) >>> 0 : Math.floor(Math.random() * 2 ** 32);
  process.stdout.write(`# ${label}: seed ${seed} (replay with ${env}=${seed})\n`);
  return seed;
}

/** Unhandled rejections while the test runs, collected (and the listener removed when it ends). */
export function captureUnhandled(t: TestContext): unknown[] {
  const seen: unknown[] = [];
  const on = (e: unknown): void => void seen.push(e);
  process.on('unhandledRejection', on);
  t.after(() => process.off('unhandledRejection', on));
  return seen;
}

export interface Image {
  name: string;
  data: Buffer;
}

export function images(n: number, prefix = 'img', size = 2000): Image[] {
  return Array.from({ length: n }, (_, i) => ({ name: `${prefix}${i}.jpg`, data: Buffer.alloc(size + i, i % 251) }));
}

export function form(fields: Record<string, string>, files: Image[] = []): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.set(k, v);
  for (const f of files) fd.append('images', new Blob([f.data]), f.name);
  return fd;
}

export type Json = Record<string, unknown>;

/** fetch + JSON, with a timeout so no test hangs on a request the daemon never answers. */
export async function json(url: string, init: RequestInit = {}, timeoutMs = 30_000): Promise<Json> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  const v = JSON.parse(text) as unknown;
  if (Array.isArray(v)) return { list: v };
  if (typeof v !== 'object' || v === null) throw new Error(`not a JSON object: ${text}`);
  return v as Json;
}

export function statusCode(info: Json): number | undefined {
  const s = info['status'];
  return typeof s === 'object' && s !== null ? ((s as { code?: number }).code ?? undefined) : undefined;
}

/** Open file descriptors of a process (Linux). */
export function fdCount(pid: number | 'self' = 'self'): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** Active handles of this process by kind (sockets, timers, fs requests…), for leak checks of in-process apps. */
export function activeResources(): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) out.set(r, (out.get(r) ?? 0) + 1);
  return out;
}

/** Asserts that no secret appears in `text`; returns the text for chaining. */
export function findSecrets(text: string, secrets: string[]): string[] {
  return secrets.filter((s) => s.length > 0 && text.includes(s));
}

// ---- in-process app with its log, and a raw HTTP client that can send anything

import * as net from 'node:net';
import * as nodePath from 'node:path';
import type { TestContext } from 'node:test';
import { ClusterOdm, type AppDeps } from '../../src/app';
import type { CloudProvider } from '../../src/cloud';
import { parseConfig } from '../../src/config';
import { MemoryLogger, systemClock } from '../../src/core';
import { tempDir } from '../helpers/tmp';

const APP_ROOT = nodePath.resolve(__dirname, '..', '..', '..');

export interface LoggedApp {
  url: string;
  port: number;
  app: ClusterOdm;
  dir: string;
  logger: MemoryLogger;
}

/** The whole daemon in-process (as helpers/app.ts) with its MemoryLogger, so tests can scan the log. */
export async function startLoggedApp(
  t: TestContext,
  args: string[],
  extra: { cloud?: CloudProvider; tuning?: AppDeps['tuning'] } = {},
): Promise<LoggedApp> {
  const dir = tempDir(t);
  const parsed = parseConfig({
    argv: [
      '--data-dir',
      nodePath.join(dir, 'data'),
      '--tmp-dir',
      nodePath.join(dir, 'tmp'),
      ...(args.includes('--admin-cli-port') ? [] : ['--admin-cli-port', '0']),
      ...args,
    ],
    cwd: dir,
    appRoot: APP_ROOT,
  });
  if (parsed.kind !== 'config') throw new Error('unexpected --help');
  const logger = new MemoryLogger();
  const app = new ClusterOdm({
    config: parsed.config,
    version: 'test',
    clock: systemClock,
    logger,
    host: '127.0.0.1',
    ephemeralPorts: true,
    ...(extra.cloud ? { cloud: extra.cloud } : {}),
    tuning: extra.tuning ?? {},
  });
  await app.start();
  t.after(() => app.stop());
  const port = app.proxy.ports.http ?? 0;
  return { url: `http://127.0.0.1:${port}`, port, app, dir, logger };
}

export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** The server closed or reset the connection without a complete answer. */
  dropped: boolean;
}

/**
 * Sends raw bytes to 127.0.0.1:port and reads the answer until the server closes the connection (the request
 * should say `Connection: close`). Rejects if nothing ends within `timeoutMs` (a hang).
 */
export function rawRequest(port: number, bytes: Buffer, opts: { timeoutMs?: number; halfClose?: boolean } = {}): Promise<RawAnswer> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(parseAnswer(Buffer.concat(chunks)));
    });
    // The server may answer (and close) before it read everything: that is fine. A half-close (FIN) tells it the
    // request is all there is; Node then abandons answers still being computed, so only garbage is sent that way.
    s.write(bytes, () => {
      if (opts.halfClose) s.end();
    });
  });
}

function parseAnswer(all: Buffer): RawAnswer {
  const end = all.indexOf('\r\n\r\n');
  if (end < 0) return { status: 0, headers: {}, body: Buffer.alloc(0), dropped: true };
  const head = all.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
  const headers: Record<string, string> = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = all.subarray(end + 4);
  let dropped = false;
  if (headers['transfer-encoding'] === 'chunked') {
    const out: Buffer[] = [];
    let rest = body;
    dropped = true;
    for (;;) {
      const nl = rest.indexOf('\r\n');
      if (nl < 0) break;
      const size = Number.parseInt(rest.subarray(0, nl).toString('latin1'), 16);
      if (!Number.isFinite(size)) break;
      if (size === 0) {
        dropped = false;
        break;
      }
      out.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
    body = Buffer.concat(out);
  } else if (headers['content-length'] !== undefined) {
    dropped = body.length < Number(headers['content-length']);
  }
  return { status, headers, body, dropped };
}
