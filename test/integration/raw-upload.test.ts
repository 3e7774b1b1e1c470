import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { multiUser, startApp } from '../helpers/app';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const BOUNDARY = '----rawUploadBoundary8f3a';

/** File data salted with near-delimiters (CRLF, dashes, the boundary not preceded by CRLF or cut short). */
function fileData(size: number, seed: number): Buffer {
  const b = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  const near = [`\r\n--${BOUNDARY.slice(0, -1)}`, `--${BOUNDARY}`, `\n--${BOUNDARY}`, '\r\n\r\n', `\r\n-${BOUNDARY}`];
  for (let at = 1000, k = 0; at < size - 100; at += 65_531, k++) b.write(near[k % near.length] as string, at, 'latin1');
  return b;
}

function body(files: { name: string; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [Buffer.from('a preamble the node ignores\r\n')];
  for (const f of files) {
    parts.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="${f.name}"\r\nContent-Type: image/jpeg\r\n\r\n`), f.data, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(parts);
}

test('raw upload: the node receives exactly the client\'s body bytes, and the staged files are its parts', async (t) => {
  const node = await startTestNode({ processingMs: 100, recordBodies: true });
  t.after(() => node.close());
  // The copy needs the node's init done: under load it may take longer than the 2 s an upload waits for it by default.
  const { url, app, dir } = await startApp(t, multiUser(['']), [], { teeWaitMs: 30_000 });
  assert.ok(await app.nodeOps.add('127.0.0.1', node.port));
  await app.nodeOps.updateAll();
  const { uuid } = (await (await fetch(`${url}/task/new/init`, { method: 'POST', body: new FormData() })).json()) as { uuid: string };
  const files = Array.from({ length: 6 }, (_, i) => ({ name: `IMG_${i}.JPG`, data: fileData(700_000 + i * 131_071, i + 1) }));
  const sent = body(files);
  const answer = await fetch(`${url}/task/new/upload/${uuid}`, { method: 'POST', headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` }, body: sent });
  assert.deepEqual(await answer.json(), { success: true });
  // Staged: each part's data, under its name.
  const staged = path.join(dir, 'tmp', uuid);
  for (const f of files) assert.ok(fs.readFileSync(path.join(staged, f.name)).equals(f.data), `${f.name} staged whole`);
  const uploads = (): typeof node.requests => node.requests.filter((r) => r.path.startsWith(`/task/new/upload/${uuid}`));
  await waitUntil(() => uploads()[0]?.complete === true, { timeoutMs: 30_000, message: `the copy never reached the node: ${JSON.stringify(node.requests.map((r) => [r.path, r.complete, r.body?.length]))}` });
  assert.equal(uploads().length, 1, 'one request to the node');
  assert.ok(uploads()[0]?.body?.equals(sent), 'the node got the client\'s bytes as they are');
  assert.deepEqual(await (await fetch(`${url}/task/new/commit/${uuid}`, { method: 'POST' })).json(), { uuid });
  await waitUntil(async () => ((await (await fetch(`${url}/task/${uuid}/info`)).json()) as { status?: { code?: number } }).status?.code === 40, {
    timeoutMs: 15_000,
    message: 'task never completed',
  });
  assert.equal(uploads().length, 1, 'nothing sent again at commit');
  assert.deepEqual(node.taskFiles(uuid), files.map((f) => f.name).sort());
  for (const f of files) assert.equal(node.taskFileSize(uuid, f.name), f.data.length);
});
