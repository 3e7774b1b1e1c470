/**
 * Row a: a whole task (init, uploads, commit) until the node holds every image: straight to the node, through
 * ClusterODM, and through the bare reference proxy (bench/ref-proxy.ts, which passes the calls through untouched).
 * Through a proxy the node may receive the images only when the proxy forwards them, so the clock stops when the
 * node's own /task/<uuid>/info reports every image, on every path. The CPU time of each process is recorded: on two
 * cores, three busy processes are bound by the sum.
 */
import { median, now } from '../lib/http';
import { cpuMs } from '../lib/procs';
import { fmt, MiB, type RowOutcome } from '../lib/report';
import { createTask, startRig, waitOnNode, removeTask, type BenchContext, type TaskShape } from '../lib/rig';

const PATHS = ['direct', 'proxy', 'ref'] as const;
type PathName = (typeof PATHS)[number];

interface Cpu {
  client: number;
  node: number;
  proxy: number;
}

export async function rowA(ctx: BenchContext): Promise<RowOutcome> {
  const shape: TaskShape = ctx.quick ? { images: 20, perUpload: 5, imageBytes: 1 * MiB } : { images: 40, perUpload: 10, imageBytes: 2.5 * MiB };
  const warmup = 1;
  const iterations = ctx.quick ? 2 : 5;
  const bytes = shape.images * shape.imageBytes;
  const uploads = Math.ceil(shape.images / shape.perUpload);
  const rig = await startRig(ctx, 'a-task', {}, { refProxy: true });
  const times: Record<PathName, number[]> = { direct: [], proxy: [], ref: [] };
  const committed: Record<PathName, number[]> = { direct: [], proxy: [], ref: [] };
  const cpu: Record<PathName, Cpu> = { direct: { client: 0, node: 0, proxy: 0 }, proxy: { client: 0, node: 0, proxy: 0 }, ref: { client: 0, node: 0, proxy: 0 } };
  try {
    const ref = rig.ref;
    if (!ref) throw new Error('no reference proxy');
    for (let i = 0; i < warmup + iterations; i++) {
      // Rotating the order spreads any drift (page cache, JIT, background load) over the paths.
      for (const path of PATHS.map((_, k) => PATHS[(k + i) % PATHS.length] ?? 'direct')) {
        const base = path === 'direct' ? rig.node.url : path === 'proxy' ? rig.daemon.url : ref.url;
        const proxyPid = path === 'proxy' ? rig.daemon.pid : path === 'ref' ? ref.pid : 0;
        const c0 = { client: process.cpuUsage(), node: cpuMs(rig.node.pid), proxy: proxyPid ? cpuMs(proxyPid) : 0 };
        const t0 = now();
        const task = await createTask(base, rig.agent, shape);
        await waitOnNode(rig.node.url, rig.agent, task.uuid, shape.images, { timeoutMs: 300_000 });
        const total = now() - t0;
        if (i >= warmup) {
          const client = process.cpuUsage(c0.client);
          cpu[path].client += (client.user + client.system) / 1000;
          cpu[path].node += cpuMs(rig.node.pid) - c0.node;
          cpu[path].proxy += proxyPid ? cpuMs(proxyPid) - c0.proxy : 0;
          times[path].push(total);
          committed[path].push(task.committedMs);
        }
        ctx.log(`  a: ${path} #${i + 1 - warmup}${i < warmup ? ' (warm-up)' : ''}: ${fmt.ms(total)} (commit answered at ${fmt.ms(task.committedMs)})`);
        // Removed on the node itself: the proxy may still be writing the route when the node already has the task.
        await removeTask(rig.node.url, rig.agent, task.uuid);
      }
    }
  } finally {
    await rig.stop();
  }
  const d = median(times.direct);
  const p = median(times.proxy);
  const r = median(times.ref);
  const c = median(committed.proxy);
  const mibps = (ms: number): string => fmt.mibps(bytes / MiB / (ms / 1000));
  const budget = (path: PathName, label: string): string => {
    const x = cpu[path];
    const per = (v: number): string => fmt.ms(v / iterations);
    const sum = (x.client + x.node + x.proxy) / iterations;
    return `${label}: client ${per(x.client)}, ${path === 'direct' ? '' : `${path === 'proxy' ? 'ClusterODM' : 'bare proxy'} ${per(x.proxy)}, `}node ${per(x.node)} = ${fmt.ms(sum)} of CPU, i.e. ≥ ${fmt.ms(sum / 2)} on 2 cores`;
  };
  return {
    rows: [
      {
        row: 'a',
        metric: `Whole task: ${shape.images} images × ${fmt.size(shape.imageBytes)} (init, ${uploads} uploads of ${shape.perUpload}, commit) until the node holds every image; median of ${iterations}`,
        direct: `${fmt.ms(d)} (${mibps(d)})`,
        proxy: `${fmt.ms(p)} (${mibps(p)})`,
        ratio: fmt.x(d / p),
        target: '≥ 0.90×',
        pass: d / p >= 0.9,
        ref: `${fmt.x(d / r)} (${fmt.ms(r)})`,
      },
    ],
    notes: [
      `a: through ClusterODM the client's commit was answered after ${fmt.ms(c)} (${((c / p) * 100).toFixed(0)}% of the total: the client's uploads into ClusterODM); the node held every image ${fmt.ms(p - c)} later.`,
      `a: CPU (user+sys) per task — ${budget('direct', 'direct')}; ${budget('proxy', 'through ClusterODM')}; ${budget('ref', 'through the bare proxy')}.`,
    ],
  };
}
