/**
 * The admin page with the task queue and machine costs, in headless Chromium, against the real daemon on the api
 * driver (fake DigitalOcean whose machines boot test nodes, s3rver): the autoscaler panel lists the machine with
 * its size, region, age and hourly price and the total; the Tasks view shows the queued task and its place.
 * Never skipped: without Chromium at /usr/bin/chromium the test fails and says so.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { info, newTask } from '../helpers/asr-cluster';
import { DO_TOKEN, startAsrRig } from '../helpers/asr-rig';
import { CliClient } from '../helpers/cli-client';
import { startDaemon } from '../helpers/daemon';
import { FakeDigitalOceanApi } from '../helpers/fake-clouds/digitalocean';
import { startTestNode } from '../helpers/test-node';
import { waitUntil } from '../helpers/wait';

const CHROMIUM = '/usr/bin/chromium';
const PASSWORD = 'secret';
const ARTIFACTS = path.resolve(__dirname, '..', '..', '..', 'test-artifacts');

test('admin page: the autoscaler panel shows each machine\'s cost and the total; the Tasks view shows a queued task\'s place', async (t) => {
  assert.ok(fs.existsSync(CHROMIUM), `Chromium is missing at ${CHROMIUM} (Debian: apt-get install chromium); this test is never skipped.`);
  const cloud = await FakeDigitalOceanApi.start(DO_TOKEN);
  t.after(() => cloud.close());
  cloud.knobs.boot = true;
  cloud.knobs.bootOptions = { node: { processingMs: 600_000 } };
  const rig = await startAsrRig(t, { asr: { driver: 'api', apiUrl: cloud.url, bootTimeout: 60, createRetries: 1, dropletsLimit: 1 } });
  rig.env['CLUSTERODM_TEST_TUNING'] = JSON.stringify({ asrPollMs: 100, queueTickMs: 200 });
  const node = await startTestNode({ processingMs: 120_000 });
  t.after(() => node.close());
  const d = await startDaemon(t, path.join(rig.dir, 'daemon'), ['--asr', rig.asrFile, '--admin-web-port', '1', '--admin-pass', PASSWORD], { env: rig.env });
  const cli = await CliClient.connect(t, d.cliPort);
  await cli.untilPrompt();
  await cli.send(`LOGIN ${PASSWORD}`);
  assert.equal(await cli.send(`NODE ADD 127.0.0.1 ${node.port}`), 'OK\r\n');
  assert.equal(await cli.send('NODE UPDATE'), 'OK\r\n');
  assert.equal(await cli.send('NODE LOCK 1'), 'OK\r\n');
  await newTask(d, 2);
  await waitUntil(async () => (await cli.send('NODE LIST')).includes('[A]'), { timeoutMs: 60000, message: 'no machine' });
  const queued = await newTask(d, 2);
  await waitUntil(async () => (await info(d, queued)).status?.code === 10, { timeoutMs: 20000, message: 'the second task was not queued' });

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
  t.after(() => browser.close());
  const context = await browser.newContext({ httpCredentials: { username: 'admin', password: PASSWORD }, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${d.webPort}`);
  const panel = page.locator('#asr-panel');
  await waitUntil(async () => await panel.isVisible(), { timeoutMs: 20000, message: 'no autoscaler panel' });
  const rows = page.locator('#asr-machine-rows tr');
  await waitUntil(async () => (await rows.count()) === 1, { timeoutMs: 20000, message: 'the machine is not listed' });
  const cells = await rows.first().locator('td').allInnerTexts();
  assert.match(cells[0] ?? '', /^clusterodm-2-[A-Za-z0-9]+$/);
  assert.deepEqual([cells[2], cells[3], cells[5]], ['s-1vcpu-1gb', 'nyc3', '0.0089 USD']);
  assert.match(cells[4] ?? '', /^\d+s$|^\d+m( \d+s)?$/);
  assert.match(await page.locator('#asr-stats').innerText(), /Spend per hour\s+0\.0089 USD/i);

  await page.getByRole('tab', { name: 'Tasks' }).click();
  const row = page.locator(`#tasks-body tr[data-key="${queued}"]`);
  await waitUntil(async () => (await row.count()) === 1, { timeoutMs: 20000, message: 'the queued task is not in the Tasks view' });
  assert.match((await row.locator('td').nth(3).innerText()).trim(), /^QUEUED\s+0 ahead$/);
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, 'admin-queue.png'), fullPage: true });
  assert.deepEqual(errors, []);
});
