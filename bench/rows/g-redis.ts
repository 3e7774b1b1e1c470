/**
 * Rows g-info and g-task (issue #14 item 6): ClusterODM in Redis mode (--redis) against the same daemon in
 * JSON-file mode, in front of the same test node, in the same run, taking turns (rotating order each round).
 *  - g-info: GET /task/<uuid>/info, closed loop at concurrency 1 and 32, 1 s turns (row c's load);
 *  - g-task: a whole task (row a's flow) until the node holds every image.
 * CPU per request / per task of each daemon, and of redis-server in Redis mode, go to the notes.
 */
import type * as http from 'node:http';
import { closedLoop, keepAliveAgent, median, mergeLoads, now, type LoadResult } from '../lib/http';
import { cpuMs } from '../lib/procs';
import { loadLine, startModeRig, type ModeRig } from '../lib/redis-rig';
import { fmt, MiB, type RowOutcome, type TableRow } from '../lib/report';
import { createTask, removeTask, rotated, waitOnNode, type BenchContext, type TaskShape } from '../lib/rig';
import { routedTaskVia } from './shared';

type Mode = 'json' | 'redis';

interface ModePath {
  name: Mode;
  url: string;
  /** The daemon's CPU ms so far. */
  cpu(): number;
}

function modePaths(rig: ModeRig): ModePath[] {
  const json = rig.json;
  const redis = rig.instances[0];
  if (!json || !redis) throw new Error('g: the rig needs a JSON-file daemon and a Redis instance');
  return [
    { name: 'json', url: json.url, cpu: () => cpuMs(json.pid) },
    { name: 'redis', url: redis.url, cpu: () => cpuMs(redis.pid) },
  ];
}

const us = (ms: number): string => `${(ms * 1000).toFixed(0)} µs`;

export async function rowGInfo(ctx: BenchContext): Promise<RowOutcome> {
  const sliceMs = 1000;
  const slices = ctx.quick ? 2 : 5;
  const load0 = loadLine();
  const rig = await startModeRig(ctx, 'g-info', { json: true, instances: 1 });
  const paths = modePaths(rig);
  const rows: TableRow[] = [];
  const notes: string[] = [];
  try {
    // A task of each daemon's own, on the node, routed (each daemon answers its info from the node).
    const uuids = new Map<Mode, string>();
    for (const p of paths) uuids.set(p.name, await routedTaskVia(p.url, rig.node.url, rig.agent, { completed: true }));
    const url = (p: ModePath): string => `${p.url}/task/${uuids.get(p.name) ?? ''}/info`;
    for (const concurrency of [1, 32]) {
      const agents = new Map<Mode, http.Agent>(paths.map((p) => [p.name, keepAliveAgent(concurrency)]));
      const parts = new Map<Mode, LoadResult[]>(paths.map((p) => [p.name, []]));
      const cpu = new Map<Mode, number>(paths.map((p) => [p.name, 0]));
      let redisCpu = 0;
      let redisCommands = 0;
      try {
        for (const p of paths) await closedLoop(url(p), { concurrency, warmupMs: ctx.quick ? 300 : 1000, durationMs: 1, agent: agents.get(p.name) as http.Agent });
        for (let i = 0; i < slices; i++) {
          for (const p of rotated(paths, i)) {
            const c0 = p.cpu();
            const r0 = cpuMs(rig.redis.pid);
            const n0 = p.name === 'redis' ? await rig.redis.commands() : 0;
            parts.get(p.name)?.push(await closedLoop(url(p), { concurrency, warmupMs: 0, durationMs: sliceMs, agent: agents.get(p.name) as http.Agent }));
            cpu.set(p.name, (cpu.get(p.name) ?? 0) + p.cpu() - c0);
            if (p.name === 'redis') {
              redisCpu += cpuMs(rig.redis.pid) - r0;
              // Less the INFO itself: what the instance (its heartbeat, lease, health poll) sent meanwhile.
              redisCommands += (await rig.redis.commands()) - n0 - 1;
            }
          }
        }
      } finally {
        for (const a of agents.values()) a.destroy();
      }
      const res = new Map<Mode, LoadResult>();
      for (const p of paths) {
        const r = mergeLoads(parts.get(p.name) ?? []);
        res.set(p.name, r);
        ctx.log(`  g-info: c=${concurrency} ${p.name}: ${fmt.int(r.rps)} req/s, p50 ${fmt.ms(r.p50)}, p99 ${fmt.ms(r.p99)}, errors ${r.errors}`);
        if (r.errors > 0) throw new Error(`g-info: ${r.errors} failed requests (${p.name}, concurrency ${concurrency}; the first: ${r.firstError ?? '?'})`);
      }
      const j = res.get('json') as LoadResult;
      const r = res.get('redis') as LoadResult;
      const per = (m: Mode, rr: LoadResult): number => (cpu.get(m) ?? NaN) / rr.count;
      const ratio = r.rps / j.rps;
      rows.push({
        row: 'g-info',
        metric: `GET /task/<uuid>/info, concurrency ${concurrency}: Redis mode vs JSON-file mode (${slices} s each, in 1 s turns)`,
        direct: `JSON ${fmt.int(j.rps)} req/s (p99 ${fmt.ms(j.p99)})`,
        proxy: `Redis ${fmt.int(r.rps)} req/s (p99 ${fmt.ms(r.p99)})`,
        ratio: fmt.x(ratio),
        target: '≥ 0.90×',
        pass: ratio >= 0.9,
      });
      notes.push(
        `g-info: concurrency ${concurrency}: CPU per request: JSON daemon ${us(per('json', j))}, Redis-mode daemon ${us(per('redis', r))} + redis-server ${us(redisCpu / r.count)}; Redis commands per request ${(redisCommands / r.count).toFixed(4)} (${redisCommands} in ${slices} s for ${fmt.int(r.count)} requests: a route lookup makes no round trip).`,
      );
    }
  } finally {
    await rig.stop();
  }
  notes.push(`g-info: ${load0} at the start, ${loadLine()} at the end.`);
  return { rows, notes };
}

export async function rowGTask(ctx: BenchContext): Promise<RowOutcome> {
  const shape: TaskShape = ctx.quick ? { images: 20, perUpload: 5, imageBytes: 1 * MiB } : { images: 40, perUpload: 10, imageBytes: 2.5 * MiB };
  const warmup = 1;
  const iterations = ctx.quick ? 2 : 5;
  const load0 = loadLine();
  const rig = await startModeRig(ctx, 'g-task', { json: true, instances: 1 });
  const paths = modePaths(rig);
  const times = new Map<Mode, number[]>(paths.map((p) => [p.name, []]));
  const cpu = new Map<Mode, number>(paths.map((p) => [p.name, 0]));
  let redisCpu = 0;
  try {
    for (let i = 0; i < warmup + iterations; i++) {
      for (const p of rotated(paths, i)) {
        const c0 = p.cpu();
        const r0 = cpuMs(rig.redis.pid);
        const t0 = now();
        const task = await createTask(p.url, rig.agent, shape);
        await waitOnNode(rig.node.url, rig.agent, task.uuid, shape.images, { timeoutMs: 300_000 });
        const total = now() - t0;
        if (i >= warmup) {
          times.get(p.name)?.push(total);
          cpu.set(p.name, (cpu.get(p.name) ?? 0) + p.cpu() - c0);
          if (p.name === 'redis') redisCpu += cpuMs(rig.redis.pid) - r0;
        }
        ctx.log(`  g-task: ${p.name} #${i + 1 - warmup}${i < warmup ? ' (warm-up)' : ''}: ${fmt.ms(total)} (commit answered at ${fmt.ms(task.committedMs)})`);
        // Removed on the node itself, as row a does (the daemon may still be writing the route).
        await removeTask(rig.node.url, rig.agent, task.uuid);
      }
    }
  } finally {
    await rig.stop();
  }
  const j = median(times.get('json') ?? []);
  const r = median(times.get('redis') ?? []);
  const per = (m: Mode): string => fmt.ms((cpu.get(m) ?? NaN) / iterations);
  return {
    rows: [
      {
        row: 'g-task',
        metric: `Whole task (row a's flow: ${shape.images} images × ${fmt.size(shape.imageBytes)}, init, uploads of ${shape.perUpload}, commit, until the node holds every image): Redis mode vs JSON-file mode, median of ${iterations} each, taking turns`,
        direct: `JSON ${fmt.ms(j)}`,
        proxy: `Redis ${fmt.ms(r)}`,
        ratio: fmt.x(j / r),
        target: '≥ 0.95×',
        pass: j / r >= 0.95,
      },
    ],
    notes: [
      `g-task: times JSON ${(times.get('json') ?? []).map(fmt.ms).join(', ')}; Redis ${(times.get('redis') ?? []).map(fmt.ms).join(', ')}.`,
      `g-task: CPU per task: JSON daemon ${per('json')}, Redis-mode daemon ${per('redis')} + redis-server ${fmt.ms(redisCpu / iterations)}.`,
      `g-task: ${load0} at the start, ${loadLine()} at the end.`,
    ],
  };
}
