/**
 * Disk trouble, on real small filesystems (tmpfs mounts: tests run as root, where chmod does not stop writes):
 * uploads to a full or read-only tmp dir get a clear error and lose nothing already stored; a read-only data dir
 * makes CLI changes answer FAIL with an error in the log, and the previous state stays intact.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test, type TestContext } from 'node:test';
import { multiUser } from '../helpers/app';
import { CliClient } from '../helpers/cli-client';
import { startTestNode } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';
import { form, images, json, startLoggedApp, statusCode } from './support';

interface SmallDisk {
  dir: string;
  /** Remounts read-only or read-write (retried while a write in progress keeps the mount busy). */
  remount: (mode: 'ro' | 'rw') => Promise<void>;
  /** Unmounts when the test ends: call it after starting the app, so that it runs after the app has stopped. */
  unmountAtEnd: () => void;
}

/** Mounts a tmpfs of `kib` KiB at a fresh dir. */
function smallDisk(t: TestContext, kib: number): SmallDisk {
  const dir = tempDir(t, 'clusterodm-disk-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${kib}k,mode=0755`, 'tmpfs', dir]);
  let registered = false;
  const unmount = (): void => {
    execFileSync('umount', ['-l', dir]);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  t.after(() => {
    if (!registered) unmount(); // the test failed before it could register the late unmount
  });
  return {
    dir,
    remount: (mode) =>
      waitUntil(
        () => {
          try {
            execFileSync('mount', ['-o', `remount,${mode}`, dir], { stdio: 'ignore' });
            return true;
          } catch {
            return false;
          }
        },
        { timeoutMs: 10_000, intervalMs: 5, message: `cannot remount ${mode}` },
      ),
    unmountAtEnd: () => {
      registered = true;
      t.after(unmount);
    },
  };
}

function fill(dir: string): string {
  const f = path.join(dir, 'filler');
  try {
    fs.writeFileSync(f, Buffer.alloc(64 * 1024 * 1024));
  } catch (e: unknown) {
    assert.equal((e as { code?: string }).code, 'ENOSPC');
  }
  return f;
}

test('disk: uploads to a full tmp dir get a clear error and lose nothing already stored', async (t) => {
  const disk = smallDisk(t, 512);
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());
  const { url, app, logger } = await startLoggedApp(t, ['--tmp-dir', path.join(disk.dir, 'tmp')], { cloud: multiUser(['']) });
  disk.unmountAtEnd();
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const tmp = path.join(disk.dir, 'tmp');

  // An upload session with some images already stored.
  const uuid = String((await json(`${url}/task/new/init`, { method: 'POST', body: form({ name: 'full' }) }))['uuid']);
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, images(3, 'first', 20_000)) }), { success: true });
  const stored = fs.readdirSync(path.join(tmp, uuid)).sort();

  // The disk fills up: a large image does not fit.
  const filler = fill(disk.dir);
  fs.truncateSync(filler, fs.statSync(filler).size - 100_000); // room for a little, not for 300 KB
  const big = await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, [{ name: 'huge.jpg', data: Buffer.alloc(300_000, 7) }]) });
  assert.match(String(big['error']), /ENOSPC|no space/i, JSON.stringify(big));
  assert.deepEqual(fs.readdirSync(path.join(tmp, uuid)).sort(), stored, 'the stored images are intact, the partial one is gone');
  assert.equal(app.tasks.get(uuid)?.phase, 'uploading', 'the upload session goes on');
  // Single-shot tasks and new sessions on the full disk: clear errors, nothing left behind.
  fs.truncateSync(filler, fs.statSync(filler).size + 100_000 - 2_000);
  const single = await json(`${url}/task/new`, { method: 'POST', body: form({}, images(2, 'x', 50_000)) });
  assert.match(String(single['error']), /ENOSPC|no space/i, JSON.stringify(single));
  fill(disk.dir);
  const init = await json(`${url}/task/new/init`, { method: 'POST', body: form({ name: 'x'.repeat(5000) }) });
  assert.match(String(init['error']), /ENOSPC|no space/i, JSON.stringify(init));
  await waitUntil(() => fs.readdirSync(tmp).length === 1, { timeoutMs: 5000, message: `left behind: ${fs.readdirSync(tmp).join(', ')}` });

  // Space comes back: the session finishes with every image it had, plus the new one.
  fs.rmSync(filler);
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, [{ name: 'late.jpg', data: Buffer.alloc(300_000, 7) }]) }), { success: true });
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST', body: form({}) }), { uuid });
  await waitUntil(async () => statusCode(await json(`${url}/task/${uuid}/info`)) === 40, { timeoutMs: 20_000, message: 'never completed' });
  assert.deepEqual(node.taskFiles(uuid).sort(), [...stored.filter((n) => n !== 'body.json'), 'late.jpg'].sort());
  assert.ok(!logger.lines.some((l) => /Uncaught|Unhandled/.test(l)));
});

test('disk: a read-only tmp dir refuses uploads clearly and keeps what it holds', async (t) => {
  const disk = smallDisk(t, 2048);
  const node = await startTestNode({ processingMs: 100 });
  t.after(() => node.close());
  const { url, app } = await startLoggedApp(t, ['--tmp-dir', path.join(disk.dir, 'tmp')], { cloud: multiUser(['']) });
  disk.unmountAtEnd();
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const tmp = path.join(disk.dir, 'tmp');
  const uuid = String((await json(`${url}/task/new/init`, { method: 'POST', body: form({}) }))['uuid']);
  assert.deepEqual(await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, images(2)) }), { success: true });
  const stored = fs.readdirSync(path.join(tmp, uuid)).sort();
  await disk.remount('ro');
  const up = await json(`${url}/task/new/upload/${uuid}`, { method: 'POST', body: form({}, images(1, 'ro')) });
  assert.match(String(up['error']), /EROFS|read-only/i, JSON.stringify(up));
  const single = await json(`${url}/task/new`, { method: 'POST', body: form({}, images(1)) });
  assert.match(String(single['error']), /EROFS|read-only/i, JSON.stringify(single));
  assert.deepEqual(fs.readdirSync(path.join(tmp, uuid)).sort(), stored);
  await disk.remount('rw');
  assert.deepEqual(await json(`${url}/task/new/commit/${uuid}`, { method: 'POST', body: form({}) }), { uuid });
  await waitUntil(async () => statusCode(await json(`${url}/task/${uuid}/info`)) === 40, { timeoutMs: 20_000, message: 'never completed' });
  assert.equal(node.taskFiles(uuid).length, 2);
});

test('disk: an unwritable data dir: FAIL on the CLI, an error in the log, the previous state intact', async (t) => {
  const disk = smallDisk(t, 1024);
  const nodes = await Promise.all([startTestNode(), startTestNode()]);
  t.after(() => Promise.all(nodes.map((n) => n.close())));
  const data = path.join(disk.dir, 'data');
  const { url, app, logger } = await startLoggedApp(t, ['--data-dir', data, '--admin-cli-port', '1'], { cloud: multiUser(['']) });
  disk.unmountAtEnd();
  const cli = await CliClient.connect(t, app.cli?.port ?? 0);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${nodes[0]?.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  const uuid = String((await json(`${url}/task/new`, { method: 'POST', body: form({}, images(1)) }))['uuid']);
  // Landed: routed, and out of the task table. Both tables written, so the snapshot is of settled files (a
  // save still in flight would show as a temp file that is renamed away while it is read).
  await waitUntil(() => app.routes.has(uuid) && !app.tasks.has(uuid), { timeoutMs: 20_000, message: 'the task never landed' });
  await app.routes.flush();
  await app.tasks.flush();
  const stateFiles = fs.readdirSync(data).filter((f) => !f.startsWith('.'));
  const snapshot = new Map(stateFiles.map((f) => [f, fs.readFileSync(path.join(data, f), 'utf8')]));

  await disk.remount('ro');
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${nodes[1]?.port}`), 'FAIL\r\n');
  assert.equal(await cli.send('NODE LOCK 1'), 'FAIL\r\n');
  assert.match(await cli.send('NODE LIST'), /^1\) 127\.0\.0\.1:\d+ \[online\] [^\n]*\r\n\r\n$/, 'memory matches the disk: one node, unlocked');
  assert.ok(logger.lines.some((l) => /^error: .*(EROFS|read-only)/.test(l)), 'the failure is logged');
  // A new upload session needs the task table: a clear error while it cannot be saved.
  const init = await json(`${url}/task/new/init`, { method: 'POST', body: form({}) });
  assert.match(String(init['error']), /EROFS|read-only/i, JSON.stringify(init));
  for (const [f, text] of snapshot) assert.equal(fs.readFileSync(path.join(data, f), 'utf8'), text, `${f} unchanged`);

  await disk.remount('rw');
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${nodes[1]?.port}`), 'OK\r\n');
  assert.equal((JSON.parse(fs.readFileSync(path.join(data, 'nodes.json'), 'utf8')) as unknown[]).length, 2);
  assert.equal(statusCode(await json(`${url}/task/${uuid}/info`)) !== undefined, true, 'the routed task still answers');
});

test('disk: a data dir that turns read-only while a task is forwarded: the task lands once and is not re-sent', async (t) => {
  const disk = smallDisk(t, 1024);
  const node = await startTestNode({ processingMs: 100, uploadDelayMs: 1500 });
  t.after(() => node.close());
  const data = path.join(disk.dir, 'data');
  const { url, app, logger } = await startLoggedApp(t, ['--data-dir', data], { cloud: multiUser(['']), tuning: { forwardRetryBaseMs: 20, uploadRetrySleepMs: 10 } });
  disk.unmountAtEnd();
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const uuid = String((await json(`${url}/task/new`, { method: 'POST', body: form({}, images(2)) }))['uuid']);
  await waitUntil(() => node.requests.some((r) => r.path.startsWith(`/task/new/upload/${uuid}`)), { message: 'upload never started' });
  await disk.remount('ro'); // the route cannot be saved when the task lands
  await waitUntil(() => logger.lines.some((l) => l.startsWith('error: ') && l.includes(uuid)), { timeoutMs: 20_000, message: 'nothing logged' });
  await waitUntil(async () => statusCode(await json(`${url}/task/${uuid}/info`)) === 40, { timeoutMs: 20_000, message: 'the task never completed' });
  assert.equal(node.tasks().filter((x) => x.uuid === uuid).length, 1);
  assert.ok(!node.requests.some((r) => r.path.startsWith('/task/remove')), 'the landed task was not removed and sent again');
  assert.equal(node.requests.filter((r) => r.path.startsWith('/task/new/commit')).length, 1, 'committed once');
  // Once the disk is back, a restart finds the task on its node (its table entry still says where it went).
  await disk.remount('rw');
  await app.stop();
  const again = await startLoggedApp(t, ['--data-dir', data], { cloud: multiUser(['']) });
  t.after(() => fs.rmSync(disk.dir, { recursive: true, force: true })); // after this app's stop, too
  await waitUntil(() => again.app.routes.has(uuid) && !again.app.tasks.has(uuid), { timeoutMs: 20_000, message: 'the route was not recovered' });
  assert.equal(statusCode(await json(`${again.url}/task/${uuid}/info`)), 40);
});
