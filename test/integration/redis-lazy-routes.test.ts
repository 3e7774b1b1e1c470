/**
 * A shared route table is read after start, in the background: lookups the fill has not reached yet are read
 * from Redis one by one, and what needs the whole table waits for the fill. Made deterministic with an ACL that
 * refuses HSCAN to the daemon (the fill fails and retries) while HGET still works.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import * as path from 'node:path';
import { test } from 'node:test';
import { createClient } from 'redis';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { haveRedisServer, startRedis } from '../helpers/redis';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { form, images, json, statusCode } from '../reliability/support';

assert.ok(haveRedisServer(), 'redis-server is not installed: run scripts/install-test-deps.sh');

test('a route is answered before the background fill of the shared table is done; the full views wait for it', async (t) => {
  const redis = await startRedis(t);
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());
  // A real task on the node, and 2,000 other routes, as another instance would have left them in Redis.
  const created = await json(`http://127.0.0.1:${node.port}/task/new`, { method: 'POST', body: form({ name: 'routed' }, images(2)) });
  const uuid = String(created['uuid']);
  assert.match(uuid, /^[0-9a-f-]{36}$/, JSON.stringify(created));
  // Another task of the same owner, never looked up: only a full read of the table finds it.
  const other = String((await json(`http://127.0.0.1:${node.port}/task/new`, { method: 'POST', body: form({ name: 'other' }, images(2)) }))['uuid']);
  const nodeKey = `127.0.0.1:${node.port}`;
  const now = Date.now();
  const client = createClient({ socket: { path: redis.socket, tls: false } });
  client.on('error', () => undefined);
  await client.connect();
  t.after(() => client.close());
  await client.set('clusterodm:nodes', JSON.stringify([{ hostname: '127.0.0.1', port: node.port, token: '' }]));
  const routes: Record<string, string> = {
    [uuid]: JSON.stringify({ node: nodeKey, token: 'owner', accessed: now }),
    [other]: JSON.stringify({ node: nodeKey, token: 'owner', accessed: now }),
  };
  for (let i = 0; i < 2000; i++) routes[randomUUID()] = JSON.stringify({ node: nodeKey, token: `user${i % 5}`, accessed: now });
  await client.hSet('clusterodm:routes', routes);
  await client.set('clusterodm:routes:imported', String(now));
  // The daemon may look routes up one by one, not read the whole route table (yet): HSCAN only on other keys
  // (an ACL selector).
  assert.match(await redis.command("ACL SETUSER default -hscan (+hscan ~clusterodm:tasks)"), /^\+OK/);

  const d = await startDaemon(t, path.join(tempDir(t), 'a'), ['--redis', redis.url]);
  await waitUntil(() => /Cannot read the shared routes \(attempt 1\)/.test(d.output()), {
    timeoutMs: 10000,
    message: 'the background fill did not start',
  });
  assert.doesNotMatch(d.output(), /Loaded \d+ routes/);
  // Answered through its route, read on demand.
  const info = await json(`${d.url}/task/${uuid}/info?token=owner`);
  assert.equal(info['uuid'], uuid, JSON.stringify(info));
  assert.equal(typeof statusCode(info), 'number');
  // The owner check holds for a route read on demand too.
  const stranger = await json(`${d.url}/task/${uuid}/info?token=someone-else`);
  assert.equal(stranger['uuid'], undefined, JSON.stringify(stranger));
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  assert.match(await cli.send(`ROUTE INFO ${uuid}`), new RegExp(`"hostname": "127\\.0\\.0\\.1",\\s*"port": ${node.port}`));

  // The whole table: the task list waits for the fill, which succeeds once HSCAN is allowed again.
  const listing = json(`${d.url}/task/list?token=owner`);
  assert.match(await redis.command('ACL SETUSER default +hscan'), /^\+OK/);
  await waitUntil(() => /Loaded 2002 routes/.test(d.output()), { timeoutMs: 20000, message: 'the fill did not finish after HSCAN came back' });
  const list = (await listing)['list'] as Array<{ uuid: string }>;
  assert.deepEqual(list.map((e) => e.uuid).sort(), [uuid, other].sort());
  assert.equal((await cli.send('ROUTE LIST')).match(/"accessed"/g)?.length, 2002);
});
