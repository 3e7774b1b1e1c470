/**
 * The autoscaler's leader lease on a real redis-server: one holder at a time, a leader that stops renewing (paused,
 * dead) is replaced once its lease runs out, and its fencing token then no longer lets it act.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { LeaderLease } from '../../src/cluster';
import { MemoryLogger, systemClock, type Clock } from '../../src/core';
import { RedisBackend } from '../../src/store/redis/backend';
import { haveRedisServer, startRedis, type RedisServer } from '../helpers/redis';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

assert.ok(haveRedisServer(), 'redis-server is not installed: run scripts/install-test-deps.sh');

async function backend(t: TestContext, redis: RedisServer): Promise<RedisBackend> {
  const b = new RedisBackend({ url: redis.url, dataDir: tempDir(t), logger: new MemoryLogger() });
  await b.open();
  t.after(() => b.close());
  return b;
}

/** A clock whose timers never fire: the lease is taken once at start and never renewed (a paused process). */
const frozen: Clock = { ...systemClock, setInterval: () => setTimeout(() => undefined, 0), clearInterval: () => undefined };

test('a leader that stops renewing is replaced after its lease, and its stale fencing token is refused', async (t) => {
  const redis = await startRedis(t);
  const paused = new LeaderLease({ leadership: (await backend(t, redis)).cluster().leadership, clock: frozen, logger: new MemoryLogger(), leaseMs: 400 });
  const other = new LeaderLease({ leadership: (await backend(t, redis)).cluster().leadership, clock: systemClock, logger: new MemoryLogger(), leaseMs: 400 });
  t.after(() => other.stop());
  await paused.start();
  assert.equal(paused.isLeader(), true);
  assert.equal(await paused.fence(), true);
  await other.start();
  assert.equal(other.isLeader(), false, 'two leaders at once');
  assert.equal(await other.fence(), false);
  // The paused leader's lease runs out; the other takes over with a new token.
  await waitUntil(() => other.isLeader(), { timeoutMs: 5000, message: 'no takeover' });
  assert.match(await redis.command('GET clusterodm:leader:token'), /^\$1\r\n2\r\n/);
  // The paused one still believes it leads, but any destructive step it tries now is refused.
  assert.equal(paused.isLeader(), true);
  assert.equal(await paused.fence(), false);
  assert.equal(paused.isLeader(), false);
  assert.equal(await other.fence(), true);
});

test('without shared state the one instance always leads', async () => {
  const lease = new LeaderLease({ leadership: null, clock: systemClock, logger: new MemoryLogger() });
  await lease.start();
  assert.equal(lease.isLeader(), true);
  assert.equal(await lease.fence(), true);
  await lease.stop();
});
