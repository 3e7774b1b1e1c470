/**
 * What a forwarded request may carry to a node: only the NodeODM UI's own files pass without a token (never a
 * task path), and the client's credentials for ClusterODM and the headers its `Connection:` names stay behind.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';
import { form, images, json, rawRequest, startLoggedApp } from './support';

const TOKEN = 'T-user-token';

test('the token-free rule for UI files reaches task paths: a /task/… path ending in .js/.css/.ico/.woff/.ttf needs the token', async (t) => {
  const node = await startTestNode({ processingMs: 50 });
  t.after(() => node.close());
  const { url, port, app } = await startLoggedApp(t, ['--token', TOKEN]);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const uuid = String((await json(`${url}/task/new?token=${TOKEN}`, { method: 'POST', body: form({}, images(1)) }))['uuid']);
  await waitUntil(() => app.routes.has(uuid), { timeoutMs: 20_000, message: 'the task never reached the node' });

  const get = (target: string): Buffer => Buffer.from(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const before = node.requests.length;
  for (const target of [
    `/task/${uuid}/download/all.zip.js`,
    `/task/${uuid}/download/all.zip.css`,
    `/task/${uuid}/info.ico`,
    `/task/${uuid}/output.woff`,
    `/TASK/${uuid}/download/all.zip.js`,
    `/Task/${uuid}/download/all.zip.ttf`,
    '/task/list.js',
    `/js/../task/${uuid}/download/all.zip.js`,
    `/css/%2e%2e/task/${uuid}/download/all.zip.css`,
  ]) {
    const a = await rawRequest(port, get(target));
    assert.equal(a.status, 401, `${target} answered ${a.status} ${a.body.toString()}`);
  }
  assert.deepEqual(node.requests.slice(before).map((r) => r.path), [], 'none of them reached the node');

  // The UI's own files still load without a token, from the node.
  const ui = ['/css/main.css', '/js/main.js', '/js/vendor/knockout-3.4.0.js', '/fonts/glyphicons-halflings-regular.woff', '/favicon.ico'];
  for (const target of ui) {
    const a = await rawRequest(port, get(target));
    assert.equal(a.status, 200, `${target} answered ${a.status}`);
    assert.equal(a.headers['x-powered-by'], 'Express', `${target} came from the node`);
  }
  assert.deepEqual(node.requests.slice(before).map((r) => r.path), ui);
});

test('headers named in Connection: reach nodes: they, Authorization and Cookie stay with ClusterODM', async (t) => {
  const node = await startTestNode({ processingMs: 50 });
  t.after(() => node.close());
  const { url, port, app } = await startLoggedApp(t, ['--token', TOKEN]);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const uuid = String((await json(`${url}/task/new?token=${TOKEN}`, { method: 'POST', body: form({}, images(1)) }))['uuid']);
  await waitUntil(() => app.routes.has(uuid), { timeoutMs: 20_000, message: 'the task never reached the node' });

  const headers = [
    'Host: clusterodm.example.org',
    'Connection: close, X-Secret, Cookie, Accept-Language',
    'X-Secret: s3cr3t',
    'Cookie: session=c00kie',
    'Authorization: Basic dXNlcjpwYXNz',
    'Proxy-Authorization: Basic cHJveHk6cGFzcw==',
    'Forwarded: for=1.2.3.4',
    'X-Forwarded-For: 1.2.3.4',
    'Accept-Language: fr',
    'Accept: application/json',
    'User-Agent: smuggle-test/1',
    'Range: bytes=0-',
  ];
  const before = node.requests.length;
  for (const target of [`/task/${uuid}/info?token=${TOKEN}`, '/js/main.js']) {
    const a = await rawRequest(port, Buffer.from(`GET ${target} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n`));
    assert.equal(a.status, 200, target);
  }
  const seen = node.requests.slice(before).filter((r) => !r.path.startsWith('/info'));
  assert.deepEqual(seen.map((r) => r.path), [`/task/${uuid}/info`, '/js/main.js']);
  for (const r of seen) {
    const names = Object.keys(r.headers).sort();
    for (const gone of ['x-secret', 'cookie', 'authorization', 'proxy-authorization', 'forwarded', 'x-forwarded-for', 'accept-language']) {
      assert.ok(!names.includes(gone), `${r.path}: the node got ${gone} (${names.join(', ')})`);
    }
    assert.equal(r.headers['accept'], 'application/json', 'headers meant for the node still arrive');
    assert.equal(r.headers['user-agent'], 'smuggle-test/1');
    assert.equal(r.headers['range'], 'bytes=0-');
    assert.equal(r.headers['host'], `127.0.0.1:${node.port}`, "the node's own host, not the client's");
    assert.ok(!JSON.stringify(r.headers).includes('s3cr3t') && !JSON.stringify(r.headers).includes('c00kie'));
  }
});
