/**
 * Everything the bench makes is registered here and undone on every way out: normal end, thrown error, Ctrl-C,
 * SIGTERM, the global deadline. Child processes get SIGTERM (so they save and remove their own temp dirs), then
 * SIGKILL; temp dirs are removed last. If the bench itself is SIGKILLed, its children notice (orphan-guard.ts) and
 * stop, and the next run removes the temp dir it left (owner.pid no longer alive).
 */
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export const ROOT_PREFIX = 'clusterodm-bench-run-';

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
const closers = new Set<() => void>();
let cleaning: Promise<void> | null = null;

export function trackChild(p: ChildProcess): void {
  if (p.exitCode !== null || p.signalCode !== null) return;
  children.add(p);
  p.once('exit', () => children.delete(p));
}

export function trackDir(dir: string): void {
  dirs.add(dir);
}

/** Synchronous undo steps (closing agents, timers); returns a function that unregisters it. */
export function onCleanup(fn: () => void): () => void {
  closers.add(fn);
  return () => closers.delete(fn);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e: unknown) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes run dirs left by a bench that was killed before it could clean up. */
export function sweepStale(): string[] {
  const removed: string[] = [];
  const tmp = os.tmpdir();
  for (const name of fs.readdirSync(tmp)) {
    if (!name.startsWith(ROOT_PREFIX)) continue;
    const dir = path.join(tmp, name);
    let pid: number;
    try {
      pid = Number(fs.readFileSync(path.join(dir, 'owner.pid'), 'utf8'));
    } catch {
      continue;
    }
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) continue;
    stopStaleNginx(dir);
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    removed.push(dir);
  }
  return removed;
}

/**
 * An nginx (lib/nginx.ts) left running in a stale run dir: it has no orphan guard, so it is stopped here, by the
 * pid in its own pid file (`<row dir>/nginx/nginx.pid`), if that process was started from this dir.
 */
function stopStaleNginx(runDir: string): void {
  for (const entry of fs.readdirSync(runDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    let pid: number;
    try {
      pid = Number(fs.readFileSync(path.join(runDir, entry.name, 'nginx', 'nginx.pid'), 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(runDir)) process.kill(pid, 'SIGTERM');
    } catch {
      // no nginx there, or gone already
    }
  }
}

/** The one temp dir of this run: every daemon, node and data file lives below it. */
export function makeRunDir(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), ROOT_PREFIX));
  fs.writeFileSync(path.join(root, 'owner.pid'), String(process.pid));
  trackDir(root);
  return root;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export function stopChild(p: ChildProcess, graceMs = 15_000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => p.kill('SIGKILL'), graceMs);
    p.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/** Idempotent; never rejects. */
export function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    for (const fn of closers) {
      try {
        fn();
      } catch {
        // best effort
      }
    }
    closers.clear();
    await Promise.all([...children].map((p) => stopChild(p)));
    for (const dir of dirs) {
      try {
        fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
      } catch (e: unknown) {
        process.stderr.write(`bench: could not remove ${dir}: ${String(e)}\n`);
      }
    }
    dirs.clear();
  })();
  return cleaning;
}

/** Last resort from process.on('exit'): nothing async is possible there. */
function cleanupSync(): void {
  for (const p of children) p.kill('SIGKILL');
  for (const dir of dirs) {
    try {
      fs.rmSync(dir, { recursive: true, force: true });
    } catch {
      // nothing more can be done
    }
  }
}

/** Signals, crashes and a hard deadline all end in cleanupAll() and an exit. */
export function installExitHandlers(deadlineMs: number): void {
  const bail = (why: string, code: number): void => {
    process.stderr.write(`\nbench: ${why}, cleaning up\n`);
    void cleanupAll().finally(() => process.exit(code));
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(sig, () => bail(`received ${sig}`, 130));
  process.on('uncaughtException', (e) => bail(`uncaught exception: ${e.stack ?? e.message}`, 1));
  process.on('unhandledRejection', (e) => bail(`unhandled rejection: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`, 1));
  process.on('exit', cleanupSync);
  setTimeout(() => bail(`deadline of ${Math.round(deadlineMs / 1000)} s reached`, 2), deadlineMs).unref();
}
