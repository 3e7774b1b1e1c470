import { createClient } from 'redis';
import type { Logger } from '../../core';
import { ClusterError, errorMessage } from '../../core';
import { parseRedisUrl, redactRedisUrl } from './url';

export type RedisClient = ReturnType<typeof createClient>;

/** Longest pause between two reconnect attempts once the instance runs. */
const MAX_BACKOFF_MS = 5000;

/**
 * The two connections an instance keeps to Redis: one for commands, one subscribed to change notifications
 * (a subscribed connection accepts no other command). At start a Redis that does not answer is an error
 * (the caller exits 1); once connected, a lost connection is retried with backoff (100 ms doubling to 5 s).
 */
export class RedisConnection {
  readonly cmd: RedisClient;
  readonly sub: RedisClient;
  readonly where: string;

  private constructor(cmd: RedisClient, sub: RedisClient, where: string) {
    this.cmd = cmd;
    this.sub = sub;
    this.where = where;
  }

  static async open(url: string, logger: Logger, opts: { connectTimeoutMs?: number } = {}): Promise<RedisConnection> {
    const where = redactRedisUrl(url);
    const target = parseRedisUrl(url);
    let connected = false;
    const socketCommon = {
      connectTimeout: opts.connectTimeoutMs ?? 5000,
      // Before the first connection, giving up is the answer (the operator sees why and the process exits 1).
      reconnectStrategy: (retries: number, cause: Error): number | Error =>
        connected ? Math.min(100 * 2 ** Math.min(retries, 6), MAX_BACKOFF_MS) : cause,
    };
    const make = (): RedisClient =>
      target.kind === 'unix'
        ? createClient({
            socket: { ...socketCommon, path: target.path, tls: false },
            database: target.database,
            ...(target.password !== undefined ? { password: target.password } : {}),
          })
        : createClient({ url: target.url, socket: socketCommon });
    const cmd = make();
    const sub = make();
    const conn = new RedisConnection(cmd, sub, where);
    let lastError = '';
    for (const [name, c] of [
      ['commands', cmd],
      ['notifications', sub],
    ] as const) {
      // node-redis emits 'error' for every failed attempt; without a listener it would be an uncaught exception.
      c.on('error', (e: unknown) => {
        const msg = errorMessage(e);
        if (connected && msg !== lastError) logger.warn(`Redis ${where} (${name}): ${msg}; reconnecting`);
        lastError = msg;
      });
      c.on('ready', () => {
        if (connected && lastError) logger.info(`Redis ${where} (${name}) is back`);
        lastError = '';
      });
    }
    try {
      await cmd.connect();
      await sub.connect();
      await cmd.ping();
    } catch (e: unknown) {
      await conn.close();
      throw new ClusterError('STATE_UNAVAILABLE', `Cannot reach Redis at ${where}: ${errorMessage(e)}`, { cause: e });
    }
    connected = true;
    logger.info(`Connected to Redis at ${where}`);
    return conn;
  }

  async close(): Promise<void> {
    for (const c of [this.sub, this.cmd]) {
      try {
        if (c.isOpen) await c.close();
      } catch {
        // Closing a connection that is already gone.
      }
    }
  }
}
