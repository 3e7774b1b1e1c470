/**
 * Rows g-*: ClusterODM in JSON-file mode and in Redis mode (--redis, a redis-server of the bench's own) side by side
 * in front of one test node, in the same run. Optionally a JSON-file daemon, and 1..n Redis-mode instances sharing
 * that Redis (the node is added on the first one; the others see it through the shared node list).
 */
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { keepAliveAgent, request, sleep } from './http';
import { addNode, cli, startDaemon, startTestNode, type Daemon, type TestNodeProc } from './procs';
import { startRedisServer, type BenchRedis } from './redis-server';
import { daemonFlags, type BenchContext } from './rig';

export interface ModeRig {
  node: TestNodeProc;
  redis: BenchRedis;
  /** The JSON-file daemon (null when not asked for). */
  json: Daemon | null;
  /** Redis-mode instances, sharing `redis`. */
  instances: Daemon[];
  agent: http.Agent;
  stop(): Promise<void>;
}

/** Until the instance answers /options from the node (it sees the node online in the shared node list). */
async function seesNode(d: Daemon, agent: http.Agent, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    try {
      const a = await request(`${d.url}/options`, { agent });
      const text = a.body.toString('utf8');
      last = text.slice(0, 200);
      if (Array.isArray(JSON.parse(text) as unknown)) return;
    } catch (e: unknown) {
      last = e instanceof Error ? e.message : String(e);
    }
    if (Date.now() > deadline) throw new Error(`${d.name} does not see the node after ${timeoutMs} ms (last: ${last})`);
    await sleep(50);
  }
}

export async function startModeRig(ctx: BenchContext, name: string, o: { json: boolean; instances: number }): Promise<ModeRig> {
  const dir = path.join(ctx.root, name);
  const node = await startTestNode({ name: `${name} test node`, dir: path.join(dir, 'node'), processingMs: 20, maxParallelTasks: 4 });
  const agent = keepAliveAgent(256);
  const rig: ModeRig = {
    node,
    redis: null as unknown as BenchRedis,
    json: null,
    instances: [],
    agent,
    stop: async () => {
      agent.destroy();
      for (const d of rig.instances) await d.stop();
      await rig.json?.stop();
      await (rig.redis as BenchRedis | null)?.stop();
      await node.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    rig.redis = await startRedisServer(path.join(dir, 'redis'));
    if (o.json) {
      rig.json = await startDaemon({ name: `${name} JSON daemon`, dir: path.join(dir, 'json'), nodeFlags: daemonFlags(ctx, `${name}-json`) });
      await addNode(rig.json, node);
      await seesNode(rig.json, agent, 30_000);
    }
    for (let i = 0; i < o.instances; i++) {
      const d = await startDaemon({
        name: `${name} Redis instance ${i + 1}`,
        dir: path.join(dir, `redis-${i + 1}`),
        nodeFlags: daemonFlags(ctx, `${name}-redis-${i + 1}`),
        args: ['--redis', rig.redis.url],
      });
      rig.instances.push(d);
      if (i === 0) await addNode(d, node);
      else await cli(d.cliPort, ['NODE UPDATE']);
      await seesNode(d, agent, 30_000);
    }
  } catch (e: unknown) {
    await rig.stop();
    throw e;
  }
  return rig;
}

/** Load average and cores, for the notes (the machine is shared). */
export function loadLine(): string {
  const [a, b, c] = os.loadavg();
  return `load average ${[a, b, c].map((v) => (v ?? NaN).toFixed(2)).join(' / ')} (1 / 5 / 15 min) on ${os.availableParallelism()} cores, Node.js ${process.version}`;
}
