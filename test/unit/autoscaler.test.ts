import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { test } from 'node:test';
import { AsrConfig, DIGITALOCEAN_DEFAULTS, DockerMachine, maskSecrets, mergeConfig, providerEntry, quote, readAsrFile, S3Store } from '../../src/autoscaler';
import { MemoryLogger, systemClock } from '../../src/core';
import { downloadsBase, S3Downloads, s3AssetPath } from '../../src/proxy';
import { BUCKET, DO_TOKEN, S3_KEY, S3_SECRET, startAsrRig } from '../helpers/asr-rig';
import { doProvider, scalerRig } from '../helpers/scaler-rig';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

// ---------------------------------------------------------------------------------------------
// configuration

test('asr config: defaults merged key by key, dotted reads, the original messages for missing keys', (t) => {
  const merged = mergeConfig(DIGITALOCEAN_DEFAULTS, { s3: { bucket: 'mine' }, region: ['a', 'b'] });
  const c = new AsrConfig(merged);
  assert.equal(c.get('s3.bucket'), 'mine');
  assert.equal(c.get('s3.ignoreSSL'), false, 'a nested default survives a partial user object');
  assert.deepEqual(c.stringArray('region'), ['a', 'b']);
  assert.deepEqual(new AsrConfig({ region: 'nyc3' }).stringArray('region'), ['nyc3']);
  assert.throws(() => c.require(['accessToken']), /^Error: You need to create a configuration file and set accessToken\.$/);
  assert.throws(() => new AsrConfig({}).require(['s3.endpoint']), /set s3\.endpoint\./, 'missing keys are refused too');
  const dir = tempDir(t);
  const f = path.join(dir, 'asr.json');
  fs.writeFileSync(f, '{"accessToken": "x"}');
  assert.throws(() => readAsrFile(f), /must specify a provider key \(we didn't find it\)/);
  fs.writeFileSync(f, '{nope');
  assert.throws(() => readAsrFile(f), /is not valid JSON/);
  assert.throws(() => readAsrFile(path.join(dir, 'missing.json')), /Cannot read ASR configuration/);
  assert.throws(() => providerEntry('aws'), /Unknown ASR provider "aws" \(available: digitalocean\)/);
  assert.throws(() => providerEntry('__proto__'), /Unknown ASR provider/);
  assert.ok(providerEntry('digitalocean'));
});

test('digitalocean: validation, size mapping, minImages, create arguments and the retry schedule', async (t) => {
  assert.throws(() => doProvider({ imageSizeMapping: 'big' }), /imageSizeMapping: must be an array/);
  assert.throws(() => doProvider({ sshKey: { path: '/nonexistent/key' } }), /sshKey\.path: file does not exist/);
  assert.throws(() => doProvider({ s3: { secretKey: 'CHANGEME!' } }), /set s3\.secretKey\./);
  const p = doProvider({
    imageSizeMapping: [
      { maxImages: 500, slug: 'big' },
      { maxImages: 10, slug: 'small' },
    ],
    minImages: 3,
  });
  assert.equal(p.canHandle(2), false, 'below minImages');
  assert.equal(p.canHandle(3), true);
  assert.equal(p.canHandle(501), false);
  assert.deepEqual(await p.createArgs(10, 1), [
    '--digitalocean-access-token', 'tok', '--digitalocean-region', 'nyc3', '--digitalocean-image', 'ubuntu-16-04-x64',
    '--digitalocean-size', 'small', '--digitalocean-monitoring=true', '--digitalocean-tags', 'clusterodm',
  ]);
  assert.equal((await p.createArgs(11, 1))[7], 'big', 'the smallest size that fits, after sorting');
  const key = path.join(tempDir(t), 'id_rsa');
  fs.writeFileSync(key, 'k');
  const q = doProvider({
    region: ['r1', 'r2', 'r3'],
    monitoring: false,
    tags: ['x', 'y'],
    sshKey: { fingerprint: 'aa:bb', path: key },
    engineInstallUrl: '"https://releases.rancher.com/install-docker/19.03.9.sh"',
  });
  assert.deepEqual((await q.createArgs(5, 5)).slice(2), [
    '--digitalocean-region', 'r2', '--digitalocean-image', 'ubuntu-16-04-x64', '--digitalocean-size', 's-1vcpu-1gb',
    '--digitalocean-tags', 'x,y', '--digitalocean-ssh-key-fingerprint', 'aa:bb', '--digitalocean-ssh-key-path', key,
    '--engine-install-url', '"https://releases.rancher.com/install-docker/19.03.9.sh"',
  ]);
  // 1 s while each region gets a first try, then 10 s × the attempts past that.
  assert.deepEqual([1, 2, 3, 4, 5].map((a) => q.failureSleepMs(a)), [1000, 1000, 1000, 10_000, 20_000]);
  assert.equal(doProvider().createRetries(), 1);
  assert.equal(doProvider().machinesLimit(), -1);
});

test('digitalocean: snapshots and tagged droplets through the API (pages, 404 on delete)', async (t) => {
  const rig = await startAsrRig(t);
  rig.fakeDo.images.push({ id: 77, name: 'nodeodm-snap', regions: ['fra1', 'ams3'] });
  const logger = new MemoryLogger();
  const p = doProvider({ accessToken: DO_TOKEN, apiUrl: rig.fakeDo.url, snapshot: true, image: 'nodeodm-snap', region: 'nyc3' }, logger);
  const args = await p.createArgs(5, 1);
  assert.deepEqual(args.slice(2, 6), ['--digitalocean-region', 'fra1', '--digitalocean-image', '77']);
  assert.ok(logger.lines.some((l) => l.startsWith('warn: Snapshot nodeodm-snap is not available in nyc3, using fra1')));
  await assert.rejects(doProvider({ accessToken: DO_TOKEN, apiUrl: rig.fakeDo.url, snapshot: true, image: 'nope' }).createArgs(5, 1), /Snapshot nope not found\./);
  await assert.rejects(doProvider({ accessToken: 'wrong', apiUrl: rig.fakeDo.url, snapshot: true }).createArgs(5, 1), /Cannot contact DigitalOcean API: 401/);
  assert.ok(rig.fakeDo.requests.some((r) => r.path === '/v2/images?page=1&per_page=9999999&private=true' && r.auth === `Bearer ${DO_TOKEN}`));

  for (let i = 0; i < 450; i++) rig.fakeDo.addDroplet({ name: `clusterodm-1-n${i}`, region: 'r', size: 's', image: 'i', tags: ['clusterodm'] });
  rig.fakeDo.addDroplet({ name: 'other', region: 'r', size: 's', image: 'i', tags: ['else'] });
  const tagged = await doProvider({ accessToken: DO_TOKEN, apiUrl: rig.fakeDo.url }).listTaggedMachines();
  assert.equal(tagged.length, 450, 'every page is read');
  const first = tagged[0]?.id ?? '';
  const api = doProvider({ accessToken: DO_TOKEN, apiUrl: rig.fakeDo.url });
  await api.deleteMachine(first);
  await api.deleteMachine(first); // already gone: 404 is not an error
  assert.equal(rig.fakeDo.droplets.size, 450);
});

// ---------------------------------------------------------------------------------------------
// shell quoting and secrets

test('remote commands: hostile values reach NodeODM as single arguments and run nothing (real sh)', (t) => {
  const dir = tempDir(t);
  const bin = path.join(dir, 'bin');
  fs.mkdirSync(bin);
  const argvFile = path.join(dir, 'argv.json');
  // A fake docker that records its argv as JSON.
  fs.writeFileSync(
    path.join(bin, 'docker'),
    `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} -e 'require("fs").writeFileSync(process.argv[1], JSON.stringify(process.argv.slice(2)))' ${JSON.stringify(argvFile)} "$@"\n`,
    { mode: 0o755 },
  );
  const pwned = path.join(dir, 'pwned');
  const evil = [`$(touch ${pwned})`, `\`touch ${pwned}\``, `'; touch ${pwned}; '`, `"$HOME" && touch ${pwned}`, `a\nb`, `it's`];
  const p = doProvider({
    s3: { accessKey: evil[0], secretKey: evil[1], endpoint: evil[2], bucket: evil[3], acl: evil[4] },
    dockerImage: evil[5],
  });
  // The webhook URL is built from the request's Host header: `$(…)`, backticks and `;` survive URL parsing.
  const webhook = new URL("http://$(id)`id`;x/commit?token=a'b&secret=s");
  assert.equal(webhook.host, '$(id)`id`;x');
  const cmd = p.dockerRunCommand({ nodeToken: `t$(id)`, webhookUrl: webhook.toString() });
  const r = spawnSync('sh', ['-c', cmd], { env: { PATH: `${bin}:/usr/bin:/bin` } });
  assert.equal(r.status, 0, r.stderr.toString());
  assert.equal(fs.existsSync(pwned), false, 'the remote shell ran an injected command');
  assert.deepEqual(JSON.parse(fs.readFileSync(argvFile, 'utf8')), [
    'run', '-d', '-p', '3000:3000', evil[5], '-q', '1',
    '--s3_access_key', evil[0], '--s3_secret_key', evil[1], '--s3_endpoint', evil[2], '--s3_bucket', evil[3],
    '--s3_acl', evil[4], '--webhook', webhook.toString(), '--token', 't$(id)',
  ]);
  assert.equal(quote('plain-1.2'), 'plain-1.2');
  assert.equal(quote("it's"), `'it'\\''s'`);
  assert.equal(quote(''), "''");
  assert.equal(maskSecrets(`x ${quote("p'w")} p'w tok`, ["p'w", 'tok']), 'x ******** ******** ********');
});

// ---------------------------------------------------------------------------------------------
// the autoscaler with an injected clock (the vacuum: autoscaler-vacuum.test.ts)

test('reserve: the limit is taken synchronously, so concurrent tasks never exceed it', async (t) => {
  const r = await scalerRig(t, { asr: { dropletsLimit: 2 } });
  const a = r.scaler.reserve(5);
  const b = r.scaler.reserve(5);
  assert.ok(a && b);
  assert.equal(r.scaler.reserve(5), null);
  r.scaler.release(a);
  r.scaler.release(a); // twice is once
  assert.equal(r.scaler.pending(), 1);
  await r.spawned('clusterodm-1-x', { created: r.clock.now() });
  assert.equal(r.scaler.reserve(5), null, 'running machines count against the limit');
  assert.equal(r.scaler.reserve(51), null, 'no size fits');
});

/** Creates a machine for a task of 5 images through the fake docker-machine (its NodeODM is a test node). */
async function create(r: Awaited<ReturnType<typeof scalerRig>>): Promise<ReturnType<typeof r.scaler.createNode>> {
  const reservation = r.scaler.reserve(5);
  assert.ok(reservation);
  const uuid = '11111111-2222-4333-8444-000000000009';
  return r.scaler.createNode(reservation, { uuid, images: 5, commitUrl: 'http://127.0.0.1:9/commit?token=' }, new AbortController().signal);
}

test("runtime secrets: a machine's node token and webhook secret are dropped when it is gone (Autoscaler.runtimeSecrets grew forever)", async (t) => {
  const r = await scalerRig(t, { clock: systemClock, asr: { addSwap: 0 } });
  const before = r.scaler.secrets();
  // Two creations that fail, then one that works.
  r.ext.dm.configure({ failCreate: 2 });
  await assert.rejects(create(r), /Cannot create machine \(attempted 1 times\)/);
  await assert.rejects(create(r), /Cannot create machine/);
  const node = await create(r);
  // While the machine exists, its token is masked.
  assert.equal(r.scaler.secrets().length, before.length + 2);
  assert.equal(r.scaler.mask(`token ${node.token}`), 'token ********');
  await r.scaler.destroyNode(node);
  assert.deepEqual(r.machines(), []);
  assert.deepEqual(r.scaler.secrets(), before, 'secrets of machines that are gone are kept');
});

test('reconcile: a machine whose creation ends while the machine list is read is kept (it was destroyed as unknown to nodes.json)', async (t) => {
  const r = await scalerRig(t, { clock: systemClock, asr: { addSwap: 0 } });
  // The creation stops at its first ssh: the machine exists at docker-machine, and is being created.
  r.ext.dm.configure({ hold: ['ssh', 'ls'] });
  const creating = create(r);
  await waitUntil(() => r.ext.dm.calls('docker-machine').some((c) => c.args[0] === 'ssh'), { timeoutMs: 30000, message: 'no ssh' });
  const [name] = r.machines();
  assert.ok(name);
  // A vacuum's reconciliation lists the machines; the creation ends (the node is registered) before the list returns.
  const reconciled = r.scaler.reconcile();
  await waitUntil(() => r.ext.dm.calls('docker-machine').some((c) => c.args[0] === 'ls'), { timeoutMs: 30000, message: 'no ls' });
  r.ext.dm.configure({ hold: ['ls'] });
  const node = await creating;
  r.ext.dm.configure({ hold: [] });
  assert.equal(await reconciled, 0);
  assert.deepEqual(r.machines(), [name], 'the new machine was destroyed');
  assert.ok(r.registry.list().includes(node));
  await r.scaler.destroyNode(node);
});

test("autoscaler: a machine whose random node token would start with '-' gets online (NodeODM took it for an option: 1 machine in 64 never came up)", async (t) => {
  // 0xf8… is '-' in base64url; the token must reach NodeODM as the value of --token whatever the random bytes.
  const r = await scalerRig(t, { clock: systemClock, asr: { addSwap: 0 }, random: (n) => Buffer.alloc(n, 0xf8) });
  const node = await create(r);
  assert.equal(r.registry.list().includes(node), true);
  assert.ok(node.isOnline(Date.now()));
  const info = await fetch(`${node.baseUrl}/info?token=${encodeURIComponent(node.token)}`);
  assert.equal(((await info.json()) as { taskQueueCount?: unknown }).taskQueueCount, 0, 'the node does not accept its token');
  await r.scaler.destroyNode(node);
});

// ---------------------------------------------------------------------------------------------
// S3 downloads

test('s3 downloads: private results stream from the bucket; asset paths are checked; redirect URLs keep a path', async (t) => {
  const rig = await startAsrRig(t);
  const logger = new MemoryLogger();
  const store = new S3Store({ accessKey: S3_KEY, secretKey: S3_SECRET, endpoint: rig.s3Url, bucket: BUCKET, ignoreSSL: false, acl: 'private' }, logger);
  t.after(() => store.close());
  await store.testBucket();
  const body = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
  const { PutObjectCommand, S3Client } = await import('@aws-sdk/client-s3');
  const c = new S3Client({ region: 'us-east-1', endpoint: rig.s3Url, forcePathStyle: true, credentials: { accessKeyId: S3_KEY, secretAccessKey: S3_SECRET } });
  await c.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'u1/odm_orthophoto/odm_orthophoto.tif', Body: body, ContentType: 'image/tiff' }));
  c.destroy();
  const dl = new S3Downloads({ base: 'unused', store, logger });
  const server = http.createServer((req, res) => {
    const asset = s3AssetPath((req.url ?? '').slice(1));
    if (asset) void dl.serve(req, res, 'u1', asset);
    else res.end('bad');
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const got = await fetch(`${url}/download/orthophoto.tif`);
  assert.equal(got.status, 200);
  assert.equal(got.headers.get('content-type'), 'image/tiff');
  assert.equal(got.headers.get('content-length'), String(body.length));
  const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(Buffer.from(await got.arrayBuffer())), sha(body));
  const missing = await fetch(`${url}/download/all.zip`);
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), { error: 'Asset not found' });

  assert.equal(s3AssetPath('download/..'), null);
  assert.equal(s3AssetPath('download/a/%2e%2e/b'), null);
  assert.equal(s3AssetPath('download/a%2Fb'), null);
  assert.equal(s3AssetPath('download/'), null);
  assert.equal(s3AssetPath('download/odm_dem/dsm.tif'), 'odm_dem/dsm.tif');
  assert.equal(downloadsBase('https://cdn.example.com/results/'), 'https://cdn.example.com/results');
  const redirect = new S3Downloads({ base: 'https://cdn.example.com/results', store: null, logger });
  const rs = http.createServer((req, res) => void redirect.serve(req, res, 'u2', 'a b.tif'));
  await new Promise<void>((res) => rs.listen(0, '127.0.0.1', res));
  t.after(() => rs.close());
  const r = await fetch(`http://127.0.0.1:${(rs.address() as AddressInfo).port}/`, { redirect: 'manual' });
  assert.equal(r.status, 301);
  assert.equal(r.headers.get('location'), 'https://cdn.example.com/results/u2/a%20b.tif');
});

test('docker-machine runner: a call that hangs is killed at its timeout with its whole process group; errors are masked', async (t) => {
  const dir = tempDir(t);
  const bin = path.join(dir, 'docker-machine');
  const pidFile = path.join(dir, 'child.pid');
  // Starts a grandchild (as docker-machine starts ssh) and hangs.
  fs.writeFileSync(bin, `#!/bin/sh\nif [ "$1" = "rm" ]; then echo "failed with token s3cr3t-token" >&2; exit 3; fi\nsleep 60 &\necho $! > ${JSON.stringify(pidFile)}\nwait\n`, { mode: 0o755 });
  const logger = new MemoryLogger();
  const dm = new DockerMachine({ logger, bin, timeouts: { ssh: 300 }, secrets: () => ['s3cr3t-token'] });
  await assert.rejects(dm.ssh('m', 'uptime'), /docker-machine ssh timed out after 300 ms/);
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  await waitUntil(() => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  }, { timeoutMs: 5000, message: 'the grandchild survived the timeout' });
  await assert.rejects(dm.rm('m'), (e: Error) => e.message === 'docker-machine exited with code 3: failed with token ********');
  assert.ok(!logger.lines.some((l) => l.includes('s3cr3t-token')));
  await assert.rejects(new DockerMachine({ logger, bin: path.join(dir, 'none') }).checkInstalled(), /Docker-machine not found in PATH/);
});
