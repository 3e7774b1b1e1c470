import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MachineApiError } from '../../src/autoscaler/machine-api';
import { ScalewayMachineApi } from '../../src/autoscaler/providers/api/scaleway';
import { FakeScalewayApi } from '../helpers/fake-clouds/scaleway';
import { describeMachineApi, INSTALL, type ContractRig } from './machine-api-contract';

const SECRET = 'scw-secret-fake-0b9d';
const PROJECT = '2f1b9ec8-7a51-4d3c-9f8e-3b7b4a9c1d2e';

async function rig(perPage = 2, zones = ['fr-par-1']): Promise<ContractRig & { fake: FakeScalewayApi; api: ScalewayMachineApi }> {
  const fake = await FakeScalewayApi.start(SECRET);
  const api = new ScalewayMachineApi({ baseUrl: fake.url, secretKey: SECRET, projectId: PROJECT, zones, perPage });
  return {
    api,
    fake,
    secret: SECRET,
    spec: (name, userData = '#!/bin/sh\ntrue\n') => ({ name, region: 'fr-par-1', size: 'GP1-XS', image: 'ubuntu_noble', userData, installId: INSTALL }),
    addForeign: (name, installId) => fake.addServer({ name, tags: installId ? ['clusterodm', `clusterodm-install=${installId}`] : ['clusterodm'] }),
    badCredentials: () => new ScalewayMachineApi({ baseUrl: fake.url, secretKey: 'wrong', projectId: PROJECT, zones }),
    close: () => fake.close(),
  };
}

describeMachineApi('Scaleway', () => rig(), { capacity: true, quotaCode: 'invalid_request_error', rateLimitCode: 'too_many_requests' });

test('Scaleway: create is three calls: the server (stopped, tagged), its cloud-init user data as text/plain, then poweron', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  const m = await r.api.create({ ...r.spec('clusterodm-5-three', '#!/bin/sh\necho booted\n'), region: 'par1' });
  assert.match(m.id, /^fr-par-1\//, 'the legacy region par1 is the zone fr-par-1');
  const writes = r.fake.requests.filter((x) => x.method !== 'GET');
  const server = m.id.split('/')[1] ?? '';
  assert.deepEqual(
    writes.map((x) => `${x.method} ${x.path}`),
    [
      'POST /instance/v1/zones/fr-par-1/servers',
      `PATCH /instance/v1/zones/fr-par-1/servers/${server}/user_data/cloud-init`,
      `POST /instance/v1/zones/fr-par-1/servers/${server}/action`,
    ],
  );
  assert.deepEqual(JSON.parse(writes[0]?.body ?? ''), {
    name: 'clusterodm-5-three',
    commercial_type: 'GP1-XS',
    image: 'ubuntu_noble',
    project: PROJECT,
    tags: [`clusterodm-install=${INSTALL}`],
    dynamic_ip_required: true,
  });
  assert.equal(writes[1]?.headers['content-type'], 'text/plain');
  assert.equal(writes[1]?.body, '#!/bin/sh\necho booted\n');
  assert.deepEqual(JSON.parse(writes[2]?.body ?? ''), { action: 'poweron' });
  assert.ok(writes.every((x) => x.headers['x-auth-token'] === SECRET));
});

test('Scaleway: both forms of the quota refusal are NO_CAPACITY', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  r.fake.knobs.machineLimit = 0;
  for (const style of ['legacy', 'quotas_exceeded'] as const) {
    r.fake.quotaStyle = style;
    await assert.rejects(r.api.create(r.spec(`clusterodm-5-${style}`)), (e: unknown) => {
      assert.ok(e instanceof MachineApiError);
      assert.equal(e.code, 'NO_CAPACITY');
      assert.equal(e.failure, 'quota');
      assert.equal(e.httpStatus, 403);
      return true;
    });
  }
});

test('Scaleway: a failed user data upload leaves no server and no volume behind', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  r.fake.failUserData = 1;
  await assert.rejects(r.api.create(r.spec('clusterodm-5-half')), (e: unknown) => e instanceof MachineApiError && e.code === 'MACHINE_API_FAILED');
  assert.equal(r.fake.machines.size, 0);
  assert.equal(r.fake.volumes.size, 0);
});

test('Scaleway: destroying a stopped server deletes it and then its volume (DELETE keeps volumes)', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  const stopped = r.fake.addServer({ name: 'clusterodm-5-stopped', tags: [`clusterodm-install=${INSTALL}`] });
  assert.equal(r.fake.volumes.size, 1);
  await r.api.destroy(`fr-par-1/${stopped.id}`);
  assert.equal(r.fake.machines.size, 0);
  assert.equal(r.fake.volumes.size, 0, 'the volume did not leak');
});

test('Scaleway: listByInstall asks every configured zone', async (t) => {
  const r = await rig(100, ['fr-par-1', 'nl-ams-1']);
  t.after(() => r.close());
  r.fake.addServer({ name: 'clusterodm-5-par', tags: [`clusterodm-install=${INSTALL}`], zone: 'fr-par-1' });
  r.fake.addServer({ name: 'clusterodm-5-ams', tags: [`clusterodm-install=${INSTALL}`], zone: 'nl-ams-1' });
  r.fake.addServer({ name: 'clusterodm-5-waw', tags: [`clusterodm-install=${INSTALL}`], zone: 'pl-waw-1' });
  const listed = await r.api.listByInstall(INSTALL);
  assert.deepEqual(listed.map((m) => m.name).sort(), ['clusterodm-5-ams', 'clusterodm-5-par']);
  assert.ok(listed.find((m) => m.name === 'clusterodm-5-ams')?.id.startsWith('nl-ams-1/'));
});

test('Scaleway: hourly price from the zone\'s server products', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  assert.deepEqual(await r.api.hourlyPrice('GP1-XS', 'fr-par-1'), { hourly: 0.091, currency: 'EUR' });
  assert.equal(await r.api.hourlyPrice('GP1-XL', 'fr-par-1'), null);
});
