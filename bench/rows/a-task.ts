/**
 * Row a: a whole task (init, uploads, commit) until the node holds every image: straight to the node, through
 * nginx, through the bare reference proxy (bench/ref-proxy.ts) and through ClusterODM, in interleaved rounds.
 * Through a proxy the node may receive the images only when the proxy forwards them, so the clock stops when the
 * node's own /task/<uuid>/info reports every image, on every path. The CPU time of each process is recorded: on two
 * cores, several busy processes are bound by the sum, and CPU per task is the steadier figure on a shared machine.
 */
import { median, now } from '../lib/http';
import { cpuMs, minorFaults } from '../lib/procs';
import { fmt, MiB, type RowOutcome, type TableRow } from '../lib/report';
import { benchPaths, createTask, rotated, startRig, waitOnNode, removeTask, type BenchContext, type PathName, type TaskShape } from '../lib/rig';
import { peerTargets } from './peers';

interface Cpu {
  client: number;
  node: number;
  hop: number;
  /** Minor page faults of the hop (not of nginx, whose pids are two). */
  faults: number;
}

export async function rowA(ctx: BenchContext): Promise<RowOutcome> {
  const shape: TaskShape = ctx.quick ? { images: 20, perUpload: 5, imageBytes: 1 * MiB } : { images: 40, perUpload: 10, imageBytes: 2.5 * MiB };
  const warmup = 1;
  const iterations = ctx.quick ? 2 : 5;
  const bytes = shape.images * shape.imageBytes;
  const uploads = Math.ceil(shape.images / shape.perUpload);
  const rig = await startRig(ctx, 'a-task', {}, { refProxy: true });
  const paths = benchPaths(rig);
  const times = new Map<PathName, number[]>(paths.map((p) => [p.name, []]));
  const committed = new Map<PathName, number[]>(paths.map((p) => [p.name, []]));
  const cpu = new Map<PathName, Cpu>(paths.map((p) => [p.name, { client: 0, node: 0, hop: 0, faults: 0 }]));
  try {
    for (let i = 0; i < warmup + iterations; i++) {
      for (const p of rotated(paths, i)) {
        const direct = p.name === 'direct';
        const hopPid = p.name === 'ref' ? rig.ref?.pid : p.name === 'proxy' ? rig.daemon.pid : undefined;
        const c0 = { client: process.cpuUsage(), node: cpuMs(rig.node.pid), hop: direct ? 0 : p.cpu(), faults: hopPid ? minorFaults(hopPid) : 0 };
        const t0 = now();
        const task = await createTask(p.url, rig.agent, shape);
        await waitOnNode(rig.node.url, rig.agent, task.uuid, shape.images, { timeoutMs: 300_000 });
        const total = now() - t0;
        if (i >= warmup) {
          const client = process.cpuUsage(c0.client);
          const c = cpu.get(p.name) as Cpu;
          c.client += (client.user + client.system) / 1000;
          c.node += cpuMs(rig.node.pid) - c0.node;
          c.hop += direct ? 0 : p.cpu() - c0.hop;
          c.faults += hopPid ? minorFaults(hopPid) - c0.faults : 0;
          times.get(p.name)?.push(total);
          committed.get(p.name)?.push(task.committedMs);
        }
        ctx.log(`  a: ${p.name} #${i + 1 - warmup}${i < warmup ? ' (warm-up)' : ''}: ${fmt.ms(total)} (commit answered at ${fmt.ms(task.committedMs)})`);
        // Removed on the node itself: the proxy may still be writing the route when the node already has the task.
        await removeTask(rig.node.url, rig.agent, task.uuid);
      }
    }
  } finally {
    await rig.stop();
  }
  const t = (name: PathName): number => median(times.get(name) ?? []);
  const hop = (name: PathName): number => (cpu.get(name)?.hop ?? NaN) / iterations;
  const d = t('direct');
  const p = t('proxy');
  const c = median(committed.get('proxy') ?? []);
  const mibps = (ms: number): string => fmt.mibps(bytes / MiB / (ms / 1000));
  const peer = (name: PathName): string | undefined =>
    times.get(name)?.length ? `${fmt.x(d / t(name))} (${fmt.ms(t(name))}; CPU ${fmt.ms(hop(name))} per task)` : undefined;
  const budget = (name: PathName, label: string): string => {
    const x = cpu.get(name) as Cpu;
    const per = (v: number): string => fmt.ms(v / iterations);
    const sum = (x.client + x.node + x.hop) / iterations;
    return `${label}: client ${per(x.client)}, ${name === 'direct' ? '' : `${label} ${per(x.hop)}, `}node ${per(x.node)} = ${fmt.ms(sum)} of CPU, i.e. ≥ ${fmt.ms(sum / 2)} on 2 cores`;
  };
  const rows: TableRow[] = [
    {
      row: 'a',
      metric: `Whole task: ${shape.images} images × ${fmt.size(shape.imageBytes)} (init, ${uploads} uploads of ${shape.perUpload}, commit) until the node holds every image; median of ${iterations}`,
      direct: `${fmt.ms(d)} (${mibps(d)})`,
      proxy: `${fmt.ms(p)} (${mibps(p)}; CPU ${fmt.ms(hop('proxy'))} per task)`,
      ratio: fmt.x(d / p),
      target: '≥ 0.90×',
      pass: d / p >= 0.9,
      ref: peer('ref'),
      nginx: peer('nginx'),
    },
    ...peerTargets(
      'a',
      'whole task',
      { proxy: hop('proxy'), ref: hop('ref'), unit: (ms) => `${fmt.ms(ms)} per task`, max: 1.5 },
      { proxy: d / p, nginx: times.get('nginx')?.length ? d / t('nginx') : null, factor: 0.8 },
    ),
  ];
  return {
    rows,
    notes: [
      `a: through ClusterODM the client's commit was answered after ${fmt.ms(c)} (${((c / p) * 100).toFixed(0)}% of the total: the client's uploads into ClusterODM); the node held every image ${fmt.ms(p - c)} later.`,
      `a: CPU (user+sys) per task — ${paths.map((x) => budget(x.name, x.label)).join('; ')}.`,
      // The bare proxy's CPU per task follows its page faults (node:http's parser copies each body chunk into fresh
      // memory): a few hundred per task in its cheap state, thousands in its costly one (README, Performance).
      `a: minor page faults per task — bare Node.js proxy ${((cpu.get('ref')?.faults ?? NaN) / iterations).toFixed(0)}, ClusterODM ${((cpu.get('proxy')?.faults ?? NaN) / iterations).toFixed(0)}.`,
    ],
  };
}
