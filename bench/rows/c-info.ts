/**
 * Row c: GET /task/<uuid>/info under a closed-loop load at concurrency 1 and 32 (keep-alive agents, fixed
 * duration), straight to the node, through ClusterODM, and through the bare reference proxy (bench/ref-proxy.ts).
 * The three paths take turns in 1 s slices (rotating order), so a burst of background load hits all of them alike.
 */
import { closedLoop, keepAliveAgent, mergeLoads, requestJson, type LoadResult } from '../lib/http';
import { cpuMs } from '../lib/procs';
import { fmt, type RowOutcome, type TableRow } from '../lib/report';
import { startRig, type BenchContext } from '../lib/rig';
import { routedTask } from './shared';

const PATHS = ['direct', 'proxy', 'ref'] as const;
type PathName = (typeof PATHS)[number];

interface Level {
  concurrency: number;
  results: Record<PathName, LoadResult>;
  /** CPU ms per request of the process that serves (direct: the node) or forwards (proxy, ref) it. */
  cpuPerReq: Record<PathName, number>;
}

export async function rowC(ctx: BenchContext): Promise<RowOutcome> {
  const sliceMs = 1000;
  const slices = ctx.quick ? 2 : 5;
  const rig = await startRig(ctx, 'c-info', {}, { refProxy: true });
  const levels: Level[] = [];
  try {
    const uuid = await routedTask(rig, { completed: true });
    const ref = rig.ref;
    if (!ref) throw new Error('no reference proxy');
    const base: Record<PathName, string> = { direct: rig.node.url, proxy: rig.daemon.url, ref: ref.url };
    const pid: Record<PathName, number> = { direct: rig.node.pid, proxy: rig.daemon.pid, ref: ref.pid };
    // Every path must answer the same thing: the node's info of that task.
    for (const path of PATHS) {
      const info = await requestJson(`${base[path]}/task/${uuid}/info`, { agent: rig.agent });
      if (info['uuid'] !== uuid) throw new Error(`c: ${path} answered ${JSON.stringify(info).slice(0, 200)}`);
    }
    for (const concurrency of [1, 32]) {
      const agents = { direct: keepAliveAgent(concurrency), proxy: keepAliveAgent(concurrency), ref: keepAliveAgent(concurrency) };
      const parts: Record<PathName, LoadResult[]> = { direct: [], proxy: [], ref: [] };
      const cpu: Record<PathName, number> = { direct: 0, proxy: 0, ref: 0 };
      try {
        // Warm-up: connections opened, code paths hot.
        for (const path of PATHS) {
          await closedLoop(`${base[path]}/task/${uuid}/info`, { concurrency, warmupMs: ctx.quick ? 300 : 1000, durationMs: 1, agent: agents[path] });
        }
        for (let i = 0; i < slices; i++) {
          for (const path of PATHS.map((_, k) => PATHS[(k + i) % PATHS.length] ?? 'direct')) {
            const cpu0 = cpuMs(pid[path]);
            parts[path].push(await closedLoop(`${base[path]}/task/${uuid}/info`, { concurrency, warmupMs: 0, durationMs: sliceMs, agent: agents[path] }));
            cpu[path] += cpuMs(pid[path]) - cpu0;
          }
        }
      } finally {
        for (const a of Object.values(agents)) a.destroy();
      }
      const results = { direct: mergeLoads(parts.direct), proxy: mergeLoads(parts.proxy), ref: mergeLoads(parts.ref) };
      for (const path of PATHS) {
        const r = results[path];
        ctx.log(`  c: c=${concurrency} ${path}: ${fmt.int(r.rps)} req/s, p50 ${fmt.ms(r.p50)}, p99 ${fmt.ms(r.p99)}, max ${fmt.ms(r.max)}, errors ${r.errors}`);
        if (r.errors > 0) throw new Error(`c: ${r.errors} failed requests (${path}, concurrency ${concurrency})`);
      }
      const cpuPerReq = {
        direct: cpu.direct / results.direct.count,
        proxy: cpu.proxy / results.proxy.count,
        ref: cpu.ref / results.ref.count,
      };
      levels.push({ concurrency, results, cpuPerReq });
    }
  } finally {
    await rig.stop();
  }
  const rows: TableRow[] = [];
  const notes: string[] = [];
  for (const { concurrency, results, cpuPerReq } of levels) {
    const { direct, proxy, ref } = results;
    const ratio = proxy.rps / direct.rps;
    const overhead = proxy.p99 - direct.p99;
    const seconds = direct.windowMs / 1000;
    rows.push(
      {
        row: 'c',
        metric: `GET /task/<uuid>/info, concurrency ${concurrency}: throughput (${seconds} s per path, in 1 s turns)`,
        direct: `${fmt.int(direct.rps)} req/s`,
        proxy: `${fmt.int(proxy.rps)} req/s`,
        ratio: fmt.x(ratio),
        target: '≥ 0.80×',
        pass: ratio >= 0.8,
        ref: `${fmt.x(ref.rps / direct.rps)} (${fmt.int(ref.rps)} req/s)`,
      },
      {
        row: 'c',
        metric: `GET /task/<uuid>/info, concurrency ${concurrency}: latency p50 / p99`,
        direct: `${fmt.ms(direct.p50)} / ${fmt.ms(direct.p99)}`,
        proxy: `${fmt.ms(proxy.p50)} / ${fmt.ms(proxy.p99)}`,
        ratio: `p99 +${fmt.ms(overhead)}`,
        target: 'p99 overhead < 2 ms',
        pass: overhead < 2,
        ref: `p99 +${fmt.ms(ref.p99 - direct.p99)} (${fmt.ms(ref.p50)} / ${fmt.ms(ref.p99)})`,
      },
    );
    const us = (ms: number): string => `${(ms * 1000).toFixed(0)} µs`;
    notes.push(
      `c: concurrency ${concurrency}: CPU (user+sys) per request: ClusterODM ${us(cpuPerReq.proxy)}, bare proxy ${us(cpuPerReq.ref)} (forwarding only), test node ${us(cpuPerReq.direct)} (answering); one core forwards at most ~${fmt.int(1000 / cpuPerReq.proxy)} req/s through ClusterODM vs ~${fmt.int(1000 / cpuPerReq.ref)} through the bare proxy.`,
    );
  }
  return { rows, notes };
}
