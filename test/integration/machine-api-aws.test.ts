import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock, type Clock } from '../../src/core';
import { MachineApiError } from '../../src/autoscaler/machine-api';
import { AwsMachineApi, type AwsApiOptions } from '../../src/autoscaler/providers/api/aws';
import { FakeEc2Api } from '../helpers/fake-clouds/aws';
import { describeMachineApi, INSTALL, type ContractRig } from './machine-api-contract';

const ACCESS = 'AKIAFAKEFAKEFAKE0001';
const SECRET = 'aws-secret-fake/9f8e7d6c5b4a';

async function rig(
  extra: Partial<AwsApiOptions> = {},
  clock: Clock = new FakeClock(),
): Promise<ContractRig & { fake: FakeEc2Api; api: AwsMachineApi }> {
  const fake = await FakeEc2Api.start(ACCESS);
  fake.pageSize = 2;
  const opts = (accessKey: string, secretKey: string): AwsApiOptions => ({
    accessKey,
    secretKey,
    regions: ['us-west-2'],
    endpoint: fake.url,
    securityGroup: 'sg-0a1b2c3d4e5f60718',
    clock,
    maxAttempts: 1,
    ...extra,
  });
  const api = new AwsMachineApi(opts(ACCESS, SECRET));
  const others: AwsMachineApi[] = [];
  return {
    api,
    fake,
    secret: SECRET,
    spec: (name, userData = '#!/bin/sh\ntrue\n') => ({ name, region: 'us-west-2', size: 't2.micro', image: 'ami-0123456789abcdef0', userData, installId: INSTALL, storageGb: 10, spotPrice: '0.1' }),
    addForeign: (name, installId) => fake.addInstance({ name, tags: installId ? { 'clusterodm-install': installId } : {} }),
    badCredentials: () => {
      const bad = new AwsMachineApi(opts('AKIAWRONGWRONGWRONG0', SECRET));
      others.push(bad);
      return bad;
    },
    close: async () => {
      api.close();
      for (const o of others) o.close();
      await fake.close();
    },
  };
}

describeMachineApi('AWS', () => rig(), { capacity: true, quotaCode: 'InstanceLimitExceeded', rateLimitCode: 'RequestLimitExceeded' });

test('AWS: RunInstances gets base64 UserData, tags at launch, the security group, subnet, zone, IAM role, root size, spot and the name as ClientToken', async (t) => {
  const r = await rig({ subnet: 'subnet-0123abcd', zone: 'b', iamRole: 'clusterodm-node', monitoring: true, spot: true });
  t.after(() => r.close());
  await r.api.create({ ...r.spec('clusterodm-5-params', '#!/bin/sh\necho "hi there"\n'), tags: ['team=odm'] });
  const run = r.fake.calls.find((q) => q.get('Action') === 'RunInstances');
  assert.ok(run);
  const p = Object.fromEntries(run.entries());
  assert.equal(Buffer.from(p['UserData'] ?? '', 'base64').toString('utf8'), '#!/bin/sh\necho "hi there"\n');
  const tags: Record<string, string> = {};
  for (let j = 1; p[`TagSpecification.1.Tag.${j}.Key`] !== undefined; j++) tags[p[`TagSpecification.1.Tag.${j}.Key`] ?? ''] = p[`TagSpecification.1.Tag.${j}.Value`] ?? '';
  assert.equal(p['TagSpecification.1.ResourceType'], 'instance');
  assert.deepEqual(tags, { Name: 'clusterodm-5-params', 'clusterodm-install': INSTALL, team: 'odm' });
  assert.equal(p['ImageId'], 'ami-0123456789abcdef0');
  assert.equal(p['InstanceType'], 't2.micro');
  assert.equal(p['MinCount'], '1');
  assert.equal(p['MaxCount'], '1');
  assert.equal(p['ClientToken'], 'clusterodm-5-params');
  assert.equal(p['NetworkInterface.1.DeviceIndex'], '0');
  assert.equal(p['NetworkInterface.1.SecurityGroupId.1'], 'sg-0a1b2c3d4e5f60718');
  assert.equal(p['NetworkInterface.1.SubnetId'], 'subnet-0123abcd');
  assert.equal(p['NetworkInterface.1.AssociatePublicIpAddress'], 'true');
  assert.equal(p['Placement.AvailabilityZone'], 'us-west-2b');
  assert.equal(p['IamInstanceProfile.Name'], 'clusterodm-node');
  assert.equal(p['Monitoring.Enabled'], 'true');
  assert.equal(p['BlockDeviceMapping.1.DeviceName'], '/dev/sda1');
  assert.equal(p['BlockDeviceMapping.1.Ebs.VolumeSize'], '10');
  assert.equal(p['BlockDeviceMapping.1.Ebs.DeleteOnTermination'], 'true');
  assert.equal(p['InstanceMarketOptions.MarketType'], 'spot');
  assert.equal(p['InstanceMarketOptions.SpotOptions.MaxPrice'], '0.1');
  assert.ok(!JSON.stringify(p).includes(SECRET), 'the secret key is only used to sign');
});

test('AWS: a retried RunInstances with the same name (ClientToken) starts no second instance', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  const a = await r.api.create(r.spec('clusterodm-5-once'));
  const b = await r.api.create(r.spec('clusterodm-5-once'));
  assert.equal(a.id, b.id);
  assert.equal(r.fake.machines.size, 1);
});

test('AWS: a security group given by name is looked up in the VPC; an unknown one is a clear error', async (t) => {
  const r = await rig({ securityGroup: 'clusterodm', vpc: 'vpc-0abc1234' });
  t.after(() => r.close());
  await r.api.create(r.spec('clusterodm-5-sgname'));
  const run = r.fake.calls.find((q) => q.get('Action') === 'RunInstances');
  assert.equal(run?.get('NetworkInterface.1.SecurityGroupId.1'), 'sg-0a1b2c3d4e5f60718');
  const lookup = r.fake.calls.find((q) => q.get('Action') === 'DescribeSecurityGroups');
  assert.equal(lookup?.get('Filter.2.Name'), 'vpc-id');
  const other = await rig({ securityGroup: 'nope' });
  t.after(() => other.close());
  await assert.rejects(other.api.create(other.spec('clusterodm-5-nosg')), (e: unknown) => {
    assert.ok(e instanceof MachineApiError);
    assert.equal(e.code, 'MACHINE_API_FAILED');
    assert.match(e.message, /security group "nope" not found/);
    return true;
  });
  assert.equal(other.fake.machines.size, 0);
});

test('AWS: usePrivateAddress makes the private address the one ClusterODM uses', async (t) => {
  const r = await rig({ usePrivateAddress: true });
  t.after(() => r.close());
  const m = await r.api.create(r.spec('clusterodm-5-private'));
  const got = await r.api.get(m.id);
  assert.ok(got);
  assert.match(got.privateIp ?? '', /^172\.31\./);
  assert.equal(got.ip, got.privateIp);
});

test('AWS: a fresh instance DescribeInstances does not know yet is pending, not gone; later it is gone', async (t) => {
  const clock = new FakeClock();
  const r = await rig({ consistencyGraceMs: 60_000 }, clock);
  t.after(() => r.close());
  r.fake.notFoundAfterCreate = 3;
  const m = await r.api.create(r.spec('clusterodm-5-eventual'));
  const early = await r.api.get(m.id);
  assert.ok(early, 'not reported gone right after creation');
  assert.equal(early.state, 'pending');
  clock.advance(61_000);
  assert.equal(await r.api.get(m.id), null, 'past the grace a NotFound is gone');
});

test('AWS: terminated instances (still visible for an hour) are neither got nor listed', async (t) => {
  const r = await rig();
  t.after(() => r.close());
  const m = await r.api.create(r.spec('clusterodm-5-term'));
  await r.api.destroy(m.id);
  assert.equal(r.fake.terminated.size, 1);
  assert.equal(await r.api.get(m.id), null);
  assert.deepEqual(await r.api.listByInstall(INSTALL), []);
  const list = r.fake.calls.filter((q) => q.get('Action') === 'DescribeInstances' && q.has('Filter.1.Name'));
  assert.equal(list[0]?.get('Filter.2.Name'), 'instance-state-name');
  await r.api.destroy(m.id);
  await r.api.destroy('us-west-2/i-0ffffffffffffffff');
});
