/**
 * Child processes of the bench: the real ClusterODM daemon (the integration tests' entry point,
 * dist/test/helpers/daemon-main.js, on 127.0.0.1 with ephemeral ports) and the NodeODM-compatible test node
 * (dist/test/helpers/test-node-main.js). Each runs in its own process, so the client, the proxy and the node
 * never share an event loop. Plus what /proc tells about them (RSS, peak RSS, CPU time).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { NODE_FLAGS } from '../../src/core';
import { stopChild, trackChild } from './cleanup';

const DIST = path.resolve(__dirname, '..', '..');
export const DAEMON_MAIN = path.join(DIST, 'test', 'helpers', 'daemon-main.js');
const NODE_MAIN = path.join(DIST, 'test', 'helpers', 'test-node-main.js');
const GUARD = path.join(__dirname, 'orphan-guard.js');
const REF_PROXY_MAIN = path.join(__dirname, '..', 'ref-proxy.js');

/** Keeps the start of a child's output (ports are announced there) and its last lines (for errors). */
class OutputBuffer {
  private head = '';
  private tail = '';
  private static readonly HEAD_MAX = 256 * 1024;
  private static readonly TAIL_MAX = 32 * 1024;

  push(text: string): void {
    if (this.head.length < OutputBuffer.HEAD_MAX) this.head += text;
    else this.tail = (this.tail + text).slice(-OutputBuffer.TAIL_MAX);
  }

  get start(): string {
    return this.head;
  }

  toString(): string {
    return this.tail ? `${this.head}\n[...]\n${this.tail}` : this.head;
  }
}

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** ms from spawn() until it announced it was ready. */
  readonly startMs: number;
  output(): string;
  /** SIGTERM (then SIGKILL); resolves with the ms it took to exit. */
  stop(): Promise<number>;
}

interface Spawned {
  proc: ChildProcess;
  out: OutputBuffer;
  /** Resolves when `ready(output)` holds, with the ms since spawn; rejects if the child exits first or on timeout. */
  until(ready: (text: string) => boolean, timeoutMs: number): Promise<number>;
}

function spawnNode(name: string, nodeFlags: string[], script: string, args: string[], cwd: string, env: NodeJS.ProcessEnv): Spawned {
  const started = process.hrtime.bigint();
  const proc = spawn(process.execPath, [...nodeFlags, '--require', GUARD, script, ...args], {
    cwd,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackChild(proc);
  const out = new OutputBuffer();
  const listeners = new Set<() => void>();
  const onData = (d: Buffer): void => {
    out.push(d.toString('utf8'));
    for (const l of listeners) l();
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  const until = (ready: (text: string) => boolean, timeoutMs: number): Promise<number> =>
    new Promise((resolve, reject) => {
      const done = (): void => {
        listeners.delete(check);
        proc.off('exit', onExit);
        clearTimeout(timer);
      };
      const check = (): void => {
        if (!ready(out.start)) return;
        done();
        resolve(Number(process.hrtime.bigint() - started) / 1e6);
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
        done();
        reject(new Error(`${name} exited (${code ?? signal ?? '?'}) before it was ready:\n${out.toString()}`));
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${name} not ready after ${timeoutMs} ms:\n${out.toString()}`));
      }, timeoutMs);
      listeners.add(check);
      proc.once('exit', onExit);
      check();
    });
  return { proc, out, until };
}

function child(name: string, s: Spawned, startMs: number): Child {
  return {
    name,
    proc: s.proc,
    pid: s.proc.pid ?? 0,
    startMs,
    output: () => s.out.toString(),
    stop: async () => {
      const t0 = process.hrtime.bigint();
      await stopChild(s.proc, 120_000);
      return Number(process.hrtime.bigint() - t0) / 1e6;
    },
  };
}

export interface Daemon extends Child {
  readonly dir: string;
  readonly proxyPort: number;
  readonly cliPort: number;
  /** http://127.0.0.1:<proxyPort> */
  readonly url: string;
}

const PROXY_RE = /Starting http proxy on (\d+)/;
const CLI_RE = /Admin CLI listening on port (\d+)/;

/** ClusterODM with its data, tmp and log dirs in `dir`; `nodeFlags` go to node itself (e.g. --cpu-prof). */
export async function startDaemon(opts: {
  name: string;
  dir: string;
  nodeFlags?: string[];
  args?: string[];
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Another build's dist/test/helpers/daemon-main.js (A/B of two commits); this build's by default. */
  main?: string;
}): Promise<Daemon> {
  const { dir } = opts;
  fs.mkdirSync(dir, { recursive: true });
  const args = ['--data-dir', path.join(dir, 'data'), '--tmp-dir', path.join(dir, 'tmp'), '--log-dir', dir, '--admin-web-port', '0', ...(opts.args ?? [])];
  // The V8 flags the shipped entry point (index.js) runs the daemon with; --daemon-node-flags come after them.
  const s = spawnNode(opts.name, [...NODE_FLAGS, ...(opts.nodeFlags ?? [])], opts.main ?? DAEMON_MAIN, args, dir, { ...process.env, ...(opts.env ?? {}), TMPDIR: dir });
  const startMs = await s.until((t) => PROXY_RE.test(t) && CLI_RE.test(t), opts.timeoutMs ?? 60_000);
  const proxyPort = Number(PROXY_RE.exec(s.out.start)?.[1]);
  const cliPort = Number(CLI_RE.exec(s.out.start)?.[1]);
  return { ...child(opts.name, s, startMs), dir, proxyPort, cliPort, url: `http://127.0.0.1:${proxyPort}` };
}

export interface TestNodeProc extends Child {
  readonly port: number;
  /** http://127.0.0.1:<port> */
  readonly url: string;
}

/** The test node; its uploads land in a temp dir below `dir` (TMPDIR), removed when it stops. */
export async function startTestNode(opts: {
  name: string;
  dir: string;
  assetSize?: number;
  processingMs?: number;
  maxParallelTasks?: number;
  maxImages?: number;
}): Promise<TestNodeProc> {
  fs.mkdirSync(opts.dir, { recursive: true });
  const args = ['--host', '127.0.0.1', '--port', '0'];
  if (opts.assetSize !== undefined) args.push('--asset-size', String(opts.assetSize));
  if (opts.processingMs !== undefined) args.push('--processing-ms', String(opts.processingMs));
  if (opts.maxParallelTasks !== undefined) args.push('--parallel', String(opts.maxParallelTasks));
  if (opts.maxImages !== undefined) args.push('--max-images', String(opts.maxImages));
  const s = spawnNode(opts.name, [], NODE_MAIN, args, opts.dir, { ...process.env, TMPDIR: opts.dir });
  const re = /Test NodeODM node listening on (\d+)/;
  const startMs = await s.until((t) => re.test(t), 30_000);
  const port = Number(re.exec(s.out.start)?.[1]);
  return { ...child(opts.name, s, startMs), port, url: `http://127.0.0.1:${port}` };
}

export interface RefProxyProc extends Child {
  readonly port: number;
  readonly url: string;
}

/** bench/ref-proxy.ts (or another `script` of the same interface) in front of `targetPort`: the cost of a bare Node.js hop. */
export async function startRefProxy(name: string, targetPort: number, cwd: string, nodeFlags: string[] = [], script = REF_PROXY_MAIN, env: NodeJS.ProcessEnv = process.env): Promise<RefProxyProc> {
  const s = spawnNode(name, nodeFlags, script, [String(targetPort)], cwd, env);
  const re = /Reference proxy listening on (\d+)/;
  const startMs = await s.until((t) => re.test(t), 30_000);
  const port = Number(re.exec(s.out.start)?.[1]);
  return { ...child(name, s, startMs), port, url: `http://127.0.0.1:${port}` };
}

/** Runs admin CLI commands (no password: the session starts at the admin prompt); returns each answer. */
export async function cli(port: number, commands: string[], timeoutMs = 30_000): Promise<string[]> {
  const socket = net.connect(port, '127.0.0.1');
  let buf = '';
  let waiter: (() => void) | null = null;
  socket.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    waiter?.();
  });
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const prompt = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`admin CLI: no prompt after ${timeoutMs} ms; got ${JSON.stringify(buf)}`)), timeoutMs);
      const check = (): void => {
        if (!buf.endsWith('#> ')) return;
        clearTimeout(timer);
        waiter = null;
        const text = buf.slice(0, -3);
        buf = '';
        resolve(text);
      };
      waiter = check;
      check();
    });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    await prompt();
    const answers: string[] = [];
    for (const line of commands) {
      socket.write(`${line}\r\n`);
      answers.push((await prompt()).trim());
    }
    return answers;
  } finally {
    socket.end('QUIT\r\n');
    const t = setTimeout(() => socket.destroy(), 1000);
    await closed;
    clearTimeout(t);
  }
}

/** Registers the node with the daemon and refreshes it, so it is online at once. */
export async function addNode(daemon: Daemon, node: TestNodeProc): Promise<void> {
  const [add, update] = await cli(daemon.cliPort, [`NODE ADD 127.0.0.1 ${node.port}`, 'NODE UPDATE']);
  if (add !== 'OK' || update !== 'OK') throw new Error(`NODE ADD / NODE UPDATE answered ${JSON.stringify([add, update])}`);
}

// ----- /proc -----

export interface MemStatus {
  /** Resident set now, in bytes. */
  rss: number;
  /** Peak resident set since start (or since resetPeakRss), in bytes. */
  hwm: number;
}

export function memStatus(pid: number): MemStatus | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS (Linux ≥ 4.0, `echo 5 > clear_refs`); false where that is not allowed. */
export function resetPeakRss(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Bytes a process has read so far through read-like calls (`rchar` of /proc/<pid>/io): for a test node, which reads
 * no files back, that is what it received on its sockets. NaN where /proc does not tell.
 */
export function readBytes(pid: number): number {
  try {
    return Number(/^rchar:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN);
  } catch {
    return NaN;
  }
}

let clockTicks: number | undefined;

/** User + system CPU time of a process so far, in ms. */
export function cpuMs(pid: number): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks;
  } catch {
    return NaN;
  }
}

/** Minor page faults of a process so far (/proc/<pid>/stat), NaN once it is gone. */
export function minorFaults(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
  } catch {
    return NaN;
  }
}

/** Samples VmRSS every `everyMs` until stopped; keeps every sample for percentiles and trends. */
export class RssSampler {
  max = 0;
  readonly samples: number[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    everyMs = 50,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  private sample(): void {
    const s = memStatus(this.pid);
    if (!s || !Number.isFinite(s.rss)) return;
    this.samples.push(s.rss);
    if (s.rss > this.max) this.max = s.rss;
  }

  stop(): number {
    clearInterval(this.timer);
    this.sample();
    return this.max;
  }
}
