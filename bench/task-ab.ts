/**
 * Row a as an A/B: the whole task of row a (init, uploads, commit, until the node holds every image) through two
 * ClusterODM daemons and the bare reference proxy in front of one test node, in interleaved rounds, with each hop's
 * CPU per task split by thread (main thread, libuv's thread pool, V8's helper threads) from /proc/<pid>/task.
 *
 *   node dist/bench/task-ab.js --a /other/checkout/dist     A = that build's daemon, B = this build's
 *   node dist/bench/task-ab.js --flags-b="--single-threaded-gc"   A and B: this build, B with these node flags
 *   --env-b NAME=VALUE (repeatable): environment of B's daemon
 *   --ref-staged: also the bare proxy that writes each request body to a file (ref-proxy-staged.ts)
 *   --env-ref2 NAME=VALUE (repeatable): a second bare proxy, with this environment
 *   --flags-a / --flags-ref: node flags of A / of the bare proxy (e.g. --perf-basic-prof for `perf record -p`)
 *   --rounds N (default 8), --images N, --per-upload N, --mib-per-image X
 *
 * The window of each task is that of row a (from init until the node's own /task/<uuid>/info shows every image);
 * "settled" adds what the daemon does after it (the route, removing the staged files), until its staging dir is gone.
 * CPU per task, not times: on a shared 2-core machine it is the steadier figure. Medians of the rounds are printed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { cleanupAll, installExitHandlers, makeRunDir } from './lib/cleanup';
import { keepAliveAgent, median, now, sleep } from './lib/http';
import { CpuWatch, describeShare } from './lib/noise';
import { addNode, minorFaults, startDaemon, startRefProxy, startTestNode, type Child } from './lib/procs';
import { MiB } from './lib/report';
import { createTask, removeTask, rotated, waitOnNode, type TaskShape } from './lib/rig';

/** CPU ms so far of each thread group of a process: user + system from /proc/<pid>/task/<tid>/stat. */
type Threads = Record<string, number>;

const HZ = 100;

/**
 * Node.js 20 names every thread "node"; they are told apart by creation order (tids ascend): the main thread, V8's
 * delayed-task thread and its worker pool (4: --v8-pool-size), the signal/inspector I/O thread, then libuv's thread
 * pool, created on its first use. Newer versions name them ("V8 DefaultWorke", "libuv-worker"): names win.
 */
function threadGroups(pid: number, tids: number[], comms: Map<number, string>): Map<number, string> {
  const out = new Map<number, string>();
  const sorted = [...tids].sort((x, y) => x - y);
  sorted.forEach((tid, rank) => {
    const comm = comms.get(tid) ?? '';
    if (tid === pid) out.set(tid, 'main');
    else if (/^V8 /.test(comm)) out.set(tid, 'v8');
    else if (/libuv/.test(comm)) out.set(tid, 'pool');
    else if (comm !== 'node') out.set(tid, 'other');
    else out.set(tid, rank <= 5 ? 'v8' : rank === 6 ? 'other' : 'pool');
  });
  return out;
}

function threads(pid: number): Threads {
  const out: Threads = {};
  let tids: number[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`).map(Number);
  } catch {
    return out;
  }
  const comms = new Map<number, string>();
  const ms = new Map<number, number>();
  for (const t of tids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      comms.set(t, stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')));
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ms.set(t, ((Number(f[11]) + Number(f[12])) * 1000) / HZ);
    } catch {
      // the thread ended
    }
  }
  const groups = threadGroups(pid, [...ms.keys()], comms);
  for (const [t, v] of ms) {
    const g = groups.get(t) ?? 'other';
    out[g] = (out[g] ?? 0) + v;
  }
  return out;
}

function minus(a: Threads, b: Threads): Threads {
  const out: Threads = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) out[k] = (a[k] ?? 0) - (b[k] ?? 0);
  return out;
}

function total(t: Threads): number {
  return Object.values(t).reduce((s, v) => s + v, 0);
}

interface Variant {
  label: string;
  url: string;
  proc: Child;
  /** The daemon's staging dir (null: the bare proxy). */
  tmp: string | null;
  window: Threads[];
  settled: number[];
  faults: number[];
}

async function gone(dir: string, timeoutMs: number): Promise<void> {
  const deadline = now() + timeoutMs;
  while (fs.existsSync(dir)) {
    if (now() > deadline) throw new Error(`${dir} still there after ${timeoutMs} ms`);
    await sleep(5);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      a: { type: 'string' },
      'flags-a': { type: 'string' },
      'flags-b': { type: 'string' },
      rounds: { type: 'string' },
      images: { type: 'string' },
      'per-upload': { type: 'string' },
      'mib-per-image': { type: 'string' },
      'flags-ref': { type: 'string' },
      'env-b': { type: 'string', multiple: true },
      'env-ref2': { type: 'string', multiple: true },
      'no-ref': { type: 'boolean' },
      'ref-staged': { type: 'boolean' },
    },
  });
  const rounds = Number(values.rounds ?? 8);
  const shape: TaskShape = {
    images: Number(values.images ?? 40),
    perUpload: Number(values['per-upload'] ?? 10),
    imageBytes: Math.round(Number(values['mib-per-image'] ?? 2.5) * MiB),
  };
  const split = (s: string | undefined): string[] => (s ?? '').split(/\s+/).filter((x) => x !== '');
  installExitHandlers(40 * 60_000);
  const root = makeRunDir();
  const node = await startTestNode({ name: 'test node', dir: path.join(root, 'node'), processingMs: 20, maxParallelTasks: 4 });
  const variants: Variant[] = [];
  const aMain = values.a ? path.join(path.resolve(values.a), 'test', 'helpers', 'daemon-main.js') : undefined;
  const envB = Object.fromEntries((values['env-b'] ?? []).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  for (const [label, main, flags, env] of [
    [`A${values.a ? ` (${values.a})` : ''}${values['flags-a'] ? ` ${values['flags-a']}` : ''}`, aMain, split(values['flags-a']), {}],
    [`B (this build)${values['flags-b'] ? ` ${values['flags-b']}` : ''}${values['env-b'] ? ` ${values['env-b'].join(' ')}` : ''}`, undefined, split(values['flags-b']), envB],
  ] as const) {
    const dir = path.join(root, label.slice(0, 1));
    const d = await startDaemon({ name: label, dir, nodeFlags: [...flags], env, ...(main ? { main } : {}) });
    await addNode(d, node);
    variants.push({ label, url: d.url, proc: d, tmp: path.join(dir, 'tmp'), window: [], settled: [], faults: [] });
  }
  if (!values['no-ref']) {
    const ref = await startRefProxy('bare proxy', node.port, root, split(values['flags-ref']));
    variants.push({ label: 'bare proxy', url: ref.url, proc: ref, tmp: null, window: [], settled: [], faults: [] });
  }
  if (values['ref-staged']) {
    const staged = await startRefProxy('bare proxy + copy on disk', node.port, root, split(values['flags-ref']), path.join(__dirname, 'ref-proxy-staged.js'));
    variants.push({ label: 'bare proxy + copy on disk', url: staged.url, proc: staged, tmp: null, window: [], settled: [], faults: [] });
  }
  if (values['env-ref2']) {
    const env = Object.fromEntries(values['env-ref2'].map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
    const ref2 = await startRefProxy('bare proxy 2', node.port, root, split(values['flags-ref']), undefined, { ...process.env, ...env });
    variants.push({ label: `bare proxy ${values['env-ref2'].join(' ')}`, url: ref2.url, proc: ref2, tmp: null, window: [], settled: [], faults: [] });
  }
  const agent = keepAliveAgent(64);
  console.log(`pids: ${variants.map((v) => `${v.label} ${v.proc.pid}`).join(', ')}; test node ${node.pid}`);
  console.log(
    `Node.js ${process.version}; ${rounds} rounds (+1 warm-up) of ${shape.images} × ${(shape.imageBytes / MiB).toFixed(1)} MiB in uploads of ${shape.perUpload}; ${variants.map((v) => v.label).join(' | ')}`,
  );
  const watch = new CpuWatch();
  for (let i = 0; i <= rounds; i++) {
    for (const v of rotated(variants, i)) {
      const pid = v.proc.pid;
      const f0 = minorFaults(pid);
      const t0 = threads(pid);
      const task = await createTask(v.url, agent, shape);
      await waitOnNode(node.url, agent, task.uuid, shape.images, { timeoutMs: 300_000 });
      const t1 = threads(pid);
      const faults = minorFaults(pid) - f0;
      if (v.tmp) await gone(path.join(v.tmp, task.uuid), 60_000);
      const t2 = threads(pid);
      await removeTask(node.url, agent, task.uuid);
      if (i === 0) continue;
      const w = minus(t1, t0);
      v.window.push(w);
      v.settled.push(total(minus(t2, t0)));
      v.faults.push(faults);
      console.log(
        `  #${i} ${v.label}: ${total(w).toFixed(0)} ms (${Object.entries(w).map(([k, ms]) => `${k} ${ms.toFixed(0)}`).join(', ')}); settled ${total(minus(t2, t0)).toFixed(0)} ms; ${faults} minor faults`,
      );
    }
  }
  console.log(`\nLoad: ${describeShare(watch.read())}.`);
  console.log('CPU per task, median of the rounds (ms): window [main / pool / v8 / other] ; settled ; minor page faults');
  const ref = variants.find((v) => v.label === 'bare proxy');
  const refMed = ref ? median(ref.window.map(total)) : NaN;
  for (const v of variants) {
    const med = (k: string): number => median(v.window.map((w) => w[k] ?? 0));
    const others = v.window.map((w) => total(w) - (w['main'] ?? 0) - (w['pool'] ?? 0) - (w['v8'] ?? 0));
    const m = median(v.window.map(total));
    console.log(
      `  ${v.label}: ${m.toFixed(0)} [${med('main').toFixed(0)} / ${med('pool').toFixed(0)} / ${med('v8').toFixed(0)} / ${median(others).toFixed(0)}] ; ${median(v.settled).toFixed(0)} ; ${median(v.faults).toFixed(0)}${ref && v !== ref ? `  (${(m / refMed).toFixed(2)}× the bare proxy)` : ''}`,
    );
  }
  // A task whose copy for the node was dropped, or that was sent again at commit, costs the daemon a re-read of its
  // files: such rounds are outliers of CPU per task, and the daemon says so in its log.
  for (const v of variants) {
    if (v.tmp === null) continue;
    const notes = v.proc
      .output()
      .split('\n')
      .filter((l) => /\b(warn|error)\b/i.test(l) && !l.includes('No admin password'));
    if (notes.length > 0) console.log(`  ${v.label}: ${notes.length} warnings/errors in its log, e.g. ${notes.slice(0, 3).join(' | ').slice(0, 600)}`);
  }
  const [a, b] = variants;
  if (a && b) {
    const pairs = a.window.map((w, k) => total(b.window[k] ?? {}) - total(w));
    console.log(`  B − A per round: ${pairs.map((x) => x.toFixed(0)).join(' ')} ms (B lower in ${pairs.filter((x) => x < 0).length} of ${pairs.length})`);
  }
  agent.destroy();
  await cleanupAll();
  process.exit(0);
}

main().catch(async (e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  await cleanupAll();
  process.exit(1);
});
