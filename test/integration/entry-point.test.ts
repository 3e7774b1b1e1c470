// index.js, as users start it: `node index.js [flags]` runs the daemon with NODE_FLAGS (in a child when they were
// not given), passes signals on, and ends as the daemon did.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { NODE_FLAGS } from '../../src/core';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const APP_ROOT = path.resolve(__dirname, '..', '..', '..');

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface Started {
  proc: ChildProcess;
  out: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  daemonPid: number;
  port: number;
}

async function startIndex(t: TestContext, nodeFlags: string[] = []): Promise<Started> {
  const dir = tempDir(t);
  const [port, cli, web] = [await freePort(), await freePort(), await freePort()];
  const args = ['--port', String(port), '--admin-cli-port', String(cli), '--admin-web-port', String(web)];
  args.push('--data-dir', path.join(dir, 'data'), '--tmp-dir', path.join(dir, 'tmp'), '--log-dir', dir);
  const env = { ...process.env };
  delete env['CLUSTERODM_NO_RESPAWN'];
  const proc = spawn(process.execPath, [...nodeFlags, path.join(APP_ROOT, 'index.js'), ...args], { cwd: dir, env });
  t.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  await waitUntil(() => /Starting http proxy on \d+/.test(out) && /Admin CLI listening/.test(out), {
    timeoutMs: 30_000,
    message: `index.js did not start:\n${out}`,
  });
  const daemonPid = Number(/started with PID (\d+)/.exec(out)?.[1]);
  return { proc, out: () => out, exit, daemonPid, port };
}

function cmdline(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((s) => s !== '');
}

test('entry point: `node index.js` runs the daemon with NODE_FLAGS in a child; SIGTERM to the parent stops both cleanly', async (t) => {
  const s = await startIndex(t);
  assert.notEqual(s.daemonPid, s.proc.pid, 'the daemon should run in a child that has the flags');
  const args = cmdline(s.daemonPid);
  for (const f of NODE_FLAGS) assert.ok(args.includes(f), `${f} missing from ${args.join(' ')}`);
  const info = await fetch(`http://127.0.0.1:${s.port}/info`);
  assert.equal(info.status, 200);
  s.proc.kill('SIGTERM');
  const end = await s.exit;
  assert.deepEqual(end, { code: 0, signal: null }, s.out());
  assert.match(s.out(), /Received SIGTERM, shutting down[\s\S]*Bye!/);
  await waitUntil(() => !fs.existsSync(`/proc/${s.daemonPid}`), { timeoutMs: 10_000, message: 'the daemon outlived its parent' });
});

test('entry point: with the flags on the command line there is one process; a daemon killed by a signal ends the parent with it', async (t) => {
  const direct = await startIndex(t, [...NODE_FLAGS]);
  assert.equal(direct.daemonPid, direct.proc.pid, 'no second process when the flags are given');
  direct.proc.kill('SIGINT');
  assert.deepEqual(await direct.exit, { code: 0, signal: null }, direct.out());

  const wrapped = await startIndex(t);
  process.kill(wrapped.daemonPid, 'SIGKILL');
  assert.deepEqual(await wrapped.exit, { code: null, signal: 'SIGKILL' }, wrapped.out());
});
