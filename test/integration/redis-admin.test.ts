/**
 * The telnet CLI and the admin web of several instances on one Redis show and change one cluster: what is done
 * through one instance's CLI or web shows in every other's, within 1 s.
 */
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { startBalancer } from '../helpers/balancer';
import { CliClient } from '../helpers/cli-client';
import type { Daemon } from '../helpers/daemon';
import { startInstance } from '../helpers/instances';
import { haveRedisServer, startRedis } from '../helpers/redis';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { form, images, json, statusCode } from '../reliability/support';
import { waitUntil } from '../helpers/wait';

assert.ok(haveRedisServer(), 'redis-server is not installed: run scripts/install-test-deps.sh');

async function cli(t: TestContext, d: Daemon, line: string): Promise<string> {
  const c = await CliClient.connect(t, d.cliPort);
  await c.untilPrompt();
  return c.send(line);
}

const web = (d: Daemon, pathname: string): string => `http://127.0.0.1:${d.webPort}${pathname}`;

async function webJson(d: Daemon, pathname: string, body?: unknown): Promise<unknown> {
  const res = await fetch(web(d, pathname), body === undefined ? {} : { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200, `${pathname}: ${res.status}`);
  return res.json();
}

test('CLI and admin web of two instances show and change one cluster', async (t) => {
  const redis = await startRedis(t);
  const dir = tempDir(t);
  const a = await startInstance(t, redis, path.join(dir, 'a'), ['--admin-web-port', '1']);
  const b = await startInstance(t, redis, path.join(dir, 'b'), ['--admin-web-port', '1']);
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());

  // Added through A's web: in B's CLI and web within 1 s.
  assert.deepEqual(await webJson(a, '/r/node/add', { hostname: '127.0.0.1', port: node.port }), { success: true });
  await waitUntil(async () => (await cli(t, b, 'NODE LIST')).includes(`127.0.0.1:${node.port}`), { timeoutMs: 1000, message: "B's CLI does not list the node" });
  const listed = (await webJson(b, '/r/node/list')) as Array<{ name?: string; isLocked?: boolean }>;
  assert.equal(listed.length, 1);
  assert.equal(listed[0]?.name, `127.0.0.1:${node.port}`);
  // Locked through B's CLI: locked in A's web within 1 s; unlocked again through A's CLI.
  assert.equal(await cli(t, b, 'NODE LOCK 1'), 'OK\r\n');
  await waitUntil(async () => ((await webJson(a, '/r/node/list')) as Array<{ isLocked?: boolean }>)[0]?.isLocked === true, {
    timeoutMs: 1000,
    message: "A's web does not show the lock",
  });
  assert.equal(await cli(t, a, 'NODE UNLOCK 1'), 'OK\r\n');
  await waitUntil(async () => /\[L\]/.test(await cli(t, b, 'NODE LIST')) === false, { timeoutMs: 1000, message: "B's CLI still shows the lock" });
  for (const d of [a, b]) assert.equal(await cli(t, d, 'NODE UPDATE'), 'OK\r\n');

  // A task created through the balancer is in both webs' task lists, and canceled through B's web.
  const lb = await startBalancer(t, [a.proxyPort, b.proxyPort]);
  const created = await json(`${lb.url}/task/new`, { method: 'POST', body: form({ name: 'seen-by-all' }, images(2)) });
  const uuid = String(created['uuid']);
  await waitUntil(async () => statusCode(await json(`${lb.url}/task/${uuid}/info`)) === 40, { timeoutMs: 20000, message: 'the task did not complete' });
  for (const d of [a, b]) {
    await waitUntil(async () => JSON.stringify(await webJson(d, '/r/tasks')).includes(uuid), { timeoutMs: 1000, message: 'a web does not list the task' });
    assert.match(await cli(t, d, 'TASK LIST'), new RegExp(uuid));
  }
  assert.deepEqual(await webJson(b, '/r/task/remove', { uuid }), { success: true });
  for (const d of [a, b]) {
    await waitUntil(async () => !JSON.stringify(await webJson(d, '/r/tasks')).includes(uuid), { timeoutMs: 1000, message: 'a web still lists the removed task' });
  }
});
