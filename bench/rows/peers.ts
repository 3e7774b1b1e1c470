import { fmt, type TableRow } from '../lib/report';

/**
 * The targets that compare ClusterODM with its peers in one run (issue #16): its CPU per unit against the bare
 * Node.js proxy's, and its ratio to direct against nginx's.
 */
export function peerTargets(
  row: string,
  what: string,
  cpu: { proxy: number; ref: number; unit: (ms: number) => string; max: number | null },
  ratio: { proxy: number; nginx: number | null; factor: number },
): TableRow[] {
  const out: TableRow[] = [];
  if (cpu.max !== null) {
    const r = cpu.proxy / cpu.ref;
    out.push({
      row,
      metric: `${what}: ClusterODM's CPU ÷ the bare Node.js proxy's`,
      direct: '—',
      proxy: cpu.unit(cpu.proxy),
      ratio: fmt.x(r),
      target: `≤ ${fmt.x(cpu.max)}`,
      pass: Number.isFinite(r) ? r <= cpu.max : null,
      ref: cpu.unit(cpu.ref),
    });
  }
  const n = ratio.nginx;
  out.push({
    row,
    metric: `${what}: ClusterODM's ratio to direct ÷ nginx's`,
    direct: '—',
    proxy: fmt.x(ratio.proxy),
    ratio: n === null ? '—' : fmt.x(ratio.proxy / n),
    target: ratio.factor === 1 ? "≥ nginx's" : `≥ ${fmt.x(ratio.factor)} nginx's`,
    pass: n === null ? null : ratio.proxy >= ratio.factor * n,
    nginx: n === null ? 'not installed' : fmt.x(n),
  });
  return out;
}
