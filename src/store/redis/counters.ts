import type { SharedCommitWindow, SharedCounters, SharedFloodCounts } from '../port';
import type { RedisConnection } from './connection';

/** KEYS[1] the flood hash; ARGV[1] field. Decrements a count that exists; a count reaching 0 goes. */
const FLOOD_COMMIT = `
local n = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if n <= 1 then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], n - 1) end
return 0
`;

/**
 * KEYS[1] the flood hash, KEYS[2] the pass marker; ARGV[1] the pass interval (ms). One pass per interval across
 * every instance (the marker expires just before the next is due): counts shrink by a third, zeros go.
 */
const FLOOD_FORGIVE = `
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local next = math.floor(tonumber(all[i + 1]) * 0.66)
  if next <= 0 then redis.call('HDEL', KEYS[1], all[i]) else redis.call('HSET', KEYS[1], all[i], next) end
end
return 1
`;

/**
 * KEYS[1] the token's commit times (a sorted set scored by time); ARGV: now, window (ms), a unique member.
 * Drops times older than the window, records this one, and returns how many the window holds.
 */
const COMMIT_CHECK = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[1]) - tonumber(ARGV[2])))
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
`;

/**
 * The per-token request guards in Redis, so the limits hold for the cluster, not per instance:
 * `clusterodm:flood` (hash: token → inits not yet committed), `clusterodm:flood:forgiven` (marker of the last
 * forgive pass), `clusterodm:commits:<token>` (sorted set of commit times in the last window, expiring by itself).
 */
export class RedisCounters implements SharedCounters {
  readonly flood: SharedFloodCounts;
  readonly commits: SharedCommitWindow;

  constructor(prefix: string, connection: () => RedisConnection) {
    const floodKey = `${prefix}flood`;
    const cmd = () => connection().cmd;
    let seq = 0;
    this.flood = {
      add: async (token) => Number(await cmd().hIncrBy(floodKey, token, 1)),
      commit: async (token) => {
        await cmd().eval(FLOOD_COMMIT, { keys: [floodKey], arguments: [token] });
      },
      forgive: async (intervalMs) => {
        // The marker lives a little less than the interval, so the instance whose timer fires next does the pass.
        const ttl = Math.max(1, Math.floor(intervalMs * 0.9));
        return (await cmd().eval(FLOOD_FORGIVE, { keys: [floodKey, `${floodKey}:forgiven`], arguments: [String(ttl)] })) === 1;
      },
      count: async (token) => Number((await cmd().hGet(floodKey, token)) ?? 0),
    };
    this.commits = {
      add: async (token, now, windowMs) => {
        const member = `${now}:${process.pid}:${++seq}:${Math.random().toString(36).slice(2)}`;
        const n = await cmd().eval(COMMIT_CHECK, { keys: [`${prefix}commits:${token}`], arguments: [String(now), String(windowMs), member] });
        return Number(n);
      },
      release: async (token) => {
        await cmd().zPopMin(`${prefix}commits:${token}`);
      },
    };
  }
}
