import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir } from './tmp';
import { waitUntil } from './wait';

export interface RedisServer {
  /** unix:///…/redis.sock: what --redis takes. */
  readonly url: string;
  readonly socket: string;
  readonly dir: string;
  /** Sends one command (inline protocol) and returns the raw reply. */
  command(line: string): Promise<string>;
}

/** True when the Debian redis-server is installed (scripts/install-test-deps.sh). */
export function haveRedisServer(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/**
 * Starts a real redis-server of its own in a temporary dir, listening only on a unix socket there (`--port 0`
 * turns TCP off, so no port is guessed or raced for), and stops it when the test ends.
 */
export async function startRedis(t: TestContext, extraArgs: string[] = []): Promise<RedisServer> {
  const dir = tempDir(t, 'clusterodm-redis-');
  const socket = path.join(dir, 'redis.sock');
  const proc = spawn(
    'redis-server',
    ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir, '--save', '', '--appendonly', 'no', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  t.after(async () => {
    if (!exited) {
      proc.kill('SIGTERM');
      await exit;
    }
  });
  const server: RedisServer = { url: `unix://${socket}`, socket, dir, command: (line) => redisCommand(socket, line) };
  await waitUntil(async () => exited || (fs.existsSync(socket) && (await server.command('PING')).startsWith('+PONG')), {
    timeoutMs: 10000,
    message: 'redis-server did not start',
  });
  if (exited) throw new Error(`redis-server exited:\n${out}`);
  return server;
}

/** One inline command over a fresh connection; resolves with the first complete reply line(s) received. */
export function redisCommand(socket: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let buf = '';
    c.on('connect', () => c.write(`${line}\r\n`));
    c.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      if (complete(buf)) {
        c.destroy();
        resolve(buf);
      }
    });
    c.on('error', reject);
  });
}

/** A simple reply, or a bulk string ($n) once its n bytes are in. */
function complete(buf: string): boolean {
  const nl = buf.indexOf('\r\n');
  if (nl < 0) return false;
  if (buf[0] !== '$') return true;
  const n = Number(buf.slice(1, nl));
  return n < 0 || Buffer.byteLength(buf) >= nl + 2 + n + 2;
}
