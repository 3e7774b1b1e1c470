/**
 * Row e, shared state: a daemon starting with 1,000,000 routes in Redis (--redis), which it reads after start in
 * the background (a lookup meanwhile is read on demand), and the round trip of that table out of Redis and back:
 * data/routes.json imported on the first start, then written back by --export-state, equal to what went in.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { keepAliveAgent, median, request } from '../lib/http';
import { trackChild } from '../lib/cleanup';
import { cpuMs, DAEMON_MAIN, memStatus, startDaemon, startTestNode, type Daemon, type TestNodeProc } from '../lib/procs';
import { loadLine } from '../lib/redis-rig';
import { startRedisServer, type BenchRedis } from '../lib/redis-server';
import { fmt, type RowOutcome } from '../lib/report';
import { daemonFlags, type BenchContext } from '../lib/rig';
import { nodesJson, uuid, writeRoutesFile } from '../routes';

/** The routes of `writeRoutesFile`, written straight into Redis as the shared state holds them. */
async function seedRoutes(redis: BenchRedis, count: number, node: TestNodeProc): Promise<void> {
  const c = await redis.client();
  await c.flushAll();
  await c.set('clusterodm:nodes', nodesJson([{ hostname: '127.0.0.1', port: node.port }]));
  const now = Date.now();
  const value = JSON.stringify({ node: `127.0.0.1:${node.port}`, accessed: now });
  for (let start = 0; start < count; start += 100_000) {
    const writes: Array<Promise<unknown>> = [];
    for (let b = start; b < Math.min(count, start + 100_000); b += 10_000) {
      const fields: Record<string, string> = {};
      for (let i = b; i < Math.min(count, b + 10_000); i++) fields[uuid(i)] = value;
      writes.push(c.hSet('clusterodm:routes', fields));
    }
    await Promise.all(writes);
  }
  await c.set('clusterodm:routes:imported', String(now));
}

/** Polls the daemon's log (a bench, not a test: no condition helper here). */
async function logged(d: Daemon, re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(d.output());
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`${d.name}: no ${String(re)} after ${timeoutMs} ms:\n${d.output().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startWithRoutesInRedis(ctx: BenchContext, name: string, redis: BenchRedis, count: number) {
  const dir = path.join(ctx.root, name);
  const daemon = await startDaemon({ name: `${name} daemon`, dir, nodeFlags: daemonFlags(ctx, name), args: ['--redis', redis.url], timeoutMs: 120_000 });
  // CPU the process used until it listened (read at once: the background fill has only begun), steadier than time.
  const cpuAtListen = cpuMs(daemon.pid);
  const agent = keepAliveAgent(4);
  try {
    // Right after start, before the fill is done: the route is read on demand and the request forwarded.
    const probe = uuid(count - 1);
    const a = await request(`${daemon.url}/task/${probe}/info`, { agent });
    const routed = a.body.toString('utf8').includes(`${probe} not found`);
    const m = await logged(daemon, /Loaded (\d+) routes \(read in the background in (\d+) ms\)/, 120_000);
    const filled = Number(m[1]) === count;
    return { startMs: daemon.startMs, cpuAtListen, fillMs: Number(m[2]), routed, filled, rss: memStatus(daemon.pid)?.rss ?? NaN };
  } finally {
    agent.destroy();
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function exportState(redisUrl: string, dir: string, out: string): Promise<{ ms: number; code: number | null; output: string }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const p = spawn(process.execPath, [DAEMON_MAIN, '--redis', redisUrl, '--data-dir', path.join(dir, 'data'), '--log-dir', dir, '--export-state', out], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackChild(p);
    let output = '';
    p.stdout.on('data', (d: Buffer) => (output += d.toString()));
    p.stderr.on('data', (d: Buffer) => (output += d.toString()));
    p.once('exit', (code) => resolve({ ms: Date.now() - started, code, output }));
  });
}

/** Same routes, same values, whatever the order (Redis keeps no order). */
function sameRoutes(a: string, b: string): boolean {
  const x = JSON.parse(fs.readFileSync(a, 'utf8')) as Record<string, unknown>;
  const y = JSON.parse(fs.readFileSync(b, 'utf8')) as Record<string, unknown>;
  const keys = Object.keys(x);
  if (keys.length !== Object.keys(y).length) return false;
  for (const k of keys) if (JSON.stringify(x[k]) !== JSON.stringify(y[k])) return false;
  return true;
}

async function roundTrip(ctx: BenchContext, redis: BenchRedis, node: TestNodeProc, count: number) {
  await (await redis.client()).flushAll();
  const dir = path.join(ctx.root, 'e-redis-import');
  const data = path.join(dir, 'data');
  fs.mkdirSync(data, { recursive: true });
  const nodes = [{ hostname: '127.0.0.1', port: node.port }];
  fs.writeFileSync(path.join(data, 'nodes.json'), nodesJson(nodes));
  const original = path.join(ctx.root, 'e-routes-original.json');
  writeRoutesFile(original, count, nodes);
  fs.copyFileSync(original, path.join(data, 'routes.json'));
  const daemon = await startDaemon({ name: 'e import daemon', dir, nodeFlags: daemonFlags(ctx, 'e-import'), args: ['--redis', redis.url], timeoutMs: 300_000 });
  const imported = new RegExp(`Imported ${count} routes `).test(daemon.output());
  await daemon.stop();
  const out = path.join(ctx.root, 'e-export');
  const exp = await exportState(redis.url, path.join(ctx.root, 'e-redis-export'), out);
  if (exp.code !== 0) throw new Error(`--export-state exited with ${String(exp.code)}:\n${exp.output}`);
  const equal = sameRoutes(original, path.join(out, 'routes.json'));
  for (const p of [dir, out, original, path.join(ctx.root, 'e-redis-export')]) fs.rmSync(p, { recursive: true, force: true });
  return { importMs: daemon.startMs, exportMs: exp.ms, imported, equal };
}

export async function rowERedis(ctx: BenchContext, node: TestNodeProc, count: number, starts: number): Promise<RowOutcome> {
  const redis = await startRedisServer(path.join(ctx.root, 'e-redis'));
  try {
    await seedRoutes(redis, count, node);
    const runs: Array<Awaited<ReturnType<typeof startWithRoutesInRedis>>> = [];
    for (let i = 0; i < starts; i++) {
      const r = await startWithRoutesInRedis(ctx, `e-redis-daemon-${i + 1}`, redis, count);
      runs.push(r);
      ctx.log(`  e: daemon start #${i + 1} with ${fmt.int(count)} routes in Redis: ${fmt.ms(r.startMs)}, background fill ${fmt.ms(r.fillMs)}`);
    }
    const startMs = median(runs.map((r) => r.startMs));
    const ok = runs.every((r) => r.routed && r.filled);
    const trip = await roundTrip(ctx, redis, node, count);
    const n = fmt.int(count);
    return {
      rows: [
        {
          row: 'e',
          metric: `Daemon start (spawn → listening) with ${n} routes in Redis (--redis; read after start)${starts > 1 ? `; median of ${starts} (${runs.map((r) => fmt.ms(r.startMs)).join(', ')})` : ''}`,
          direct: `fill ${fmt.ms(median(runs.map((r) => r.fillMs)))} after`,
          proxy: `${fmt.ms(startMs)}${ok ? '' : ' (routes NOT served!)'}`,
          ratio: '—',
          target: '< 1 s',
          pass: startMs < 1000 && ok,
        },
        {
          row: 'e',
          metric: `Round trip of ${n} routes: data/routes.json imported at the first --redis start, then --export-state`,
          direct: `import ${fmt.ms(trip.importMs)} (start)`,
          proxy: `export ${fmt.ms(trip.exportMs)}${trip.equal ? ', equal' : ', NOT equal!'}`,
          ratio: '—',
          target: 'equal',
          pass: trip.imported && trip.equal,
        },
      ],
      notes: [`e: daemon RSS once ${n} routes were read from Redis: ${fmt.mb(median(runs.map((r) => r.rss)))}.`],
    };
  } finally {
    await redis.stop();
  }
}

/**
 * Row g-start (issue #14 item 6): row e's Redis start alone, without the JSON-file part and the round trip: a
 * daemon started with 1,000,000 routes in Redis; the figure is spawn → the proxy and the admin CLI listening (their
 * "listening" log lines, written once `listen` has called back), and a probe right after is answered.
 */
export async function rowGStart(ctx: BenchContext): Promise<RowOutcome> {
  const count = ctx.quick ? 100_000 : 1_000_000;
  const starts = ctx.quick ? 1 : 3;
  const load0 = loadLine();
  const node = await startTestNode({ name: 'g-start test node', dir: path.join(ctx.root, 'g-start-node'), processingMs: 20 });
  const redis = await startRedisServer(path.join(ctx.root, 'g-start-redis')).catch(async (e: unknown) => {
    await node.stop();
    throw e;
  });
  const runs: Array<Awaited<ReturnType<typeof startWithRoutesInRedis>>> = [];
  // The same start with an empty Redis (just the node), taking turns: what start costs on this machine right now.
  const empty: number[] = [];
  const emptyCpu: number[] = [];
  const emptyRedis = await startRedisServer(path.join(ctx.root, 'g-start-redis-empty')).catch(async (e: unknown) => {
    await redis.stop();
    await node.stop();
    throw e;
  });
  try {
    await seedRoutes(emptyRedis, 0, node);
    const t0 = Date.now();
    await seedRoutes(redis, count, node);
    ctx.log(`  g-start: ${fmt.int(count)} routes written into Redis in ${fmt.ms(Date.now() - t0)}`);
    for (let i = 0; i < starts; i++) {
      const dir = path.join(ctx.root, `g-start-empty-${i + 1}`);
      const e = await startDaemon({ name: `g-start empty ${i + 1}`, dir, nodeFlags: daemonFlags(ctx, `g-start-empty-${i + 1}`), args: ['--redis', emptyRedis.url], timeoutMs: 120_000 });
      empty.push(e.startMs);
      emptyCpu.push(cpuMs(e.pid));
      await e.stop();
      fs.rmSync(dir, { recursive: true, force: true });
      const r = await startWithRoutesInRedis(ctx, `g-start-daemon-${i + 1}`, redis, count);
      runs.push(r);
      ctx.log(`  g-start: start #${i + 1}: listening after ${fmt.ms(r.startMs)}, CPU ${fmt.ms(r.cpuAtListen)} (empty Redis: ${fmt.ms(empty[i] ?? NaN)}, CPU ${fmt.ms(emptyCpu[i] ?? NaN)}); probe ${r.routed ? 'answered' : 'NOT answered'}; background fill ${fmt.ms(r.fillMs)}`);
    }
  } finally {
    await emptyRedis.stop();
    await redis.stop();
    await node.stop();
  }
  const startMs = median(runs.map((r) => r.startMs));
  const ok = runs.every((r) => r.routed && r.filled);
  return {
    rows: [
      {
        row: 'g-start',
        metric: `Instance start (spawn → proxy and admin CLI listening) with ${fmt.int(count)} routes in Redis; median of ${starts} (${runs.map((r) => fmt.ms(r.startMs)).join(', ')})`,
        direct: `empty Redis ${fmt.ms(median(empty))}; fill ${fmt.ms(median(runs.map((r) => r.fillMs)))} after`,
        proxy: `${fmt.ms(startMs)}${ok ? '' : ' (routes NOT served!)'}`,
        ratio: '—',
        target: '< 1 s',
        pass: startMs < 1000 && ok,
      },
    ],
    notes: [
      `g-start: CPU used by the instance until it listened (user + system, steadier than the time on a busy machine): ${fmt.ms(median(runs.map((r) => r.cpuAtListen)))} with ${fmt.int(count)} routes, ${fmt.ms(median(emptyCpu))} with an empty Redis (medians).`,
      `g-start: ${load0} at the start, ${loadLine()} at the end; RSS once the routes were read: ${fmt.mb(median(runs.map((r) => r.rss)))}.`],
  };
}
