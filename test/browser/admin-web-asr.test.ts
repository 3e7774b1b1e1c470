/**
 * The admin page's autoscaler panel in headless Chromium, against the real daemon with --asr and the autoscaler
 * fakes (fake docker-machine, fake DigitalOcean API, s3rver): the limits, and each machine being created with its
 * current step. Never skipped: without Chromium at /usr/bin/chromium the test fails and says so.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { startAsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const CHROMIUM = '/usr/bin/chromium';
const PASSWORD = 'secret';
const ARTIFACTS = path.resolve(__dirname, '..', '..', '..', 'test-artifacts');

test('admin page: the autoscaler panel shows the limit and the machine being created, step by step', async (t) => {
  assert.ok(fs.existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM} (Debian: apt-get install chromium); this test is never skipped.`);
  // The creation is held until the page has shown it (a 4 s fake creation raced Chromium's start under load), and the
  // machine's task runs long, so that it is still counted as running when the page refreshes (every 5 s).
  const rig = await startAsrRig(t, {
    asr: { dropletsLimit: 4, maxUploadTime: 3600 },
    dm: { hold: ['create'], nodeArgs: ['--processing-ms', '600000'] },
  });
  const node = await startTestNode({ processingMs: 120_000 });
  t.after(() => node.close());
  const d = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile, '--admin-web-port', '1', '--admin-pass', PASSWORD], { env: rig.env });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  await cli.send(`LOGIN ${PASSWORD}`);
  await cli.send(`NODE ADD 127.0.0.1 ${node.port}`);
  await cli.send('NODE UPDATE');
  const post = async (): Promise<string> => {
    const fd = new FormData();
    fd.append('images', new Blob([Buffer.alloc(100)]), 'a.jpg');
    fd.append('images', new Blob([Buffer.alloc(100)]), 'b.jpg');
    return ((await (await fetch(`${d.url}/task/new`, { method: 'POST', body: fd })).json()) as { uuid: string }).uuid;
  };
  await post();
  await waitUntil(() => node.tasks().length === 1, { timeoutMs: 20000, message: 'the static node did not get the first task' });
  const uuid = await post();

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
  t.after(() => browser.close());
  const context = await browser.newContext({ httpCredentials: { username: 'admin', password: PASSWORD }, viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${d.webPort}`);
  await page.getByRole('button', { name: 'Enable Auto Refresh' }).click();
  const panel = page.locator('#asr-panel');
  await waitUntil(async () => await panel.isVisible(), { timeoutMs: 20000, message: 'no autoscaler panel' });
  const stats = await page.locator('#asr-stats').innerText();
  assert.match(stats, /Provider\s+digitalocean/i);
  assert.match(stats, /Limit\s+4/i);
  const item = page.locator('#asr-creating li');
  await waitUntil(async () => (await item.count()) === 1 && (await item.innerText()).includes('Trying to create machine... (1)'), {
    timeoutMs: 20000,
    message: 'the machine being created is not shown',
  });
  const line = await item.innerText();
  assert.match(line, /^clusterodm-2-[A-Za-z0-9]+ \(task [0-9a-f-]{36}\): Trying to create machine\.\.\. \(1\)$/);
  assert.ok(line.includes(uuid));
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'admin-asr-creating.png'), fullPage: true });
  rig.dm.configure({ hold: [] });
  // Later steps replace the first one; when the machine is ready the list empties and it counts as running.
  await waitUntil(async () => (await item.count()) === 0, { timeoutMs: 40000, message: 'the creation never ended' });
  await waitUntil(async () => /Running\s+1/i.test(await page.locator('#asr-stats').innerText()), { timeoutMs: 20000, message: 'not counted as running' });
  assert.deepEqual(errors, []);
});
