import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { MemoryLogger } from '../../src/core';
import { Forwarder } from '../../src/proxy';
import { makeSelfSignedCert } from '../helpers/cert';
import { tempDir } from '../helpers/tmp';
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

test('https nodes cannot be queried: the forwarder sends the node\'s own name as TLS server name, not the client\'s Host', async (t) => {
  const dir = tempDir(t);
  const cert = await makeSelfSignedCert(dir);
  const names: Array<string | false> = [];
  const tlsServer = https.createServer({
    key: fs.readFileSync(cert.keyFile),
    cert: cert.cert,
    SNICallback: (name, cb) => {
      names.push(name);
      cb(null, undefined);
    },
  });
  tlsServer.on('secureConnection', (s) => {
    if (!s.servername) names.push(false);
  });
  await new Promise<void>((r) => tlsServer.listen(0, 'localhost', r));
  t.after(() => tlsServer.close());
  const node = { baseUrl: `https://localhost:${(tlsServer.address() as AddressInfo).port}`, token: '', name: 'tls-node' };
  const fwd = new Forwarder({ logger: new MemoryLogger() });
  t.after(() => fwd.close());
  const front = http.createServer((req, res) => fwd.forward(req, res, node, req.url ?? '/'));
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  t.after(() => front.close());
  await new Promise<void>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port: (front.address() as AddressInfo).port, path: '/info', headers: { host: 'clusterodm.example.org:3000' } },
      (res) => res.resume().on('end', resolve),
    );
    req.on('error', reject);
    req.end();
  });
  // The test's certificate is not trusted in this process, so the handshake stops there; the hello was sent.
  assert.deepEqual(names, ['localhost']);
});

/** A node stand-in that answers at once (before any body) and records each request, its socket and its body. */
async function recordingNode(t: TestContext): Promise<{ node: { baseUrl: string; token: string; name: string }; seen: Array<{ line: string; socket: net.Socket; body: string; complete: boolean }> }> {
  const seen: Array<{ line: string; socket: net.Socket; body: string; complete: boolean }> = [];
  const server = http.createServer((req, res) => {
    const rec = { line: `${req.method ?? ''} ${req.url ?? ''}`, socket: req.socket, body: '', complete: false };
    seen.push(rec);
    req.on('data', (c: Buffer) => (rec.body += c.toString('latin1')));
    req.on('end', () => (rec.complete = true));
    res.end('ok');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { node: { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: '', name: 'n' }, seen };
}

async function front(t: TestContext, fwd: Forwarder, node: { baseUrl: string; token: string; name: string }): Promise<number> {
  const server = http.createServer((req, res) => fwd.forward(req, res, node, req.url ?? '/'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

test('request smuggling through the forwarder: forward() itself refuses a body on a GET (400, connection closed), the node gets nothing', async (t) => {
  const { node, seen } = await recordingNode(t);
  const fwd = new Forwarder({ logger: new MemoryLogger() });
  t.after(() => fwd.close());
  const port = await front(t, fwd, node);
  const answer = await new Promise<string>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('close', () => resolve(out));
    s.write('GET /a.js HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\nGET /smuggled HTTP/1.1\r\n\r\n\r\n0\r\n\r\n');
  });
  assert.match(answer, /^HTTP\/1\.1 400 /);
  assert.match(answer, /\r\nConnection: close\r\n/i);
  assert.deepEqual(seen.map((r) => r.line), []);
});

test('request smuggling through the forwarder: a connection whose request body was cut off is never used again', async (t) => {
  const { node, seen } = await recordingNode(t);
  const fwd = new Forwarder({ logger: new MemoryLogger() });
  t.after(() => fwd.close());
  const port = await front(t, fwd, node);
  // A body announced as 1000 bytes; 10 arrive, the node answers, then the client goes away.
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  let answered = '';
  s.on('data', (d: Buffer) => (answered += d.toString('latin1')));
  s.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789');
  await waitUntil(() => seen[0]?.body === '0123456789' && answered.endsWith('ok'), { message: 'no early answer to the start of the body' });
  s.destroy();
  await waitUntil(() => seen[0]?.socket.destroyed === true, { message: 'the connection of the cut-off body stayed open' });
  // The next client: its own request, on another connection, and it is answered.
  const answer = await new Promise<string>((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/next`, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
  assert.equal(answer, 'ok');
  assert.deepEqual(seen.map((r) => r.line), ['POST /upload', 'GET /next']);
  assert.equal(seen[0]?.complete, false);
  assert.equal(seen[0]?.body, '0123456789', 'nothing else was read as the rest of the cut-off body');
  assert.notEqual(seen[1]?.socket, seen[0]?.socket);
});

test('forwarder: answers pass through whole (small in one piece, large streamed), hop-by-hop headers dropped, the pool reused', async (t) => {
  const big = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    sockets.add(req.socket);
    if (req.url === '/big') {
      res.writeHead(200, { 'Content-Type': 'application/zip', 'Content-Length': big.length, 'X-Node': 'n', 'Keep-Alive': 'timeout=5' });
      res.end(big);
    } else {
      res.writeHead(201, 'Made', { 'Content-Type': 'application/json', 'Set-Cookie': ['a=1', 'b=2'] });
      res.end('{"ok":true}');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const node = { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: '', name: 'n' };
  const fwd = new Forwarder({ logger: new MemoryLogger() });
  t.after(() => fwd.close());
  const port = await front(t, fwd, node);
  const get = (p: string): Promise<{ status: number; message: string; headers: http.IncomingHttpHeaders; body: Buffer }> =>
    new Promise((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: p, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, message: res.statusMessage ?? '', headers: res.headers, body: Buffer.concat(chunks) }));
      }).on('error', reject);
    });
  const small = await get('/small');
  assert.equal(small.status, 201);
  assert.equal(small.message, 'Made');
  assert.deepEqual(small.headers['set-cookie'], ['a=1', 'b=2']);
  assert.equal(small.body.toString(), '{"ok":true}');
  const large = await get('/big');
  assert.equal(large.status, 200);
  assert.equal(large.headers['x-node'], 'n');
  assert.equal(large.headers['content-length'], String(big.length));
  assert.equal(large.headers['transfer-encoding'], undefined, 'the length the node announced, not re-chunked');
  assert.ok(large.body.equals(big), 'every byte, in order');
  assert.equal(sockets.size, 1, 'one kept-alive connection to the node, reused');
});

test('forwarder: a client that goes away mid-download aborts the request to the node', async (t) => {
  let nodeSideClosed = false;
  let sent = 0;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/zip' });
    const chunk = Buffer.alloc(64 * 1024);
    const pump = (): void => {
      while (!res.destroyed && sent < 1024 * 1024 * 1024) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
    };
    res.on('close', () => (nodeSideClosed = true));
    pump();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const node = { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: '', name: 'n' };
  const fwd = new Forwarder({ logger: new MemoryLogger() });
  t.after(() => fwd.close());
  const port = await front(t, fwd, node);
  await new Promise<void>((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/all.zip', agent: false }, (res) => {
      let got = 0;
      res.on('data', (c: Buffer) => {
        got += c.length;
        if (got >= 1024 * 1024) {
          req.destroy();
          resolve();
        }
      });
    });
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
  });
  await waitUntil(() => nodeSideClosed, { timeoutMs: 5000, message: 'the node kept sending to a client that left' });
  assert.ok(sent < 1024 * 1024 * 1024, 'the node stopped long before the end');
});
