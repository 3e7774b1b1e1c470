/**
 * Row c: GET /task/<uuid>/info under a closed-loop load at concurrency 1 and 32 (keep-alive agents, fixed
 * duration), straight to the node, through nginx, through the bare reference proxy (bench/ref-proxy.ts) and through
 * ClusterODM. The paths take turns in 1 s slices (rotating order), so a burst of background load hits all alike.
 */
import type * as http from 'node:http';
import { closedLoop, keepAliveAgent, mergeLoads, requestJson, type LoadResult } from '../lib/http';
import { fmt, type RowOutcome, type TableRow } from '../lib/report';
import { benchPaths, rotated, startRig, type BenchContext, type PathName } from '../lib/rig';
import { peerTargets } from './peers';
import { routedTask } from './shared';

interface Level {
  concurrency: number;
  results: Map<PathName, LoadResult>;
  /** CPU ms per request of the process that serves (direct: the node) or forwards (the others) it. */
  cpuPerReq: Map<PathName, number>;
}

export async function rowC(ctx: BenchContext): Promise<RowOutcome> {
  const sliceMs = 1000;
  const slices = ctx.quick ? 2 : 5;
  const rig = await startRig(ctx, 'c-info', {}, { refProxy: true });
  const paths = benchPaths(rig);
  const levels: Level[] = [];
  try {
    const uuid = await routedTask(rig, { completed: true });
    // Every path must answer the same thing: the node's info of that task.
    for (const p of paths) {
      const info = await requestJson(`${p.url}/task/${uuid}/info`, { agent: rig.agent });
      if (info['uuid'] !== uuid) throw new Error(`c: ${p.name} answered ${JSON.stringify(info).slice(0, 200)}`);
    }
    for (const concurrency of [1, 32]) {
      const agents = new Map<PathName, http.Agent>(paths.map((p) => [p.name, keepAliveAgent(concurrency)]));
      const parts = new Map<PathName, LoadResult[]>(paths.map((p) => [p.name, []]));
      const cpu = new Map<PathName, number>(paths.map((p) => [p.name, 0]));
      try {
        // Warm-up: connections opened, code paths hot.
        for (const p of paths) {
          await closedLoop(`${p.url}/task/${uuid}/info`, { concurrency, warmupMs: ctx.quick ? 300 : 1000, durationMs: 1, agent: agents.get(p.name) as http.Agent });
        }
        for (let i = 0; i < slices; i++) {
          for (const p of rotated(paths, i)) {
            const cpu0 = p.cpu();
            parts.get(p.name)?.push(await closedLoop(`${p.url}/task/${uuid}/info`, { concurrency, warmupMs: 0, durationMs: sliceMs, agent: agents.get(p.name) as http.Agent }));
            cpu.set(p.name, (cpu.get(p.name) ?? 0) + p.cpu() - cpu0);
          }
        }
      } finally {
        for (const a of agents.values()) a.destroy();
      }
      const results = new Map<PathName, LoadResult>();
      const cpuPerReq = new Map<PathName, number>();
      for (const p of paths) {
        const r = mergeLoads(parts.get(p.name) ?? []);
        results.set(p.name, r);
        cpuPerReq.set(p.name, (cpu.get(p.name) ?? NaN) / r.count);
        ctx.log(`  c: c=${concurrency} ${p.name}: ${fmt.int(r.rps)} req/s, p50 ${fmt.ms(r.p50)}, p99 ${fmt.ms(r.p99)}, max ${fmt.ms(r.max)}, errors ${r.errors}`);
        if (r.errors > 0) throw new Error(`c: ${r.errors} failed requests (${p.name}, concurrency ${concurrency}; the first: ${r.firstError ?? '?'})`);
      }
      levels.push({ concurrency, results, cpuPerReq });
    }
  } finally {
    await rig.stop();
  }
  const rows: TableRow[] = [];
  const notes: string[] = [];
  const us = (ms: number): string => `${(ms * 1000).toFixed(0)} µs`;
  for (const { concurrency, results, cpuPerReq } of levels) {
    const direct = results.get('direct') as LoadResult;
    const proxy = results.get('proxy') as LoadResult;
    const ratio = proxy.rps / direct.rps;
    const overhead = proxy.p99 - direct.p99;
    const seconds = direct.windowMs / 1000;
    const perReq = (name: PathName): number => cpuPerReq.get(name) ?? NaN;
    const peer = (name: PathName, what: 'rps' | 'p99'): string | undefined => {
      const r = results.get(name);
      if (!r) return undefined;
      return what === 'rps'
        ? `${fmt.x(r.rps / direct.rps)} (${fmt.int(r.rps)} req/s; CPU ${us(perReq(name))} per request)`
        : `p99 +${fmt.ms(r.p99 - direct.p99)} (${fmt.ms(r.p50)} / ${fmt.ms(r.p99)})`;
    };
    const nginx = results.get('nginx');
    rows.push(
      {
        row: 'c',
        metric: `GET /task/<uuid>/info, concurrency ${concurrency}: throughput (${seconds} s per path, in 1 s turns)`,
        direct: `${fmt.int(direct.rps)} req/s`,
        proxy: `${fmt.int(proxy.rps)} req/s (CPU ${us(perReq('proxy'))} per request)`,
        ratio: fmt.x(ratio),
        target: '≥ 0.80×',
        pass: ratio >= 0.8,
        ref: peer('ref', 'rps'),
        nginx: peer('nginx', 'rps'),
      },
      {
        row: 'c',
        metric: `GET /task/<uuid>/info, concurrency ${concurrency}: latency p50 / p99`,
        direct: `${fmt.ms(direct.p50)} / ${fmt.ms(direct.p99)}`,
        proxy: `${fmt.ms(proxy.p50)} / ${fmt.ms(proxy.p99)}`,
        ratio: `p99 +${fmt.ms(overhead)}`,
        target: 'p99 overhead < 2 ms',
        pass: overhead < 2,
        ref: peer('ref', 'p99'),
        nginx: peer('nginx', 'p99'),
      },
      ...peerTargets(
        'c',
        `task info, concurrency ${concurrency}`,
        { proxy: perReq('proxy'), ref: perReq('ref'), unit: (ms) => `${us(ms)} per request`, max: 0.85 },
        { proxy: ratio, nginx: nginx ? nginx.rps / direct.rps : null, factor: 0.8 },
      ),
    );
    notes.push(
      `c: concurrency ${concurrency}: CPU (user+sys) per request: ${paths.map((p) => `${p.label} ${us(perReq(p.name))}`).join(', ')} (direct: the test node answering; the others: forwarding only); one core forwards at most ~${fmt.int(1000 / perReq('proxy'))} req/s through ClusterODM.`,
    );
  }
  return { rows, notes };
}
