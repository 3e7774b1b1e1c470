import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { ApiDriver, apiProviderFromConfig, Autoscaler, S3Store } from '../../src/autoscaler';
import { ClusterError, FakeClock, MemoryLogger } from '../../src/core';
import { NodeClient } from '../../src/nodeodm';
import { HealthPoller, NodeRegistry, parseNodesFile } from '../../src/nodes';
import { FileRouteStore, RouteTable, TaskTable } from '../../src/routing';
import { JsonStateFile } from '../../src/store';
import { FakeDigitalOceanApi } from '../helpers/fake-clouds/digitalocean';
import { tempDir } from '../helpers/tmp';

const TOKEN = 'do-api-driver-token-1a2b';

async function scaler(t: TestContext, asr: Record<string, unknown> = {}): Promise<{ scaler: Autoscaler; cloud: FakeDigitalOceanApi; logger: MemoryLogger }> {
  const cloud = await FakeDigitalOceanApi.start(TOKEN);
  t.after(() => cloud.close());
  const dir = tempDir(t);
  const clock = new FakeClock(1_800_000_000_000);
  const logger = new MemoryLogger();
  const registry = new NodeRegistry({ store: new JsonStateFile({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }), clock, logger });
  const routes = new RouteTable({ store: new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger }), clock, logger });
  await routes.load(registry);
  t.after(() => routes.flush());
  const tasks = new TaskTable({ file: path.join(dir, 'tasks.json'), clock, logger });
  const client = new NodeClient();
  const poller = new HealthPoller({ registry, client, clock, logger });
  const provider = apiProviderFromConfig(
    { provider: 'digitalocean', accessToken: TOKEN, apiUrl: cloud.url, s3: { accessKey: 'k', secretKey: 's3-secret', endpoint: 'nyc3.example.com', bucket: 'b' }, ...asr },
    { clock },
  );
  const s3 = new S3Store(provider.s3, logger);
  let self: Autoscaler | null = null;
  const driver = new ApiDriver({ provider, dataDir: dir, clock, logger, mask: (x) => self?.mask(x) ?? x });
  self = new Autoscaler({ provider, driver, s3, registry, poller, routes, tasks, client, clock, logger });
  await driver.initialize();
  t.after(() => self?.stop());
  return { scaler: self, cloud, logger };
}

async function createError(s: Autoscaler): Promise<unknown> {
  const r = s.reserve(2);
  assert.ok(r);
  return s.createNode(r, { uuid: 'u-1', images: 2, commitUrl: 'http://cluster.example/commit?token=' }, new AbortController().signal).then(
    () => assert.fail('created'),
    (e: unknown) => e,
  );
}

test('api driver: a create the cloud refuses for capacity rejects with NO_CAPACITY (the queue branches on it), any other with MACHINE_API_FAILED', async (t) => {
  const full = await scaler(t);
  full.cloud.knobs.machineLimit = 0;
  const e = await createError(full.scaler);
  assert.ok(e instanceof ClusterError);
  assert.equal(e.code, 'NO_CAPACITY');
  assert.equal(full.scaler.pending(), 0, 'the reservation was released');

  const broken = await scaler(t);
  broken.cloud.knobs.failCreates = 1;
  const e2 = await createError(broken.scaler);
  assert.ok(e2 instanceof ClusterError);
  assert.equal(e2.code, 'MACHINE_API_FAILED');
  assert.equal(broken.cloud.machines.size, 0);
  for (const l of [...full.logger.lines, ...broken.logger.lines]) assert.ok(!l.includes(TOKEN) && !l.includes('s3-secret'), l);
});
