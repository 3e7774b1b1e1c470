import { spawn } from 'node:child_process';
import type { Logger } from '../core';
import { errorMessage } from '../core';
import { maskSecrets } from './shell';

/** How long each kind of docker-machine call may take before it is killed (the original had no timeouts). */
export interface DockerMachineTimeouts {
  create: number;
  ssh: number;
  inspect: number;
  rm: number;
  ls: number;
  check: number;
}

export const DEFAULT_DM_TIMEOUTS: Readonly<DockerMachineTimeouts> = Object.freeze({
  create: 15 * 60_000,
  ssh: 15 * 60_000,
  inspect: 60_000,
  rm: 5 * 60_000,
  ls: 60_000,
  check: 30_000,
});

export interface DockerMachineOptions {
  logger: Logger;
  /** The executable (default `docker-machine`, looked up on PATH). */
  bin?: string;
  timeouts?: Partial<DockerMachineTimeouts>;
  /** Values never written to logs (cloud tokens, S3 keys, node tokens). */
  secrets?: () => Iterable<string>;
  env?: NodeJS.ProcessEnv;
}

export class DockerMachineError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    /** The run was killed after its time limit (no exit code of its own). */
    readonly timedOut = false,
  ) {
    super(message);
    this.name = 'DockerMachineError';
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs the docker-machine executable: one child per call, stdout and stderr kept apart (the original mixed them,
 * breaking `inspect`'s JSON), a timeout on every call that kills the whole process group, output logged at debug
 * level with secrets masked.
 */
export class DockerMachine {
  private readonly o: DockerMachineOptions;
  private readonly timeouts: DockerMachineTimeouts;
  private readonly running = new Set<number>();

  constructor(opts: DockerMachineOptions) {
    this.o = opts;
    this.timeouts = { ...DEFAULT_DM_TIMEOUTS, ...opts.timeouts };
  }

  private mask(text: string): string {
    return maskSecrets(text, this.o.secrets?.() ?? []);
  }

  /** `docker-machine --help` must work (SPEC §8.1 messages). */
  async checkInstalled(): Promise<void> {
    try {
      await this.run(['--help'], this.timeouts.check, true);
    } catch (e: unknown) {
      if (e instanceof DockerMachineError && (e.exitCode !== null || e.timedOut)) {
        throw new Error('Docker-machine does not seem to work. Please make sure docker-machine is working.');
      }
      throw new Error('Docker-machine not found in PATH. Please install docker-machine if you want to use the autoscaler.');
    }
    this.o.logger.info('Found docker-machine executable');
  }

  async create(name: string, args: readonly string[]): Promise<void> {
    await this.run(['create', ...args, name], this.timeouts.create);
  }

  /** Runs `command` on the machine; it is one argument, parsed by the remote shell (so it must be quoted). */
  async ssh(name: string, command: string): Promise<string> {
    return (await this.run(['ssh', name, command], this.timeouts.ssh)).stdout;
  }

  /** The machine's public address (`.Driver.IPAddress` of `inspect`). */
  async getIP(name: string): Promise<string> {
    const { stdout } = await this.run(['inspect', name], this.timeouts.inspect);
    let parsed: unknown;
    try {
      parsed = JSON.parse(stdout);
    } catch {
      throw new Error(`Cannot parse output of inspect for machine ${name}`);
    }
    const ip = (parsed as { Driver?: { IPAddress?: unknown } } | null)?.Driver?.IPAddress;
    if (typeof ip !== 'string' || ip === '') throw new Error(`Cannot get IP for machine: ${name}`);
    return ip;
  }

  async rm(name: string, force = true): Promise<void> {
    await this.run(['rm', '-y', ...(force ? ['-f'] : []), name], this.timeouts.rm);
  }

  /** Names of every machine docker-machine knows. */
  async list(): Promise<string[]> {
    const { stdout } = await this.run(['ls', '-q'], this.timeouts.ls);
    return stdout
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '');
  }

  /** Kills every call still running (shutdown). */
  killAll(): void {
    for (const pid of this.running) killGroup(pid);
    this.running.clear();
  }

  run(args: readonly string[], timeoutMs: number, quiet = false): Promise<RunResult> {
    const { logger } = this.o;
    const bin = this.o.bin ?? 'docker-machine';
    const shown = this.mask(`${bin} ${args.join(' ')}`);
    if (!quiet) logger.debug(`Running ${shown}`);
    return new Promise<RunResult>((resolve, reject) => {
      let child;
      try {
        // Its own process group, so a timeout also kills the ssh or driver processes it started.
        child = spawn(bin, [...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: this.o.env ?? process.env });
      } catch (e: unknown) {
        reject(new DockerMachineError(`Cannot run ${bin}: ${errorMessage(e)}`, null));
        return;
      }
      const pid = child.pid;
      if (pid !== undefined) this.running.add(pid);
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        if (pid !== undefined) killGroup(pid);
      }, timeoutMs);
      const logChunk = (d: Buffer): void => {
        if (quiet) return;
        for (const line of d.toString('utf8').split('\n')) {
          if (line.trim()) logger.debug(`docker-machine ${args[0] ?? ''}: ${this.mask(line.trim())}`);
        }
      };
      child.stdout.on('data', (d: Buffer) => {
        if (stdout.length < 1024 * 1024) stdout += d.toString('utf8');
        logChunk(d);
      });
      child.stderr.on('data', (d: Buffer) => {
        if (stderr.length < 1024 * 1024) stderr += d.toString('utf8');
        logChunk(d);
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        if (pid !== undefined) this.running.delete(pid);
        reject(new DockerMachineError(`Cannot run ${bin}: ${e.message}`, null));
      });
      child.once('close', (code) => {
        clearTimeout(timer);
        if (pid !== undefined) this.running.delete(pid);
        if (timedOut) {
          reject(new DockerMachineError(`docker-machine ${args[0] ?? ''} timed out after ${timeoutMs < 1000 ? `${timeoutMs} ms` : `${Math.round(timeoutMs / 1000)} s`}`, null, true));
        } else if (code !== 0) {
          const detail = this.mask(stderr.trim().split('\n').slice(-1)[0] ?? '');
          reject(new DockerMachineError(`docker-machine exited with code ${String(code)}${detail ? `: ${detail}` : ''}`, code));
        } else {
          resolve({ stdout, stderr });
        }
      });
    });
  }
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
