/**
 * The api driver's pure parts: the install id in the data dir, the provider table built from an ASR file (keys of
 * SPEC §8.7–8.10, plan by image count and attempt, limit keys, secrets), error classification per cloud, and
 * waitForAddress on a fake clock.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { ClusterError, FakeClock, systemClock } from '../../src/core';
import { generateInstallId, INSTALL_ID_FILE, loadOrCreateInstallId } from '../../src/autoscaler/install-id';
import { MachineApiError, waitForAddress, type Machine, type MachineApi } from '../../src/autoscaler/machine-api';
import { apiProviderFromConfig, API_DEFAULTS } from '../../src/autoscaler/providers/api/config';
import { classifyAwsError } from '../../src/autoscaler/providers/api/aws';
import { classifyDigitalOcean } from '../../src/autoscaler/providers/api/digitalocean';
import { classifierForHetzner } from '../../src/autoscaler/providers/api/hetzner';
import { classifyScaleway } from '../../src/autoscaler/providers/api/scaleway';
import type { HttpAnswer } from '../../src/autoscaler/providers/api/http';
import { FakeDigitalOceanApi } from '../helpers/fake-clouds/digitalocean';
import { tempDir } from '../helpers/tmp';

test('install id: generated once, kept in the data dir (owner-only), the same at every start', async (t) => {
  const dir = tempDir(t);
  const first = await loadOrCreateInstallId(dir);
  assert.match(first, /^[a-z0-9]{16}$/);
  const file = path.join(dir, INSTALL_ID_FILE);
  assert.equal(fs.readFileSync(file, 'utf8'), `${first}\n`);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.equal(await loadOrCreateInstallId(dir), first);
  assert.deepEqual(fs.readdirSync(dir), [INSTALL_ID_FILE], 'no temp file left behind');
  const other = await loadOrCreateInstallId(tempDir(t));
  assert.notEqual(other, first, 'another data dir is another install');
});

test('install id: a damaged file stops the start (STATE_CORRUPT) instead of orphaning the machines tagged with the old id', async (t) => {
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, INSTALL_ID_FILE), 'not an id\n');
  await assert.rejects(loadOrCreateInstallId(dir), (e: unknown) => e instanceof ClusterError && e.code === 'STATE_CORRUPT');
  assert.equal(fs.readFileSync(path.join(dir, INSTALL_ID_FILE), 'utf8'), 'not an id\n', 'left as it was');
});

test('install id: every character equally likely (bytes past 251 are dropped)', () => {
  let calls = 0;
  const id = generateInstallId((n) => {
    calls++;
    return Buffer.alloc(n, calls === 1 ? 255 : 37);
  });
  assert.equal(id, 'bbbbbbbbbbbbbbbb');
});

test('api provider from an AWS ASR file: the original keys (region rotation, sizes with storage and spotPrice, instanceLimit), secrets', async () => {
  const p = apiProviderFromConfig(
    {
      provider: 'aws',
      accessKey: 'AKIAX',
      secretKey: 'SECRETX',
      securityGroup: 'sg-1',
      ami: 'ami-abc',
      region: ['us-west-2', 'us-east-1'],
      instanceLimit: 4,
      s3: { endpoint: 's3.amazonaws.com', bucket: 'b' },
      imageSizeMapping: [
        { maxImages: 500, slug: 'c5.4xlarge', spotPrice: 0.5, storage: 200 },
        { maxImages: 40, slug: 't3.large', spotPrice: 0.05, storage: 60 },
      ],
      tags: ['team=odm'],
    },
    { clock: systemClock },
  );
  assert.equal(p.name, 'aws');
  assert.equal(p.machinesLimit(), 4);
  assert.equal(p.canHandle(500), true);
  assert.equal(p.canHandle(501), false);
  const base = { name: 'clusterodm-41-x', installId: 'k3x9q2m7v5w1z8p4', userData: '#!/bin/sh\n' };
  assert.deepEqual(await p.machineSpec({ ...base, images: 41, attempt: 1 }), {
    ...base,
    region: 'us-west-2',
    size: 'c5.4xlarge',
    storageGb: 200,
    spotPrice: '0.5',
    image: 'ami-abc',
    tags: ['team=odm'],
  });
  assert.equal((await p.machineSpec({ ...base, images: 10, attempt: 2 })).region, 'us-east-1');
  assert.equal((await p.machineSpec({ ...base, images: 10, attempt: 3 })).size, 't3.large');
  await assert.rejects(p.machineSpec({ ...base, images: 501, attempt: 1 }), /Cannot handle 501 images\./);
  assert.deepEqual(p.secrets().sort(), ['AKIAX', 'SECRETX']);
  assert.equal(p.cloudInit.s3.acl, 'public-read');
});

test('api provider: required keys are checked with the original message; each cloud has its limit key', () => {
  assert.throws(() => apiProviderFromConfig({ provider: 'aws', accessKey: 'a', secretKey: 's', s3: { endpoint: 'e', bucket: 'b' }, ami: 'ami-1' }, { clock: systemClock }), {
    message: 'You need to create a configuration file and set securityGroup.',
  });
  assert.throws(() => apiProviderFromConfig({ provider: 'hetzner', s3: { accessKey: 'a', secretKey: 's', endpoint: 'e', bucket: 'b' } }, { clock: systemClock }), {
    message: 'You need to create a configuration file and set apiToken.',
  });
  assert.throws(() => apiProviderFromConfig({ provider: '../../etc/passwd' }, { clock: systemClock }), /Unknown ASR provider/);
  const s3 = { accessKey: 'a', secretKey: 's', endpoint: 'e', bucket: 'b' };
  assert.equal(apiProviderFromConfig({ provider: 'digitalocean', accessToken: 't', s3, dropletsLimit: 3 }, { clock: systemClock }).machinesLimit(), 3);
  assert.equal(apiProviderFromConfig({ provider: 'hetzner', apiToken: 't', s3, machinesLimit: 2 }, { clock: systemClock }).machinesLimit(), 2);
  assert.equal(apiProviderFromConfig({ provider: 'scaleway', secretToken: 't', organization: 'o', s3, machinesLimit: 5 }, { clock: systemClock }).machinesLimit(), 5);
  assert.deepEqual(Object.keys(API_DEFAULTS).sort(), ['aws', 'digitalocean', 'hetzner', 'scaleway']);
});

test('api provider for DigitalOcean with snapshot: true: the snapshot id by name, and its region when the planned one lacks it', async (t) => {
  const fake = await FakeDigitalOceanApi.start('tok');
  t.after(() => fake.close());
  fake.images.push({ id: 99001, name: 'nodeodm-snap', regions: ['sfo3', 'ams3'] });
  const p = apiProviderFromConfig(
    { provider: 'digitalocean', accessToken: 'tok', apiUrl: fake.url, snapshot: true, image: 'nodeodm-snap', region: ['nyc3', 'ams3'], s3: { accessKey: 'a', secretKey: 's', endpoint: 'e', bucket: 'b' } },
    { clock: systemClock },
  );
  const base = { name: 'clusterodm-5-s', installId: 'k3x9q2m7v5w1z8p4', userData: '' };
  const first = await p.machineSpec({ ...base, images: 5, attempt: 1 });
  assert.equal(first.image, '99001');
  assert.equal(first.region, 'sfo3', 'nyc3 lacks the snapshot: its first region');
  assert.equal((await p.machineSpec({ ...base, images: 5, attempt: 2 })).region, 'ams3');
});

const answer = (status: number, body: unknown, headers: Record<string, string> = {}): HttpAnswer => ({ status, body, headers: new Headers(headers) });

test('error classification: each cloud\'s quota, capacity and rate signals are NO_CAPACITY, the rest a failure', () => {
  const hz = classifierForHetzner(new FakeClock(1_000_000));
  const cases: Array<[string, { failure: string }, string]> = [
    ['do droplet limit', classifyDigitalOcean(answer(422, { id: 'unprocessable_entity', message: 'creating this/these droplet(s) will exceed your droplet limit' })), 'quota'],
    ['do other 422', classifyDigitalOcean(answer(422, { id: 'unprocessable_entity', message: 'Region is not available' })), 'invalid'],
    ['do 429', classifyDigitalOcean(answer(429, { id: 'too_many_requests', message: 'API rate limit exceeded.' })), 'rate_limit'],
    ['do 503 html', classifyDigitalOcean(answer(503, null)), 'server'],
    ['hz limit', hz(answer(403, { error: { code: 'resource_limit_exceeded', message: 'server limit exceeded' } })), 'quota'],
    ['hz other limit', hz(answer(403, { error: { code: 'server_limit_exceeded', message: 'x' } })), 'quota'],
    ['hz placement', hz(answer(412, { error: { code: 'placement_error', message: 'error during placement' } })), 'capacity'],
    ['hz forbidden', hz(answer(403, { error: { code: 'forbidden', message: 'insufficient permissions' } })), 'auth'],
    ['hz unique', hz(answer(409, { error: { code: 'uniqueness_error', message: 'name taken' } })), 'invalid'],
    ['scw legacy quota', classifyScaleway(answer(403, { type: 'invalid_request_error', message: 'Quota exceeded for this resource.' })), 'quota'],
    ['scw quotas', classifyScaleway(answer(403, { type: 'quotas_exceeded', message: 'quota(s) exceeded' })), 'quota'],
    ['scw stock', classifyScaleway(answer(409, { type: 'out_of_stock', message: 'out of stock' })), 'capacity'],
    ['scw other invalid_request_error', classifyScaleway(answer(400, { type: 'invalid_request_error', message: 'server should be stopped' })), 'invalid'],
    ['scw 403 denied', classifyScaleway(answer(403, { type: 'permissions_denied', message: 'denied' })), 'auth'],
  ];
  for (const [what, got, want] of cases) assert.equal(got.failure, want, what);
  const hzRate = hz(answer(429, { error: { code: 'rate_limit_exceeded', message: 'x' } }, { 'RateLimit-Reset': '1005' }));
  assert.equal(hzRate.retryAfterMs, 5000, 'RateLimit-Reset (a Unix time, s) minus now (1000 s)');
  const aws = (name: string, status?: number): MachineApiError => {
    const e = Object.assign(new Error(`${name} happened`), { name, ...(status ? { $metadata: { httpStatusCode: status } } : {}) });
    return classifyAwsError(e, 'RunInstances');
  };
  assert.equal(aws('InstanceLimitExceeded', 400).code, 'NO_CAPACITY');
  assert.equal(aws('VcpuLimitExceeded', 400).failure, 'quota');
  assert.equal(aws('InsufficientInstanceCapacity', 500).failure, 'capacity');
  assert.equal(aws('RequestLimitExceeded', 503).failure, 'rate_limit');
  assert.equal(aws('InvalidAMIID.NotFound', 400).code, 'MACHINE_API_FAILED');
  assert.equal(aws('InvalidAMIID.NotFound', 400).failure, 'invalid');
  assert.equal(aws('UnauthorizedOperation', 403).retryable, false);
  assert.equal(aws('ECONNREFUSED').failure, 'network');
  assert.equal(aws('ECONNREFUSED').retryable, true);
});

test('waitForAddress: polls on the injected clock until the machine runs with an address; gives up at the deadline', async () => {
  const clock = new FakeClock();
  let reads = 0;
  const machine = (ip: string | null): Machine => ({ id: '1', name: 'm', state: ip ? 'running' : 'pending', status: '', publicIp: ip, privateIp: null, ip, region: 'r', size: 's', tags: [], installId: 'i' });
  const api: MachineApi = {
    provider: 'fake',
    create: () => Promise.reject(new Error('unused')),
    get: async () => machine(++reads >= 3 ? '127.0.0.9' : null),
    listByInstall: async () => [],
    destroy: async () => undefined,
    hourlyPrice: async () => null,
  };
  const p = waitForAddress(api, '1', { clock, timeoutMs: 60_000, intervalMs: 5_000 });
  for (let i = 0; i < 3 && reads < 3; i++) {
    await new Promise((r) => setImmediate(r));
    clock.advance(5_000);
  }
  assert.equal((await p).ip, '127.0.0.9');
  reads = -1000;
  const late = waitForAddress(api, '1', { clock, timeoutMs: 10_000, intervalMs: 5_000 });
  const settled = late.then(
    () => 'resolved',
    (e: unknown) => (e instanceof MachineApiError ? e.message : 'other'),
  );
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setImmediate(r));
    clock.advance(5_000);
  }
  assert.match(await settled, /got no address within 10 s/);
});
