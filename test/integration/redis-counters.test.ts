/**
 * The request guards' counters in Redis (--redis): --flood-limit counts a token's inits across instances, the
 * forgive pass happens once per interval for the cluster, and the commit window is one sliding window per token.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { MemoryLogger, systemClock } from '../../src/core';
import { createStateBackend } from '../../src/store';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { haveRedisServer, startRedis } from '../helpers/redis';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { json } from '../reliability/support';

assert.ok(haveRedisServer(), 'redis-server is not installed: run scripts/install-test-deps.sh');

const FLOOD =
  'Uuh, slow down! It seems like you are sending a lot of tasks. Check that your connection is not dropping, or wait 15 minutes and try again.';

test('--flood-limit counts a token over every instance', async (t) => {
  const redis = await startRedis(t);
  const node = await startTestNode();
  t.after(() => node.close());
  const dir = tempDir(t);
  const a = await startDaemon(t, path.join(dir, 'a'), ['--redis', redis.url, '--flood-limit', '2']);
  const b = await startDaemon(t, path.join(dir, 'b'), ['--redis', redis.url, '--flood-limit', '2']);
  const cli = await CliClient.connect(t, a.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  const cliB = await CliClient.connect(t, b.cliPort);
  await cliB.untilPrompt();
  assert.equal(await cliB.send('NODE UPDATE'), 'OK\r\n');
  const init = (url: string): Promise<Record<string, unknown>> => json(`${url}/task/new/init`, { method: 'POST', body: new FormData() });
  assert.ok((await init(a.url))['uuid']);
  assert.ok((await init(b.url))['uuid']);
  // The third pending init of the token, wherever it goes, is one too many.
  assert.deepEqual(await init(a.url), { error: FLOOD });
  assert.deepEqual(await init(b.url), { error: FLOOD });
  assert.match(await redis.command('HGET clusterodm:flood default'), /^\$1\r\n4\r\n/);
});

test('shared counters: one forgive pass per interval for the cluster; a sliding commit window per token', async (t) => {
  const redis = await startRedis(t);
  const logger = new MemoryLogger();
  const open = async () => {
    const s = createStateBackend({ redis: redis.url, dataDir: tempDir(t), clock: systemClock, logger });
    await s.open();
    t.after(() => s.close());
    const c = s.counters();
    assert.ok(c);
    return c;
  };
  const one = await open();
  const two = await open();
  for (let i = 0; i < 9; i++) await (i % 2 ? one : two).flood.add('tok');
  assert.equal(await two.flood.count('tok'), 9);
  // Both instances' timers fire: only the first pass counts within the interval.
  assert.equal(await one.flood.forgive(60_000), true);
  assert.equal(await two.flood.forgive(60_000), false);
  assert.equal(await one.flood.count('tok'), 5);
  await one.flood.commit('tok');
  assert.equal(await two.flood.count('tok'), 4);
  await two.flood.commit('nobody');
  assert.equal(await two.flood.count('nobody'), 0);

  // Commit window of 1 s: times older than the window are dropped; a release frees the oldest.
  assert.equal(await one.commits.add('tok', 10_000, 1000), 1);
  assert.equal(await two.commits.add('tok', 10_500, 1000), 2);
  assert.equal(await one.commits.add('tok', 11_000, 1000), 3);
  assert.equal(await two.commits.add('tok', 11_400, 1000), 3, 'the time at 10,000 left the window');
  await one.commits.release('tok');
  assert.equal(await two.commits.add('tok', 11_450, 1000), 3, 'the release freed the oldest slot');
  assert.equal(await one.commits.add('other', 11_450, 1000), 1, 'tokens have windows of their own');
  assert.match(await redis.command('PTTL clusterodm:commits:tok'), /^:\d+\r\n/);
});
