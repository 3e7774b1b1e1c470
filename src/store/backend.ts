import type { Clock, Logger } from '../core';
import { JsonBackend } from './json-backend';
import type { StateBackend } from './port';

/**
 * The one place that picks where the state lives: Redis with `redis` set (several instances share it), the
 * JSON files in `dataDir` otherwise. The Redis client is loaded only when it is used.
 */
export function createStateBackend(opts: { redis: string | undefined; dataDir: string; clock: Clock; logger: Logger }): StateBackend {
  if (!opts.redis) return new JsonBackend({ dataDir: opts.dataDir, clock: opts.clock, logger: opts.logger });
  const { RedisBackend } = require('./redis/backend') as typeof import('./redis/backend');
  return new RedisBackend({ url: opts.redis, dataDir: opts.dataDir, logger: opts.logger });
}
