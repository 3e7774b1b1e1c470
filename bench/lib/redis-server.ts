/**
 * A redis-server of the bench's own (the Debian package, as the tests use), on a unix socket in a run dir, with
 * persistence off: the Redis rows measure ClusterODM, not the disk.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createClient } from 'redis';
import { stopChild, trackChild } from './cleanup';

export interface BenchRedis {
  /** What --redis takes. */
  readonly url: string;
  readonly socket: string;
  /** redis-server's pid (its CPU: /proc). */
  readonly pid: number;
  client(): Promise<ReturnType<typeof createClient>>;
  /** Commands redis-server has processed so far (INFO stats), this query included. */
  commands(): Promise<number>;
  stop(): Promise<void>;
}

export async function startRedisServer(dir: string): Promise<BenchRedis> {
  fs.mkdirSync(dir, { recursive: true });
  const socket = path.join(dir, 'redis.sock');
  const proc = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir, '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackChild(proc);
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const clients: Array<ReturnType<typeof createClient>> = [];
  const client = async (): Promise<ReturnType<typeof createClient>> => {
    const c = createClient({ socket: { path: socket, tls: false } });
    c.on('error', () => undefined);
    await c.connect();
    clients.push(c);
    return c;
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited: ${out}`);
    if (fs.existsSync(socket)) {
      try {
        await (await client()).ping();
        break;
      } catch {
        // not accepting yet
      }
    }
    if (Date.now() > deadline) throw new Error(`redis-server did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `unix://${socket}`,
    socket,
    pid: proc.pid ?? 0,
    client,
    commands: async () => {
      const c = clients[0] ?? (await client());
      const info = await c.info('stats');
      return Number(/total_commands_processed:(\d+)/.exec(info)?.[1] ?? NaN);
    },
    stop: async () => {
      for (const c of clients) await c.close().catch(() => undefined);
      await stopChild(proc, 5000);
    },
  };
}
