import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MachineApiError } from '../../src/autoscaler/machine-api';
import { DigitalOceanMachineApi } from '../../src/autoscaler/providers/api/digitalocean';
import { FakeDigitalOceanApi } from '../helpers/fake-clouds/digitalocean';
import { describeMachineApi, INSTALL, type ContractRig } from './machine-api-contract';

const TOKEN = 'dop_v1_fake_token_4f2a';

async function rig(perPage = 2): Promise<ContractRig & { fake: FakeDigitalOceanApi; api: DigitalOceanMachineApi }> {
  const fake = await FakeDigitalOceanApi.start(TOKEN);
  const api = new DigitalOceanMachineApi({ baseUrl: fake.url, token: TOKEN, perPage, sshKeys: ['3b:16:bf'] });
  return {
    api,
    fake,
    secret: TOKEN,
    spec: (name, userData = '#!/bin/sh\ntrue\n') => ({ name, region: 'nyc3', size: 's-1vcpu-1gb', image: 'ubuntu-24-04-x64', userData, installId: INSTALL, tags: ['clusterodm'] }),
    addForeign: (name, installId) => fake.addDroplet({ name, tags: installId ? ['clusterodm', `clusterodm-install:${installId}`] : ['clusterodm'] }),
    badCredentials: () => new DigitalOceanMachineApi({ baseUrl: fake.url, token: 'wrong' }),
    close: () => fake.close(),
  };
}

describeMachineApi('DigitalOcean', () => rig(), { capacity: false, quotaCode: 'unprocessable_entity', rateLimitCode: 'too_many_requests' });

test('DigitalOcean: create sends the droplet body of the API (tags with the install tag, user_data as plain text, monitoring, ssh keys)', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  const spec = r.spec('clusterodm-5-body', '#!/bin/sh\necho hi\n');
  await r.api.create({ ...spec, image: '123456' });
  const call = r.fake.requests.find((x) => x.method === 'POST');
  assert.ok(call);
  assert.equal(call.headers.authorization, `Bearer ${TOKEN}`);
  assert.equal(call.path, '/v2/droplets');
  assert.deepEqual(JSON.parse(call.body), {
    name: 'clusterodm-5-body',
    region: 'nyc3',
    size: 's-1vcpu-1gb',
    image: 123456,
    tags: ['clusterodm', `clusterodm-install:${INSTALL}`],
    user_data: '#!/bin/sh\necho hi\n',
    monitoring: true,
    ssh_keys: ['3b:16:bf'],
  });
});

test('DigitalOcean: list pages are walked by number on our base URL, never by the next link the answer names', async (t) => {
  const r = await rig(2);
  t.after(() => r.close());
  for (let i = 0; i < 5; i++) await r.api.create(r.spec(`clusterodm-5-p${i}`));
  const listed = await r.api.listByInstall(INSTALL);
  assert.equal(listed.length, 5);
  const lists = r.fake.requests.filter((x) => x.method === 'GET' && x.path.startsWith('/v2/droplets?'));
  assert.deepEqual(
    lists.map((x) => new URL(x.path, 'http://x').searchParams.get('page')),
    ['1', '2', '3'],
  );
  assert.ok(lists.every((x) => new URL(x.path, 'http://x').searchParams.get('tag_name') === `clusterodm-install:${INSTALL}`));
});

test('DigitalOcean: the droplet limit (422) is NO_CAPACITY but another 422 is bad input', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  await assert.rejects(r.api.create({ ...r.spec('clusterodm-5-x'), size: '' }), (e: unknown) => {
    assert.ok(e instanceof MachineApiError);
    assert.equal(e.code, 'MACHINE_API_FAILED');
    assert.equal(e.failure, 'invalid');
    assert.equal(e.httpStatus, 422);
    return true;
  });
  await assert.rejects(r.api.create({ ...r.spec('clusterodm-5-y'), tags: ['no spaces allowed'] }), /letters, digits/);
  assert.equal(r.fake.requests.filter((x) => x.method === 'POST').length, 1, 'a tag DigitalOcean would refuse is not even sent');
});

test('DigitalOcean: hourly price from /v2/sizes, snapshot id by name from the private images', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  assert.deepEqual(await r.api.hourlyPrice('s-4vcpu-8gb'), { hourly: 0.07143, currency: 'USD' });
  assert.equal(await r.api.hourlyPrice('s-64vcpu-512gb'), null);
  r.fake.images.push({ id: 7555620, name: 'nodeodm-image', regions: ['sfo3'] });
  assert.deepEqual(await r.api.findSnapshot('nodeodm-image'), { id: '7555620', regions: ['sfo3'] });
  assert.equal(await r.api.findSnapshot('missing'), null);
});
