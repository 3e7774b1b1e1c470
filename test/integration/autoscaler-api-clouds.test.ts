/**
 * The autoscaler's `api` driver end to end on Hetzner Cloud, Scaleway and AWS EC2 (DigitalOcean:
 * autoscaler-api.test.ts): each against a fake of its API whose machines boot their cloud-init user data. A task
 * that finds the static node full gets a machine, finishes, its results are in S3, and the machine is destroyed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { cluster, fillStaticNode, info, newTask } from '../helpers/asr-cluster';
import { BUCKET, S3_KEY, S3_SECRET, startAsrRig } from '../helpers/asr-rig';
import { FakeEc2Api } from '../helpers/fake-clouds/aws';
import type { FakeCloudBase } from '../helpers/fake-clouds/common';
import { FakeHetznerApi } from '../helpers/fake-clouds/hetzner';
import { FakeScalewayApi } from '../helpers/fake-clouds/scaleway';
import { assetSha256 } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const ASSET = 120_000;

interface Cloud {
  name: string;
  secret: string;
  start(): Promise<FakeCloudBase>;
  /** The ASR file's cloud keys (credentials, API base, regions). */
  config(url: string): Record<string, unknown>;
  /** How the install id appears on a machine. */
  installTag(id: string): string;
}

const CLOUDS: Cloud[] = [
  {
    name: 'hetzner',
    secret: 'hcloud-token-fake-7c6b',
    start: () => FakeHetznerApi.start('hcloud-token-fake-7c6b'),
    config: (url) => ({ apiToken: 'hcloud-token-fake-7c6b', apiUrl: url, location: 'fsn1' }),
    installTag: (id) => `clusterodm-install=${id}`,
  },
  {
    name: 'scaleway',
    secret: 'scw-secret-fake-0b9d',
    start: () => FakeScalewayApi.start('scw-secret-fake-0b9d'),
    config: (url) => ({ secretToken: 'scw-secret-fake-0b9d', projectId: '2f1b9ec8-7a51-4d3c-9f8e-3b7b4a9c1d2e', apiUrl: url, region: 'fr-par-1' }),
    installTag: (id) => `clusterodm-install=${id}`,
  },
  {
    name: 'aws',
    secret: 'aws-secret-fake/9f8e7d6c5b4a',
    start: () => FakeEc2Api.start('AKIAFAKEFAKEFAKE0001'),
    config: (url) => ({
      accessKey: 'AKIAFAKEFAKEFAKE0001',
      secretKey: 'aws-secret-fake/9f8e7d6c5b4a',
      endpoint: url,
      region: 'us-west-2',
      securityGroup: 'sg-0a1b2c3d4e5f60718',
      ami: 'ami-0123456789abcdef0',
    }),
    installTag: (id) => `clusterodm-install=${id}`,
  },
];

for (const cloud of CLOUDS) {
  test(`autoscaler api driver on ${cloud.name}: a task gets its own machine, finishes, results come from S3, the machine goes`, async (t) => {
    const fake = await cloud.start();
    t.after(() => fake.close());
    fake.knobs.boot = true;
    fake.knobs.bootOptions = { node: { processingMs: 300, assetSize: ASSET } };
    const rig = await startAsrRig(t);
    // A file of this cloud only: no DigitalOcean key left over.
    fs.writeFileSync(
      rig.asrFile,
      JSON.stringify({
        provider: cloud.name,
        driver: 'api',
        s3: { accessKey: S3_KEY, secretKey: S3_SECRET, endpoint: rig.s3Url, bucket: BUCKET },
        bootTimeout: 60,
        ...cloud.config(fake.url),
      }),
    );
    const c = await cluster(t, rig);
    assert.match(c.d.output(), new RegExp(`ASR driver: api \\(${cloud.name}\\)`));
    const install = fs.readFileSync(path.join(c.d.dir, 'data', 'install-id'), 'utf8').trim();

    await fillStaticNode(c);
    const uuid = await newTask(c.d, 3);
    await waitUntil(async () => (await c.cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 60000, message: 'no [A] node' });
    const [machine] = [...fake.machines.values()];
    assert.ok(machine);
    assert.ok(machine.tags.includes(cloud.installTag(install)), `tags ${JSON.stringify(machine.tags)}`);
    assert.match(machine.name, /^clusterodm-3-[A-Za-z0-9]+$/);
    const boot = await fake.booted(machine.id);
    assert.equal(boot.nodeFlags[boot.nodeFlags.indexOf('--s3_bucket') + 1], BUCKET);
    const token = boot.nodeFlags[boot.nodeFlags.indexOf('--token') + 1] ?? '';
    assert.match(token, /^[0-9a-f]{48}$/);

    await waitUntil(async () => (await info(c.d, uuid)).status?.code === 40, { timeoutMs: 60000, message: 'task never completed' });
    await waitUntil(() => fake.machines.size === 0, { timeoutMs: 30000, message: 'machine was not destroyed' });
    const dl = await fetch(`${c.d.url}/task/${uuid}/download/all.zip`, { redirect: 'manual' });
    assert.equal(dl.status, 301);
    const zip = Buffer.from(await (await fetch(dl.headers.get('location') ?? '')).arrayBuffer());
    assert.equal(createHash('sha256').update(zip).digest('hex'), assetSha256(ASSET));
    assert.equal(rig.dm.calls().length, 0, 'docker-machine was called');

    const log = fs.readFileSync(path.join(c.d.dir, 'ClusterODM.log'), 'utf8') + c.d.output();
    for (const secret of [cloud.secret, S3_SECRET, token]) assert.ok(!log.includes(secret), `a secret leaked into the log: ${secret.slice(0, 4)}…`);
  });
}
