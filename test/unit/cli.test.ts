import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { AdminCli, type AdminCliOptions, type AsrCli } from '../../src/cli';
import { MemoryLogger, systemClock } from '../../src/core';
import { NodeClient } from '../../src/nodeodm';
import { HealthPoller, NodeRegistry, parseNodesFile, type NodeRecord } from '../../src/nodes';
import { NodeOps, TaskOps } from '../../src/ops';
import { FileRouteStore, RouteTable } from '../../src/routing';
import { JsonStateFile } from '../../src/store';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';
import { GOLDEN_HELP } from '../helpers/golden';

// ---------------------------------------------------------------------------------------------
// Harness: the real AdminCli over real registry / routes / ops, on temp files, port 0.
// ---------------------------------------------------------------------------------------------

interface Harness {
  cli: AdminCli;
  registry: NodeRegistry;
  routes: RouteTable;
  logger: MemoryLogger;
  dir: string;
}

async function startCli(
  t: TestContext,
  opts: Partial<AdminCliOptions> & { nodesFile?: (dir: string) => string } = {},
): Promise<Harness> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clusterodm-cli-'));
  const logger = new MemoryLogger();
  const clock = systemClock;
  const nodesFile = opts.nodesFile ? opts.nodesFile(dir) : path.join(dir, 'nodes.json');
  const store = new JsonStateFile<NodeRecord[]>({ file: nodesFile, parse: parseNodesFile, logger, clock });
  const registry = new NodeRegistry({ store, clock, logger });
  await registry.load();
  const routes = new RouteTable({ store: new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger }), clock, logger });
  await routes.load(registry);
  const client = new NodeClient({ timeoutMs: 3000 });
  const poller = new HealthPoller({ registry, client, clock, logger });
  const nodeOps = new NodeOps({ registry, poller, routes, logger });
  const taskOps = new TaskOps({ routes, client });
  const { nodesFile: _ignored, ...cliOpts } = opts;
  const cli = new AdminCli({
    port: 0,
    host: '127.0.0.1',
    password: '',
    version: '1.5.8',
    nodeOps,
    taskOps,
    routes,
    asr: null,
    clock,
    logger,
    loginDelayMs: 50,
    ...cliOpts,
  });
  await cli.start();
  t.after(async () => {
    await cli.stop();
    await routes.flush().catch(() => undefined);
    await registry.flush();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { cli, registry, routes, logger, dir };
}

async function testNode(t: TestContext, opts: Parameters<typeof startTestNode>[0] = {}): Promise<TestNode> {
  const node = await startTestNode(opts);
  t.after(() => node.close());
  return node;
}

/** A telnet-like client: sends lines and reads up to the next prompt. */
class CliClient {
  private text = '';
  private consumed = 0;
  private listeners = new Set<() => void>();
  isClosed = false;
  readonly closed: Promise<void>;
  /** Our port, as the server sees it in `<address>:<port>` (kept: the socket forgets it once closed). */
  readonly localPort: number;

  private constructor(readonly socket: net.Socket) {
    this.localPort = socket.localPort ?? 0;
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      this.text += s;
      this.notify();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.isClosed = true;
        this.notify();
        resolve();
      }),
    );
  }

  static async connect(t: TestContext, port: number): Promise<CliClient> {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.setNoDelay(true);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    t.after(() => socket.destroy());
    return new CliClient(socket);
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Everything received and not yet read. */
  get unread(): string {
    return this.text.slice(this.consumed);
  }

  /** Waits until the unread text satisfies `pred`, then returns it and marks it read. */
  read(pred: (unread: string) => boolean, what: string, timeoutMs = 5000): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!pred(this.unread)) {
          if (this.isClosed) finish(new Error(`connection closed while waiting for ${what}; got ${JSON.stringify(this.unread)}`));
          return;
        }
        const out = this.unread;
        this.consumed = this.text.length;
        finish(null, out);
      };
      const timer = setTimeout(
        () => finish(new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.unread)}`)),
        timeoutMs,
      );
      const finish = (err: Error | null, out = ''): void => {
        clearTimeout(timer);
        this.listeners.delete(check);
        if (err) reject(err);
        else resolve(out);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Reads up to and including the `count`-th next prompt. */
  readPrompts(count = 1): Promise<string> {
    return this.read((s) => (s.match(/[#$]> /g) ?? []).length >= count && /[#$]> $/.test(s), `${count} prompt(s)`);
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends one line (CR LF) and returns the reply including the next prompt. */
  send(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.readPrompts();
  }

  /** Reads whatever is left until the server closes the connection. */
  async rest(): Promise<string> {
    await this.closed;
    const out = this.unread;
    this.consumed = this.text.length;
    return out;
  }
}

async function connected(t: TestContext, h: Harness): Promise<CliClient> {
  const c = await CliClient.connect(t, h.cli.port);
  await c.readPrompts();
  return c;
}

const P = '#> ';
const crlf = (...lines: string[]): string => lines.map((l) => `${l}\r\n`).join('');
const onlineLine = (i: number, port: number, flags = ''): string =>
  `${i}) 127.0.0.1:${port} [online] [0/1] <engine: odm ?> <API: 2.2.4>${flags}`;


// ---------------------------------------------------------------------------------------------
// Session basics
// ---------------------------------------------------------------------------------------------

test('banner, HELP golden text, prompts and QUIT (no password)', async (t) => {
  const h = await startCli(t);
  const c = await CliClient.connect(t, h.cli.port);
  const banner = await c.readPrompts();
  assert.equal(banner, `Welcome 127.0.0.1:${c.localPort} ClusterODM:1.5.8\r\nHELP for help\r\nQUIT to quit\r\n${P}`);
  assert.equal(await c.send('HELP'), GOLDEN_HELP + P);
  assert.equal(await c.send('node list'), `\r\n${P}`, 'an empty list is one empty line; commands are case-insensitive');
  assert.equal(await c.send(''), `INVALID\r\n${P}`);
  assert.equal(await c.send('FOO BAR'), `INVALID\r\n${P}`);
  c.write('QUIT\r\n');
  assert.equal(await c.rest(), 'Bye!\r\n');
  assert.ok(h.logger.lines.some((l) => l.startsWith('debug: Admin CLI connection from 127.0.0.1:')));
  await waitUntil(() => h.logger.lines.some((l) => / disconnected$/.test(l)));
  assert.ok(h.logger.lines.includes(`verbose: Admin CLI 127.0.0.1:${c.localPort}: HELP`));
});

test('!! repeats the previous line and is not itself remembered', async (t) => {
  const h = await startCli(t);
  const c = await connected(t, h);
  assert.equal(await c.send('!!'), `INVALID\r\n${P}`, 'on a first command it repeats the empty line');
  assert.equal(await c.send('HELP'), GOLDEN_HELP + P);
  assert.equal(await c.send('!!'), GOLDEN_HELP + P);
  assert.equal(await c.send('!!'), GOLDEN_HELP + P);
  assert.equal(await c.send('NODE'), `INVALID\r\n${P}`);
  assert.equal(await c.send('!!'), `INVALID\r\n${P}`);
  assert.equal(await c.send('!! x'), `INVALID\r\n${P}`);
});

// ---------------------------------------------------------------------------------------------
// NODE
// ---------------------------------------------------------------------------------------------

test('NODE ADD/LIST/INFO/LOCK/UNLOCK/BEST/UPDATE/DEL against test nodes and an offline node', async (t) => {
  const h = await startCli(t);
  const [n1, n2] = [await testNode(t), await testNode(t)];
  const c = await connected(t, h);

  assert.equal(await c.send(`NODE ADD 127.0.0.1 ${n1.port}`), `OK\r\n${P}`);
  assert.equal(await c.send(`NODE ADD 127.0.0.1 ${n2.port}`), `OK\r\n${P}`);
  assert.equal(await c.send(`NODE ADD 127.0.0.1 ${n1.port}`), `FAIL\r\n${P}`, 'duplicate');
  assert.equal(await c.send('NODE ADD 127.0.0.1 notaport'), `FAIL\r\n${P}`);
  assert.equal(await c.send('NODE ADD  3000'), `FAIL\r\n${P}`, 'empty hostname (double space)');
  assert.equal(await c.send('NODE ADD onlyhost'), `INVALID\r\n${P}`);
  assert.equal(await c.send('NODE UPDATE'), `OK\r\n${P}`);
  assert.equal(await c.send('NODE LIST'), crlf(onlineLine(1, n1.port), onlineLine(2, n2.port), '') + P);

  const info = await c.send('NODE INFO 1');
  assert.ok(info.endsWith(`}\r\n${P}`));
  assert.ok(!info.slice(0, -5).includes('\r'), 'inner JSON newlines are bare LF');
  const parsed = JSON.parse(info.slice(0, -5)) as Record<string, unknown>;
  assert.deepEqual(Object.keys(parsed), ['hostname', 'port', 'token', 'info', 'lastRefreshed']);
  assert.equal(parsed['port'], String(n1.port), 'the port stays the string that was typed');
  assert.equal((parsed['info'] as Record<string, unknown>)['version'], '2.2.4');
  assert.ok(info.startsWith(`{\n  "hostname": "127.0.0.1",\n  "port": "${n1.port}",\n  "token": "",\n  "info": {\n`));

  assert.equal(await c.send('NODE LOCK 1'), `OK\r\n${P}`);
  assert.equal(await c.send('NODE LIST'), crlf(onlineLine(1, n1.port, ' [L]'), onlineLine(2, n2.port), '') + P);
  assert.equal(await c.send('NODE BEST 10'), crlf(onlineLine(1, n2.port)) + P);
  assert.equal(await c.send('NODE UNLOCK 1'), `OK\r\n${P}`);
  assert.equal(await c.send('NODE BEST 10'), crlf(onlineLine(1, n1.port)) + P, 'round robin moved on');
  assert.equal(await c.send('NODE BEST ten'), `INVALID\r\n${P}`);
  assert.equal(await c.send('NODE BEST'), `INVALID\r\n${P}`);
  assert.equal(await c.send('NODE INFO 99'), `INVALID\r\n${P}`);
  assert.equal(await c.send('NODE INFO'), `INVALID\r\n${P}`);
  assert.equal(await c.send('NODE LOCK 99'), `FAIL\r\n${P}`);
  assert.equal(await c.send('NODE UNLOCK abc'), `FAIL\r\n${P}`);
  assert.equal(await c.send('NODE LOCK'), `INVALID\r\n${P}`);
  assert.equal(await c.send('NODE'), `INVALID\r\n${P}`);
  assert.equal(await c.send('NODE FOO'), `INVALID\r\n${P}`);

  assert.equal(await c.send('NODE ADD localhost 1'), `OK\r\n${P}`, 'nothing listens on port 1');
  assert.equal(await c.send('NODE UPDATE'), `OK\r\n${P}`);
  const offline = '3) localhost:1 [offline] [?/?] <engine: ?> <API: ?>';
  assert.equal(await c.send('NODE LIST'), crlf(onlineLine(1, n1.port), onlineLine(2, n2.port), offline, '') + P);
  assert.equal(await c.send('NODE BEST 5'), crlf(onlineLine(1, n2.port)) + P);
  assert.equal(await c.send('NODE DEL 3'), `OK\r\n${P}`);
  assert.equal(await c.send('NODE DEL 3'), `FAIL\r\n${P}`);
  assert.equal(await c.send('NODE LIST'), crlf(onlineLine(1, n1.port), onlineLine(2, n2.port), '') + P);

  const saved = JSON.parse(fs.readFileSync(path.join(h.dir, 'nodes.json'), 'utf8')) as unknown;
  assert.deepEqual(saved, [
    { hostname: '127.0.0.1', port: String(n1.port), token: '', locked: false },
    { hostname: '127.0.0.1', port: String(n2.port), token: '' },
  ]);
});

test('NODE INFO masks the node token; tokens and passwords never reach the log', async (t) => {
  const h = await startCli(t);
  const node = await testNode(t, { token: 'supersecret42' });
  const c = await connected(t, h);
  assert.equal(await c.send(`NODE ADD 127.0.0.1 ${node.port} supersecret42`), `OK\r\n${P}`);
  assert.equal(await c.send('NODE UPDATE'), `OK\r\n${P}`);
  assert.equal(await c.send('NODE LIST'), crlf(onlineLine(1, node.port), '') + P, 'the token is used with the node');
  const info = await c.send('NODE INFO 1');
  assert.ok(!info.includes('supersecret42'));
  assert.ok(info.includes('"token": "********"'), 'masked whole: not even its first characters show');
  assert.ok(h.logger.lines.includes(`verbose: Admin CLI 127.0.0.1:${c.localPort}: NODE ADD`));
  assert.ok(h.logger.lines.every((l) => !l.includes('supersecret42')));
});

test('a failed save of nodes.json answers FAIL and logs the error', async (t) => {
  const h = await startCli(t, {
    nodesFile: (dir) => {
      fs.writeFileSync(path.join(dir, 'blocker'), 'a file where a directory should be');
      return path.join(dir, 'blocker', 'nodes.json');
    },
  });
  const c = await connected(t, h);
  assert.equal(await c.send('NODE ADD 127.0.0.1 3000'), `FAIL\r\n${P}`);
  assert.equal(await c.send('NODE LIST'), `\r\n${P}`, 'the add was rolled back');
  assert.ok(h.logger.lines.some((l) => l.startsWith('error: Add node failed: ')));
});

// ---------------------------------------------------------------------------------------------
// ROUTE / TASK / ASR
// ---------------------------------------------------------------------------------------------

async function createTask(node: TestNode): Promise<string> {
  const form = new FormData();
  form.append('name', 'cli-test');
  form.append('images', new Blob([Buffer.from('fake image bytes')]), 'DJI_0001.JPG');
  const res = await fetch(`${node.url}/task/new`, { method: 'POST', body: form });
  const body = (await res.json()) as { uuid?: string };
  assert.equal(typeof body.uuid, 'string');
  return body.uuid ?? '';
}

test('ROUTE and TASK commands, including unknown ids and sub-commands', async (t) => {
  const h = await startCli(t);
  const node = await testNode(t, { processingMs: 20 });
  const c = await connected(t, h);
  assert.equal(await c.send(`NODE ADD 127.0.0.1 ${node.port}`), `OK\r\n${P}`);
  const uuid = await createTask(node);
  const cluster = h.registry.nth(1);
  assert.ok(cluster);
  await h.routes.add(uuid, cluster, 'usertoken');
  await waitUntil(() => node.tasks()[0]?.status === 40, { message: 'task completed' });

  const route = await c.send(`ROUTE INFO ${uuid}`);
  const accessed = h.routes.peek(uuid)?.accessed ?? 0;
  const routeJson = `{\n  "node": {\n    "hostname": "127.0.0.1",\n    "port": "${node.port}",\n    "token": ""\n  },\n  "token": "****",\n  "accessed": ${accessed}\n}`;
  assert.equal(route, `${routeJson}\r\n${P}`);
  assert.equal(await c.send('ROUTE LIST'), `{\n  "${uuid}": ${routeJson.replace(/\n/g, '\n  ')}\n}\r\n${P}`);
  assert.equal(await c.send('ROUTE LIST 1'), `{\n  "${uuid}": ${routeJson.replace(/\n/g, '\n  ')}\n}\r\n${P}`);
  assert.equal(await c.send('ROUTE LIST 9'), `INVALID\r\n${P}`);
  assert.equal(await c.send('ROUTE INFO 00000000-0000-0000-0000-000000000000'), `INVALID\r\n${P}`);
  assert.equal(await c.send('ROUTE INFO'), `INVALID\r\n${P}`, 'fix: the original printed nothing');
  assert.equal(await c.send('ROUTE FOO'), `INVALID\r\n${P}`, 'fix: the original printed nothing');
  assert.equal(await c.send('ROUTE'), `INVALID\r\n${P}`);

  const info = JSON.parse((await c.send(`TASK INFO ${uuid}`)).slice(0, -5)) as Record<string, unknown>;
  assert.equal(info['uuid'], uuid);
  assert.deepEqual(info['status'], { code: 40 });
  assert.equal(await c.send('TASK INFO nope'), `INVALID\r\n${P}`);
  const list = JSON.parse((await c.send('TASK LIST')).slice(0, -5)) as Array<Record<string, unknown>>;
  assert.deepEqual(list.map((x) => x['uuid']), [uuid]);
  assert.equal((await c.send('TASK LIST 1')).startsWith(`[\n  {\n    "uuid": "${uuid}"`), true);
  assert.equal(await c.send('TASK LIST 9'), `INVALID\r\n${P}`);

  assert.equal(await c.send(`TASK OUTPUT ${uuid} -1`), `Compressing all.zip\n\r\n${P}`, 'as the transcript');
  const all = await c.send(`TASK OUTPUT ${uuid}`);
  assert.ok(all.split('\r\n').length > 2 && all.endsWith(`Compressing all.zip\n\r\n${P}`));
  assert.equal(await c.send(`TASK OUTPUT ${uuid} 1.5`), `INVALID\r\n${P}`);
  assert.equal(await c.send(`TASK OUTPUT ${uuid} x`), `INVALID\r\n${P}`);
  assert.equal(await c.send('TASK OUTPUT 00000000-1111-4222-8333-444444444444'), `INVALID\r\n${P}`);

  assert.equal(await c.send(`TASK CANCEL ${uuid}`), `{\n  "success": true\n}\r\n${P}`);
  assert.equal(await c.send(`TASK REMOVE ${uuid}`), `{\n  "success": true\n}\r\n${P}`);
  assert.equal(await c.send(`TASK INFO ${uuid}`), `{\n  "error": "${uuid} not found"\n}\r\n${P}`);
  assert.equal(await c.send('TASK CANCEL 00000000-1111-4222-8333-444444444444'), `INVALID\r\n${P}`, 'fix: with a prompt');
  assert.equal(await c.send('TASK REMOVE 00000000-1111-4222-8333-444444444444'), `INVALID\r\n${P}`);
  assert.equal(await c.send('TASK CANCEL'), `INVALID\r\n${P}`);
  assert.equal(await c.send('TASK FOO'), `INVALID\r\n${P}`);
  assert.equal(await c.send('TASK'), `INVALID\r\n${P}`);
});

test('ASR VIEWCMD: INVALID with a prompt without an autoscaler', async (t) => {
  const h = await startCli(t);
  const c = await connected(t, h);
  assert.equal(await c.send('ASR VIEWCMD 5'), `INVALID\r\n${P}`, 'fix: the original printed no prompt');
  assert.equal(await c.send('ASR'), `INVALID\r\n${P}`);
  assert.equal(await c.send('NODE LIST'), `\r\n${P}`);
});

test('ASR VIEWCMD prints the provider command; bad counts are INVALID; a throwing provider gives FAIL', async (t) => {
  let throwNext = false;
  const asr: AsrCli = {
    viewCommand: (images) => {
      if (throwNext) throw new Error('no machine size for that many images');
      return `docker-machine create --driver fake --fake-images ${images} debug-machine`;
    },
  };
  const h = await startCli(t, { asr });
  const c = await connected(t, h);
  assert.equal(await c.send('ASR VIEWCMD 5'), `docker-machine create --driver fake --fake-images 5 debug-machine\r\n${P}`);
  assert.equal(await c.send('asr viewcmd 12'), `docker-machine create --driver fake --fake-images 12 debug-machine\r\n${P}`);
  assert.equal(await c.send('ASR VIEWCMD 0'), `INVALID\r\n${P}`);
  assert.equal(await c.send('ASR VIEWCMD -3'), `INVALID\r\n${P}`);
  assert.equal(await c.send('ASR VIEWCMD five'), `INVALID\r\n${P}`);
  assert.equal(await c.send('ASR VIEWCMD'), `INVALID\r\n${P}`);
  assert.equal(await c.send('ASR OTHER 5'), `INVALID\r\n${P}`);
  throwNext = true;
  assert.equal(await c.send('ASR VIEWCMD 5'), `FAIL\r\n${P}`);
  assert.ok(h.logger.lines.some((l) => l.startsWith('error: Admin CLI ') && l.endsWith('ASR VIEWCMD failed: no machine size for that many images')));
});

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

test('LOGIN with the right password', async (t) => {
  const h = await startCli(t, { password: 'hunter2' });
  const c = await CliClient.connect(t, h.cli.port);
  const banner = await c.readPrompts();
  assert.equal(banner, `Welcome 127.0.0.1:${c.localPort} ClusterODM:1.5.8\r\nLOGIN <LOGIN> to log-in\r\nQUIT to quit\r\n$> `);
  assert.equal(await c.send('LOGIN hunter2'), `OK\r\nHELP for help\r\n${P}`);
  assert.equal(await c.send('NODE LIST'), `\r\n${P}`);
  assert.equal(await c.send('LOGIN hunter2'), `INVALID\r\n${P}`, 'already logged in');
  assert.ok(h.logger.lines.includes(`verbose: Admin CLI 127.0.0.1:${c.localPort}: LOGIN`));
  assert.ok(h.logger.lines.every((l) => !l.includes('hunter2')));
});

test('a wrong password closes the connection after a delay, even with a retry pipelined', async (t) => {
  const h = await startCli(t, { password: 'hunter2', loginDelayMs: 300 });
  const c = await CliClient.connect(t, h.cli.port);
  await c.readPrompts();
  const started = Date.now();
  c.write('LOGIN wrong\r\nLOGIN hunter2\r\nNODE LIST\r\n');
  assert.equal(await c.rest(), '', 'nothing is answered, the retry is not run');
  assert.ok(Date.now() - started >= 250, 'the close was delayed');
  assert.ok(h.logger.lines.includes(`warn: Failed admin CLI login from 127.0.0.1:${c.localPort}`));
  assert.ok(h.logger.lines.every((l) => !l.includes('wrong')));
});

test('before login only LOGIN and QUIT are accepted; anything else closes the connection', async (t) => {
  const h = await startCli(t, { password: 'hunter2' });
  for (const input of ['NODE LIST', 'HELP', '', '!!', 'x'.repeat(10_000)]) {
    const c = await CliClient.connect(t, h.cli.port);
    await c.readPrompts();
    c.write(`${input}\r\n`);
    assert.equal(await c.rest(), '', `input ${JSON.stringify(input.slice(0, 20))}`);
  }
  const q = await CliClient.connect(t, h.cli.port);
  await q.readPrompts();
  q.write('quit\r\n');
  assert.equal(await q.rest(), 'Bye!\r\n');
  const l = await CliClient.connect(t, h.cli.port);
  await l.readPrompts();
  l.write('LOGIN  hunter2\r\n');
  assert.equal(await l.rest(), '', 'the password is the first argument, here ""');
});

// ---------------------------------------------------------------------------------------------
// Framing, junk, ordering, timeouts
// ---------------------------------------------------------------------------------------------

test('lines split across packets, several lines per packet, telnet negotiation and CR NUL', async (t) => {
  const h = await startCli(t);
  const c = await connected(t, h);
  for (const part of ['HE', 'L', 'P\r']) {
    c.write(part);
    await new Promise((resolve) => setImmediate(resolve));
  }
  c.write('\n');
  assert.equal(await c.readPrompts(), GOLDEN_HELP + P);
  assert.equal(c.unread, '', 'the LF after CR is not another line');

  c.write('NODE LIST\r\nFOO\nASR VIEWCMD 5\rHELP\r\n');
  assert.equal(await c.readPrompts(4), `\r\n${P}INVALID\r\n${P}INVALID\r\n${P}${GOLDEN_HELP}${P}`);

  c.write(Buffer.concat([Buffer.from([0xff, 0xfd, 0x01, 0xff, 0xfb, 0x03]), Buffer.from('NODE LIST'), Buffer.from([0x0d, 0x00, 0x0d, 0x0a])]));
  assert.equal(await c.readPrompts(), `\r\n${P}`);
  c.write('HELP\r\0\r\n');
  assert.equal(await c.readPrompts(), GOLDEN_HELP + P);
  assert.equal(await c.send('NODE LIST'), `\r\n${P}`, 'no stray INVALID was queued');
});

test('binary junk and a 100 KB line get INVALID and do not hurt the session', async (t) => {
  const h = await startCli(t);
  const c = await connected(t, h);
  const junk = Buffer.alloc(2000);
  let seed = 12345;
  for (let i = 0; i < junk.length; i++) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const b = seed >>> 24;
    junk[i] = b === 0x0a || b === 0x0d || b === 0xff ? 0x80 : b; // one line, no telnet commands
  }
  c.write(Buffer.concat([junk, Buffer.from('\r\n')]));
  assert.equal(await c.readPrompts(), `INVALID\r\n${P}`);

  c.write(Buffer.from([0x00, 0x01, 0x1b, 0x5b, 0x41, 0xc3, 0x28, 0xff, 0xfa, 0x01, 0xff, 0xf0, 0x7f, 0x0d, 0x0a]));
  assert.equal(await c.readPrompts(), `INVALID\r\n${P}`);

  c.write(`${'A'.repeat(100 * 1024)}\r\n`);
  assert.equal(await c.readPrompts(), `INVALID\r\n${P}`, 'one INVALID for the whole long line');
  assert.equal(await c.send('HELP'), GOLDEN_HELP + P);
});

test('commands of one connection run one at a time, in order', async (t) => {
  const h = await startCli(t);
  const node = await testNode(t, { infoDelayMs: 200 });
  const c = await connected(t, h);
  assert.equal(await c.send(`NODE ADD 127.0.0.1 ${node.port}`), `OK\r\n${P}`);
  c.write('NODE UPDATE\r\nNODE LIST\r\nTASK LIST\r\n');
  assert.equal(await c.readPrompts(3), `OK\r\n${P}${crlf(onlineLine(1, node.port), '')}${P}[]\r\n${P}`);
});

test('a flood of pipelined lines is answered in order, one reply per line', async (t) => {
  const h = await startCli(t);
  const c = await connected(t, h);
  const count = 500;
  c.write(Array.from({ length: count }, (_, i) => (i % 2 === 0 ? 'NODE LIST\r\n' : 'FOO\r\n')).join(''));
  const expected = Array.from({ length: count }, (_, i) => (i % 2 === 0 ? `\r\n${P}` : `INVALID\r\n${P}`)).join('');
  assert.equal(await c.readPrompts(count), expected);
  assert.equal(await c.send('HELP'), GOLDEN_HELP + P);
});

test('idle connections are closed', async (t) => {
  const h = await startCli(t, { idleTimeoutMs: 150 });
  const c = await connected(t, h);
  await c.closed;
  assert.ok(h.logger.lines.some((l) => /^debug: Admin CLI .* idle for 150 ms, closing$/.test(l)));
});

test('with a password, a connection that does not log in in time is closed even if it keeps sending bytes', async (t) => {
  const h = await startCli(t, { password: 'pw', loginTimeoutMs: 400 });
  const guest = await connected(t, h);
  // An unfinished telnet subnegotiation, a byte at a time: never a whole line, so the idle timer keeps restarting.
  guest.socket.write(Buffer.from([255, 250, 24]));
  const drip = setInterval(() => guest.socket.write(Buffer.from([1])), 50);
  t.after(() => clearInterval(drip));
  const admin = await connected(t, h);
  assert.equal(await admin.send('LOGIN pw'), 'OK\r\nHELP for help\r\n#> ');
  await guest.closed;
  clearInterval(drip);
  assert.ok(h.logger.lines.some((l) => /^warn: Admin CLI .* did not log in within 400 ms, closing$/.test(l)));
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(await admin.send('NODE LIST'), '\r\n#> ', 'a logged-in session stays');
});

test('stop() closes the server and open connections; port 0 gives a real port', async (t) => {
  const h = await startCli(t);
  assert.ok(h.cli.port > 0);
  const port = h.cli.port;
  const c = await connected(t, h);
  await h.cli.stop();
  await c.closed;
  await assert.rejects(CliClient.connect(t, port));
  await h.cli.stop();
});
