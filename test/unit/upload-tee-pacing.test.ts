import assert from 'node:assert/strict';
import type * as http from 'node:http';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import fc from 'fast-check';
import { systemClock } from '../../src/core';
import { RequestFlow } from '../../src/proxy/request-flow';
import { teeRequest } from '../../src/proxy/upload-tee';

const SEED = Number(process.env['FUZZ_SEED'] ?? Date.now() % 1_000_000);

/** A client request fed by the test: its chunks, then its end. */
function fakeRequest(): { req: http.IncomingMessage; feed: PassThrough } {
  const feed = new PassThrough();
  const req = feed as unknown as http.IncomingMessage;
  Object.assign(req, { headers: { 'content-type': 'multipart/form-data; boundary=b', 'content-length': '0' } });
  feed.once('end', () => Object.assign(req, { complete: true }));
  return { req, feed };
}

/** A node reading its copy with a pause of `delayMs` after each chunk. */
function slowNode(delayMs: number): { sink: Writable; received: Buffer[] } {
  const received: Buffer[] = [];
  const sink = new Writable({
    highWaterMark: 1,
    write: (chunk: Buffer, _e, cb) => {
      received.push(chunk);
      setTimeout(cb, delayMs);
    },
  });
  return { sink, received };
}

test('paced tee: a node slower than the client holds it, and gets every byte in order, the last chunk too', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 40_000 }), { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 3 }), async (sizes, delayMs) => {
      const { req, feed } = fakeRequest();
      const flow = new RequestFlow(req);
      const tee = teeRequest(req, 1024 * 1024, { flow, clock: systemClock, stallMs: 10_000, holdBytes: 64 * 1024 });
      const client: Buffer[] = [];
      let maxHeld = 0;
      req.on('data', (c: Buffer) => {
        client.push(c);
        maxHeld = Math.max(maxHeld, tee.stream.readableLength);
      });
      const node = slowNode(delayMs);
      const copied = pipeline(tee.stream, node.sink);
      let n = 0;
      for (const size of sizes) feed.write(Buffer.alloc(size, n++ % 251));
      feed.end();
      await copied;
      assert.equal(tee.lagged(), false);
      assert.ok(Buffer.concat(node.received).equals(Buffer.concat(client)), 'the node got exactly the client bytes');
      assert.equal(Buffer.concat(client).length, sizes.reduce((a, b) => a + b, 0));
      assert.ok(maxHeld <= 64 * 1024 + 40_000, `${maxHeld} bytes held`);
    }),
    { seed: SEED, numRuns: 30 },
  );
});

test('paced tee: a node that takes nothing loses its copy after stallMs, and the client reads on', async () => {
  const { req, feed } = fakeRequest();
  const flow = new RequestFlow(req);
  const tee = teeRequest(req, 1024 * 1024, { flow, clock: systemClock, stallMs: 200, holdBytes: 64 * 1024 });
  let error = '';
  tee.stream.on('error', (e: Error) => (error = e.message));
  let received = 0;
  req.on('data', (c: Buffer) => (received += c.length));
  const ended = new Promise<void>((resolve) => req.once('end', () => resolve()));
  for (let i = 0; i < 64; i++) feed.write(Buffer.alloc(16 * 1024));
  feed.end();
  await ended;
  assert.equal(received, 64 * 16 * 1024);
  assert.equal(tee.lagged(), true);
  assert.match(error, /did not catch up with the client within 200 ms/);
  assert.equal(flow.held('node'), false);
});

test('request flow: the request reads on only when neither reader holds it', () => {
  const { req } = fakeRequest();
  const flow = new RequestFlow(req);
  req.resume();
  flow.hold('disk');
  flow.hold('node');
  flow.release('disk');
  assert.equal(req.isPaused(), true, 'the node still holds it');
  flow.release('node');
  assert.equal(req.isPaused(), false);
  flow.hold('disk');
  flow.drain();
  assert.equal(req.isPaused(), false);
  flow.hold('node');
  assert.equal(req.isPaused(), false, 'a drained request is never held again');
});
