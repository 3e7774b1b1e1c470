/**
 * Row f: small tasks on a mixed cluster (a node taking at most 50 images and one taking 5,000). ClusterODM sends
 * each task's images on to a node while the client uploads them; the node that receives them should be the one the
 * commit chooses (the smallest that fits), or the task is sent a second time at commit. Measured: the bytes both
 * nodes received (their `rchar`, /proc/<pid>/io) against the image bytes, the tasks sent to a node more than once
 * (ClusterODM's log: one "Initializing task <uuid>" per node init), and the time from init until a node holds
 * every image, against the same task sent straight to the small node.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as http from 'node:http';
import { keepAliveAgent, median, now, request, sleep } from '../lib/http';
import { addNode, readBytes, startDaemon, startTestNode, type TestNodeProc } from '../lib/procs';
import { fmt, MiB, type RowOutcome } from '../lib/report';
import { createTask, daemonFlags, removeTask, waitOnNode, type BenchContext, type TaskShape } from '../lib/rig';

const SMALL_MAX = 50;
const BIG_MAX = 5000;

export async function rowF(ctx: BenchContext): Promise<RowOutcome> {
  const shape: TaskShape = { images: 10, perUpload: 5, imageBytes: 1 * MiB };
  const tasks = ctx.quick ? 4 : 12;
  const dir = path.join(ctx.root, 'f-mixed');
  const nodeOpts = { processingMs: 20, maxParallelTasks: 4 };
  const small = await startTestNode({ name: 'f small test node', dir: path.join(dir, 'small'), maxImages: SMALL_MAX, ...nodeOpts });
  const stops: Array<() => Promise<unknown>> = [() => small.stop()];
  const agent = keepAliveAgent(64);
  try {
    const big = await startTestNode({ name: 'f big test node', dir: path.join(dir, 'big'), maxImages: BIG_MAX, ...nodeOpts });
    stops.unshift(() => big.stop());
    const daemon = await startDaemon({ name: 'f daemon', dir: path.join(dir, 'daemon'), nodeFlags: daemonFlags(ctx, 'f-mixed') });
    stops.unshift(() => daemon.stop());
    // The big node first: list order must not be what sends small tasks to the small node.
    await addNode(daemon, big);
    await addNode(daemon, small);

    const direct: number[] = [];
    const proxy: number[] = [];
    const uuids: string[] = [];
    let received = 0;
    for (let i = 0; i < tasks; i++) {
      const t0 = now();
      const d = await createTask(small.url, agent, shape);
      await waitOnNode(small.url, agent, d.uuid, shape.images, { timeoutMs: 120_000 });
      direct.push(now() - t0);
      await removeTask(small.url, agent, d.uuid);

      const before = readBytes(small.pid) + readBytes(big.pid);
      const t1 = now();
      const p = await createTask(daemon.url, agent, shape);
      const on = await waitOnEither([small, big], agent, p.uuid, shape.images, 120_000);
      proxy.push(now() - t1);
      received += readBytes(small.pid) + readBytes(big.pid) - before;
      uuids.push(p.uuid);
      ctx.log(`  f: task ${i + 1}: direct ${fmt.ms(direct[i] ?? 0)}, through ClusterODM ${fmt.ms(proxy[i] ?? 0)} (on the ${on === small ? 'small' : 'big'} node)`);
      await removeTask(on.url, agent, p.uuid);
    }
    const imageBytes = tasks * shape.images * shape.imageBytes;
    const bytesRatio = received / imageBytes;
    const log = fs.readFileSync(path.join(daemon.dir, 'ClusterODM.log'), 'utf8');
    const resent = uuids.filter((u) => log.split(`Initializing task ${u} on`).length - 1 > 1).length;
    const d = median(direct);
    const p = median(proxy);
    const what = `${tasks} tasks × ${shape.images} images × ${fmt.size(shape.imageBytes)} (${shape.images / shape.perUpload} uploads each), nodes with maxImages ${SMALL_MAX} and ${BIG_MAX}`;
    return {
      rows: [
        {
          row: 'f',
          metric: `Mixed cluster, ${what}: bytes the nodes received ÷ image bytes; tasks sent to a node twice`,
          direct: '1.00× (each image once)',
          proxy: `${fmt.x(bytesRatio)}; ${resent} of ${tasks} sent twice`,
          ratio: fmt.x(bytesRatio),
          target: '≤ 1.05×, none twice',
          pass: Number.isFinite(bytesRatio) ? bytesRatio <= 1.05 && resent === 0 : null,
        },
        {
          row: 'f',
          metric: `Mixed cluster, ${what}: time from init until a node holds every image; median`,
          direct: `${fmt.ms(d)} (to the small node)`,
          proxy: fmt.ms(p),
          ratio: fmt.x(d / p),
          target: '—',
          pass: null,
        },
      ],
      notes: [`f: the nodes received ${fmt.mib(received)} for ${fmt.mib(imageBytes)} of images (/proc/<pid>/io rchar: sockets, plus a little /info and polling).`],
    };
  } finally {
    agent.destroy();
    for (const stop of stops) await stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Polls the nodes' own /task/<uuid>/info until one of them holds the task with all its images; returns that node. */
async function waitOnEither(nodes: TestNodeProc[], agent: http.Agent, uuid: string, images: number, timeoutMs: number): Promise<TestNodeProc> {
  const deadline = now() + timeoutMs;
  for (;;) {
    for (const node of nodes) {
      const a = await request(`${node.url}/task/${uuid}/info`, { agent });
      if (imagesCount(a.body) === images) return node;
    }
    if (now() > deadline) throw new Error(`task ${uuid} on no node after ${timeoutMs} ms`);
    await sleep(2);
  }
}

function imagesCount(body: Buffer): unknown {
  try {
    const v: unknown = JSON.parse(body.toString('utf8'));
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>)['imagesCount'] : undefined;
  } catch {
    return undefined;
  }
}
