import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  AsrConfig,
  Autoscaler,
  DigitalOceanAsrProvider,
  DIGITALOCEAN_DEFAULTS,
  DockerMachine,
  IDLE_GRACE_MS,
  maskSecrets,
  mergeConfig,
  providerEntry,
  quote,
  readAsrFile,
  S3Store,
  VACUUM_INTERVAL_MS,
  type ConfigObject,
} from '../../src/autoscaler';
import { FakeClock, MemoryLogger } from '../../src/core';
import { NodeClient } from '../../src/nodeodm';
import { ClusterNode, HealthPoller, NodeRegistry, parseNodesFile } from '../../src/nodes';
import { downloadsBase, S3Downloads, s3AssetPath } from '../../src/proxy';
import { FileRouteStore, RouteTable, TaskTable } from '../../src/routing';
import { JsonStateFile } from '../../src/store';
import { BUCKET, DO_TOKEN, S3_KEY, S3_SECRET, startAsrRig } from '../helpers/asr-rig';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

function doProvider(user: ConfigObject = {}, logger = new MemoryLogger()): DigitalOceanAsrProvider {
  const base: ConfigObject = { accessToken: 'tok', s3: { accessKey: 'k', secretKey: 's', endpoint: 'nyc3.example.com', bucket: 'b' } };
  const p = new DigitalOceanAsrProvider(new AsrConfig(mergeConfig(DIGITALOCEAN_DEFAULTS, mergeConfig(base, user))), { logger });
  p.validate();
  return p;
}

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
// the autoscaler with an injected clock

interface Rig {
  scaler: Autoscaler;
  clock: FakeClock;
  registry: NodeRegistry;
  routes: RouteTable;
  tasks: TaskTable;
  logger: MemoryLogger;
  machines: () => string[];
  /** Registers an autospawned node with a machine at the fake docker-machine. */
  spawned(name: string, opts: { created: number; maxRuntime?: number; maxUploadTime?: number; port?: number }): Promise<ClusterNode>;
}

async function scalerRig(t: TestContext, asr: ConfigObject = {}): Promise<Rig> {
  const ext = await startAsrRig(t);
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  const logger = new MemoryLogger();
  const registry = new NodeRegistry({ store: new JsonStateFile({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }), clock, logger });
  const routes = new RouteTable({ store: new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger }), clock, logger });
  await routes.load(registry);
  const tasks = new TaskTable({ file: path.join(dir, 'tasks.json'), clock, logger });
  const client = new NodeClient();
  const poller = new HealthPoller({ registry, client, clock, logger });
  const provider = doProvider({ accessToken: DO_TOKEN, apiUrl: ext.fakeDo.url, ...asr });
  const machines = new DockerMachine({ logger, bin: path.join(ext.dm.binDir, 'docker-machine') });
  const s3 = new S3Store(provider.s3, logger);
  const scaler = new Autoscaler({ provider, machines, s3, registry, poller, routes, tasks, client, clock, logger });
  t.after(() => scaler.stop());
  let nextPort = 1;
  return {
    scaler,
    clock,
    registry,
    routes,
    tasks,
    logger,
    machines: () => ext.dm.machines().map((m) => m.name).sort(),
    spawned: async (name, o) => {
      await machines.create(name, ['--driver', 'digitalocean', '--digitalocean-access-token', DO_TOKEN]);
      const node = new ClusterNode({
        hostname: '127.0.0.1',
        port: o.port ?? nextPort++,
        token: '',
        dockerMachine: { name, created: o.created, maxRuntime: o.maxRuntime ?? -1, maxUploadTime: o.maxUploadTime ?? -1 },
      });
      await registry.add(node);
      return node;
    },
  };
}

function setOnline(n: ClusterNode, now: number, queue: number): void {
  n.lastRefreshed = now;
  n.lastSeenOnline = now;
  n.info = { maxParallelTasks: 1, taskQueueCount: queue };
}

test('vacuum: max runtime, max upload time, offline for too long (from when last seen), idle; busy nodes stay', async (t) => {
  const r = await scalerRig(t);
  await r.scaler.start();
  await r.scaler.vacuum();
  const now = r.clock.now();
  const hour = 3600_000;
  const runtime = await r.spawned('clusterodm-1-runtime', { created: now - 2 * hour, maxRuntime: 3600 });
  const upload = await r.spawned('clusterodm-1-upload', { created: now - 2 * hour, maxUploadTime: 3600 });
  const uploading = await r.spawned('clusterodm-1-uploading', { created: now - 2 * hour, maxUploadTime: 3600 });
  const blip = await r.spawned('clusterodm-1-blip', { created: now - 2 * hour, maxUploadTime: 3600 });
  const gone = await r.spawned('clusterodm-1-gone', { created: now - 2 * hour, maxUploadTime: 3600 });
  const busy = await r.spawned('clusterodm-1-busy', { created: now - 10 * hour });
  const fresh = await r.spawned('clusterodm-1-fresh', { created: now - 60_000 });
  setOnline(runtime, now, 1);
  setOnline(upload, now, 0);
  setOnline(uploading, now, 1);
  setOnline(busy, now, 1);
  setOnline(fresh, now, 0);
  // One failed poll: offline now, but seen online a minute ago (the original destroyed it at once).
  blip.lastSeenOnline = now - 60_000;
  // Not seen for longer than maxUploadTime.
  gone.lastSeenOnline = now - 2 * hour;
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), ['clusterodm-1-blip', 'clusterodm-1-busy', 'clusterodm-1-fresh', 'clusterodm-1-uploading']);
  assert.deepEqual(r.registry.list().map((n) => n.record.dockerMachine?.name).sort(), r.machines());
  assert.ok(r.logger.lines.includes(`warn: ${runtime.name} has exceeded its maximum runtime and will be forcibly deleted!`));
  assert.ok(r.logger.lines.some((l) => l.endsWith('has exceeded its maximum upload time and will be forcibly deleted!')));
  assert.ok(r.logger.lines.some((l) => l.endsWith('has been offline for too long and will be forcibly deleted!')));

  // Time passes: fresh becomes idle (nothing queued, past the grace time). The vacuum runs on its own timer.
  r.clock.advance(IDLE_GRACE_MS);
  await r.scaler.vacuum(); // let the passes the timer started meanwhile finish
  // As polled just before the next pass.
  const next = r.clock.now() + VACUUM_INTERVAL_MS;
  for (const n of [fresh, busy, uploading]) setOnline(n, next, n === fresh ? 0 : 1);
  blip.lastSeenOnline = next;
  r.clock.advance(VACUUM_INTERVAL_MS);
  await waitUntil(() => !r.machines().includes('clusterodm-1-fresh'), { timeoutMs: 10000, message: 'the idle machine stayed' });
  assert.deepEqual(r.machines(), ['clusterodm-1-blip', 'clusterodm-1-busy', 'clusterodm-1-uploading']);
});

test('vacuum: an idle machine whose webhook never came keeps its task info and output', async (t) => {
  const r = await scalerRig(t);
  const node = await startTestNode({ processingMs: 50 });
  t.after(() => node.close());
  const fd = new FormData();
  fd.append('images', new Blob([Buffer.alloc(10)]), 'a.jpg');
  const { uuid } = (await (await fetch(`${node.url}/task/new`, { method: 'POST', body: fd })).json()) as { uuid: string };
  const spawned = await r.spawned('clusterodm-1-idle', { created: r.clock.now() - 2 * IDLE_GRACE_MS, port: node.port });
  await r.routes.add(uuid, spawned, 'user-token');
  await new Promise((res) => setTimeout(res, 300));
  setOnline(spawned, r.clock.now(), 0);
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), []);
  const saved = r.tasks.get(uuid);
  assert.equal(saved?.phase, 'finished');
  assert.equal(saved?.taskInfo.status.code, 40);
  assert.equal(saved?.token, 'user-token');
  assert.ok(saved?.output.some((l) => l.startsWith('Compressing all.zip')));
  assert.equal(r.routes.has(uuid), false);
});

test('vacuum: a machine whose task is done and saved (a restart lost the cleanup after its webhook) is destroyed at once', async (t) => {
  const r = await scalerRig(t);
  const now = r.clock.now();
  const done = await r.spawned('clusterodm-1-done', { created: now - 60_000 });
  const busy = await r.spawned('clusterodm-1-busy', { created: now - 60_000 });
  setOnline(done, now, 0);
  setOnline(busy, now, 1);
  const uuid = '11111111-2222-4333-8444-000000000001';
  await r.routes.add(uuid, done, undefined);
  await r.routes.add('11111111-2222-4333-8444-000000000002', busy, undefined);
  await r.tasks.put({
    uuid,
    token: undefined,
    phase: 'finished',
    taskInfo: { uuid, name: 't', dateCreated: now, status: { code: 40 }, options: [], imagesCount: 1 },
    output: ['done'],
  });
  await r.scaler.vacuum();
  assert.deepEqual(r.machines(), ['clusterodm-1-busy']);
  assert.ok(r.logger.lines.includes(`warn: ${done.name} has finished its task and will be deleted`));
  assert.equal(r.tasks.get(uuid)?.phase, 'finished', 'the saved task stays');
});

test('reserve: the limit is taken synchronously, so concurrent tasks never exceed it', async (t) => {
  const r = await scalerRig(t, { dropletsLimit: 2 });
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
