/**
 * Hostile input on the admin CLI (:8080): random lines, commands with random arguments, binary data, telnet
 * sequences, very long lines, all sent in random packet splits. Every line gets a reply and a prompt (or, for QUIT,
 * the connection closes), nothing throws, nothing is left unhandled, and the CLI keeps serving.
 * Seeded: FUZZ_SEED=<n> replays a run; FUZZ_CLI_RUNS=<n> changes the number of cases.
 */
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { test } from 'node:test';
import fc from 'fast-check';
import { CliClient } from '../helpers/cli-client';
import { waitUntil } from '../helpers/wait';
import { startTestNode } from '../helpers/test-node';
import { captureUnhandled, form, images, json, seedFrom, startLoggedApp } from './support';

const RUNS = Number(process.env['FUZZ_CLI_RUNS'] ?? 3000);
const COMMANDS = ['HELP', 'NODE ADD', 'NODE DEL', 'NODE INFO', 'NODE LIST', 'NODE LOCK', 'NODE UNLOCK', 'NODE UPDATE', 'NODE BEST',
  'ROUTE INFO', 'ROUTE LIST', 'TASK LIST', 'TASK INFO', 'TASK OUTPUT', 'TASK CANCEL', 'TASK REMOVE', 'ASR VIEWCMD', '!!', 'LOGIN', 'QUIT',
  'node', 'route', 'task', 'NODE', 'TASK X', 'ROUTE X'];
const IAC = 0xff;

const arg = fc.oneof(
  fc.integer({ min: -5, max: 5 }).map(String),
  fc.constantFrom('0', '1', '2', '99999999999999999999', '-0', '1e3', 'NaN', '0x1', '127.0.0.1', '3000', '"3000"'),
  fc.uuid().map(String),
  fc.string({ maxLength: 30 }),
);
const commandLine = fc
  .tuple(fc.constantFrom(...COMMANDS), fc.array(arg, { maxLength: 4 }), fc.constantFrom(' ', '  ', '\t'))
  .map(([c, args, sep]) => Buffer.from([c, ...args].join(sep), 'utf8'));
const lineArb: fc.Arbitrary<Buffer> = fc.oneof(
  commandLine,
  commandLine,
  fc.string({ maxLength: 200 }).map((s) => Buffer.from(s, 'utf8')),
  fc.string({ unit: 'binary', maxLength: 100 }).map((s) => Buffer.from(s, 'utf8')),
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  fc.tuple(fc.constantFrom(0xfb, 0xfc, 0xfd, 0xfe, 0xfa, 0xf1, IAC), fc.nat(255)).map(([c, o]) => Buffer.from([IAC, c, o])),
  fc.integer({ min: 4000, max: 20_000 }).map((n) => Buffer.alloc(n, 0x41)),
);
const endings = fc.constantFrom('\r\n', '\n', '\r', '\r\0');
const caseArb = fc.tuple(fc.array(fc.tuple(lineArb, endings), { minLength: 1, maxLength: 6 }), fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 8 }));

/** The reply texts the CLI may produce, one per line between prompts. */
const REPLY = /^(?:OK|FAIL|INVALID|No best node available|\d+\) .+|[[{].*|[\]}].*|\s+.*|.*"[^"]*".*|[A-Z!]+.*|)$/;

test('fuzz: the admin CLI answers every hostile input with a reply and a prompt', { timeout: 170_000 }, async (t) => {
  const seed = seedFrom('FUZZ_SEED', 'CLI fuzz');
  const unhandled = captureUnhandled(t);
  const node = await startTestNode({ processingMs: 3_600_000 });
  t.after(() => node.close());
  const { url, app, logger } = await startLoggedApp(t, ['--admin-cli-port', '1']);
  // Fuzzed NODE ADD lines must not make the daemon contact random hosts: only loopback is added.
  const add = app.nodeOps.add.bind(app.nodeOps);
  app.nodeOps.add = (host, port, token) => (host === '127.0.0.1' ? add(host, port, token) : Promise.resolve(null));
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const real = await json(`${url}/task/new`, { method: 'POST', body: form({}, images(1)) });
  assert.equal(typeof real['uuid'], 'string');
  const port = app.cli?.port ?? 0;
  assert.ok(port > 0);

  let cases = 0;
  let lines = 0;
  await fc.assert(
    fc.asyncProperty(caseArb, async ([input, splits]) => {
      cases++;
      const s = net.connect(port, '127.0.0.1');
      let out = '';
      let closed = false;
      // Event-driven waits (a polling loop would cost more than the case itself).
      let check = (): void => undefined;
      const until = (pred: () => boolean, message: string): Promise<void> =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(message)), 20_000);
          check = () => {
            if (pred()) {
              clearTimeout(timer);
              resolve();
            }
          };
          check();
        });
      s.on('data', (d: Buffer) => {
        out += d.toString('latin1');
        check();
      });
      s.on('close', () => {
        closed = true;
        check();
      });
      s.on('error', () => undefined);
      try {
        await until(() => out.endsWith('#> ') || closed, 'no banner');
        const bytes = Buffer.concat(input.flatMap(([l, e]) => [l, Buffer.from(e, 'latin1')]));
        lines += input.length;
        // Random packet boundaries, then the rest in one write.
        let at = 0;
        for (const n of splits) {
          if (at >= bytes.length) break;
          s.write(bytes.subarray(at, at + n));
          at += n;
        }
        s.write(bytes.subarray(at));
        // IAC SE ends any telnet subnegotiation the input opened; then a command whose answer marks the end.
        // (IAC SE twice: once for a subnegotiation, once more if the input ended on an IAC inside one.)
        s.write(Buffer.from([IAC, 0xf0, IAC, 0xf0, 0x0d, 0x0a]));
        s.write('NODE BEST 1\r\n');
        const done = (): boolean => closed || /(?:\n|> )1\) 127\.0\.0\.1:\d+ [^\n]*\r\n#> $/.test(out.slice(-300)) || out.endsWith('No best node available\r\n#> ');
        await until(done, 'the CLI stopped answering');
        // Every reply is one the CLI's grammar produces, each followed by a prompt.
        const replies = out.split('#> ').slice(1, -1).join('').split(/\r?\n/);
        for (const r of replies) if (!REPLY.test(r)) throw new Error(`unexpected reply line ${JSON.stringify(r)}`);
      } catch (e: unknown) {
        process.stdout.write(`# CLI fuzz problem: ${String(e)}; transcript ${JSON.stringify(out.slice(-500))}\n`);
        throw e;
      } finally {
        s.destroy();
      }
    }),
    { seed, numRuns: RUNS },
  );

  // Still serving: a normal session works, nothing crashed or went unhandled.
  const cli = await CliClient.connect(t, port);
  await cli.untilPrompt();
  await cli.send(`NODE ADD 127.0.0.1 ${node.port}`); // a fuzzed NODE DEL may have removed it
  assert.match(await cli.send('NODE LIST'), new RegExp(`127\\.0\\.0\\.1:${node.port}`));
  assert.deepEqual(unhandled, []);
  assert.deepEqual(logger.lines.filter((l) => /Uncaught|Unhandled|failed:/.test(l)), []);
  process.stdout.write(`# CLI fuzz: ${cases} sessions, ${lines} input lines, 0 crashes, 0 unhandled rejections\n`);
});

test('fuzz: before login, hostile input gets nothing but a closed connection (and a slow one for a wrong password)', async (t) => {
  const { app, logger } = await startLoggedApp(t, ['--admin-cli-port', '1', '--admin-pass', 'Sup3r-Secret-Pass']);
  const port = app.cli?.port ?? 0;
  const seed = seedFrom('FUZZ_SEED', 'CLI login fuzz');
  await fc.assert(
    fc.asyncProperty(lineArb, async (line) => {
      const cli = await CliClient.connect(t, port);
      assert.match(await cli.untilPrompt(), /\$> $/);
      cli.socket.write(Buffer.concat([line, Buffer.from([IAC, 0xf0, IAC, 0xf0]), Buffer.from('\r\nNODE LIST\r\n')]));
      await cli.waitClosed(15_000);
      assert.doesNotMatch(cli.transcript, /#> /, 'never logged in');
      assert.doesNotMatch(cli.transcript, /Sup3r-Secret-Pass/);
    }),
    { seed, numRuns: 100 },
  );
  // A wrong password is answered only after the login delay; attempts in parallel are each delayed.
  const attempts = await Promise.all(
    Array.from({ length: 5 }, async () => {
      const cli = await CliClient.connect(t, port);
      await cli.untilPrompt();
      const started = Date.now();
      cli.socket.write('LOGIN guess\r\n');
      await cli.waitClosed(15_000);
      return Date.now() - started;
    }),
  );
  for (const ms of attempts) assert.ok(ms >= 900, `a failed login took only ${ms} ms`);
  // While a guess from the same address is pending, the right password still works (no lockout of the admin).
  const guess = await CliClient.connect(t, port);
  await guess.untilPrompt();
  guess.socket.write('LOGIN guess\r\n');
  const right = await CliClient.connect(t, port);
  await right.untilPrompt();
  assert.match(await right.send('LOGIN Sup3r-Secret-Pass'), /^OK/, 'the right password works next to a failure');
  await guess.waitClosed(15_000);
  assert.doesNotMatch(guess.transcript, /#> /);
  await waitUntil(() => logger.lines.some((l) => l.includes('Failed admin CLI login')), { message: 'no failure logged' });
  assert.ok(!logger.lines.some((l) => l.includes('Sup3r-Secret-Pass') || l.includes('guess')), 'no password in the log');
});
