/**
 * Row g-lb (issue #14 item 6): two Redis-mode instances behind a load balancer against one. nginx (lib/nginx.ts,
 * round robin, no stickiness) in front of instance A alone, and another nginx in front of A and B, taking turns in
 * 1 s slices: GET /task/<uuid>/info at concurrency 32 (and 64), the rate of each. The bench client, nginx, the
 * instances, redis-server and the test node all share this machine's cores: the notes give each one's CPU per
 * request and the rate those costs allow on these cores, the ceiling whatever the number of instances.
 */
import type * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { closedLoop, keepAliveAgent, mergeLoads, type LoadResult } from '../lib/http';
import { startNginx, type NginxProc } from '../lib/nginx';
import { cpuMs } from '../lib/procs';
import { loadLine, startModeRig } from '../lib/redis-rig';
import { fmt, type RowOutcome, type TableRow } from '../lib/report';
import { rotated, type BenchContext } from '../lib/rig';
import { routedTaskVia } from './shared';

type Side = 'one' | 'two';

const us = (ms: number): string => `${(ms * 1000).toFixed(0)} µs`;

export async function rowGLb(ctx: BenchContext): Promise<RowOutcome> {
  const sliceMs = 1000;
  const slices = ctx.quick ? 2 : 5;
  const cores = os.availableParallelism();
  const load0 = loadLine();
  const rig = await startModeRig(ctx, 'g-lb', { json: false, instances: 2 });
  const [a, b] = rig.instances;
  if (!a || !b) throw new Error('g-lb: two instances expected');
  const rows: TableRow[] = [];
  const notes: string[] = [];
  const lbs: NginxProc[] = [];
  try {
    const dir = path.join(ctx.root, 'g-lb');
    const one = await startNginx('g-lb nginx → A', [a.proxyPort], path.join(dir, 'nginx-one'), ctx.log);
    const two = await startNginx('g-lb nginx → A, B', [a.proxyPort, b.proxyPort], path.join(dir, 'nginx-two'), ctx.log);
    if (!one || !two) throw new Error('g-lb needs nginx (apt-get install nginx-light, or NGINX=/path/to/nginx)');
    lbs.push(one, two);
    const sides: Array<{ name: Side; lb: NginxProc }> = [
      { name: 'one', lb: one },
      { name: 'two', lb: two },
    ];
    // Made on A; B finds the route in Redis on its first request and keeps it in its cache.
    const uuid = await routedTaskVia(a.url, rig.node.url, rig.agent, { completed: true });
    const url = (s: { lb: NginxProc }): string => `${s.lb.url}/task/${uuid}/info`;
    const procs = {
      A: () => cpuMs(a.pid),
      B: () => cpuMs(b.pid),
      node: () => cpuMs(rig.node.pid),
      redis: () => cpuMs(rig.redis.pid),
      client: () => {
        const u = process.cpuUsage();
        return (u.user + u.system) / 1000;
      },
    };
    type ProcName = keyof typeof procs | 'nginx';
    const names: ProcName[] = ['client', 'nginx', 'A', 'B', 'redis', 'node'];
    for (const concurrency of [32, 64]) {
      const agents = new Map<Side, http.Agent>(sides.map((s) => [s.name, keepAliveAgent(concurrency)]));
      const parts = new Map<Side, LoadResult[]>(sides.map((s) => [s.name, []]));
      const cpu = new Map<Side, Map<ProcName, number>>(sides.map((s) => [s.name, new Map(names.map((n) => [n, 0]))]));
      try {
        for (const s of sides) await closedLoop(url(s), { concurrency, warmupMs: ctx.quick ? 300 : 1000, durationMs: 1, agent: agents.get(s.name) as http.Agent });
        for (let i = 0; i < slices; i++) {
          for (const s of rotated(sides, i)) {
            const read = (): Map<ProcName, number> => new Map(names.map((n) => [n, n === 'nginx' ? s.lb.cpuMs() : procs[n]()]));
            const c0 = read();
            parts.get(s.name)?.push(await closedLoop(url(s), { concurrency, warmupMs: 0, durationMs: sliceMs, agent: agents.get(s.name) as http.Agent }));
            const c1 = read();
            const acc = cpu.get(s.name) as Map<ProcName, number>;
            for (const n of names) acc.set(n, (acc.get(n) ?? 0) + (c1.get(n) ?? NaN) - (c0.get(n) ?? NaN));
          }
        }
      } finally {
        for (const ag of agents.values()) ag.destroy();
      }
      const res = new Map<Side, LoadResult>();
      for (const s of sides) {
        const r = mergeLoads(parts.get(s.name) ?? []);
        res.set(s.name, r);
        ctx.log(`  g-lb: c=${concurrency} ${s.name === 'one' ? 'nginx → A' : 'nginx → A, B'}: ${fmt.int(r.rps)} req/s, p50 ${fmt.ms(r.p50)}, p99 ${fmt.ms(r.p99)}, errors ${r.errors}`);
        if (r.errors > 0) throw new Error(`g-lb: ${r.errors} failed requests (${s.name}, concurrency ${concurrency}; the first: ${r.firstError ?? '?'})`);
      }
      const r1 = res.get('one') as LoadResult;
      const r2 = res.get('two') as LoadResult;
      const ratio = r2.rps / r1.rps;
      // The rate these CPU costs allow: all cores busy, and no instance past one core (an event loop).
      const ceiling = (side: Side, r: LoadResult): number => {
        const acc = cpu.get(side) as Map<ProcName, number>;
        const total = names.reduce((sum, n) => sum + (acc.get(n) ?? 0), 0) / r.count;
        const instance = Math.max(acc.get('A') ?? 0, acc.get('B') ?? 0) / r.count;
        return Math.min((cores * 1000) / total, 1000 / instance);
      };
      const perReq = (side: Side, r: LoadResult): string => {
        const acc = cpu.get(side) as Map<ProcName, number>;
        const total = names.reduce((sum, n) => sum + (acc.get(n) ?? 0), 0) / r.count;
        return `${names.map((n) => `${n} ${us((acc.get(n) ?? NaN) / r.count)}`).join(', ')}; total ${us(total)} → at most ~${fmt.int(ceiling(side, r))} req/s on ${cores} cores`;
      };
      const reach = ceiling('two', r2) / ceiling('one', r1);
      rows.push({
        row: 'g-lb',
        metric: `GET /task/<uuid>/info at concurrency ${concurrency} through nginx (round robin): two Redis-mode instances vs one; ${cores} cores shared by client, nginx, instances, redis-server and node`,
        direct: `one ${fmt.int(r1.rps)} req/s`,
        proxy: `two ${fmt.int(r2.rps)} req/s`,
        ratio: fmt.x(ratio),
        target: `≥ 1.60× (${cores} cores)`,
        pass: ratio >= 1.6,
      });
      notes.push(
        `g-lb: concurrency ${concurrency}: on ${cores} cores these CPU costs allow two instances at most ${fmt.x(reach)} the rate of one (each ceiling: every core busy, no instance past one core); measured ${fmt.x(ratio)}.`,
        `g-lb: concurrency ${concurrency}: CPU per request with one instance: ${perReq('one', r1)}.`,
        `g-lb: concurrency ${concurrency}: CPU per request with two: ${perReq('two', r2)}.`,
      );
    }
  } finally {
    for (const lb of lbs) await lb.stop();
    await rig.stop();
  }
  notes.push(`g-lb: ${load0} at the start, ${loadLine()} at the end.`);
  return { rows, notes };
}
