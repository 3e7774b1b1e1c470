/**
 * Repeats whole tasks through ClusterODM (init, parallel uploads, commit) against one test node and checks, every
 * time, that the node committed exactly the images the client uploaded (issue 13: every task reaches its node whole,
 * once). Not part of `npm run bench`: run it by hand, e.g.
 *   node dist/bench/integrity-stress.js --rounds 30 --tasks 2 --images 40 --per-upload 10 --parallel 4 --mib 2.5
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { keepAliveAgent, multipartBody, requestJson, request, sleep, now, type FileSpec } from './lib/http';
import { addNode, startDaemon, startTestNode } from './lib/procs';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '20' },
      tasks: { type: 'string', default: '1' },
      images: { type: 'string', default: '40' },
      'per-upload': { type: 'string', default: '10' },
      parallel: { type: 'string', default: '4' },
      mib: { type: 'string', default: '2.5' },
    },
  });
  const rounds = Number(values.rounds);
  const tasks = Number(values.tasks);
  const images = Number(values.images);
  const perUpload = Number(values['per-upload']);
  const parallel = Number(values.parallel);
  const size = Math.round(Number(values.mib) * 1024 * 1024);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'integrity-stress-'));
  const node = await startTestNode({ name: 'node', dir: path.join(root, 'node'), processingMs: 20, maxParallelTasks: 8 });
  const daemon = await startDaemon({ name: 'daemon', dir: path.join(root, 'daemon') });
  const agent = keepAliveAgent(256);
  let bad = 0;
  let done = 0;
  let repaired = 0;
  try {
    await addNode(daemon, node);
    const one = async (label: string): Promise<void> => {
      const init = await requestJson(`${daemon.url}/task/new/init`, { method: 'POST', agent, body: multipartBody([['name', label], ['options', '[]']], []) });
      const uuid = init['uuid'];
      if (typeof uuid !== 'string') throw new Error(`init answered ${JSON.stringify(init)}`);
      const batches: FileSpec[][] = [];
      for (let first = 0; first < images; first += perUpload) {
        const files: FileSpec[] = [];
        for (let i = first; i < Math.min(images, first + perUpload); i++) files.push({ name: `IMG_${String(i).padStart(4, '0')}.JPG`, size });
        batches.push(files);
      }
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < batches.length) {
          const b = batches[next++] as FileSpec[];
          const a = await request(`${daemon.url}/task/new/upload/${uuid}`, { method: 'POST', agent, body: multipartBody([], b) });
          if (a.status !== 200 || !a.body.toString().includes('"success":true')) throw new Error(`upload answered ${a.status} ${a.body.toString()}`);
        }
      };
      await Promise.all(Array.from({ length: parallel }, worker));
      const c = await requestJson(`${daemon.url}/task/new/commit/${uuid}`, { method: 'POST', agent });
      if (c['uuid'] !== uuid) throw new Error(`commit answered ${JSON.stringify(c)}`);
      // Wait for the task on the node; then its image count must be the client's, and stay so.
      const deadline = now() + 120_000;
      let count: unknown = null;
      let last = '';
      for (;;) {
        const a = await request(`${node.url}/task/${uuid}/info`, { agent });
        last = a.body.toString().slice(0, 300);
        if (a.status === 200) {
          const info = JSON.parse(a.body.toString()) as Record<string, unknown>;
          if (typeof info['imagesCount'] === 'number') {
            count = info['imagesCount'];
            break;
          }
        }
        if (now() > deadline) throw new Error(`${label} ${uuid}: not on the node (last: ${last})`);
        await sleep(5);
      }
      const via = await requestJson(`${daemon.url}/task/${uuid}/info`, { agent });
      done++;
      if (count !== images) {
        bad++;
        console.log(`MISMATCH ${label} ${uuid}: node has ${String(count)} of ${images}; proxy says ${JSON.stringify(via).slice(0, 300)}`);
      }
      await requestJson(`${node.url}/task/remove`, { method: 'POST', agent, body: Buffer.from(`uuid=${uuid}`) }).catch(() => undefined);
    };
    for (let r = 0; r < rounds; r++) {
      const res = await Promise.allSettled(Array.from({ length: tasks }, (_, k) => one(`r${r}t${k}`)));
      for (const x of res) if (x.status === 'rejected') { bad++; console.log(`ERROR round ${r}: ${x.reason instanceof Error ? x.reason.message : String(x.reason)}`); }
      if (r % 5 === 4) console.log(`round ${r + 1}/${rounds}: ${done} tasks checked, ${bad} bad`);
    }
  } finally {
    agent.destroy();
    // The daemon's own check after a commit (node-uploader.ts checkCommitted) repairs a loss: count those too.
    repaired = daemon.output().split('\n').filter((l) => /committed task \S+ with \d+ images/.test(l)).length;
    if (repaired > 0) bad += repaired;
    if (bad > 0) fs.writeFileSync(path.join(os.tmpdir(), `integrity-stress-daemon-${process.pid}.log`), daemon.output());
    await daemon.stop();
    await node.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
  console.log(`${process.version}: ${done} tasks checked, ${bad} bad (${repaired} repaired by the daemon's check after commit)`);
  process.exitCode = bad > 0 ? 1 : 0;
}

void main();
