/**
 * The autoscaler in-process with an injected clock, over the autoscaler fakes (fake docker-machine, fake
 * DigitalOcean API, s3rver): for the unit tests of the vacuum, creation and teardown.
 */
import * as path from 'node:path';
import type { TestContext } from 'node:test';
import { AsrConfig, Autoscaler, DigitalOceanAsrProvider, DIGITALOCEAN_DEFAULTS, DockerMachine, mergeConfig, S3Store, type ConfigObject } from '../../src/autoscaler';
import { FakeClock, MemoryLogger, type Clock } from '../../src/core';
import { NodeClient } from '../../src/nodeodm';
import { ClusterNode, HealthPoller, NodeRegistry, parseNodesFile } from '../../src/nodes';
import { FileRouteStore, RouteTable, TaskTable } from '../../src/routing';
import { JsonStateFile } from '../../src/store';
import { DO_TOKEN, startAsrRig, type AsrRig } from './asr-rig';
import { startTestNode, type TestNode } from './test-node';
import { tempDir } from './tmp';
import { waitUntil } from './wait';

export function doProvider(user: ConfigObject = {}, logger = new MemoryLogger()): DigitalOceanAsrProvider {
  const base: ConfigObject = { accessToken: 'tok', s3: { accessKey: 'k', secretKey: 's', endpoint: 'nyc3.example.com', bucket: 'b' } };
  const p = new DigitalOceanAsrProvider(new AsrConfig(mergeConfig(DIGITALOCEAN_DEFAULTS, mergeConfig(base, user))), { logger });
  p.validate();
  return p;
}

export interface ScalerRig {
  ext: AsrRig;
  scaler: Autoscaler;
  clock: Clock;
  registry: NodeRegistry;
  routes: RouteTable;
  tasks: TaskTable;
  logger: MemoryLogger;
  provider: DigitalOceanAsrProvider;
  machines: () => string[];
  /** Registers an autospawned node with a machine at the fake docker-machine. */
  spawned(name: string, opts: { created: number; maxRuntime?: number; maxUploadTime?: number; port?: number }): Promise<ClusterNode>;
}

export interface ScalerRigOptions {
  asr?: ConfigObject;
  /** Default: a FakeClock. */
  clock?: Clock;
  random?: (bytes: number) => Buffer;
}

export async function scalerRig(t: TestContext, o: ScalerRigOptions = {}): Promise<ScalerRig> {
  const ext = await startAsrRig(t);
  const dir = tempDir(t);
  const clock = o.clock ?? new FakeClock(1_800_000_000_000);
  const logger = new MemoryLogger();
  const registry = new NodeRegistry({ store: new JsonStateFile({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }), clock, logger });
  const routes = new RouteTable({ store: new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger }), clock, logger });
  await routes.load(registry);
  // Stops the route store's touch timer (a real one with a real clock).
  t.after(() => routes.flush());
  const tasks = new TaskTable({ file: path.join(dir, 'tasks.json'), clock, logger });
  const client = new NodeClient();
  const poller = new HealthPoller({ registry, client, clock, logger });
  const provider = doProvider({ accessToken: DO_TOKEN, apiUrl: ext.fakeDo.url, ...o.asr });
  const machines = new DockerMachine({ logger, bin: path.join(ext.dm.binDir, 'docker-machine') });
  const s3 = new S3Store(provider.s3, logger);
  const scaler = new Autoscaler({ provider, machines, s3, registry, poller, routes, tasks, client, clock, logger, ...(o.random ? { random: o.random } : {}) });
  t.after(() => scaler.stop());
  // Ports nothing listens on, for nodes that must read as unreachable.
  let nextPort = 1;
  return {
    ext,
    scaler,
    clock,
    registry,
    routes,
    tasks,
    logger,
    provider,
    machines: () => ext.dm.machines().map((m) => m.name).sort(),
    spawned: async (name, opts) => {
      await machines.create(name, ['--driver', 'digitalocean', '--digitalocean-access-token', DO_TOKEN]);
      const node = new ClusterNode({
        hostname: '127.0.0.1',
        port: opts.port ?? nextPort++,
        token: '',
        dockerMachine: { name, created: opts.created, maxRuntime: opts.maxRuntime ?? -1, maxUploadTime: opts.maxUploadTime ?? -1 },
      });
      await registry.add(node);
      return node;
    },
  };
}

/** As a periodic poll left it: online, with this queue count. */
export function setOnline(n: ClusterNode, now: number, queue: number): void {
  n.lastRefreshed = now;
  n.lastSeenOnline = now;
  n.info = { maxParallelTasks: 1, taskQueueCount: queue };
}

/** A test node (the machine's NodeODM), closed when the test ends. */
export async function machineNode(t: TestContext, processingMs: number): Promise<TestNode> {
  const node = await startTestNode({ processingMs });
  t.after(() => node.close());
  return node;
}

/** Creates a task on a test node directly (as a forward would), and waits until it runs. */
export async function runTask(node: TestNode): Promise<string> {
  const fd = new FormData();
  fd.append('images', new Blob([Buffer.alloc(10)]), 'a.jpg');
  const res = await fetch(`${node.url}/task/new`, { method: 'POST', body: fd });
  const { uuid } = (await res.json()) as { uuid: string };
  await waitUntil(() => node.tasks().some((x) => x.uuid === uuid && x.status !== 10), { message: 'the task did not start' });
  return uuid;
}
