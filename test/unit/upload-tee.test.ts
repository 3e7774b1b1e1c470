import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { teeRequest } from '../../src/proxy/upload-tee';

test('upload tee: a node that stops reading never holds the client up, and at most the lag bound is kept in memory', async (t) => {
  const limit = 1024 * 1024;
  const total = 32 * 1024 * 1024;
  let maxHeld = 0;
  let received = 0;
  let teeError = '';
  const server = http.createServer((req, res) => {
    const tee = teeRequest(req, limit);
    // The node never reads its copy; the staging (here: a counter) reads the client as fast as it sends.
    tee.stream.on('error', (e: Error) => (teeError = e.message));
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      maxHeld = Math.max(maxHeld, tee.stream.readableLength);
    });
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  const answer = await fetch(`http://127.0.0.1:${port}/task/new/upload/x`, {
    method: 'POST',
    headers: { 'content-type': 'multipart/form-data; boundary=b' },
    body: new Blob([Buffer.alloc(total, 1)]),
  });
  assert.equal(await answer.text(), 'ok');
  assert.equal(received, total);
  assert.ok(maxHeld <= limit, `${maxHeld} bytes held for the node`);
  assert.match(teeError, /fell more than 1048576 bytes behind/);
});
