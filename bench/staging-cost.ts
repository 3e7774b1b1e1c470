/**
 * The CPU of row a's staged copy alone, in one process: 40 files × 2.5 MiB written from 64 KiB chunks gathered into
 * `writev` batches under a temporary name, linked under their own and the temporary name removed (as part-writer.ts
 * and staged-file-set.ts do), then the directory removed. Median of the tasks, CPU of the whole process (every thread).
 *
 *   node dist/bench/staging-cost.js [mode] [batch KiB] [tasks]
 *   mode: promise (FileHandle.writev, as shipped), callback (fs.writev), sync (fs.writevSync on the main thread)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';

const CHUNK = Buffer.alloc(64 * 1024, 7);
const FILE_BYTES = 2.5 * 1024 * 1024;
const FILES = 40;

type Mode = 'promise' | 'callback' | 'sync';

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function batches(batchKiB: number): Buffer[][] {
  const per = Math.max(1, Math.floor((batchKiB * 1024) / CHUNK.length));
  const total = Math.ceil(FILE_BYTES / CHUNK.length);
  const out: Buffer[][] = [];
  for (let k = 0; k < total; k += per) out.push(Array<Buffer>(Math.min(per, total - k)).fill(CHUNK));
  return out;
}

function writevCb(fd: number, buffers: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => fs.writev(fd, buffers, (err, n) => (err ? reject(err) : resolve(n))));
}

async function oneFile(mode: Mode, dir: string, i: number, parts: Buffer[][]): Promise<void> {
  const temp = path.join(dir, `.partial-${i}`);
  const name = path.join(dir, `IMG_${i}.JPG`);
  if (mode === 'sync') {
    const fd = fs.openSync(temp, 'wx');
    for (const b of parts) fs.writevSync(fd, b);
    fs.closeSync(fd);
    fs.linkSync(temp, name);
    fs.unlinkSync(temp);
    return;
  }
  if (mode === 'callback') {
    const fd = await promisify(fs.open)(temp, 'wx');
    for (const b of parts) await writevCb(fd, b);
    await promisify(fs.close)(fd);
  } else {
    const h = await fs.promises.open(temp, 'wx');
    for (const b of parts) await h.writev(b);
    await h.close();
  }
  await fs.promises.link(temp, name);
  await fs.promises.unlink(temp);
}

async function main(): Promise<void> {
  const mode = (process.argv[2] ?? 'promise') as Mode;
  if (!['promise', 'callback', 'sync'].includes(mode)) throw new Error(`unknown mode ${mode}`);
  const batchKiB = Number(process.argv[3] ?? 256);
  const tasks = Number(process.argv[4] ?? 12);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'clusterodm-staging-cost-'));
  const parts = batches(batchKiB);
  const res: Array<{ write: number; remove: number }> = [];
  try {
    for (let t = 0; t <= tasks; t++) {
      const dir = path.join(root, `t${t}`);
      fs.mkdirSync(dir);
      const c0 = cpuMs();
      for (let i = 0; i < FILES; i++) await oneFile(mode, dir, i, parts);
      const c1 = cpuMs();
      await fs.promises.rm(dir, { recursive: true });
      if (t > 0) res.push({ write: c1 - c0, remove: cpuMs() - c1 });
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  res.sort((a, b) => a.write + a.remove - b.write - b.remove);
  const m = res[res.length >> 1] ?? { write: NaN, remove: NaN };
  console.log(`${mode}, ${batchKiB} KiB batches: write ${m.write.toFixed(0)} ms, remove ${m.remove.toFixed(0)} ms per task of ${FILES} × 2.5 MiB (median of ${tasks})`);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
