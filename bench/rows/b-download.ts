/**
 * Row b: downloading a task's all.zip (the test node's `assetSize`) straight from the node, through nginx, through
 * the bare reference proxy (bench/ref-proxy.ts) and through ClusterODM, in interleaved rounds.
 */
import { download, median } from '../lib/http';
import { fmt, MiB, type RowOutcome } from '../lib/report';
import { benchPaths, rotated, startRig, type BenchContext, type PathName } from '../lib/rig';
import { peerTargets } from './peers';
import { routedTask } from './shared';

export async function rowB(ctx: BenchContext): Promise<RowOutcome> {
  const size = (ctx.quick ? 32 : 256) * MiB;
  const warmup = 1;
  const reps = ctx.quick ? 2 : 5;
  const rig = await startRig(ctx, 'b-download', { assetSize: size }, { refProxy: true });
  const paths = benchPaths(rig);
  const rates = new Map<PathName, number[]>(paths.map((p) => [p.name, []]));
  const cpu = new Map<PathName, number>(paths.map((p) => [p.name, 0]));
  try {
    const uuid = await routedTask(rig, { completed: true });
    for (let i = 0; i < warmup + reps; i++) {
      for (const p of rotated(paths, i)) {
        const cpu0 = p.cpu();
        const r = await download(`${p.url}/task/${uuid}/download/all.zip`, rig.agent);
        const used = p.cpu() - cpu0;
        if (r.status !== 200 || r.bytes !== size) throw new Error(`b: ${p.name} download got HTTP ${r.status}, ${r.bytes} of ${size} bytes`);
        const rate = size / MiB / (r.ms / 1000);
        ctx.log(`  b: ${p.name} #${i + 1 - warmup}${i < warmup ? ' (warm-up)' : ''}: ${fmt.ms(r.ms)}, ${fmt.mibps(rate)}`);
        if (i >= warmup) {
          rates.get(p.name)?.push(rate);
          cpu.set(p.name, (cpu.get(p.name) ?? 0) + used);
        }
      }
    }
  } finally {
    await rig.stop();
  }
  const rate = (name: PathName): number => median(rates.get(name) ?? []);
  const perMiB = (name: PathName): number => (cpu.get(name) ?? NaN) / reps / (size / MiB);
  const unit = (ms: number): string => `${ms.toFixed(2)} ms/MiB`;
  const d = rate('direct');
  const p = rate('proxy');
  const peer = (name: PathName): string | undefined => (rates.get(name)?.length ? `${fmt.x(rate(name) / d)} (${fmt.mibps(rate(name))}; CPU ${unit(perMiB(name))})` : undefined);
  return {
    rows: [
      {
        row: 'b',
        metric: `Download of a ${fmt.size(size)} all.zip; median of ${reps}`,
        direct: fmt.mibps(d),
        proxy: `${fmt.mibps(p)} (CPU ${unit(perMiB('proxy'))})`,
        ratio: fmt.x(p / d),
        target: '≥ 0.95×',
        pass: p / d >= 0.95,
        ref: peer('ref'),
        nginx: peer('nginx'),
      },
      ...peerTargets(
        'b',
        'download',
        { proxy: perMiB('proxy'), ref: perMiB('ref'), unit, max: null },
        { proxy: p / d, nginx: rates.get('nginx')?.length ? rate('nginx') / d : null, factor: 1 },
      ),
    ],
    notes: [
      `b: CPU (user+sys) per MiB downloaded: ${paths.map((x) => `${x.label} ${unit(perMiB(x.name))}`).join(', ')} (direct: the test node, which generates all.zip as it sends it).`,
    ],
  };
}
