import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { startAsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

function form(from: number, n: number): FormData {
  const fd = new FormData();
  for (let i = from; i < from + n; i++) fd.append('images', new Blob([Buffer.alloc(10_000 + i, i)]), `IMG_${i}.JPG`);
  return fd;
}

async function json(url: string, init?: RequestInit): Promise<Record<string, unknown>> {
  return (await (await fetch(url, init)).json()) as Record<string, unknown>;
}

test('uncommitted uploads count as busy slots: with --asr a commit gets a machine it does not need', async (t) => {
  const rig = await startAsrRig(t, { asr: { imageSizeMapping: [{ maxImages: 50, slug: 's-4vcpu-8gb' }] } });
  const node = await startTestNode({ processingMs: 100, maxParallelTasks: 1 });
  t.after(() => node.close());
  const d = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile], { env: rig.env });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');

  // A client is uploading a task it has not committed yet (its images are streamed to the static node).
  const open = (await json(`${d.url}/task/new/init`, { method: 'POST', body: new FormData() }))['uuid'];
  assert.equal(typeof open, 'string');
  assert.deepEqual(await json(`${d.url}/task/new/upload/${String(open)}`, { method: 'POST', body: form(0, 1) }), { success: true });

  // Another task is committed: the static node's only slot is free, so that is where it goes.
  const uuid = (await json(`${d.url}/task/new`, { method: 'POST', body: form(1, 2) }))['uuid'];
  assert.equal(typeof uuid, 'string');
  await waitUntil(() => node.tasks().some((x) => x.uuid === uuid), { timeoutMs: 20000, message: 'the task did not go to the free static node' });
  assert.equal(rig.dm.calls('docker-machine').filter((x) => x.args[0] === 'create').length, 0, 'a machine was created');
  assert.equal(rig.fakeDo.droplets.size, 0);
});
