// Route table scale: how long 1,000,000 routes take to load, and what adding a route costs at that size.
// Run: npm run build && node dist/bench/routes.js [count]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MemoryLogger, systemClock } from '../src/core';
import { NodeRegistry, parseNodesFile, type NodeRecord } from '../src/nodes';
import { FileRouteStore, RouteTable } from '../src/routing';
import { JsonStateFile } from '../src/store';

async function open(dir: string): Promise<{ routes: RouteTable; reg: NodeRegistry; ms: number }> {
  const logger = new MemoryLogger();
  const clock = systemClock;
  const reg = new NodeRegistry({
    store: new JsonStateFile<NodeRecord[]>({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock }),
    clock,
    logger,
  });
  await reg.load();
  const started = process.hrtime.bigint();
  const routes = new RouteTable({ store: new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger }), clock, logger });
  await routes.load(reg);
  return { routes, reg, ms: Number(process.hrtime.bigint() - started) / 1e6 };
}

function uuid(i: number): string {
  const h = i.toString(16).padStart(12, '0');
  return `00000000-0000-4000-8000-${h}`;
}

/** A routes.json as an existing deployment would have, written in chunks so none of it stays in memory. */
function writeRoutesFile(file: string, count: number): void {
  const now = Date.now();
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, '{');
  for (let start = 0; start < count; start += 10_000) {
    const parts: string[] = [];
    for (let i = start; i < Math.min(count, start + 10_000); i++) {
      parts.push(`"${uuid(i)}":{"node":{"hostname":"node${(i % 2) + 1}","port":${i % 2 ? '"3001"' : 3000},"token":""},"accessed":${now}}`);
    }
    fs.writeSync(fd, (start > 0 ? ',' : '') + parts.join(','));
  }
  fs.writeSync(fd, '}');
  fs.closeSync(fd);
}

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 1_000_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clusterodm-bench-routes-'));
  try {
    fs.writeFileSync(path.join(dir, 'nodes.json'), '[{"hostname":"node1","port":3000,"token":""},{"hostname":"node2","port":"3001","token":""}]');
    writeRoutesFile(path.join(dir, 'routes.json'), count);
    const size = fs.statSync(path.join(dir, 'routes.json')).size;
    const { routes, reg, ms } = await open(dir);
    const node = reg.nth(1);
    if (!node) throw new Error('no node');
    const adds = 200;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < adds; i++) await routes.add(uuid(count + i), node, 'tok');
    const perAdd = Number(process.hrtime.bigint() - t0) / 1e6 / adds;
    const journal = fs.statSync(path.join(dir, 'routes.json.journal')).size;
    console.log(`routes: ${routes.size()} (${(size / 1e6).toFixed(0)} MB routes.json)`);
    console.log(`load: ${ms.toFixed(0)} ms`);
    console.log(`add: ${perAdd.toFixed(2)} ms per route (fsynced journal append of ~${Math.round(journal / adds)} bytes; routes.json untouched)`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  // The route store's batched-touch timer would keep the process alive.
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
