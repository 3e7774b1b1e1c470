/**
 * What every cloud's MachineApi must do, run against that cloud's fake API on loopback (one test file per cloud
 * calls `describeMachineApi`). The fakes speak the real request and answer shapes of clouds.md.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { systemClock } from '../../src/core';
import { isNoCapacity, MachineApiError, waitForAddress, type MachineApi, type MachineSpec } from '../../src/autoscaler/machine-api';
import { renderUserData } from '../../src/autoscaler/drivers/cloud-init';
import type { FakeCloudBase, FakeMachine } from '../helpers/fake-clouds/common';

export const INSTALL = 'k3x9q2m7v5w1z8p4';
export const OTHER_INSTALL = 'a1b2c3d4e5f6g7h8';

export interface ContractRig {
  api: MachineApi;
  fake: FakeCloudBase;
  /** A spec with this cloud's region, size and image. */
  spec(name: string, userData?: string): MachineSpec;
  /** A machine of another install (or of nobody) on the same account, made behind the client's back. */
  addForeign(name: string, installId: string | null): FakeMachine | Promise<FakeMachine>;
  /** A client with a wrong token/key. */
  badCredentials(): MachineApi;
  /** The secret the client sends (must never show in an error). */
  secret: string;
  close(): Promise<void>;
}

export interface ContractOptions {
  /** The cloud has a capacity refusal distinct from its quota (Hetzner, Scaleway, AWS). */
  capacity: boolean;
  /** What the cloud's quota refusal is called in its answer. */
  quotaCode: string;
  rateLimitCode: string;
}

async function rigFor(t: TestContext, make: () => Promise<ContractRig>): Promise<ContractRig> {
  const rig = await make();
  t.after(() => rig.close());
  return rig;
}

async function rejectsWith(p: Promise<unknown>): Promise<MachineApiError> {
  try {
    await p;
  } catch (e: unknown) {
    assert.ok(e instanceof MachineApiError, `expected a MachineApiError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected the call to fail');
}

export function describeMachineApi(cloud: string, make: () => Promise<ContractRig>, o: ContractOptions): void {
  test(`${cloud}: create gives the machine its name, region, size and install tag; get shows the address once assigned`, async (t) => {
    const rig = await rigFor(t, make);
    rig.fake.knobs.ipAfterPolls = 2;
    const spec = rig.spec('clusterodm-5-create');
    const created = await rig.api.create(spec);
    assert.equal(created.name, spec.name);
    assert.equal(created.installId, INSTALL);
    assert.equal(created.size, spec.size);
    const first = await rig.api.get(created.id);
    assert.ok(first);
    assert.equal(first.ip, null, 'no address before the cloud assigned one');
    assert.notEqual(first.state, 'running');
    const ready = await waitForAddress(rig.api, created.id, { clock: systemClock, timeoutMs: 10_000, intervalMs: 5 });
    assert.match(ready.ip, /^127\.78\.\d+\.\d+$/);
    assert.equal(ready.state, 'running');
    assert.equal(ready.region, created.region);
    assert.equal(rig.fake.machines.size, 1);
  });

  test(`${cloud}: listByInstall walks every page and never lists another install's machines`, async (t) => {
    const rig = await rigFor(t, make);
    const ours: string[] = [];
    for (let i = 0; i < 5; i++) {
      const m = await rig.api.create(rig.spec(`clusterodm-5-ours${i}`));
      ours.push(m.name);
    }
    for (let i = 0; i < 4; i++) await rig.addForeign(`clusterodm-5-theirs${i}`, OTHER_INSTALL);
    await rig.addForeign('hand-made', null);
    const listed = await rig.api.listByInstall(INSTALL);
    assert.deepEqual(listed.map((m) => m.name).sort(), ours.sort());
    assert.ok(listed.every((m) => m.installId === INSTALL));
    const theirs = await rig.api.listByInstall(OTHER_INSTALL);
    assert.deepEqual(theirs.map((m) => m.name).sort(), ['clusterodm-5-theirs0', 'clusterodm-5-theirs1', 'clusterodm-5-theirs2', 'clusterodm-5-theirs3']);
    const listCalls = rig.fake.requests.filter((r) => r.method === 'GET' || r.body.includes('DescribeInstances'));
    assert.ok(listCalls.length >= 3, `pages were walked (${listCalls.length} list calls)`);
  });

  test(`${cloud}: destroy removes the machine; a machine already gone (404) is destroyed too`, async (t) => {
    const rig = await rigFor(t, make);
    const m = await rig.api.create(rig.spec('clusterodm-5-gone'));
    await waitForAddress(rig.api, m.id, { clock: systemClock, timeoutMs: 10_000, intervalMs: 5 });
    await rig.api.destroy(m.id);
    assert.equal(rig.fake.machines.size, 0);
    assert.equal(await rig.api.get(m.id), null);
    await rig.api.destroy(m.id);
    assert.deepEqual(await rig.api.listByInstall(INSTALL), []);
  });

  test(`${cloud}: a quota refusal (${o.quotaCode}) is NO_CAPACITY and creates nothing`, async (t) => {
    const rig = await rigFor(t, make);
    rig.fake.knobs.machineLimit = 1;
    await rig.api.create(rig.spec('clusterodm-5-first'));
    const e = await rejectsWith(rig.api.create(rig.spec('clusterodm-5-second')));
    assert.equal(e.code, 'NO_CAPACITY');
    assert.equal(e.failure, 'quota');
    assert.equal(e.cloudCode, o.quotaCode);
    assert.ok(isNoCapacity(e));
    assert.equal(rig.fake.machines.size, 1);
  });

  if (o.capacity) {
    test(`${cloud}: a capacity refusal is NO_CAPACITY`, async (t) => {
      const rig = await rigFor(t, make);
      rig.fake.knobs.noCapacity = true;
      const e = await rejectsWith(rig.api.create(rig.spec('clusterodm-5-nocap')));
      assert.equal(e.code, 'NO_CAPACITY');
      assert.equal(e.failure, 'capacity');
      assert.equal(rig.fake.machines.size, 0);
    });
  }

  test(`${cloud}: a rate limit (${o.rateLimitCode}) is NO_CAPACITY, a server error MACHINE_API_FAILED (retryable)`, async (t) => {
    const rig = await rigFor(t, make);
    rig.fake.knobs.rateLimited = 1;
    const limited = await rejectsWith(rig.api.create(rig.spec('clusterodm-5-rate')));
    assert.equal(limited.code, 'NO_CAPACITY');
    assert.equal(limited.failure, 'rate_limit');
    assert.equal(limited.cloudCode, o.rateLimitCode);
    rig.fake.knobs.failCreates = 1;
    const failed = await rejectsWith(rig.api.create(rig.spec('clusterodm-5-fail')));
    assert.equal(failed.code, 'MACHINE_API_FAILED');
    assert.equal(failed.failure, 'server');
    assert.equal(failed.retryable, true);
    assert.equal(rig.fake.machines.size, 0);
    const ok = await rig.api.create(rig.spec('clusterodm-5-after'));
    assert.equal(ok.name, 'clusterodm-5-after');
  });

  test(`${cloud}: wrong credentials are MACHINE_API_FAILED (auth), not retryable, and the secret is in no error`, async (t) => {
    const rig = await rigFor(t, make);
    const bad = rig.badCredentials();
    const e = await rejectsWith(bad.create(rig.spec('clusterodm-5-auth')));
    assert.equal(e.code, 'MACHINE_API_FAILED');
    assert.equal(e.failure, 'auth');
    assert.equal(e.retryable, false);
    const list = await rejectsWith(bad.listByInstall(INSTALL));
    assert.equal(list.failure, 'auth');
    for (const err of [e, list]) {
      assert.ok(!err.message.includes(rig.secret), 'the token is not in the message');
      assert.ok(!JSON.stringify(err).includes(rig.secret), 'nor anywhere in the error');
    }
  });

  test(`${cloud}: the user data boots the machine's NodeODM with its token, S3 flags and webhook`, async (t) => {
    const rig = await rigFor(t, make);
    rig.fake.knobs.boot = true;
    const token = 'node-token-Zq8';
    const webhook = 'http://127.0.0.1:3999/commit?token=user&secret=s3cr3t';
    const userData = renderUserData({
      dockerImage: 'opendronemap/nodeodm',
      dockerGpu: false,
      addSwap: 1,
      registry: null,
      dockerInstallUrl: 'https://get.docker.com',
      setupCommand: '',
      dataDirMountPath: '',
      servicePort: 3000,
      s3: { accessKey: 'AK', secretKey: 'SK', endpoint: 'http://127.0.0.1:4569', bucket: 'results', ignoreSSL: false, acl: '' },
      nodeToken: token,
      webhookUrl: webhook,
    });
    const m = await rig.api.create(rig.spec('clusterodm-5-boot', userData));
    const ready = await waitForAddress(rig.api, m.id, { clock: systemClock, timeoutMs: 10_000, intervalMs: 5 });
    const boot = await rig.fake.booted(m.id);
    assert.equal(boot.exitCode, 0, boot.output);
    assert.ok(boot.node, 'a NodeODM node was started');
    assert.equal(boot.node.options.webhook, webhook);
    assert.equal(boot.node.options.s3?.bucket, 'results');
    const info = await fetch(`http://${ready.ip}:3000/info?token=${token}`);
    assert.equal(info.status, 200);
    const body = (await info.json()) as { maxParallelTasks?: number };
    assert.equal(body.maxParallelTasks, 1);
    const denied = (await (await fetch(`http://${ready.ip}:3000/info?token=wrong`)).json()) as { error?: string };
    assert.ok(denied.error, 'the node requires its token');
    await rig.api.destroy(m.id);
    await assert.rejects(fetch(`http://${ready.ip}:3000/info?token=${token}`), 'the node is gone with its machine');
  });
}
