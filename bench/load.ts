/**
 * `npm run load [-- --duration S --clients N]`: a load test, not a benchmark. N clients (50) run full task flows
 * (init, uploads, commit, poll info until COMPLETED, download all.zip, remove) for S seconds (60) against 3 test
 * nodes through a real ClusterODM daemon on loopback. It passes with zero errors and zero lost tasks and prints
 * latency percentiles; there are no speed targets. test/reliability/load.test.ts runs a short one.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { startTestNode, type TestNode } from '../test/helpers/test-node';

export interface LoadOptions {
  durationS: number;
  clients: number;
  nodes?: number;
  log?: (line: string) => void;
}

export interface LoadResult {
  flows: number;
  errors: number;
  errorSamples: string[];
  /** Tasks whose commit was answered with their uuid but that did not complete (or could not be downloaded). */
  lost: number;
  committed: number;
  latencies: Record<string, number[]>;
  elapsedMs: number;
}

const ASSET_SIZE = 128 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Daemon {
  url: string;
  cliPort: number;
  proc: ChildProcess;
  output: () => string;
}

async function startDaemon(dir: string): Promise<Daemon> {
  const main = path.join(__dirname, '..', 'test', 'helpers', 'daemon-main.js');
  const proc = spawn(
    process.execPath,
    [main, '--data-dir', path.join(dir, 'data'), '--tmp-dir', path.join(dir, 'tmp'), '--log-dir', dir, '--admin-web-port', '0'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const port = (re: RegExp): number => Number(re.exec(out)?.[1] ?? 0);
  const deadline = Date.now() + 30_000;
  while (!(port(/Admin CLI listening on port (\d+)/) > 0 && port(/Starting http proxy on (\d+)/) > 0)) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`the daemon did not start:\n${out}`);
    await sleep(20);
  }
  return { url: `http://127.0.0.1:${port(/Starting http proxy on (\d+)/)}`, cliPort: port(/Admin CLI listening on port (\d+)/), proc, output: () => out };
}

/** Sends admin CLI lines, each answered before the next. */
async function cli(port: number, lines: string[]): Promise<string> {
  const s = net.connect(port, '127.0.0.1');
  let buf = '';
  s.on('data', (d: Buffer) => (buf += d.toString()));
  const prompt = async (n: number): Promise<void> => {
    const deadline = Date.now() + 20_000;
    while ((buf.match(/#> /g) ?? []).length < n) {
      if (Date.now() > deadline) throw new Error(`admin CLI: no prompt in ${JSON.stringify(buf)}`);
      await sleep(5);
    }
  };
  await prompt(1);
  for (let i = 0; i < lines.length; i++) {
    s.write(`${lines[i]}\r\n`);
    await prompt(i + 2);
  }
  s.destroy();
  return buf;
}

function form(fields: Record<string, string>, files: Array<{ name: string; size: number }> = []): FormData {
  const fd = new FormData();
  for (const [k, v] of Object.entries(fields)) fd.set(k, v);
  for (const f of files) fd.append('images', new Blob([Buffer.alloc(f.size, f.name.length)]), f.name);
  return fd;
}

async function call(url: string, init: RequestInit = {}): Promise<Record<string, unknown>> {
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(60_000) });
  if (res.status !== 200) throw new Error(`HTTP ${res.status} from ${url}`);
  return (await res.json()) as Record<string, unknown>;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/** Runs the load and resolves to its figures; everything it started is stopped before it resolves. */
export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const log = opts.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clusterodm-load-'));
  const nodes: TestNode[] = [];
  let daemon: Daemon | null = null;
  try {
    for (let i = 0; i < (opts.nodes ?? 3); i++) nodes.push(await startTestNode({ processingMs: 200, maxParallelTasks: 8, assetSize: ASSET_SIZE }));
    daemon = await startDaemon(dir);
    await cli(daemon.cliPort, [...nodes.map((n) => `NODE ADD 127.0.0.1 ${n.port}`), 'NODE UPDATE']);
    const url = daemon.url;
    const latencies: Record<string, number[]> = { init: [], upload: [], commit: [], info: [], download: [], flow: [] };
    const errorSamples: string[] = [];
    let errors = 0;
    let flows = 0;
    let committed = 0;
    let lost = 0;
    const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      const v = await fn();
      latencies[step]?.push(performance.now() - t0);
      return v;
    };
    const started = Date.now();
    const end = started + opts.durationS * 1000;

    const flow = async (c: number, n: number): Promise<void> => {
      const t0 = performance.now();
      const init = await timed('init', () => call(`${url}/task/new/init`, { method: 'POST', body: form({ name: `load ${c}.${n}` }) }));
      const uuid = init['uuid'];
      if (typeof uuid !== 'string') throw new Error(`init: ${JSON.stringify(init)}`);
      for (let u = 0; u < 2; u++) {
        const files = [0, 1].map((i) => ({ name: `c${c}_${n}_${u}_${i}.jpg`, size: 8_000 + i }));
        const up = await timed('upload', () => call(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, files) }));
        if (up['success'] !== true) throw new Error(`upload: ${JSON.stringify(up)}`);
      }
      const commit = await timed('commit', () => call(`${url}/task/new/commit/${uuid}`, { method: 'POST', body: form({}) }));
      if (commit['uuid'] !== uuid) throw new Error(`commit: ${JSON.stringify(commit)}`);
      committed++;
      let done = false;
      try {
        for (const deadline = Date.now() + 120_000; Date.now() < deadline; ) {
          const info = await timed('info', () => call(`${url}/task/${uuid}/info`));
          const code = (info['status'] as { code?: number } | undefined)?.code;
          if (code === 40) break;
          if (code !== 10 && code !== 20) throw new Error(`info: ${JSON.stringify(info)}`);
          await sleep(200);
        }
        const bytes = await timed('download', async () => {
          const res = await fetch(`${url}/task/${uuid}/download/all.zip`, { signal: AbortSignal.timeout(60_000) });
          return (await res.arrayBuffer()).byteLength;
        });
        if (bytes !== ASSET_SIZE) throw new Error(`download: ${bytes} bytes instead of ${ASSET_SIZE}`);
        done = true;
      } finally {
        if (!done) lost++;
      }
      const removed = await call(`${url}/task/remove`, { method: 'POST', body: new URLSearchParams({ uuid }) });
      if (removed['success'] !== true) throw new Error(`remove: ${JSON.stringify(removed)}`);
      latencies['flow']?.push(performance.now() - t0);
      flows++;
    };
    const client = async (c: number): Promise<void> => {
      for (let n = 0; Date.now() < end; n++) {
        try {
          await flow(c, n);
        } catch (e: unknown) {
          errors++;
          if (errorSamples.length < 10) errorSamples.push(`client ${c}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    };
    const ticker = setInterval(() => log(`  ${Math.round((Date.now() - started) / 1000)} s: ${flows} flows, ${errors} errors`), 10_000);
    try {
      await Promise.all(Array.from({ length: opts.clients }, (_, c) => client(c)));
    } finally {
      clearInterval(ticker);
    }
    if (/Uncaught Exception|Unhandled Rejection/.test(daemon.output())) {
      errors++;
      errorSamples.push('the daemon logged an uncaught exception or unhandled rejection');
    }
    return { flows, errors, errorSamples, lost, committed, latencies, elapsedMs: Date.now() - started };
  } finally {
    if (daemon && daemon.proc.exitCode === null) {
      const exited = new Promise((r) => daemon?.proc.once('exit', r));
      daemon.proc.kill('SIGTERM');
      await exited;
    }
    await Promise.all(nodes.map((n) => n.close()));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function report(r: LoadResult, clients: number): string {
  const rows = Object.entries(r.latencies).map(([step, v]) => {
    const f = (p: number): string => percentile(v, p).toFixed(0).padStart(6);
    return `  ${step.padEnd(9)} n=${String(v.length).padStart(6)}  p50 ${f(50)} ms  p90 ${f(90)} ms  p99 ${f(99)} ms  max ${f(100)} ms`;
  });
  return [
    `load: ${clients} clients for ${(r.elapsedMs / 1000).toFixed(0)} s: ${r.flows} full task flows (${(r.flows / (r.elapsedMs / 1000)).toFixed(1)}/s), ` +
      `${r.committed} tasks committed, ${r.errors} errors, ${r.lost} lost tasks`,
    ...rows,
    ...r.errorSamples.map((e) => `  error: ${e}`),
  ].join('\n');
}

function flag(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(name);
  const v = i >= 0 ? Number(argv[i + 1]) : dflt;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number`);
  return v;
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  const durationS = flag(argv, '--duration', 60);
  const clients = flag(argv, '--clients', 50);
  process.stdout.write(`load: ${clients} clients, ${durationS} s, 3 test nodes, through ClusterODM on loopback\n`);
  runLoad({ durationS, clients })
    .then((r) => {
      process.stdout.write(`${report(r, clients)}\n`);
      process.exit(r.errors === 0 && r.lost === 0 ? 0 : 1);
    })
    .catch((e: unknown) => {
      process.stderr.write(`load: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    });
}
