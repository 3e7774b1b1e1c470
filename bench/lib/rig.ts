/**
 * A test node and a ClusterODM daemon in front of it (node added through the admin CLI), plus the NodeODM task
 * calls the rows make: init / upload / commit, waiting for a task on the node, removing it.
 */
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import { formBody, keepAliveAgent, multipartBody, request, requestJson, sleep, now, type FileSpec } from './http';
import { startNginx, type NginxProc } from './nginx';
import { addNode, cpuMs, startDaemon, startRefProxy, startTestNode, type Daemon, type RefProxyProc, type TestNodeProc } from './procs';

export interface BenchContext {
  /** The run's temp dir; everything goes below it. */
  root: string;
  quick: boolean;
  /** Extra node flags for every daemon (e.g. --cpu-prof); a row's own dir is appended for profiles. */
  daemonNodeFlags: string[];
  /** When set, each daemon writes a CPU profile into <profileDir>/<daemon name>/. */
  profileDir: string | null;
  log(line: string): void;
}

export interface Rig {
  node: TestNodeProc;
  daemon: Daemon;
  /** bench/ref-proxy.ts in front of the same node, when asked for. */
  ref: RefProxyProc | null;
  /** nginx in front of the same node (lib/nginx.ts), with the reference proxy, when nginx is installed. */
  nginx: NginxProc | null;
  /** One keep-alive agent for all control calls (init, upload, commit, polling). */
  agent: http.Agent;
  stop(): Promise<void>;
}

export function daemonFlags(ctx: BenchContext, name: string): string[] {
  const flags = [...ctx.daemonNodeFlags];
  if (ctx.profileDir) {
    const dir = path.join(ctx.profileDir, name);
    fs.mkdirSync(dir, { recursive: true });
    flags.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  return flags;
}

export async function startRig(
  ctx: BenchContext,
  name: string,
  nodeOpts: { assetSize?: number; processingMs?: number; maxParallelTasks?: number } = {},
  o: { refProxy?: boolean } = {},
): Promise<Rig> {
  const dir = path.join(ctx.root, name);
  const node = await startTestNode({ name: `${name} test node`, dir: path.join(dir, 'node'), processingMs: 20, maxParallelTasks: 4, ...nodeOpts });
  let daemon: Daemon;
  let ref: RefProxyProc | null = null;
  try {
    daemon = await startDaemon({ name: `${name} daemon`, dir: path.join(dir, 'daemon'), nodeFlags: daemonFlags(ctx, name) });
  } catch (e: unknown) {
    await node.stop();
    throw e;
  }
  const agent = keepAliveAgent(256);
  const rig: Rig = {
    node,
    daemon,
    ref,
    nginx: null,
    agent,
    stop: async () => {
      agent.destroy();
      await rig.nginx?.stop();
      await ref?.stop();
      await daemon.stop();
      await node.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    if (o.refProxy) {
      rig.ref = ref = await startRefProxy(`${name} reference proxy`, node.port, dir, daemonFlags(ctx, `${name}-ref-proxy`));
      rig.nginx = await startNginx(`${name} nginx`, node.port, path.join(dir, 'nginx'), ctx.log);
    }
    await addNode(daemon, node);
    // The proxy answers /options from its reference node: this checks the node is online behind it.
    const opts = await fetchOptions(daemon.url, agent);
    if (!Array.isArray(opts)) throw new Error(`proxy /options: ${JSON.stringify(opts).slice(0, 200)}`);
  } catch (e: unknown) {
    await rig.stop();
    throw e;
  }
  return rig;
}

/** The ways to the node rows a–c compare: straight, through nginx, the bare Node.js proxy and ClusterODM. */
export type PathName = 'direct' | 'nginx' | 'ref' | 'proxy';

export interface BenchPath {
  readonly name: PathName;
  readonly label: string;
  readonly url: string;
  /** CPU ms so far of the process(es) that serve (direct: the node) or forward (the others) a request. */
  cpu(): number;
}

export const PATH_LABELS: Record<PathName, string> = { direct: 'direct', nginx: 'nginx', ref: 'bare Node.js proxy', proxy: 'ClusterODM' };

/** Every path the rig has (nginx only where it is installed), in a fixed order; rows rotate it per round. */
export function benchPaths(rig: Rig): BenchPath[] {
  const out: BenchPath[] = [{ name: 'direct', label: PATH_LABELS.direct, url: rig.node.url, cpu: () => cpuMs(rig.node.pid) }];
  const nginx = rig.nginx;
  if (nginx) out.push({ name: 'nginx', label: PATH_LABELS.nginx, url: nginx.url, cpu: () => nginx.cpuMs() });
  const ref = rig.ref;
  if (ref) out.push({ name: 'ref', label: PATH_LABELS.ref, url: ref.url, cpu: () => cpuMs(ref.pid) });
  out.push({ name: 'proxy', label: PATH_LABELS.proxy, url: rig.daemon.url, cpu: () => cpuMs(rig.daemon.pid) });
  return out;
}

/** Round i's order: the list rotated by i, so drift (page cache, JIT, background load) spreads over the paths. */
export function rotated<T>(list: readonly T[], i: number): T[] {
  return list.map((_, k) => list[(k + i) % list.length] as T);
}

async function fetchOptions(base: string, agent: http.Agent): Promise<unknown> {
  const a = await request(`${base}/options`, { agent });
  return JSON.parse(a.body.toString('utf8')) as unknown;
}

export interface TaskShape {
  images: number;
  perUpload: number;
  imageBytes: number;
}

export interface TaskTimes {
  uuid: string;
  /** ms from the start of init until the commit was answered. */
  committedMs: number;
}

/** init → uploads of `perUpload` images, one after the other → commit, against `base` (a node or the proxy). */
export async function createTask(base: string, agent: http.Agent, shape: TaskShape, name = 'bench'): Promise<TaskTimes> {
  const t0 = now();
  const init = await requestJson(`${base}/task/new/init`, {
    method: 'POST',
    agent,
    body: multipartBody([['name', name], ['options', '[]']], []),
  });
  const uuid = init['uuid'];
  if (typeof uuid !== 'string') throw new Error(`init answered ${JSON.stringify(init)}`);
  for (let first = 0; first < shape.images; first += shape.perUpload) {
    const files: FileSpec[] = [];
    for (let i = first; i < Math.min(shape.images, first + shape.perUpload); i++) {
      files.push({ name: `IMG_${String(i).padStart(4, '0')}.JPG`, size: shape.imageBytes });
    }
    await requestJson(`${base}/task/new/upload/${uuid}`, { method: 'POST', agent, body: multipartBody([], files) });
  }
  await requestJson(`${base}/task/new/commit/${uuid}`, { method: 'POST', agent });
  return { uuid, committedMs: now() - t0 };
}

/**
 * Polls the node's own /task/<uuid>/info until the task exists with all its images (and, with `completed`,
 * until it has finished processing).
 */
export async function waitOnNode(
  nodeUrl: string,
  agent: http.Agent,
  uuid: string,
  images: number,
  o: { timeoutMs: number; everyMs?: number; completed?: boolean },
): Promise<void> {
  const deadline = now() + o.timeoutMs;
  let last = '';
  for (;;) {
    try {
      const info = await requestJson(`${nodeUrl}/task/${uuid}/info`, { agent });
      const code = (info['status'] as { code?: unknown } | undefined)?.code;
      if (info['imagesCount'] === images && (!o.completed || code === 40)) return;
      if (code === 30) throw new Error(`task ${uuid} FAILED on the node`);
      last = JSON.stringify(info).slice(0, 200);
    } catch (e: unknown) {
      last = e instanceof Error ? e.message : String(e);
      if (last.includes('FAILED on the node')) throw e;
    }
    if (now() > deadline) throw new Error(`task ${uuid} not on the node after ${o.timeoutMs} ms (last: ${last})`);
    await sleep(o.everyMs ?? 2);
  }
}

/** POST /task/remove (through the proxy this also drops the route). */
export async function removeTask(base: string, agent: http.Agent, uuid: string): Promise<void> {
  await requestJson(`${base}/task/remove`, { method: 'POST', agent, body: formBody({ uuid }) });
}
