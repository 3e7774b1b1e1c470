import { execFileSync } from 'node:child_process';
import * as os from 'node:os';

/** One line of the final table. `pass` null = informational (no target). */
export interface TableRow {
  row: string;
  metric: string;
  direct: string;
  proxy: string;
  ratio: string;
  target: string;
  pass: boolean | null;
  /** The row could not be measured (the bench failed, not the target). */
  error?: boolean;
  /** The same measure through bench/ref-proxy.ts (a bare Node.js hop), as a ratio to direct; rows b and c. */
  ref?: string;
  /** The same measure through nginx (lib/nginx.ts), as a ratio to direct; rows a–c when nginx is installed. */
  nginx?: string;
}

export interface RowOutcome {
  rows: TableRow[];
  /** Details printed under the table: phases, CPU, what was scaled down. */
  notes: string[];
}

export const MB = 1e6;
export const MiB = 1024 * 1024;

export const fmt = {
  ms: (v: number): string => (v < 10 ? `${v.toFixed(2)} ms` : v < 1000 ? `${v.toFixed(1)} ms` : `${(v / 1000).toFixed(2)} s`),
  mibps: (v: number): string => `${v.toFixed(0)} MiB/s`,
  mib: (bytes: number): string => `${(bytes / MiB).toFixed(1)} MiB`,
  mb: (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`,
  x: (v: number): string => `${v.toFixed(2)}×`,
  int: (v: number): string => Math.round(v).toLocaleString('en-US'),
  size: (bytes: number): string => (bytes >= 1024 * MiB ? `${+(bytes / 1024 / MiB).toFixed(2)} GiB` : `${+(bytes / MiB).toFixed(2)} MiB`),
};

export function verdict(pass: boolean | null): string {
  return pass === null ? '—' : pass ? 'PASS' : 'FAIL';
}

export function markdownTable(rows: readonly TableRow[]): string {
  const head = ['Row', 'Metric', 'Direct to node', 'Through ClusterODM', 'Proxy ÷ direct', 'Target', 'Result', 'nginx ÷ direct', 'Bare Node.js proxy ÷ direct (reference)'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    lines.push(`| ${[r.row, r.metric, r.direct, r.proxy, r.ratio, r.target, `**${r.error ? 'ERROR' : verdict(r.pass)}**`, r.nginx ?? '—', r.ref ?? '—'].join(' | ')} |`);
  }
  return lines.join('\n');
}

export function machineLines(): string[] {
  const cpus = os.cpus();
  const model = cpus[0]?.model?.trim() ?? 'unknown';
  let rev = 'unknown';
  try {
    rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src', 'index.ts', 'test/helpers'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
      .split('\n')
      .filter((l) => l.trim() !== '').length;
    if (dirty > 0) rev += ` + ${dirty} uncommitted file(s) in src/ index.ts test/helpers/`;
  } catch {
    // not a git checkout
  }
  let fsType = '';
  try {
    fsType = execFileSync('df', ['-T', os.tmpdir()], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\n')[1]?.split(/\s+/)[1] ?? '';
  } catch {
    // no df
  }
  const mem = os.totalmem() / 1024 ** 3;
  return [
    `- CPU: ${model}, ${cpus.length} cores`,
    `- Memory: ${mem.toFixed(1)} GiB`,
    `- Node.js: ${process.version} (${os.platform()} ${os.release()})`,
    `- Temp dir: ${os.tmpdir()}${fsType ? ` (${fsType})` : ''}`,
    `- ClusterODM tree: ${rev}`,
    `- Processes: bench client, ClusterODM daemon, test node and the peers (bare Node.js proxy, nginx) are separate processes sharing these ${cpus.length} cores; everything on 127.0.0.1.`,
  ];
}
