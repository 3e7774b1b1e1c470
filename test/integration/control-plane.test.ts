import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { startTestNode, type TestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { GOLDEN_HELP } from '../helpers/golden';

const APP_ROOT = path.resolve(__dirname, '..', '..', '..');

async function nodes(t: Parameters<typeof tempDir>[0], count: number, opts = {}): Promise<TestNode[]> {
  const out: TestNode[] = [];
  for (let i = 0; i < count; i++) {
    const n = await startTestNode(opts);
    t.after(() => n.close());
    out.push(n);
  }
  return out;
}


test('control plane: the golden CLI session of the original, against the real daemon and two test nodes', async (t) => {
  const dir = tempDir(t);
  const [a, b] = await nodes(t, 2);
  assert.ok(a && b);
  const d = await startDaemon(t, dir);
  const cli = await CliClient.connect(t, d.cliPort);
  const banner = await cli.untilPrompt();
  assert.match(banner, /^Welcome 127\.0\.0\.1:\d+ ClusterODM:1\.5\.8\r\nHELP for help\r\nQUIT to quit\r\n#> $/);
  assert.equal(await cli.send('HELP'), GOLDEN_HELP);
  assert.equal(await cli.send('NODE LIST'), '\r\n');
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${a.port}`), 'OK\r\n');
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${b.port}`), 'OK\r\n');
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${a.port}`), 'FAIL\r\n');
  const list = (): string =>
    `1) 127.0.0.1:${a.port} [online] [0/1] <engine: odm ?> <API: 2.2.4>\r\n` +
    `2) 127.0.0.1:${b.port} [online] [0/1] <engine: odm ?> <API: 2.2.4>\r\n\r\n`;
  // NODE ADD polls the node without waiting; NODE UPDATE waits for a poll.
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  assert.equal(await cli.send('NODE LIST'), list());
  assert.equal(await cli.send('NODE LOCK 1'), 'OK\r\n');
  assert.equal(
    await cli.send('NODE LIST'),
    `1) 127.0.0.1:${a.port} [online] [0/1] <engine: odm ?> <API: 2.2.4> [L]\r\n` +
      `2) 127.0.0.1:${b.port} [online] [0/1] <engine: odm ?> <API: 2.2.4>\r\n\r\n`,
  );
  assert.equal(await cli.send('NODE BEST 10'), `1) 127.0.0.1:${b.port} [online] [0/1] <engine: odm ?> <API: 2.2.4>\r\n`);
  assert.equal(await cli.send('NODE UNLOCK 1'), 'OK\r\n');
  assert.equal(await cli.send('NODE BEST 10'), `1) 127.0.0.1:${a.port} [online] [0/1] <engine: odm ?> <API: 2.2.4>\r\n`);
  assert.equal(await cli.send('NODE INFO 99'), 'INVALID\r\n');
  assert.equal(await cli.send('NODE LOCK 99'), 'FAIL\r\n');
  assert.equal(await cli.send('ROUTE LIST'), '{}\r\n');
  assert.equal(await cli.send('ROUTE LIST 1'), '{}\r\n');
  assert.equal(await cli.send('ROUTE LIST 9'), 'INVALID\r\n');
  assert.equal(await cli.send('ROUTE INFO 00000000-0000-0000-0000-000000000000'), 'INVALID\r\n');
  assert.equal(await cli.send('TASK LIST'), '[]\r\n');
  assert.equal(await cli.send('TASK INFO nope'), 'INVALID\r\n');
  // The original printed no prompt here; every command now ends with one.
  assert.equal(await cli.send('ASR VIEWCMD 5'), 'INVALID\r\n');
  assert.equal(await cli.send('node list'), list());
  assert.equal(await cli.send('!!'), list());
  assert.equal(await cli.send('NODE'), 'INVALID\r\n');
  assert.equal(await cli.send('FOO BAR'), 'INVALID\r\n');
  assert.equal(await cli.send('ROUTE FOO'), 'INVALID\r\n');
  assert.equal(await cli.send(''), 'INVALID\r\n');
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 1`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  assert.match(await cli.send('NODE LIST'), /\r\n3\) 127\.0\.0\.1:1 \[offline\] \[\?\/\?\] <engine: \?> <API: \?>\r\n\r\n$/);
  assert.equal(await cli.send('NODE DEL 3'), 'OK\r\n');
  assert.equal(await cli.send('NODE DEL 3'), 'FAIL\r\n');
  assert.equal(await cli.send('NODE LIST'), list());
  const info = JSON.parse(await cli.send('NODE INFO 1')) as Record<string, unknown>;
  assert.equal(info['hostname'], '127.0.0.1');
  assert.equal(info['port'], String(a.port));
  assert.equal((info['info'] as Record<string, unknown>)['version'], '2.2.4');
  assert.equal(await cli.send('QUIT'), 'Bye!\r\n');
  await cli.waitClosed();
});

test('control plane: nodes and locks survive a restart; SIGTERM and SIGQUIT save and exit 0', async (t) => {
  const dir = tempDir(t);
  const [a, b] = await nodes(t, 2);
  assert.ok(a && b);
  const d1 = await startDaemon(t, dir);
  const c1 = await CliClient.connect(t, d1.cliPort);
  await c1.untilPrompt();
  assert.equal(await c1.send(`NODE ADD 127.0.0.1 ${a.port}`), 'OK\r\n');
  assert.equal(await c1.send(`NODE ADD localhost ${b.port} secret-node-token`), 'OK\r\n');
  assert.equal(await c1.send('NODE LOCK 1'), 'OK\r\n');
  assert.equal(await d1.stop('SIGTERM'), 0);
  assert.match(d1.output(), /info: Saved nodes to disk\n/);
  assert.match(d1.output(), /info: Bye!\n/);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'data', 'nodes.json'), 'utf8')), [
    { hostname: '127.0.0.1', port: String(a.port), token: '', locked: true },
    { hostname: 'localhost', port: String(b.port), token: 'secret-node-token' },
  ]);

  const d2 = await startDaemon(t, dir);
  assert.match(d2.output(), /info: Loaded 2 nodes\n/);
  const c2 = await CliClient.connect(t, d2.cliPort);
  await c2.untilPrompt();
  assert.equal(await c2.send('NODE UPDATE'), 'OK\r\n');
  assert.equal(
    await c2.send('NODE LIST'),
    `1) 127.0.0.1:${a.port} [online] [0/1] <engine: odm ?> <API: 2.2.4> [L]\r\n` +
      `2) localhost:${b.port} [online] [0/1] <engine: odm ?> <API: 2.2.4>\r\n\r\n`,
  );
  const info = await c2.send('NODE INFO 2');
  assert.ok(!info.includes('secret-node-token'), 'node tokens are masked');
  // The test node with a token would refuse /info without it: online proves the token is used.
  assert.equal(await c2.send('NODE BEST 1'), `1) localhost:${b.port} [online] [0/1] <engine: odm ?> <API: 2.2.4>\r\n`);
  assert.equal(await d2.stop('SIGQUIT'), 0, 'SIGQUIT (the systemd unit) saves and exits 0');
  assert.match(d2.output(), /Saved nodes to disk/);
  assert.ok(!d1.output().includes('secret-node-token') && !d2.output().includes('secret-node-token'), 'no token in logs');
});

test('control plane: a corrupt nodes.json does not stop the start; the last good copy is used', async (t) => {
  const dir = tempDir(t);
  const d1 = await startDaemon(t, dir);
  const c1 = await CliClient.connect(t, d1.cliPort);
  await c1.untilPrompt();
  assert.equal(await c1.send('NODE ADD 127.0.0.1 3001'), 'OK\r\n');
  assert.equal(await c1.send('NODE ADD 127.0.0.1 3002'), 'OK\r\n');
  assert.equal(await d1.stop('SIGKILL'), null);
  fs.writeFileSync(path.join(dir, 'data', 'nodes.json'), '[{"hostname":"127.0.0.1","po');
  const d2 = await startDaemon(t, dir);
  assert.match(d2.output(), /error: nodes\.json is corrupt/);
  assert.match(d2.output(), /Loaded 1 nodes/);
  assert.ok(fs.readdirSync(path.join(dir, 'data')).some((f) => f.startsWith('nodes.json.corrupt-')));
});

test('control plane: --help prints every option and exits 0; a bad flag exits 1 with a clear message', async (t) => {
  const run = (args: string[]): Promise<{ code: number | null; out: string }> =>
    new Promise((resolve) => {
      const p = spawn(process.execPath, [path.join(APP_ROOT, 'index.js'), ...args], { cwd: tempDir(t) });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (out += d.toString()));
      p.on('exit', (code) => resolve({ code, out }));
    });
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  for (const opt of ['--port', '--admin-cli-port', '--admin-pass', '--data-dir', '--tmp-dir', '--no-splitmerge', '--asr']) {
    assert.ok(help.out.includes(opt), opt);
  }
  assert.match(help.out, /error \| warn \| info \| verbose \| debug \| silly/);
  const bad = await run(['--port', 'abc']);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /--port/);
  const unknown = await run(['--foo-bar', '1']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.out, /Unknown option: --foo-bar/);
});

test('control plane: a session through the real telnet client', async (t) => {
  const telnet = ['/usr/bin/telnet', '/bin/telnet'].find((p) => fs.existsSync(p));
  assert.ok(telnet, 'the telnet client must be installed (scripts/install-test-deps.sh)');
  const dir = tempDir(t);
  const [a] = await nodes(t, 1);
  assert.ok(a);
  const d = await startDaemon(t, dir, ['--admin-pass', 'S3cret pass']);
  const p = spawn(telnet, ['127.0.0.1', String(d.cliPort)], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => p.kill('SIGKILL'));
  let out = '';
  p.stdout.on('data', (x: Buffer) => (out += x.toString()));
  const typeLine = async (line: string, expect: RegExp): Promise<void> => {
    p.stdin.write(`${line}\n`);
    await waitUntil(() => expect.test(out), { timeoutMs: 10000, message: `telnet: no ${String(expect)} in ${JSON.stringify(out)}` });
  };
  await waitUntil(() => out.includes('$> '), { timeoutMs: 10000, message: 'no login prompt' });
  assert.match(out, /LOGIN <LOGIN> to log-in/);
  await typeLine('LOGIN S3cret pass', /OK\r?\nHELP for help\r?\n#> $/);
  await typeLine(`NODE ADD 127.0.0.1 ${a.port}`, /OK\r?\n#> $/);
  await typeLine('NODE UPDATE', /OK\r?\n#> OK\r?\n#> $/);
  await typeLine('NODE LIST', new RegExp(`1\\) 127\\.0\\.0\\.1:${a.port} \\[online\\] \\[0/1\\] <engine: odm \\?> <API: 2\\.2\\.4>`));
  await typeLine('QUIT', /Bye!/);
  // The server closing the connection is what makes telnet exit.
  await waitUntil(() => p.exitCode !== null, { timeoutMs: 10000, message: 'telnet did not exit' });
  assert.ok(!d.output().includes('S3cret'), 'the password is never logged');
});
