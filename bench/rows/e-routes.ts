/**
 * Row e: a route table of 1,000,000 routes. The real daemon's start time with that routes.json (against an empty
 * one), and, in a separate process running bench/routes.ts, the table's load time, the cost of adding a route at
 * 1,000 vs 1,000,000 routes, and the cost of compacting it.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { keepAliveAgent, median, request } from '../lib/http';
import { stopChild, trackChild } from '../lib/cleanup';
import { memStatus, startDaemon, startTestNode, type TestNodeProc } from '../lib/procs';
import { fmt, type RowOutcome } from '../lib/report';
import { daemonFlags, type BenchContext } from '../lib/rig';
import { nodesJson, uuid, writeRoutesFile, type RouteScale } from '../routes';
import { rowERedis } from './e-redis';

const ROUTES_JS = path.resolve(__dirname, '..', 'routes.js');

/** bench/routes.ts --json in its own process (1M routes are ~150 MB of heap: not in the load generator's). */
function routeScale(dir: string, count: number): Promise<RouteScale> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', ROUTES_JS, '--json', '--dir', dir, String(count)], { stdio: ['ignore', 'pipe', 'pipe'] });
    trackChild(p);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => void stopChild(p, 1000), 10 * 60_000);
    p.once('exit', (code) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`routes.js exited with ${String(code)}: ${err}${out}`));
      try {
        resolve(JSON.parse(line) as RouteScale);
      } catch {
        reject(new Error(`routes.js printed no JSON: ${out}${err}`));
      }
    });
  });
}

/** Starts a daemon on a data dir holding `count` routes to `node`; returns its start and stop times. */
async function daemonWithRoutes(ctx: BenchContext, name: string, node: TestNodeProc, count: number) {
  const dir = path.join(ctx.root, name);
  const data = path.join(dir, 'data');
  fs.mkdirSync(data, { recursive: true });
  fs.writeFileSync(path.join(data, 'nodes.json'), nodesJson([{ hostname: '127.0.0.1', port: node.port }]));
  if (count > 0) writeRoutesFile(path.join(data, 'routes.json'), count, [{ hostname: '127.0.0.1', port: node.port }]);
  const daemon = await startDaemon({ name: `${name} daemon`, dir, nodeFlags: daemonFlags(ctx, name), timeoutMs: 120_000 });
  const agent = keepAliveAgent(4);
  try {
    const rss = memStatus(daemon.pid)?.rss ?? NaN;
    let routed = true;
    if (count > 0) {
      // A loaded route is forwarded to the node, which does not know the task: its own "not found" comes back.
      const probe = uuid(count - 1);
      const a = await request(`${daemon.url}/task/${probe}/info`, { agent });
      const text = a.body.toString('utf8');
      routed = text.includes(`${probe} not found`);
      if (!routed) ctx.log(`  e: route ${probe} was not forwarded: ${text.slice(0, 200)}`);
    }
    return { startMs: daemon.startMs, rss, routed, stopMs: await daemon.stop() };
  } finally {
    agent.destroy();
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export async function rowE(ctx: BenchContext): Promise<RowOutcome> {
  const count = ctx.quick ? 100_000 : 1_000_000;
  const scaleDir = path.join(ctx.root, 'e-route-table');
  const scale = await routeScale(scaleDir, count);
  fs.rmSync(scaleDir, { recursive: true, force: true });
  ctx.log(
    `  e: in-process: load ${fmt.ms(scale.loadMs)}, add p50 ${fmt.ms(scale.addSmall.p50Ms)} at 1,000 vs ${fmt.ms(scale.addLarge.p50Ms)} at ${fmt.int(count)}, compaction ${fmt.ms(scale.compactMs)}`,
  );
  const node = await startTestNode({ name: 'e test node', dir: path.join(ctx.root, 'e-node') });
  // Start times vary by several tenths of a second from run to run: the median of a few starts.
  const starts = ctx.quick ? 1 : 3;
  const emptyRuns: Awaited<ReturnType<typeof daemonWithRoutes>>[] = [];
  const bigRuns: Awaited<ReturnType<typeof daemonWithRoutes>>[] = [];
  let shared: RowOutcome;
  try {
    for (let i = 0; i < starts; i++) {
      emptyRuns.push(await daemonWithRoutes(ctx, `e-daemon-empty-${i + 1}`, node, 0));
      const r = await daemonWithRoutes(ctx, `e-daemon-routes-${i + 1}`, node, count);
      bigRuns.push(r);
      ctx.log(`  e: daemon start #${i + 1}: ${fmt.ms(emptyRuns[i]?.startMs ?? NaN)} with no routes, ${fmt.ms(r.startMs)} with ${fmt.int(count)}; stop ${fmt.ms(r.stopMs)}`);
    }
    shared = await rowERedis(ctx, node, count, starts);
  } finally {
    await node.stop();
  }
  const pick = (runs: typeof bigRuns) => ({
    startMs: median(runs.map((r) => r.startMs)),
    stopMs: median(runs.map((r) => r.stopMs)),
    rss: median(runs.map((r) => r.rss)),
    routed: runs.every((r) => r.routed),
    all: runs.map((r) => fmt.ms(r.startMs)).join(', '),
  });
  const empty = pick(emptyRuns);
  const big = pick(bigRuns);
  const n = fmt.int(count);
  const addRatio = scale.addLarge.p50Ms / scale.addSmall.p50Ms;
  // fsync times vary by a few tenths of a ms on their own: O(1) means no growth beyond 2× or +0.25 ms.
  const constant = scale.addLarge.p50Ms <= Math.max(2 * scale.addSmall.p50Ms, scale.addSmall.p50Ms + 0.25);
  return {
    rows: [
      {
        row: 'e',
        metric: `Daemon start (spawn → listening) with ${n} routes in routes.json (${scale.fileMiB.toFixed(0)} MiB)${starts > 1 ? `; median of ${starts} (${big.all})` : ''}`,
        direct: `${fmt.ms(empty.startMs)} with no routes`,
        proxy: `${fmt.ms(big.startMs)}${big.routed ? '' : ' (routes NOT served!)'}`,
        ratio: '—',
        target: '< 3 s',
        pass: big.startMs < 3000 && big.routed,
      },
      {
        row: 'e',
        metric: `Add a route (fsynced journal append), p50 of ${scale.addLarge.adds}: 1,000 routes vs ${n}`,
        direct: `${fmt.ms(scale.addSmall.p50Ms)} at 1,000`,
        proxy: `${fmt.ms(scale.addLarge.p50Ms)} at ${n}`,
        ratio: fmt.x(addRatio),
        target: 'O(1): ≤ 2× (or +0.25 ms)',
        pass: constant,
      },
      {
        row: 'e',
        metric: `Compaction of ${n} routes (shutdown, and every 10,000 journal lines): event loop blocked`,
        direct: '—',
        proxy: `${fmt.ms(scale.compactStallMs)} (of ${fmt.ms(scale.compactMs)})`,
        ratio: '—',
        target: '(no target)',
        pass: null,
      },
      ...shared.rows,
    ],
    notes: [
      `e: in-process RouteTable.load of ${n} routes: ${fmt.ms(scale.loadMs)} (V8 heap with the table: ${scale.heapMiB.toFixed(0)} MiB); daemon RSS after start: ${fmt.mb(big.rss)} with ${n} routes vs ${fmt.mb(empty.rss)} empty; daemon stop (SIGTERM → exit, includes writing routes.json): ${fmt.ms(big.stopMs)} vs ${fmt.ms(empty.stopMs)}.`,
      `e: add cost mean / max: ${fmt.ms(scale.addSmall.meanMs)} / ${fmt.ms(scale.addSmall.maxMs)} at 1,000; ${fmt.ms(scale.addLarge.meanMs)} / ${fmt.ms(scale.addLarge.maxMs)} at ${n}.`,
      ...shared.notes,
    ],
  };
}
