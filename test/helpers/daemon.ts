import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { NODE_FLAGS } from '../../src/core';
import { waitUntil } from './wait';

export interface Daemon {
  readonly dir: string;
  readonly cliPort: number;
  /** The plain HTTP proxy port (0 if none), and the HTTPS one (0 if none). */
  readonly proxyPort: number;
  readonly httpsPort: number;
  /** The admin web port (0 when it is disabled, the default in tests: pass `--admin-web-port 1` to enable it). */
  readonly webPort: number;
  /** http://127.0.0.1:<proxyPort> */
  readonly url: string;
  readonly proc: ChildProcess;
  /** Everything the daemon printed so far. */
  output(): string;
  /** Sends a signal and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const MAIN = path.join(__dirname, 'daemon-main.js');

/**
 * Starts ClusterODM as a child process in `dir` (its data, tmp and log folders live there) and waits until its
 * listeners are up. The daemon is killed when the test ends if it is still running.
 */
export async function startDaemon(
  t: TestContext,
  dir: string,
  args: string[] = [],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<Daemon> {
  fs.mkdirSync(dir, { recursive: true });
  const proc = spawn(
    process.execPath,
    // The V8 flags the shipped entry point (index.js) runs the daemon with.
    [...NODE_FLAGS, MAIN, '--data-dir', path.join(dir, 'data'), '--tmp-dir', path.join(dir, 'tmp'), '--log-dir', dir, '--admin-web-port', '0', ...args],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: opts.env } : {}) },
  );
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  let exited: number | null | undefined;
  const exit = new Promise<number | null>((resolve) =>
    proc.once('exit', (code) => {
      exited = code;
      resolve(code);
    }),
  );
  t.after(async () => {
    if (exited === undefined) {
      proc.kill('SIGKILL');
      await exit;
    }
  });
  const port = (re: RegExp): number => Number(re.exec(out)?.[1] ?? 0);
  const webEnabled = (): boolean => {
    const i = args.lastIndexOf('--admin-web-port');
    return i >= 0 && args[i + 1] !== '0';
  };
  const ready = (): boolean =>
    port(/Admin CLI listening on port (\d+)/) > 0 &&
    port(/Starting https? proxy on (\d+)/) > 0 &&
    (!webEnabled() || port(/Admin web listening on port (\d+)/) > 0);
  await waitUntil(() => exited !== undefined || ready(), {
    timeoutMs: opts.timeoutMs ?? 20000,
    message: 'daemon did not start',
  });
  if (exited !== undefined) throw new Error(`daemon exited with ${String(exited)}:\n${out}`);
  return {
    dir,
    cliPort: port(/Admin CLI listening on port (\d+)/),
    proxyPort: port(/Starting http proxy on (\d+)/),
    httpsPort: port(/Starting https proxy on (\d+)/),
    webPort: port(/Admin web listening on port (\d+)/),
    url: `http://127.0.0.1:${port(/Starting http proxy on (\d+)/)}`,
    proc,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (exited !== undefined) return exited;
      proc.kill(signal);
      return exit;
    },
  };
}
