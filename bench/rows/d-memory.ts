/**
 * Row d: peak RSS of the ClusterODM process while 10 clients each upload a task of `size` bytes at once (bodies
 * generated as streams), and until those tasks have been forwarded to the node. Run at two sizes: the peak must stay
 * under 150 MB and not grow with the dataset.
 */
import * as fs from 'node:fs';
import { median, now, percentile } from '../lib/http';
import { cpuMs, memStatus, resetPeakRss, RssSampler } from '../lib/procs';
import { fmt, MB, MiB, type RowOutcome } from '../lib/report';
import { createTask, startRig, waitOnNode, type BenchContext } from '../lib/rig';

const CLIENTS = 10;
const FILE_BYTES = 4 * MiB;
const LIMIT = 150 * MB;
/**
 * Flat: the p95 of sampled RSS may grow by at most this much (or 10%) from the small to the large dataset, and RSS
 * may not creep up during the large run (median of its last quarter vs its first). Peaks are not compared: the
 * longer run's maximum is higher by chance alone.
 */
const FLAT_SLACK = 10 * MiB;

interface Peak {
  size: number;
  idle: number;
  /** Until every client's commit was answered (all data staged in ClusterODM's tmp). */
  upload: number;
  /** Until the node holds every task (the forward included). */
  total: number;
  uploadMs: number;
  totalMs: number;
  cpuMs: number;
  hwmUsed: boolean;
  /** 95th percentile of the RSS samples (every 50 ms) from the first upload byte until all was forwarded. */
  p95: number;
  /** Median RSS of the last quarter of the samples minus that of the first quarter. */
  trend: number;
}

/** Both sizes; the larger one is scaled down if the disk cannot hold it twice (staged copy + node copy). */
export function plannedSizes(ctx: BenchContext, largeMiB: number | null): { small: number; large: number; note: string | null } {
  let large = (largeMiB ?? (ctx.quick ? 64 : 1024)) * MiB;
  const small = Math.min(large, (ctx.quick ? 16 : 128) * MiB);
  const st = fs.statfsSync(ctx.root);
  const avail = st.bavail * st.bsize;
  // 10 staged uploads in ClusterODM's tmp + 10 copies on the node, 10% slack, 2 GiB left free.
  const fits = Math.floor((avail - 2 * 1024 * MiB) / (CLIENTS * 2 * 1.1) / FILE_BYTES) * FILE_BYTES;
  let note: string | null = null;
  if (fits < large) {
    note = `d: only ${fmt.size(avail)} free in ${ctx.root}: per-client upload scaled down from ${fmt.size(large)} to ${fmt.size(Math.max(fits, FILE_BYTES))}.`;
    large = Math.max(fits, FILE_BYTES);
  }
  return { small: Math.min(small, large), large, note };
}

async function measure(ctx: BenchContext, size: number): Promise<Peak> {
  const label = size >= 1024 * MiB ? `${size / 1024 / MiB}g` : `${size / MiB}m`;
  const rig = await startRig(ctx, `d-memory-${label}`, { maxParallelTasks: CLIENTS });
  try {
    const pid = rig.daemon.pid;
    const idle = memStatus(pid)?.rss ?? NaN;
    const hwmUsed = resetPeakRss(pid);
    const sampler = new RssSampler(pid, 50);
    const images = Math.max(1, Math.round(size / FILE_BYTES));
    const cpu0 = cpuMs(pid);
    const t0 = now();
    const tasks = await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) => createTask(rig.daemon.url, rig.agent, { images, perUpload: images, imageBytes: FILE_BYTES }, `client ${i + 1}`)),
    );
    const uploadMs = now() - t0;
    const upload = Math.max(sampler.max, hwmUsed ? (memStatus(pid)?.hwm ?? 0) : 0);
    await Promise.all(tasks.map((t) => waitOnNode(rig.node.url, rig.agent, t.uuid, images, { timeoutMs: 30 * 60_000, everyMs: 100 })));
    const totalMs = now() - t0;
    const total = Math.max(sampler.stop(), hwmUsed ? (memStatus(pid)?.hwm ?? 0) : 0);
    const cpu = cpuMs(pid) - cpu0;
    const samples = sampler.samples;
    const quarter = Math.max(1, Math.floor(samples.length / 4));
    const p95 = percentile([...samples].sort((a, b) => a - b), 0.95);
    const trend = median(samples.slice(-quarter)) - median(samples.slice(0, quarter));
    ctx.log(
      `  d: ${CLIENTS} × ${fmt.size(size)}: idle ${fmt.mb(idle)}, peak while uploading ${fmt.mb(upload)}, peak until forwarded ${fmt.mb(total)}, p95 ${fmt.mb(p95)}, trend ${fmt.mb(trend)}; uploads ${fmt.ms(uploadMs)}, forwarded at ${fmt.ms(totalMs)}`,
    );
    return { size, idle, upload, total, uploadMs, totalMs, cpuMs: cpu, hwmUsed, p95, trend };
  } finally {
    await rig.stop();
  }
}

export async function rowD(ctx: BenchContext, largeMiB: number | null): Promise<RowOutcome> {
  const plan = plannedSizes(ctx, largeMiB);
  const notes: string[] = plan.note ? [plan.note] : [];
  if (plan.note) ctx.log(`  ${plan.note}`);
  const small = await measure(ctx, plan.small);
  const large = plan.large === plan.small ? small : await measure(ctx, plan.large);
  const growth = large.p95 - small.p95;
  const slack = Math.max(FLAT_SLACK, 0.1 * small.p95);
  const flat = growth <= slack && large.trend <= slack;
  const describe = (p: Peak): string => `peak ${fmt.mb(p.total)}, p95 ${fmt.mb(p.p95)} (idle ${fmt.mb(p.idle)})`;
  for (const p of plan.large === plan.small ? [small] : [small, large]) {
    const total = CLIENTS * p.size;
    notes.push(
      `d: ${CLIENTS} × ${fmt.size(p.size)}: all commits answered after ${fmt.ms(p.uploadMs)} (${fmt.mibps(total / MiB / (p.uploadMs / 1000))} into ClusterODM), all on the node after ${fmt.ms(p.totalMs)}; daemon CPU ${fmt.ms(p.cpuMs)} (${(p.cpuMs / (total / MiB) / 2).toFixed(2)} ms per MiB received or sent). Peak from ${p.hwmUsed ? 'VmHWM (reset before the uploads) and ' : ''}VmRSS sampled every 50 ms (p95 ${fmt.mb(p.p95)} and trend ${fmt.mb(p.trend)} from the samples); peak while the clients were still uploading: ${fmt.mb(p.upload)}.`,
    );
  }
  return {
    rows: [
      {
        row: 'd',
        metric: `Peak RSS of ClusterODM, ${CLIENTS} clients × ${fmt.size(small.size)} (files of ${fmt.size(FILE_BYTES)}), until forwarded`,
        direct: '—',
        proxy: describe(small),
        ratio: '—',
        target: 'peak < 150 MB',
        pass: small.total < LIMIT,
      },
      {
        row: 'd',
        metric: `Peak RSS of ClusterODM, ${CLIENTS} clients × ${fmt.size(large.size)}, until forwarded`,
        direct: '—',
        proxy: describe(large),
        ratio: `p95 ${growth >= 0 ? '+' : ''}${fmt.mb(growth)} vs ${fmt.size(small.size)}; trend within the run ${large.trend >= 0 ? '+' : ''}${fmt.mb(large.trend)}`,
        target: `peak < 150 MB; flat: p95 growth and trend ≤ max(10 MiB, 10%)`,
        pass: large.total < LIMIT && flat,
      },
    ],
    notes,
  };
}
