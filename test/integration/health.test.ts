/**
 * /healthz and /readyz on the admin web port: answered without the admin password and whatever the Host, and
 * nothing else is (the Host check and the login still guard every other path and method).
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test } from 'node:test';
import { startDaemon } from '../helpers/daemon';
import { startRedis } from '../helpers/redis';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

/** A request with a Host of our choosing (fetch does not let a caller set it). */
function get(port: number, pathname: string, opts: { host?: string; method?: string } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: pathname, method: opts.method ?? 'GET', headers: { host: opts.host ?? `127.0.0.1:${port}` } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('healthz and readyz answer without the password and for any Host; nothing else does', async (t) => {
  const d = await startDaemon(t, tempDir(t), ['--admin-web-port', '10000', '--admin-pass', 'S3cret']);
  for (const host of [`127.0.0.1:${d.webPort}`, 'clusterodm-1:10000', 'lb.example.com']) {
    assert.deepEqual(await get(d.webPort, '/healthz', { host }), { status: 200, body: '{"status":"ok"}' });
    assert.deepEqual(await get(d.webPort, '/readyz', { host }), { status: 200, body: '{"status":"ready"}' });
  }
  assert.equal((await get(d.webPort, '/healthz', { method: 'HEAD' })).status, 200);
  // Every other path and method still meets the login, and a foreign Host the Host check.
  assert.equal((await get(d.webPort, '/r/info')).status, 401);
  assert.equal((await get(d.webPort, '/healthz', { method: 'POST' })).status, 401);
  assert.equal((await get(d.webPort, '/healthz/x')).status, 401);
  assert.equal((await get(d.webPort, '/r/info', { host: 'lb.example.com' })).status, 421);
});

test('readyz answers 503 naming the store while Redis is down; healthz stays 200', async (t) => {
  const redis = await startRedis(t);
  const d = await startDaemon(t, tempDir(t), ['--admin-web-port', '10000', '--redis', redis.url]);
  assert.equal((await get(d.webPort, '/readyz')).status, 200);
  // The server goes away (its reply never comes: the connection just closes).
  void redis.command('SHUTDOWN NOSAVE').catch(() => undefined);
  let last = { status: 0, body: '' };
  await waitUntil(
    async () => {
      last = await get(d.webPort, '/readyz');
      return last.status === 503;
    },
    { timeoutMs: 10000, message: 'readyz did not turn 503 with Redis down' },
  );
  assert.deepEqual(JSON.parse(last.body), { status: 'not ready', failing: ['store'] });
  assert.equal((await get(d.webPort, '/healthz')).status, 200);
});
