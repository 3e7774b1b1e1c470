import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { MemoryLogger } from '../../src/core';
import { Forwarder } from '../../src/proxy';
import { waitUntil } from '../helpers/wait';

test('forwarder: forget(node) closes the kept-alive connections to a removed node', async (t) => {
  let open = 0;
  const server = http.createServer((_req, res) => res.end('ok'));
  server.on('connection', (s) => {
    open++;
    s.on('close', () => open--);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const node = { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: '' };
  const fwd = new Forwarder({ logger: new MemoryLogger() });
  t.after(() => fwd.close());
  const agent = fwd.agentFor(node);
  for (let i = 0; i < 2; i++) {
    await new Promise<void>((resolve, reject) => {
      http.get(`${node.baseUrl}/info`, { agent }, (res) => res.resume().on('end', resolve)).on('error', reject);
    });
  }
  assert.equal(open, 1, 'one kept-alive connection, reused');
  fwd.forget(node);
  await waitUntil(() => open === 0, { timeoutMs: 5000, message: 'the connection stayed open' });
  assert.notEqual(fwd.agentFor(node), agent, 'a node added again gets a new pool');
});
