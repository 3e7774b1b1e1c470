import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../src/core';
import { MachineApiError } from '../../src/autoscaler/machine-api';
import { HetznerMachineApi } from '../../src/autoscaler/providers/api/hetzner';
import { FakeHetznerApi } from '../helpers/fake-clouds/hetzner';
import { describeMachineApi, INSTALL, type ContractRig } from './machine-api-contract';

const TOKEN = 'hcloud-fake-token-7c1e';

async function rig(perPage = 2): Promise<ContractRig & { fake: FakeHetznerApi; api: HetznerMachineApi }> {
  const fake = await FakeHetznerApi.start(TOKEN);
  const clock = new FakeClock();
  const api = new HetznerMachineApi({ baseUrl: fake.url, token: TOKEN, clock, perPage, sshKeys: ['ops'] });
  return {
    api,
    fake,
    secret: TOKEN,
    spec: (name, userData = '#!/bin/sh\ntrue\n') => ({ name, region: 'fsn1', size: 'cpx22', image: 'ubuntu-24.04', userData, installId: INSTALL }),
    addForeign: (name, installId) => fake.addServer({ name, labels: installId ? { clusterodm: '', 'clusterodm-install': installId } : { clusterodm: '' } }),
    badCredentials: () => new HetznerMachineApi({ baseUrl: fake.url, token: 'wrong', clock }),
    close: () => fake.close(),
  };
}

describeMachineApi('Hetzner', () => rig(), { capacity: true, quotaCode: 'resource_limit_exceeded', rateLimitCode: 'rate_limit_exceeded' });

test('Hetzner: create sends the server body of the API (labels with the install id, user_data, location, ssh keys)', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  await r.api.create({ ...r.spec('clusterodm-5-body', '#cloud-config\n'), tags: ['clusterodm', 'team=odm'] });
  const call = r.fake.requests.find((x) => x.method === 'POST');
  assert.ok(call);
  assert.equal(call.path, '/v1/servers');
  assert.deepEqual(JSON.parse(call.body), {
    name: 'clusterodm-5-body',
    server_type: 'cpx22',
    image: 'ubuntu-24.04',
    location: 'fsn1',
    labels: { clusterodm: '', team: 'odm', 'clusterodm-install': INSTALL },
    user_data: '#cloud-config\n',
    start_after_create: true,
    public_net: { enable_ipv4: true, enable_ipv6: true },
    ssh_keys: ['ops'],
  });
});

test('Hetzner: list asks with the label selector of the install id and follows meta.pagination.next_page', async (t) => {
  const r = await rig(2);
  t.after(() => r.close());
  for (let i = 0; i < 3; i++) await r.api.create(r.spec(`clusterodm-5-p${i}`));
  assert.equal((await r.api.listByInstall(INSTALL)).length, 3);
  const lists = r.fake.requests.filter((x) => x.method === 'GET' && x.path.startsWith('/v1/servers?'));
  assert.deepEqual(
    lists.map((x) => {
      const q = new URL(x.path, 'http://x').searchParams;
      return `${q.get('label_selector') ?? ''}#${q.get('page') ?? ''}`;
    }),
    [`clusterodm-install==${INSTALL}#1`, `clusterodm-install==${INSTALL}#2`],
  );
});

test('Hetzner: a duplicate name (uniqueness_error) is bad input, never retried; a rate limit says when to come back', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  await r.api.create(r.spec('clusterodm-5-same'));
  await assert.rejects(r.api.create(r.spec('clusterodm-5-same')), (e: unknown) => {
    assert.ok(e instanceof MachineApiError);
    assert.equal(e.code, 'MACHINE_API_FAILED');
    assert.equal(e.cloudCode, 'uniqueness_error');
    assert.equal(e.retryable, false);
    return true;
  });
  r.fake.knobs.rateLimited = 1;
  await assert.rejects(r.api.get('42'), (e: unknown) => {
    assert.ok(e instanceof MachineApiError);
    assert.equal(e.failure, 'rate_limit');
    assert.ok(e.retryAfterMs !== null && e.retryAfterMs >= 0, 'RateLimit-Reset gives the wait');
    return true;
  });
});

test('Hetzner: hourly price is the gross price of the server type in the location', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  assert.deepEqual(await r.api.hourlyPrice('cpx22', 'fsn1'), { hourly: 0.0143, currency: 'EUR' });
  assert.equal(await r.api.hourlyPrice('cpx22', 'hel1'), null);
});
