/**
 * A/B of two ClusterODM daemons (and two bare proxies) in front of one test node, in interleaved rounds: CPU per
 * request of GET /task/<uuid>/info at concurrency 1 and 32, and CPU per MiB of an all.zip download.
 *
 *   node dist/bench/client-ab.js                      node client: undici (shipped) vs node:http, for ClusterODM
 *                                                     and for the bare proxy (ref-proxy-undici.ts vs ref-proxy.ts)
 *   node dist/bench/client-ab.js --flags="--initial-heap-size=0"
 *                                                     V8 flags: the shipped NODE_FLAGS vs these after them
 *   --rounds N (default 6), --mib N (download size, default 128)
 *
 * CPU per unit, not rates: on a shared 2-core machine it is the steadier figure. Medians of the rounds are printed.
 */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { cleanupAll, installExitHandlers, makeRunDir } from './lib/cleanup';
import { closedLoop, download, keepAliveAgent, median, requestJson } from './lib/http';
import { addNode, cpuMs, startDaemon, startRefProxy, startTestNode, type Child } from './lib/procs';
import { MiB } from './lib/report';
import { createTask, rotated, waitOnNode } from './lib/rig';

interface Variant {
  label: string;
  url: string;
  proc: Child;
  /** A completed task this variant routes (each daemon its own: routes are per daemon). */
  uuid: string;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { flags: { type: 'string' }, rounds: { type: 'string' }, mib: { type: 'string' } } });
  const rounds = Number(values.rounds ?? 6);
  const mib = Number(values.mib ?? 128);
  const flags = (values.flags ?? '').split(/\s+/).filter((s) => s !== '');
  installExitHandlers(30 * 60_000);
  const root = makeRunDir();
  const node = await startTestNode({ name: 'test node', dir: path.join(root, 'node'), processingMs: 5, assetSize: mib * MiB });
  const variants: Variant[] = [];
  const daemon = async (label: string, o: { env?: NodeJS.ProcessEnv; nodeFlags?: string[] }): Promise<void> => {
    const d = await startDaemon({ name: label, dir: path.join(root, label.replace(/\W+/g, '-')), ...o });
    await addNode(d, node);
    variants.push({ label, url: d.url, proc: d, uuid: '' });
  };
  if (flags.length > 0) {
    await daemon('ClusterODM, shipped flags', {});
    await daemon(`ClusterODM + ${flags.join(' ')}`, { nodeFlags: flags });
  } else {
    await daemon('ClusterODM, undici', {});
    await daemon('ClusterODM, node:http', { env: { CLUSTERODM_TEST_TUNING: JSON.stringify({ forwardViaNodeHttp: 1 }) } });
    for (const [label, script] of [
      ['bare proxy, undici', path.join(__dirname, 'ref-proxy-undici.js')],
      ['bare proxy, node:http', path.join(__dirname, 'ref-proxy.js')],
    ] as const) {
      const p = await startRefProxy(label, node.port, root, [], script);
      variants.push({ label, url: p.url, proc: p, uuid: '' });
    }
  }
  const agent = keepAliveAgent(8);
  for (const v of variants) {
    const task = await createTask(v.url, agent, { images: 1, perUpload: 1, imageBytes: 1024 });
    await waitOnNode(node.url, agent, task.uuid, 1, { timeoutMs: 30_000, completed: true });
    v.uuid = task.uuid;
    const info = await requestJson(`${v.url}/task/${v.uuid}/info`, { agent });
    if (info['uuid'] !== v.uuid) throw new Error(`${v.label} answered ${JSON.stringify(info).slice(0, 200)}`);
  }
  const per = new Map<string, Record<string, number[]>>(variants.map((v) => [v.label, { c1: [], c32: [], dl: [] }]));
  console.log(`Node.js ${process.version}; ${rounds} rounds; variants: ${variants.map((v) => v.label).join(' | ')}`);
  for (const concurrency of [1, 32]) {
    const agents = new Map(variants.map((v) => [v.label, keepAliveAgent(concurrency)]));
    for (const v of variants) await closedLoop(`${v.url}/task/${v.uuid}/info`, { concurrency, warmupMs: 1000, durationMs: 1, agent: agents.get(v.label) });
    for (let i = 0; i < rounds; i++) {
      for (const v of rotated(variants, i)) {
        const c0 = cpuMs(v.proc.pid);
        const r = await closedLoop(`${v.url}/task/${v.uuid}/info`, { concurrency, warmupMs: 0, durationMs: 1000, agent: agents.get(v.label) });
        if (r.errors > 0) throw new Error(`${v.label}: ${r.errors} errors (${r.firstError ?? '?'})`);
        per.get(v.label)?.[`c${concurrency}`]?.push(((cpuMs(v.proc.pid) - c0) / r.count) * 1000);
      }
    }
    for (const a of agents.values()) a.destroy();
  }
  for (let i = 0; i < Math.max(3, Math.ceil(rounds / 2)) + 1; i++) {
    for (const v of rotated(variants, i)) {
      const c0 = cpuMs(v.proc.pid);
      const r = await download(`${v.url}/task/${v.uuid}/download/all.zip`, agent);
      if (r.bytes !== mib * MiB) throw new Error(`${v.label}: download of ${r.bytes} bytes`);
      if (i > 0) per.get(v.label)?.dl?.push((cpuMs(v.proc.pid) - c0) / mib);
    }
  }
  agent.destroy();
  console.log('\n| Variant | CPU per request, c=1 | c=32 | CPU per MiB downloaded |\n|---|---|---|---|');
  for (const v of variants) {
    const x = per.get(v.label) ?? {};
    const m = (k: string, d: number): string => `${median(x[k] ?? []).toFixed(d)} [${(x[k] ?? []).map((n) => n.toFixed(d)).join(' ')}]`;
    console.log(`| ${v.label} | ${m('c1', 0)} µs | ${m('c32', 0)} µs | ${m('dl', 2)} ms |`);
  }
}

main()
  .then(async () => {
    await cleanupAll();
    process.exit(0);
  })
  .catch(async (e: unknown) => {
    console.error(e);
    await cleanupAll();
    process.exit(1);
  });
