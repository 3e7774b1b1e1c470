/**
 * A node on port 443 speaks HTTPS (as in the original). Its certificate is signed by a CA of the test's, which the
 * daemon trusts through NODE_EXTRA_CA_CERTS (Node.js's own way to add CAs; ClusterODM has no flag of its own).
 * The node listens on a real TLS listener on a loopback address of its own (127.x.y.z:443), named in the
 * certificate; clients reach ClusterODM under another name (their Host header).
 */
import assert from 'node:assert/strict';
import { createHash, randomInt } from 'node:crypto';
import * as http from 'node:http';
import { test, type TestContext } from 'node:test';
import { makeCaSignedCert } from '../helpers/cert';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { assetSha256, startTestNode, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const CLIENT_HOST = 'clusterodm.example.org';

/** A TLS test node on 443 of a random 127.x.y.z (another test may hold one address; then the next is tried). */
async function httpsNode(t: TestContext, dir: string, assetSize: number): Promise<{ node: TestNode; ip: string; caFile: string }> {
  for (let attempt = 0; ; attempt++) {
    const ip = `127.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(1, 255)}`;
    const certs = await makeCaSignedCert(dir, { ips: [ip] });
    try {
      const node = await startTestNode({ host: ip, port: 443, tls: { key: certs.key, cert: certs.cert }, processingMs: 200, assetSize });
      t.after(() => node.close());
      return { node, ip, caFile: certs.caFile };
    } catch (e: unknown) {
      if (attempt >= 5 || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
    }
  }
}

/** A request to ClusterODM as a client that knows it as CLIENT_HOST (the Host header all browsers and SDKs send). */
function call(port: number, method: string, target: string, body?: { type: string; data: Buffer }): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers: http.OutgoingHttpHeaders = { host: `${CLIENT_HOST}:${port}` };
    if (body) {
      headers['content-type'] = body.type;
      headers['content-length'] = body.data.length;
    }
    const req = http.request({ host: '127.0.0.1', port, method, path: target, headers, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${target}: no answer`)));
    req.on('error', reject);
    req.end(body?.data);
  });
}

const asJson = (b: Buffer): Record<string, unknown> => JSON.parse(b.toString('utf8')) as Record<string, unknown>;

test('https nodes cannot be queried: a task created through ClusterODM on an https node can be read (info, output, download)', { timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const assetSize = 300_000;
  const { node, ip, caFile } = await httpsNode(t, dir, assetSize);
  const d = await startDaemon(t, `${dir}/daemon`, [], { env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile } });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD ${ip} 443`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  assert.match(await cli.send('NODE LIST'), new RegExp(`^1\\) ${ip.replace(/\./g, '\\.')}:443 \\[online\\]`), 'the daemon trusts the node through NODE_EXTRA_CA_CERTS');

  const fd = new FormData();
  fd.set('name', 'over https');
  for (let i = 0; i < 2; i++) fd.append('images', new Blob([Buffer.alloc(5000 + i, i)]), `IMG_${i}.JPG`);
  const encoded = new Response(fd);
  const data = Buffer.from(await encoded.arrayBuffer());
  const created = asJson((await call(d.proxyPort, 'POST', '/task/new', { type: encoded.headers.get('content-type') ?? '', data })).body);
  const uuid = String(created['uuid']);
  assert.match(uuid, /^[0-9a-f-]{36}$/, JSON.stringify(created));
  await waitUntil(() => node.tasks().some((task) => task.uuid === uuid), { timeoutMs: 30_000, message: 'the task never landed on the https node' });

  // Read back through ClusterODM, as the client that created it.
  let last: Record<string, unknown> = {};
  await waitUntil(
    async () => {
      last = asJson((await call(d.proxyPort, 'GET', `/task/${uuid}/info`)).body);
      return (last['status'] as { code?: number } | undefined)?.code === 40;
    },
    { timeoutMs: 30_000, message: `the task's info never said COMPLETED through ClusterODM: ${JSON.stringify(last)}` },
  ).catch((e: unknown) => {
    throw new Error(`${(e as Error).message}; last answer ${JSON.stringify(last)}`);
  });
  assert.equal(last['uuid'], uuid);
  const output = JSON.parse((await call(d.proxyPort, 'GET', `/task/${uuid}/output`)).body.toString('utf8')) as unknown;
  assert.ok(Array.isArray(output) && output.some((l) => typeof l === 'string' && l.includes('processing 2 images')), JSON.stringify(output));
  const zip = await call(d.proxyPort, 'GET', `/task/${uuid}/download/all.zip`);
  assert.equal(zip.status, 200);
  assert.equal(createHash('sha256').update(zip.body).digest('hex'), assetSha256(assetSize), 'all.zip arrived whole');

  // What the node saw of those reads: its own name as Host, over TLS (an address: no server name is sent).
  const reads = node.requests.filter((r) => r.path.startsWith(`/task/${uuid}/`));
  assert.ok(reads.length >= 3);
  for (const r of reads) {
    assert.equal(r.headers['host'], ip, `${r.path}: Host`);
    assert.equal(r.servername, false, `${r.path}: TLS server name`);
  }
});
