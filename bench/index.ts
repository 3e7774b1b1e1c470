/**
 * `npm run bench`: ClusterODM vs a NodeODM node, side by side, on loopback (issue #6 item 1).
 *
 *   npm run bench                       full run (a few minutes; row d moves 2 × 10 GiB through the disk)
 *   npm run bench -- --quick            smaller sizes, a smoke run of well under a minute
 *   npm run bench -- --only a,c         some rows only
 *   npm run bench -- --cpu-prof-dir DIR each daemon writes a V8 CPU profile to DIR/<row>/ (kept)
 *   npm run bench -- --daemon-node-flags="--max-semi-space-size=64"   extra node flags for the daemons (note the =)
 *   npm run bench -- --d-mib 512        per-client upload size of row d's large run (default 1024; 64 with --quick)
 *   npm run bench -- --wait-quiet 300   before each row, wait up to 300 s while other processes keep the CPU busy
 *                                       (default 180; 0 with --quick). Each row reports how busy they kept it.
 *
 * Rows: a whole task, b download, c /task/<uuid>/info load, d peak RSS under 10 uploads, e 1M-route table,
 * f small tasks on a mixed cluster (bytes and tasks sent twice), g-* Redis mode (--redis) against JSON-file mode:
 * g-info task info load, g-task whole task, g-start start with 1M routes in Redis, g-lb two instances behind nginx
 * vs one (`--only g` for the four).
 * Every process, port and file the bench makes lives under one temp dir and is removed at the end, on error,
 * on Ctrl-C and at the hard deadline.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { cleanupAll, installExitHandlers, makeRunDir, sweepStale } from './lib/cleanup';
import { CpuWatch, describeShare, waitForQuiet } from './lib/noise';
import { machineLines, markdownTable, type RowOutcome, type TableRow } from './lib/report';
import type { BenchContext } from './lib/rig';
import { rowA } from './rows/a-task';
import { rowB } from './rows/b-download';
import { rowC } from './rows/c-info';
import { rowD } from './rows/d-memory';
import { rowE } from './rows/e-routes';
import { rowF } from './rows/f-mixed';
import { rowGStart } from './rows/e-redis';
import { rowGLb } from './rows/g-lb';
import { rowGInfo, rowGTask } from './rows/g-redis';

const USAGE = `Usage: npm run bench -- [--quick] [--only a,b,c,d,e,f,g,g-info,g-task,g-start,g-lb] [--cpu-prof-dir DIR] [--daemon-node-flags="FLAGS"] [--d-mib N] [--wait-quiet SECONDS]`;

/** Other processes using more than this share of the machine during a row mark its numbers as disturbed. */
const NOISY_SHARE = 0.1;

const ROWS = ['a', 'b', 'c', 'd', 'e', 'f', 'g-info', 'g-task', 'g-start', 'g-lb'] as const;
/** `--only g`: every Redis-mode row. */
const GROUPS: Record<string, readonly string[]> = { g: ['g-info', 'g-task', 'g-start', 'g-lb'] };
type RowId = (typeof ROWS)[number];

const TITLES: Record<RowId, string> = {
  a: 'whole task, proxy vs direct',
  b: 'all.zip download, proxy vs direct',
  c: '/task/<uuid>/info load, proxy vs direct',
  d: 'ClusterODM peak RSS under 10 concurrent uploads',
  e: 'route table of 1,000,000 routes',
  f: 'small tasks on a mixed cluster: bytes and tasks sent twice',
  'g-info': 'Redis mode vs JSON-file mode: /task/<uuid>/info load',
  'g-task': 'Redis mode vs JSON-file mode: whole task',
  'g-start': 'Redis mode: instance start with 1,000,000 routes in Redis',
  'g-lb': 'Redis mode: two instances behind nginx vs one',
};

interface Flags {
  quick: boolean;
  only: RowId[];
  profileDir: string | null;
  daemonNodeFlags: string[];
  dMiB: number | null;
  waitQuietMs: number;
}

function parseFlags(argv: string[]): Flags | 'help' {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      only: { type: 'string' },
      'cpu-prof-dir': { type: 'string' },
      'daemon-node-flags': { type: 'string' },
      'd-mib': { type: 'string' },
      'wait-quiet': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  const only = (values.only ?? ROWS.join(','))
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '')
    .flatMap((s) => GROUPS[s] ?? [s]);
  for (const r of only) if (!(ROWS as readonly string[]).includes(r)) throw new Error(`--only: unknown row "${r}" (rows: ${ROWS.join(', ')})`);
  let dMiB: number | null = null;
  if (values['d-mib'] !== undefined) {
    dMiB = Number(values['d-mib']);
    if (!Number.isInteger(dMiB) || dMiB < 4) throw new Error(`--d-mib expects an integer ≥ 4, got "${values['d-mib']}"`);
  }
  const waitQuiet = Number(values['wait-quiet'] ?? (values.quick ? 0 : 180));
  if (!Number.isFinite(waitQuiet) || waitQuiet < 0) throw new Error(`--wait-quiet expects seconds ≥ 0, got "${values['wait-quiet'] ?? ''}"`);
  return {
    waitQuietMs: waitQuiet * 1000,
    quick: values.quick === true,
    only: ROWS.filter((r) => only.includes(r)),
    profileDir: values['cpu-prof-dir'] ? path.resolve(values['cpu-prof-dir']) : null,
    daemonNodeFlags: (values['daemon-node-flags'] ?? '').split(/\s+/).filter((s) => s !== ''),
    dMiB,
  };
}

async function run(flags: Flags): Promise<number> {
  const stale = sweepStale();
  for (const d of stale) console.log(`(removed ${d}, left by an earlier bench that was killed)`);
  const root = makeRunDir();
  const started = Date.now();
  const ctx: BenchContext = {
    root,
    quick: flags.quick,
    daemonNodeFlags: flags.daemonNodeFlags,
    profileDir: flags.profileDir,
    log: (line) => console.log(line),
  };
  console.log(`ClusterODM bench${flags.quick ? ' (--quick)' : ''}: rows ${flags.only.join(', ')}; temp dir ${root}`);
  if (flags.profileDir) console.log(`CPU profiles of the daemons go to ${flags.profileDir}/<row>/`);
  const table: TableRow[] = [];
  const notes: string[] = [];
  const failures: string[] = [];
  for (const id of flags.only) {
    console.log(`\n[${id}] ${TITLES[id]}`);
    if (flags.waitQuietMs > 0) await waitForQuiet(flags.waitQuietMs, 0.25, ctx.log);
    const t0 = Date.now();
    const watch = new CpuWatch();
    let outcome: RowOutcome;
    try {
      if (id === 'a') outcome = await rowA(ctx);
      else if (id === 'b') outcome = await rowB(ctx);
      else if (id === 'c') outcome = await rowC(ctx);
      else if (id === 'd') outcome = await rowD(ctx, flags.dMiB);
      else if (id === 'e') outcome = await rowE(ctx);
      else if (id === 'f') outcome = await rowF(ctx);
      else if (id === 'g-info') outcome = await rowGInfo(ctx);
      else if (id === 'g-task') outcome = await rowGTask(ctx);
      else if (id === 'g-start') outcome = await rowGStart(ctx);
      else outcome = await rowGLb(ctx);
    } catch (e: unknown) {
      const msg = e instanceof Error ? (e.stack ?? e.message) : String(e);
      console.error(`[${id}] failed: ${msg}`);
      failures.push(id);
      table.push({ row: id, metric: TITLES[id], direct: '—', proxy: '—', ratio: '—', target: '—', pass: false, error: true });
      notes.push(`${id}: ERROR ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
      continue;
    }
    const share = watch.read();
    const noisy = share.foreignCores / share.cores > NOISY_SHARE;
    table.push(...outcome.rows.map((r) => (noisy ? { ...r, row: `${r.row} ⚠` } : r)));
    notes.push(...outcome.notes, `${id}: during this row ${describeShare(share)}${noisy ? ' ⚠ numbers disturbed by other processes' : ''}.`);
    console.log(`[${id}] done in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${describeShare(share)}`);
  }

  console.log('\n## Results\n');
  console.log(markdownTable(table));
  if (notes.length > 0) {
    console.log('\nNotes:\n');
    for (const n of notes) console.log(`- ${n}`);
  }
  console.log('\nMachine:\n');
  for (const l of machineLines()) console.log(l);
  const failed = table.filter((r) => r.pass === false && !r.error).length;
  console.log(
    `\n${flags.quick ? 'Quick run (smaller sizes: not the targets\' conditions). ' : ''}${table.filter((r) => r.pass === true).length} passed, ${failed} failed${failures.length ? `, ${failures.length} errored (rows ${failures.join(', ')})` : ''}; ${((Date.now() - started) / 1000).toFixed(0)} s.`,
  );
  // Failing targets are results, not errors of the bench: only a row that could not run fails the command.
  return failures.length > 0 ? 1 : 0;
}

async function main(): Promise<void> {
  let flags: Flags | 'help';
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (e: unknown) {
    console.error(e instanceof Error ? e.message : String(e));
    console.error(USAGE);
    process.exit(64);
  }
  if (flags === 'help') {
    console.log(USAGE);
    return;
  }
  // A hard bound whatever happens: --quick is meant to end within a minute, a full run within minutes.
  installExitHandlers(flags.quick ? 120_000 : 45 * 60_000);
  if (os.platform() !== 'linux') console.warn('bench: /proc is needed for rows c, d (RSS, CPU): Linux only');
  let code = 1;
  try {
    code = await run(flags);
  } finally {
    await cleanupAll();
  }
  process.exit(code);
}

void main();
