/**
 * Row b: downloading a task's all.zip (the test node's `assetSize`) straight from the node, through ClusterODM, and
 * through the bare reference proxy (bench/ref-proxy.ts).
 */
import { download, median } from '../lib/http';
import { cpuMs } from '../lib/procs';
import { fmt, MiB, type RowOutcome } from '../lib/report';
import { startRig, type BenchContext } from '../lib/rig';
import { routedTask } from './shared';

const PATHS = ['direct', 'proxy', 'ref'] as const;
type PathName = (typeof PATHS)[number];

export async function rowB(ctx: BenchContext): Promise<RowOutcome> {
  const size = (ctx.quick ? 32 : 256) * MiB;
  const warmup = 1;
  const reps = ctx.quick ? 2 : 5;
  const rig = await startRig(ctx, 'b-download', { assetSize: size }, { refProxy: true });
  const rates: Record<PathName, number[]> = { direct: [], proxy: [], ref: [] };
  const cpu: Record<PathName, number> = { direct: 0, proxy: 0, ref: 0 };
  try {
    const uuid = await routedTask(rig, { completed: true });
    for (let i = 0; i < warmup + reps; i++) {
      // Rotating the order spreads any drift over the three paths.
      const order = PATHS.map((_, k) => PATHS[(k + i) % PATHS.length] ?? 'direct');
      for (const path of order) {
        const base = path === 'direct' ? rig.node.url : path === 'proxy' ? rig.daemon.url : (rig.ref?.url ?? '');
        const pid = path === 'proxy' ? rig.daemon.pid : path === 'ref' ? (rig.ref?.pid ?? 0) : rig.node.pid;
        const cpu0 = cpuMs(pid);
        const r = await download(`${base}/task/${uuid}/download/all.zip`, rig.agent);
        const used = cpuMs(pid) - cpu0;
        if (r.status !== 200 || r.bytes !== size) throw new Error(`b: ${path} download got HTTP ${r.status}, ${r.bytes} of ${size} bytes`);
        const rate = size / MiB / (r.ms / 1000);
        ctx.log(`  b: ${path} #${i + 1 - warmup}${i < warmup ? ' (warm-up)' : ''}: ${fmt.ms(r.ms)}, ${fmt.mibps(rate)}`);
        if (i >= warmup) {
          rates[path].push(rate);
          cpu[path] += used;
        }
      }
    }
  } finally {
    await rig.stop();
  }
  const d = median(rates.direct);
  const p = median(rates.proxy);
  const ref = median(rates.ref);
  const perMiB = (ms: number): string => `${(ms / reps / (size / MiB)).toFixed(2)} ms/MiB`;
  return {
    rows: [
      {
        row: 'b',
        metric: `Download of a ${fmt.size(size)} all.zip; median of ${reps}`,
        direct: fmt.mibps(d),
        proxy: fmt.mibps(p),
        ratio: fmt.x(p / d),
        target: '≥ 0.95×',
        pass: p / d >= 0.95,
        ref: `${fmt.x(ref / d)} (${fmt.mibps(ref)})`,
      },
    ],
    notes: [
      `b: CPU (user+sys) per MiB downloaded: ClusterODM ${perMiB(cpu.proxy)}, bare proxy ${perMiB(cpu.ref)}, test node ${perMiB(cpu.direct)} (the node generates all.zip in JS as it sends it: that generator caps the direct rate).`,
    ],
  };
}
