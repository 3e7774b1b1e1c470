/**
 * Request smuggling and desync through the forwarder, with raw node:net sockets (bytes no HTTP client would send).
 * A corpus of payloads (Transfer-Encoding and Content-Length on every method and route class, chunk extensions,
 * trailers, bare LF and CR, obs-fold, duplicate and conflicting framing, pipelining, `Connection:` naming the
 * framing headers) goes to ClusterODM; for each, the node must receive exactly the requests the client sent (counted
 * and compared at the node, bodies included), and another client's next request must still get its own answer.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import { multiUser } from '../helpers/app';
import { startTestNode, type RecordedRequest, type TestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';
import { form, images, json, startLoggedApp } from './support';

interface Answer {
  status: number;
  body: string;
}

/**
 * Writes `bytes` on a fresh connection and reads until the server closes it (every payload's last request says
 * `Connection: close`, or the server refuses and closes); rejects on a hang. Answers are parsed in order; the last
 * one may be cut short (a HEAD answer announces a length it does not send).
 */
function exchange(port: number, bytes: Buffer, timeoutMs = 15_000): Promise<Answer[]> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`the connection was neither answered nor closed within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(parseAnswers(Buffer.concat(chunks)));
    });
    s.write(bytes);
  });
}

function parseAnswers(all: Buffer): Answer[] {
  const out: Answer[] = [];
  let rest = all;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const head = rest.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '')?.[1] ?? 0);
    const headers = new Map<string, string>();
    for (const line of head.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    rest = rest.subarray(end + 4);
    // An interim answer (100 Continue) is not the answer.
    if (status >= 100 && status < 200) continue;
    let body: Buffer;
    if (headers.get('transfer-encoding') === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const nl = rest.indexOf('\r\n');
        if (nl < 0) break;
        const size = Number.parseInt(rest.subarray(0, nl).toString('latin1'), 16);
        rest = rest.subarray(nl + 2);
        if (!(size > 0)) {
          rest = rest.subarray(rest.indexOf('\r\n') + 2);
          break;
        }
        parts.push(rest.subarray(0, size));
        rest = rest.subarray(size + 2);
      }
      body = Buffer.concat(parts);
    } else {
      const len = Number(headers.get('content-length') ?? 0);
      body = rest.subarray(0, len);
      rest = rest.subarray(len);
    }
    out.push({ status, body: body.toString('utf8') });
  }
  return out;
}

const CRLF = '\r\n';
const chunked = (body: string, ext = ''): string => `${Buffer.byteLength(body).toString(16)}${ext}${CRLF}${body}${CRLF}0${CRLF}${CRLF}`;
const len = (body: string): number => Buffer.byteLength(body, 'latin1');

/** What a payload must make the node receive: method, path, and the body with the framing it came in. */
interface AtNode {
  method: string;
  path: string;
  body?: string;
  /** 'chunked', 'length', or what else the node saw. */
  framing?: string;
}

interface Payload {
  name: string;
  bytes: string;
  /** The status of each answer the client gets, in order. */
  answers: number[];
  node: AtNode[];
}

/** The requests the client sent, as the node saw them (the daemon's own /info health polls left out). */
function fromClients(node: TestNode, since: number): RecordedRequest[] {
  return node.requests.slice(since).filter((r) => !r.path.startsWith('/info'));
}

function describeAtNode(r: RecordedRequest): AtNode {
  const te = r.headers['transfer-encoding'];
  const cl = r.headers['content-length'];
  const body = r.body?.toString('latin1') ?? '';
  const out: AtNode = { method: r.method, path: r.path };
  if (te !== undefined || (cl !== undefined && cl !== '0')) {
    out.body = body;
    out.framing = te === 'chunked' && cl === undefined ? 'chunked' : te === undefined && cl === String(len(body)) ? 'length' : `te=${String(te)} cl=${String(cl)}`;
  }
  return out;
}

test('request smuggling through the forwarder: every payload of the corpus reaches the node as exactly the requests the client sent', { timeout: 170_000 }, async (t) => {
  const node = await startTestNode({ recordBodies: true, processingMs: 50 });
  t.after(() => node.close());
  const { url, port, app } = await startLoggedApp(t, [], { cloud: multiUser(['alice', 'mallory']) });
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const create = async (token: string): Promise<string> => {
    const uuid = String((await json(`${url}/task/new?token=${token}`, { method: 'POST', body: form({}, images(1)) }))['uuid']);
    await waitUntil(() => app.routes.has(uuid), { timeoutMs: 20_000, message: `task ${uuid} never reached the node` });
    return uuid;
  };
  const victim = await create('alice');
  const canary = await create('alice');
  const own = await create('mallory');

  const remove = `uuid=${victim}`;
  const smuggledRemove = `POST /task/remove HTTP/1.1${CRLF}Host: node${CRLF}Content-Type: application/x-www-form-urlencoded${CRLF}Content-Length: ${len(remove)}${CRLF}${CRLF}${remove}`;
  // The node reads a /task/cancel body before it answers: it waits for 400 bytes, the next request on that connection.
  const smuggledHold = `POST /task/cancel HTTP/1.1${CRLF}Host: node${CRLF}Content-Type: application/x-www-form-urlencoded${CRLF}Content-Length: 400${CRLF}${CRLF}`;
  const h = (lines: string[]): string => `${lines.join(CRLF)}${CRLF}${CRLF}`;
  const info = `/task/${own}/info`;
  const q = '?token=mallory';
  const req = (method: string, target: string, headers: string[], body = '', version = 'HTTP/1.1'): string =>
    h([`${method} ${target} ${version}`, 'Host: clusterodm', ...headers, 'Connection: close']) + body;
  const te = 'Transfer-Encoding: chunked';
  const refused = (name: string, bytes: string): Payload => ({ name, bytes, answers: [400], node: [] });

  const corpus: Payload[] = [
    // A body on a method that carries none in the NodeODM API: refused, whatever the route.
    refused('GET of a UI file without a token, chunked body holding a POST /task/remove', req('GET', '/js/main.js', [te], chunked(smuggledRemove))),
    refused('HEAD of a UI file, chunked body holding a request', req('HEAD', '/css/main.css', [te], chunked(smuggledRemove))),
    refused('GET of a UI file, Content-Length body holding a request', req('GET', '/js/main.js', [`Content-Length: ${len(smuggledRemove)}`], smuggledRemove)),
    refused('GET of a UI file, chunk extension', req('GET', '/js/main.js', [te], chunked(smuggledRemove, ';ext="x"'))),
    refused('GET of a UI file, Transfer-Encoding: CHUNKED', req('GET', '/js/main.js', ['Transfer-Encoding: CHUNKED'], chunked(smuggledRemove))),
    refused('GET of a UI file, Transfer-Encoding:<TAB>chunked', req('GET', '/js/main.js', ['Transfer-Encoding:\tchunked'], chunked(smuggledRemove))),
    refused('GET of a UI file, Transfer-Encoding: identity, chunked', req('GET', '/js/main.js', ['Transfer-Encoding: identity, chunked'], chunked(smuggledRemove))),
    refused('GET of a UI file, chunked body holding a request with Content-Length: 400 and no body', req('GET', '/js/main.js', [te], chunked(smuggledHold))),
    refused('GET of a UI file, Expect: 100-continue and a body', req('GET', '/js/main.js', ['Expect: 100-continue', `Content-Length: ${len(smuggledRemove)}`], smuggledRemove)),
    refused('GET of a UI file over HTTP/1.0, chunked', req('GET', '/js/main.js', [te], chunked(smuggledRemove), 'HTTP/1.0')),
    refused('GET of the UI (/), chunked', req('GET', '/?token=alice', [te], chunked(smuggledRemove))),
    refused('OPTIONS of the UI (/), chunked', req('OPTIONS', '/?token=alice', [te], chunked(smuggledRemove))),
    refused('GET of the own task info, chunked', req('GET', info + q, [te], chunked(smuggledRemove))),
    refused('DELETE of the own task info, chunked', req('DELETE', info + q, [te], chunked(smuggledRemove))),
    refused('OPTIONS of the own task info, chunked', req('OPTIONS', info + q, [te], chunked(smuggledRemove))),
    refused('CORS preflight with a chunked body', req('OPTIONS', info + q, ['Access-Control-Request-Method: GET', te], chunked(smuggledRemove))),
    refused('HEAD of the own task download, Content-Length body', req('HEAD', `/task/${own}/download/all.zip${q}`, [`Content-Length: ${len(smuggledRemove)}`], smuggledRemove)),
    refused('GET of the own task output, Content-Length body', req('GET', `/task/${own}/output${q}`, [`Content-Length: ${len(smuggledRemove)}`], smuggledRemove)),
    // Methods that may carry a body: forwarded, with the framing it came in.
    {
      name: 'POST to the own task route, chunked body holding a request',
      bytes: req('POST', info + q, [te], chunked(smuggledRemove)),
      answers: [404],
      node: [{ method: 'POST', path: info, body: smuggledRemove, framing: 'chunked' }],
    },
    {
      name: 'POST, chunk extensions, several chunks and a trailer',
      bytes: req('POST', info + q, [te], `5;a=b${CRLF}POST ${CRLF}3;c${CRLF}/ta${CRLF}0${CRLF}X-Trailer: 1${CRLF}${CRLF}`),
      answers: [404],
      node: [{ method: 'POST', path: info, body: 'POST /ta', framing: 'chunked' }],
    },
    {
      name: 'PUT, Content-Length body holding a request',
      bytes: req('PUT', info + q, [`Content-Length: ${len(smuggledRemove)}`], smuggledRemove),
      answers: [404],
      node: [{ method: 'PUT', path: info, body: smuggledRemove, framing: 'length' }],
    },
    {
      name: 'PATCH with Connection: Content-Length (a framing header named as hop-by-hop)',
      bytes: req('PATCH', info + q, ['Connection: Content-Length', `Content-Length: ${len(smuggledRemove)}`], smuggledRemove),
      answers: [404],
      node: [{ method: 'PATCH', path: info, body: smuggledRemove, framing: 'length' }],
    },
    {
      name: 'POST with Connection: Transfer-Encoding, chunked',
      bytes: req('POST', info + q, ['Connection: Transfer-Encoding', te], chunked(smuggledRemove)),
      answers: [404],
      node: [{ method: 'POST', path: info, body: smuggledRemove, framing: 'chunked' }],
    },
    {
      name: 'POST over HTTP/1.0, chunked',
      bytes: req('POST', info + q, [te], chunked(smuggledRemove), 'HTTP/1.0'),
      answers: [404],
      node: [{ method: 'POST', path: info, body: smuggledRemove, framing: 'chunked' }],
    },
    // Pipelining: each request on its own, through ClusterODM's own checks.
    {
      name: 'GET with Content-Length: 0, then a pipelined POST /task/remove without a token',
      bytes: h([`GET ${info}${q} HTTP/1.1`, 'Host: clusterodm', 'Content-Length: 0']) + req('POST', '/task/remove', ['Content-Type: application/x-www-form-urlencoded', `Content-Length: ${len(remove)}`], remove),
      answers: [200, 401],
      node: [{ method: 'GET', path: info }],
    },
    {
      name: 'two pipelined GETs of the own task',
      bytes: h([`GET ${info}${q} HTTP/1.1`, 'Host: clusterodm']) + req('GET', `/task/${own}/output${q}`, []),
      answers: [200, 200],
      node: [{ method: 'GET', path: info }, { method: 'GET', path: `/task/${own}/output` }],
    },
    // Framing Node's parser refuses before any route sees it (on a route that would forward the body).
    refused('Content-Length and Transfer-Encoding together', req('POST', info + q, [`Content-Length: ${len(smuggledRemove)}`, te], chunked(smuggledRemove))),
    refused('Transfer-Encoding: chunked, identity', req('POST', info + q, ['Transfer-Encoding: chunked, identity'], chunked(smuggledRemove))),
    refused('Transfer-Encoding twice', req('POST', info + q, [te, te], chunked(smuggledRemove))),
    refused('Transfer-Encoding with a space before the colon', req('POST', info + q, ['Transfer-Encoding : chunked'], chunked(smuggledRemove))),
    refused('Transfer-Encoding: xchunked', req('POST', info + q, ['Transfer-Encoding: xchunked'], chunked(smuggledRemove))),
    refused('obs-fold: Transfer-Encoding folded onto a second line', req('POST', info + q, ['Transfer-Encoding:', ' chunked'], chunked(smuggledRemove))),
    refused('obs-fold: a folded line after another header', req('GET', `/js/main.js`, ['X-A: a', ` ${te}`], chunked(smuggledRemove))),
    refused('bare LF line endings', `POST ${info}${q} HTTP/1.1\nHost: clusterodm\n${te}\nConnection: close\n\n${chunked(smuggledRemove)}`),
    refused('bare LF after the chunk size', req('POST', info + q, [te], `${len(smuggledRemove).toString(16)}\n${smuggledRemove}${CRLF}0${CRLF}${CRLF}`)),
    refused('bare LF in a chunk extension', req('POST', info + q, [te], `${len(smuggledRemove).toString(16)};x\n${smuggledRemove}${CRLF}0${CRLF}${CRLF}`)),
    refused('bare CR in the headers', `POST ${info}${q} HTTP/1.1\rHost: clusterodm${CRLF}${te}${CRLF}Connection: close${CRLF}${CRLF}${chunked(smuggledRemove)}`),
    refused('chunk size 0x…', req('POST', info + q, [te], `0x${len(smuggledRemove).toString(16)}${CRLF}${smuggledRemove}${CRLF}0${CRLF}${CRLF}`)),
    refused('chunk size that overflows 64 bits', req('POST', info + q, [te], `1${'0'.repeat(16)}${len(smuggledRemove).toString(16)}${CRLF}${smuggledRemove}${CRLF}0${CRLF}${CRLF}`)),
    refused('Content-Length: +N', req('POST', info + q, [`Content-Length: +${len(smuggledRemove)}`], smuggledRemove)),
    refused('two different Content-Lengths', req('POST', info + q, ['Content-Length: 0', `Content-Length: ${len(smuggledRemove)}`], smuggledRemove)),
    refused('Content-Length as a list', req('POST', info + q, [`Content-Length: 0, ${len(smuggledRemove)}`], smuggledRemove)),
  ];

  const problems: string[] = [];
  for (const p of corpus) {
    const before = node.requests.length;
    const answers = await exchange(port, Buffer.from(p.bytes, 'latin1'));
    const statuses = answers.map((a) => a.status);
    if (JSON.stringify(statuses) !== JSON.stringify(p.answers)) problems.push(`${p.name}: answers ${JSON.stringify(statuses)}, expected ${JSON.stringify(p.answers)}`);
    // Another client, right after: its own answer, and its request reaches the node as itself.
    const next = await exchange(port, Buffer.from(req('GET', `/task/${canary}/info?token=alice`, []), 'latin1'));
    if (next.length !== 1 || next[0]?.status !== 200 || (JSON.parse(next[0].body) as { uuid?: string }).uuid !== canary) {
      problems.push(`${p.name}: the next client got ${JSON.stringify(next)}`);
    }
    const expected = [...p.node, { method: 'GET', path: `/task/${canary}/info` }];
    await waitUntil(() => fromClients(node, before).every((r) => r.complete !== false), { message: `${p.name}: a body never arrived whole` }).catch(() => undefined);
    const got = fromClients(node, before).map(describeAtNode);
    if (JSON.stringify(got) !== JSON.stringify(expected)) problems.push(`${p.name}: the node received ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
  }
  assert.deepEqual(problems, [], `${problems.length} of ${corpus.length} payloads:\n${problems.join('\n')}`);
  assert.ok(node.tasks().some((task) => task.uuid === victim), "Alice's task is still on the node");
  assert.ok(!node.requests.some((r) => r.path.startsWith('/task/remove') || r.path.startsWith('/task/cancel')), 'no smuggled request ever reached the node');
});

test('request smuggling through the forwarder: a smuggled Content-Length: 400 does not swallow the next client\'s request (node with a token)', { timeout: 120_000 }, async (t) => {
  const NODE_TOKEN = 'node-secret-1';
  const node = await startTestNode({ token: NODE_TOKEN, recordBodies: true, processingMs: 50 });
  t.after(() => node.close());
  const { url, port, app } = await startLoggedApp(t, ['--token', 'T']);
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port, NODE_TOKEN));
  await app.nodeOps.updateAll();
  const uuid = String((await json(`${url}/task/new?token=T`, { method: 'POST', body: form({}, images(1)) }))['uuid']);
  await waitUntil(() => app.routes.has(uuid), { timeoutMs: 20_000, message: 'the task never reached the node' });
  // Warm the pool: a kept-alive connection to the node that the attack's request will reuse and give back.
  assert.equal((await json(`${url}/task/${uuid}/info?token=T`))['uuid'], uuid);

  // The node reads a /task/cancel body before it checks the token: it waits for 400 bytes, taking whatever comes next.
  const hold = `POST /task/cancel HTTP/1.1${CRLF}Host: node${CRLF}Content-Type: application/x-www-form-urlencoded${CRLF}Content-Length: 400${CRLF}${CRLF}`;
  const attack = `GET /js/main.js HTTP/1.1${CRLF}Host: clusterodm${CRLF}Transfer-Encoding: chunked${CRLF}${CRLF}${chunked(hold)}`;
  const s = net.connect(port, '127.0.0.1');
  t.after(() => s.destroy());
  s.on('error', () => undefined);
  let attackAnswer = '';
  s.on('data', (d: Buffer) => (attackAnswer += d.toString('latin1')));
  s.write(attack);
  await waitUntil(() => /^HTTP\/1\.1 \d{3}/.test(attackAnswer) || s.destroyed, { timeoutMs: 10_000, message: 'the attack got no answer' });

  // The next clients, one after another (so each takes the most recently used pooled connection).
  const infoReq = Buffer.from(`GET /task/${uuid}/info?token=T HTTP/1.1${CRLF}Host: clusterodm${CRLF}Connection: close${CRLF}${CRLF}`, 'latin1');
  for (let i = 0; i < 4; i++) {
    const answers = await exchange(port, infoReq);
    assert.equal(answers.length, 1, `client ${i + 1} got ${answers.length} answers`);
    assert.equal(answers[0]?.status, 200);
    assert.equal((JSON.parse(answers[0]?.body ?? '') as { uuid?: string }).uuid, uuid, `client ${i + 1} got another answer`);
  }
  assert.match(attackAnswer, /^HTTP\/1\.1 400 /, 'the attack was refused');
  assert.deepEqual(
    node.requests.filter((r) => r.path.startsWith('/task/cancel') || r.path === '/js/main.js').map((r) => `${r.method} ${r.path}`),
    [],
    'neither the outer nor the smuggled request reached the node',
  );
});
