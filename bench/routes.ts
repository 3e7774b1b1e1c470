// Route table scale: how long 1,000,000 routes take to load, what adding a route costs at that size (against a
// 1,000-route table, adds taking turns), and what folding the journal into routes.json (compaction: at shutdown,
// and in the background every 10,000 journal lines) costs at that size, including how long it blocks the event loop.
// Run: npm run build && node dist/bench/routes.js [count]          (human-readable)
//      node dist/bench/routes.js --json [--dir DIR] [count]        (one JSON line; used by `npm run bench`, row e)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryLogger, systemClock } from '../src/core';
import { NodeRegistry, parseNodesFile, type NodeRecord } from '../src/nodes';
import { FileRouteStore, RouteTable } from '../src/routing';
import { JsonStateFile } from '../src/store';

export interface NodeSpec {
  hostname: string;
  /** A number or, as some deployments have it in nodes.json, a string. */
  port: number | string;
}

/** Two nodes, one with a string port, as an existing deployment might have. */
export const DEFAULT_NODES: readonly NodeSpec[] = [
  { hostname: 'node1', port: 3000 },
  { hostname: 'node2', port: '3001' },
];

export function nodesJson(nodes: readonly NodeSpec[]): string {
  return JSON.stringify(nodes.map((n) => ({ hostname: n.hostname, port: n.port, token: '' })));
}

export function uuid(i: number): string {
  const h = i.toString(16).padStart(12, '0');
  return `00000000-0000-4000-8000-${h}`;
}

/** A routes.json as an existing deployment would have, written in chunks so none of it stays in memory. */
export function writeRoutesFile(file: string, count: number, nodes: readonly NodeSpec[] = DEFAULT_NODES): void {
  const now = Date.now();
  const nodeText = nodes.map((n) => `{"hostname":${JSON.stringify(n.hostname)},"port":${JSON.stringify(n.port)},"token":""}`);
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, '{');
    for (let start = 0; start < count; start += 10_000) {
      const parts: string[] = [];
      for (let i = start; i < Math.min(count, start + 10_000); i++) {
        parts.push(`"${uuid(i)}":{"node":${nodeText[i % nodeText.length] ?? ''},"accessed":${now}}`);
      }
      fs.writeSync(fd, (start > 0 ? ',' : '') + parts.join(','));
    }
    fs.writeSync(fd, '}');
    // On disk before anything is measured: its writeback would otherwise slow the journal's fsyncs down.
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function open(dir: string, compactAfter?: number): Promise<{ routes: RouteTable; reg: NodeRegistry; ms: number }> {
  const logger = new MemoryLogger();
  const clock = systemClock;
  const reg = new NodeRegistry({
    store: new JsonStateFile<NodeRecord[]>({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }),
    clock,
    logger,
  });
  await reg.load();
  const started = process.hrtime.bigint();
  const store = new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger, ...(compactAfter ? { compactAfter } : {}) });
  const routes = new RouteTable({ store, clock, logger });
  await routes.load(reg);
  return { routes, reg, ms: Number(process.hrtime.bigint() - started) / 1e6 };
}

export interface AddCost {
  /** Routes in the table before the adds. */
  size: number;
  adds: number;
  p50Ms: number;
  meanMs: number;
  maxMs: number;
}

export interface RouteScale {
  count: number;
  fileMiB: number;
  loadMs: number;
  /** V8 heap used with the table loaded (after a GC when --expose-gc is on). */
  heapMiB: number;
  addSmall: AddCost;
  addLarge: AddCost;
  /** Compaction of the table (as at shutdown, and in the background every 10,000 journal lines). */
  compactMs: number;
  /** Longest event-loop stall during that compaction: the proxy answers nothing meanwhile. */
  compactStallMs: number;
}

/** Longest gap between ticks of a 1 ms timer while it runs: how long the event loop was blocked at once. */
class StallProbe {
  private last = performance.now();
  max = 0;
  private readonly timer = setInterval(() => {
    const t = performance.now();
    this.max = Math.max(this.max, t - this.last);
    this.last = t;
  }, 1);

  stop(): number {
    clearInterval(this.timer);
    this.max = Math.max(this.max, performance.now() - this.last);
    return this.max;
  }
}

function addCost(size: number, times: number[]): AddCost {
  const sorted = [...times].sort((a, b) => a - b);
  return {
    size,
    adds: times.length,
    p50Ms: sorted[Math.floor((sorted.length - 1) / 2)] ?? NaN,
    meanMs: times.reduce((s, t) => s + t, 0) / times.length,
    maxMs: sorted[sorted.length - 1] ?? NaN,
  };
}

async function timedAdd(routes: RouteTable, reg: NodeRegistry, id: string): Promise<number> {
  const node = reg.nth(1);
  if (!node) throw new Error('no node');
  const t0 = process.hrtime.bigint();
  await routes.add(id, node, 'tok');
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

async function tableDir(parent: string, name: string, count: number): Promise<string> {
  const dir = path.join(parent, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'nodes.json'), nodesJson(DEFAULT_NODES));
  writeRoutesFile(path.join(dir, 'routes.json'), count);
  return dir;
}

/**
 * Loads `count` routes, then adds routes to a 1,000-route table and to the `count`-route table in turn (so disk and
 * GC conditions are the same for both), then compacts the large table.
 */
export async function measureRouteScale(parent: string, count: number, adds = 200): Promise<RouteScale> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const smallDir = await tableDir(parent, 'small', 1000);
  const dir = await tableDir(parent, 'large', count);
  const fileMiB = fs.statSync(path.join(dir, 'routes.json')).size / 1024 / 1024;
  const small = await open(smallDir);
  gc?.();
  const large = await open(dir);
  gc?.();
  const heapMiB = process.memoryUsage().heapUsed / 1024 / 1024;
  const smallTimes: number[] = [];
  const largeTimes: number[] = [];
  for (let i = 0; i < adds; i++) {
    smallTimes.push(await timedAdd(small.routes, small.reg, uuid(1000 + i)));
    largeTimes.push(await timedAdd(large.routes, large.reg, uuid(count + i)));
  }
  await small.routes.flush();
  fs.rmSync(smallDir, { recursive: true, force: true });
  // Let the probe's timer tick once before the flush starts, so its first gap is not the flush itself.
  const probe = new StallProbe();
  await new Promise((resolve) => setTimeout(resolve, 5));
  const t0 = process.hrtime.bigint();
  await large.routes.flush();
  const compactMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const compactStallMs = probe.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  return {
    count,
    fileMiB,
    loadMs: large.ms,
    heapMiB,
    addSmall: addCost(1000, smallTimes),
    addLarge: addCost(count, largeTimes),
    compactMs,
    compactStallMs,
  };
}

async function main(argv: string[]): Promise<void> {
  const json = argv.includes('--json');
  const dirAt = argv.indexOf('--dir');
  const givenDir = dirAt >= 0 ? argv[dirAt + 1] : undefined;
  const positional = argv.filter((a, i) => !a.startsWith('--') && (dirAt < 0 || i !== dirAt + 1));
  const count = Number(positional[0] ?? 1_000_000);
  if (!Number.isInteger(count) || count < 1) throw new Error(`bad route count: ${positional[0] ?? ''}`);
  const parent = givenDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'clusterodm-bench-routes-'));
  fs.mkdirSync(parent, { recursive: true });
  try {
    const r = await measureRouteScale(parent, count);
    if (json) {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      return;
    }
    console.log(`routes: ${count} (${r.fileMiB.toFixed(0)} MiB routes.json), heap with table loaded: ${r.heapMiB.toFixed(0)} MiB`);
    console.log(`load: ${r.loadMs.toFixed(0)} ms`);
    for (const a of [r.addSmall, r.addLarge]) {
      console.log(
        `add at ${a.size} routes: p50 ${a.p50Ms.toFixed(2)} ms, mean ${a.meanMs.toFixed(2)} ms, max ${a.maxMs.toFixed(2)} ms (${a.adds} adds, taking turns with the other table; fsynced journal append, routes.json untouched)`,
      );
    }
    console.log(`compaction (shutdown; in the background every 10,000 journal lines): ${r.compactMs.toFixed(0)} ms, event loop blocked up to ${r.compactStallMs.toFixed(0)} ms`);
  } finally {
    if (givenDir === undefined) fs.rmSync(parent, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    // The route store's batched-touch timer would keep the process alive.
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
