import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { FileSink, type SinkFile } from '../../src/proxy/file-sink';
import { tempDir } from '../helpers/tmp';

function bytesOf(sizes: number[], seed: number): Buffer[] {
  let x = seed >>> 0;
  return sizes.map((n) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      b[i] = x >>> 24;
    }
    return b;
  });
}

/** A real file whose writev takes at most `cap` bytes per call, as a regular file may on a full disk. */
function capped(handle: fs.promises.FileHandle, cap: number, calls: number[]): SinkFile {
  return {
    close: () => handle.close(),
    writev: (buffers: Buffer[]) => {
      const out: Buffer[] = [];
      let left = cap;
      for (const b of buffers) {
        if (left === 0) break;
        out.push(b.subarray(0, Math.min(left, b.length)));
        left -= Math.min(left, b.length);
      }
      calls.push(out.length);
      return handle.writev(out);
    },
  };
}

test('file-sink: the file holds exactly the bytes streamed into it, in order, whatever the chunk sizes', async (t: TestContext) => {
  const dir = tempDir(t);
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 70_000 })), { maxLength: 40 }),
      fc.integer({ min: 1, max: 300_000 }),
      fc.integer(),
      async (sizes, batch, seed) => {
        const chunks = bytesOf(sizes, seed);
        const file = path.join(dir, `f${n++}`);
        const sink = new FileSink(await fs.promises.open(file, 'wx'), batch);
        await pipeline(Readable.from(chunks), sink);
        assert.ok(sink.closed);
        assert.deepEqual(fs.readFileSync(file), Buffer.concat(chunks));
      },
    ),
    { numRuns: 150 },
  );
});

test('file-sink: chunks are gathered into few writes, and short writes are completed', async (t: TestContext) => {
  const dir = tempDir(t);
  const chunks = bytesOf(Array.from({ length: 64 }, () => 65536), 7);
  const calls: number[] = [];
  const file = path.join(dir, 'big');
  const handle = capped(await fs.promises.open(file, 'wx'), 100_000, calls);
  await pipeline(Readable.from(chunks), new FileSink(handle));
  assert.deepEqual(fs.readFileSync(file), Buffer.concat(chunks));
  // 4 MiB in 256 KiB batches is 16 batches; each needs three short writes of at most 100,000 bytes.
  assert.equal(calls.length, 16 * 3);
  assert.ok(calls.every((c) => c <= 4), `at most one batch of buffers per writev: ${calls.join(',')}`);
});

test('file-sink: a failing write fails the stream and still closes the file', async (t: TestContext) => {
  const dir = tempDir(t);
  const handle = await fs.promises.open(path.join(dir, 'bad'), 'wx');
  let closed = false;
  const file: SinkFile = {
    writev: () => Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC', syscall: 'write' })),
    close: async () => {
      closed = true;
      await handle.close();
    },
  };
  const sink = new FileSink(file, 1024);
  await assert.rejects(pipeline(Readable.from(bytesOf([4096], 1)), sink), /no space left/);
  await new Promise((resolve) => setImmediate(resolve));
  assert.ok(closed, 'the handle is closed');
  assert.ok(sink.closed);
});

test('file-sink: destroyed midway (the upload failed), the file handle is closed', async (t: TestContext) => {
  const dir = tempDir(t);
  const handle = await fs.promises.open(path.join(dir, 'cut'), 'wx');
  const sink = new FileSink(handle, 1024 * 1024);
  const errors: Error[] = [];
  sink.on('error', (e: Error) => errors.push(e));
  sink.write(Buffer.alloc(1000));
  const closedEvent = new Promise((resolve) => sink.once('close', resolve));
  sink.destroy(new Error('client went away'));
  await closedEvent;
  assert.deepEqual(errors.map((e) => e.message), ['client went away']);
  await assert.rejects(handle.stat(), /EBADF|closed/);
});
