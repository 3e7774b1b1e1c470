/**
 * How much of the machine other processes used while the bench ran: machine-wide busy time (/proc/stat) minus the
 * bench's own process tree. Reaped children's CPU lands in the parent's cutime/cstime, so two snapshots of the tree
 * give its exact usage in between, however many children came and went.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { execFileSync } from 'node:child_process';
import { sleep } from './http';

let ticksPerSec: number | undefined;

function hz(): number {
  if (ticksPerSec === undefined) {
    try {
      ticksPerSec = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSec = 100;
    }
  }
  return ticksPerSec;
}

function machineBusyTicks(): number {
  const cpu = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
  // user nice system idle iowait irq softirq steal (guest time is already inside user)
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = cpu;
  return user + nice + system + irq + softirq + steal;
}

/** utime+stime+cutime+cstime of this process and every live descendant. */
function treeTicks(): number {
  const info = new Map<number, { ppid: number; ticks: number }>();
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      info.set(Number(name), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) });
    } catch {
      // exited meanwhile
    }
  }
  const children = new Map<number, number[]>();
  for (const [pid, { ppid }] of info) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  let total = 0;
  const todo = [process.pid];
  for (let pid = todo.pop(); pid !== undefined; pid = todo.pop()) {
    total += info.get(pid)?.ticks ?? 0;
    todo.push(...(children.get(pid) ?? []));
  }
  return total;
}

export interface CpuShare {
  seconds: number;
  /** Cores' worth of CPU used by processes outside the bench, on average (0..cores). */
  foreignCores: number;
  oursCores: number;
  cores: number;
}

export class CpuWatch {
  private readonly t0 = Date.now();
  private readonly busy0 = machineBusyTicks();
  private readonly ours0 = treeTicks();

  read(): CpuShare {
    const seconds = (Date.now() - this.t0) / 1000;
    const busy = (machineBusyTicks() - this.busy0) / hz();
    const ours = (treeTicks() - this.ours0) / hz();
    return {
      seconds,
      foreignCores: Math.max(0, (busy - ours) / Math.max(seconds, 0.001)),
      oursCores: ours / Math.max(seconds, 0.001),
      cores: os.cpus().length,
    };
  }
}

export function describeShare(s: CpuShare): string {
  return `other processes used ${((s.foreignCores / s.cores) * 100).toFixed(0)}% of the machine's CPU (${s.foreignCores.toFixed(2)} of ${s.cores} cores), the bench ${((s.oursCores / s.cores) * 100).toFixed(0)}%`;
}

/**
 * Waits (at most `maxMs`) until other processes use less than `threshold` cores over a 1 s window, so a row does
 * not start in the middle of someone else's test run. Returns the last window's reading.
 */
export async function waitForQuiet(maxMs: number, threshold: number, log: (s: string) => void): Promise<CpuShare> {
  const deadline = Date.now() + maxMs;
  let warned = false;
  for (;;) {
    const w = new CpuWatch();
    await sleep(1000);
    const s = w.read();
    if (s.foreignCores < threshold || Date.now() >= deadline) {
      if (warned && s.foreignCores >= threshold) log(`  (still busy after ${Math.round(maxMs / 1000)} s; going on: numbers of this row are disturbed)`);
      return s;
    }
    if (!warned) log(`  waiting up to ${Math.round(maxMs / 1000)} s for a quiet machine: ${describeShare(s)}`);
    warned = true;
  }
}
