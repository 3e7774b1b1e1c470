// Summarises V8 CPU profiles (.cpuprofile, e.g. from `npm run bench -- --cpu-prof-dir DIR`): where the time went,
// by function (self and inclusive time) and by package or source file.
// Run: node dist/bench/profile-summary.js <file.cpuprofile | dir> [--top N] [--match TEXT]
//   --match TEXT  only count samples whose stack contains a frame matching TEXT (e.g. --match forward)
//   --callers FN  where the self time of function FN (e.g. writeBuffer) comes from: its callers' stacks
import * as fs from 'node:fs';
import * as path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function where(cf: CallFrame): string {
  if (!cf.url) return '';
  const url = cf.url.replace(/^file:\/\//, '');
  const nm = url.lastIndexOf('node_modules/');
  const short = nm >= 0 ? url.slice(nm + 'node_modules/'.length) : url.includes('/dist/') ? url.slice(url.indexOf('/dist/') + 6) : url;
  return `${short}:${cf.lineNumber + 1}`;
}

function bucket(cf: CallFrame): string {
  const url = cf.url.replace(/^file:\/\//, '');
  if (!url) return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
  if (url.startsWith('node:')) return `node core: ${url.slice(5).split('/')[0] ?? ''}`;
  const nm = url.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return `npm: ${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : (rest[0] ?? '')}`;
  }
  if (url.includes('/dist/')) return `clusterodm: ${url.slice(url.indexOf('/dist/') + 6).replace(/\.js$/, '')}`;
  return url;
}

/** The distinct call paths (innermost 6 frames above the leaf) whose leaf is `fn`, by time. */
export function callers(file: string, fn: string, top: number): string {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const paths = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] ?? 0;
    if (byId.get(id)?.callFrame.functionName !== fn) continue;
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000;
    const frames: string[] = [];
    for (let cur = parent.get(id); cur !== undefined && frames.length < 6; cur = parent.get(cur)) {
      const cf = byId.get(cur)?.callFrame;
      if (cf) frames.push(`${cf.functionName || '(anonymous)'} ${where(cf)}`);
    }
    const key = frames.join(' < ');
    paths.set(key, (paths.get(key) ?? 0) + dt);
    total += dt;
  }
  return [
    `${file}: ${fn}: ${total.toFixed(0)} ms self time, called from:`,
    ...[...paths]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${v.toFixed(0).padStart(7)} ms  ${k}`),
  ].join('\n');
}

export function summarize(file: string, top: number, match: string | null): string {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const incl = new Map<string, number>();
  const buckets = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] ?? 0;
    const dt = (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0) / 1000;
    const leaf = byId.get(id);
    if (!leaf) continue;
    if (leaf.callFrame.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    const stack: CallFrame[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur);
      if (n && n.callFrame.functionName !== '(root)') stack.push(n.callFrame);
    }
    if (match && !stack.some((cf) => `${cf.functionName} ${cf.url}`.includes(match))) continue;
    total += dt;
    const key = (cf: CallFrame): string => `${cf.functionName || '(anonymous)'} ${where(cf)}`;
    self.set(key(leaf.callFrame), (self.get(key(leaf.callFrame)) ?? 0) + dt);
    const b = bucket(leaf.callFrame);
    buckets.set(b, (buckets.get(b) ?? 0) + dt);
    for (const k of new Set(stack.map(key))) incl.set(k, (incl.get(k) ?? 0) + dt);
  }
  const wall = (p.endTime - p.startTime) / 1000;
  const pct = (v: number): string => `${((v / total) * 100).toFixed(1).padStart(5)}%`;
  const list = (m: Map<string, number>): string[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${v.toFixed(0).padStart(7)} ms ${pct(v)}  ${k}`);
  return [
    `${file}: ${wall.toFixed(0)} ms profiled, ${total.toFixed(0)} ms busy${match ? ` in stacks matching "${match}"` : ''}, ${idle.toFixed(0)} ms idle`,
    'self time by package / file:',
    ...list(buckets),
    'self time by function:',
    ...list(self),
    'inclusive time by function:',
    ...list(incl),
  ].join('\n');
}

function main(argv: string[]): void {
  const topAt = argv.indexOf('--top');
  const matchAt = argv.indexOf('--match');
  const callersAt = argv.indexOf('--callers');
  const callersOf = callersAt >= 0 ? (argv[callersAt + 1] ?? null) : null;
  const top = topAt >= 0 ? Number(argv[topAt + 1]) : 25;
  const match = matchAt >= 0 ? (argv[matchAt + 1] ?? null) : null;
  const values = new Set([topAt, matchAt, callersAt].filter((i) => i >= 0).map((i) => i + 1));
  const target = argv.find((a, i) => !a.startsWith('--') && !values.has(i));
  if (!target) {
    console.error('Usage: node dist/bench/profile-summary.js <file.cpuprofile | dir> [--top N] [--match TEXT] [--callers FN]');
    process.exit(64);
  }
  const files = fs.statSync(target).isDirectory()
    ? fs.readdirSync(target, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(target, f))
    : [target];
  for (const f of files) console.log(`${callersOf ? callers(f, callersOf, top) : summarize(f, top, match)}\n`);
}

if (require.main === module) main(process.argv.slice(2));
