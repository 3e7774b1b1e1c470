/**
 * The admin web page in a real (headless) Chromium, against the real daemon and a NodeODM-compatible test node:
 * what an administrator does with it, click by click. Screenshots go to test-artifacts/.
 *
 * Never skipped: without Chromium at /usr/bin/chromium the test fails and says so.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { startDaemon, type Daemon } from '../helpers/daemon';
import { startTestNode, TaskStatus } from '../helpers/test-node';
import { tempDir } from '../helpers/tmp';
import { waitUntil } from '../helpers/wait';

const CHROMIUM = '/usr/bin/chromium';
const PASSWORD = 'secret';
const ROOT = path.resolve(__dirname, '..', '..', '..');
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
/** How long the page may take to show a change (one auto-refresh period is 5 s). */
const UI_TIMEOUT_MS = 20000;

async function launchChromium(): Promise<Browser> {
  assert.ok(
    fs.existsSync(CHROMIUM),
    `Chromium is missing at ${CHROMIUM}: the admin web browser tests need it (Debian: apt-get install chromium). They are never skipped.`,
  );
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-sync'],
  });
}

/** The admin web port: from the daemon helper, or from its log line. */
function webPortOf(d: Daemon): number {
  const port = d.webPort || Number(/Admin web listening on port (\d+)/.exec(d.output())?.[1] ?? 0);
  assert.ok(port > 0, `admin web port not found in the daemon output:\n${d.output()}`);
  return port;
}

/** The admin API with Basic auth, for checks behind the page's back. */
async function adminApi(base: string, method: string, route: string, body?: unknown): Promise<unknown> {
  const res = await fetch(`${base}${route}`, {
    method,
    headers: {
      Authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`,
      ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  assert.equal(res.status, 200, `${method} ${route}`);
  return res.json();
}

/** Polls a locator's text (or any async read) until it satisfies `ok`; the error names what was last seen. */
async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  let last: T | undefined;
  await waitUntil(
    async () => {
      last = await read();
      return ok(last);
    },
    { timeoutMs: UI_TIMEOUT_MS, intervalMs: 50, message: `${what} (last seen: ${JSON.stringify(last)})` },
  );
  return last as T;
}

/** Like {@link eventually}, but clicks the view's Refresh button (at most twice a second) while waiting, as a user would. */
async function refreshUntil<T>(refresh: Locator, read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  let clicked = 0;
  return eventually(
    async () => {
      const v = await read();
      if (!ok(v) && Date.now() - clicked > 500) {
        clicked = Date.now();
        await refresh.click();
      }
      return v;
    },
    ok,
    what,
  );
}

const text = (l: Locator) => async (): Promise<string> => ((await l.count()) > 0 ? ((await l.first().textContent()) ?? '').trim() : '<absent>');

function cells(row: Locator): Promise<string[]> {
  return row.locator('td').evaluateAll((tds) => tds.map((td) => (td.textContent ?? '').trim()));
}

/** A screenshot in test-artifacts/; the whole page unless it is very long (500 rows take seconds to capture). */
async function screenshot(page: Page, name: string, fullPage = true): Promise<void> {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, name), fullPage });
}

async function dialogOpen(page: Page, id: string): Promise<boolean> {
  return (await page.locator(`dialog#${id}`).getAttribute('open')) !== null;
}

// ---------------------------------------------------------------------------------------------
// Synthetic API answers for a large cluster (500 nodes, 10,000 tasks, an autoscaler), served with page.route:
// the real daemon has no autoscaler and creating 10,000 tasks would take far too long.
// ---------------------------------------------------------------------------------------------

const BIG_NODES = 500;
const BIG_TASKS = 10000;
const GiB = 1024 ** 3;

function bigNodeList(now: number): unknown[] {
  return Array.from({ length: BIG_NODES }, (_, i) => ({
    number: i + 1,
    name: `node-${i}.example.com:3000`,
    isLocked: i % 7 === 3,
    isAutoSpawned: i % 11 === 5,
    isOnline: i % 13 !== 12,
    getTaskQueueCount: i % 4,
    getMaxParallelTasks: 2,
    getEngineInfo: 'odm 3.5.4',
    getVersion: '2.2.4',
    nodeData: {
      hostname: `node-${i}.example.com`,
      port: 3000,
      token: '',
      info: { cpuCores: 8, totalMemory: 16 * GiB, availableMemory: ((i % 10) + 1) * GiB },
      lastRefreshed: now,
    },
  }));
}

function bigHistory(now: number): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {};
  for (let i = 0; i < BIG_NODES; i++) {
    out[`node-${i}.example.com:3000`] = Array.from({ length: 60 }, (_, k) => ({
      t: now - (59 - k) * 60000,
      queue: Math.max(0, Math.round(2 + 2 * Math.sin((k + i) / 6))),
      slots: k < 30 ? 2 : 3,
    }));
  }
  return out;
}

function bigTaskPage(url: URL, now: number): unknown {
  const offset = Number(url.searchParams.get('offset') ?? 0);
  const limit = Number(url.searchParams.get('limit') ?? 50);
  const q = url.searchParams.get('q') ?? '';
  const total = q ? 3 : BIG_TASKS;
  const tasks = Array.from({ length: Math.max(0, Math.min(limit, total - offset)) }, (_, k) => {
    const n = offset + k;
    return {
      uuid: `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`,
      name: q ? `${q} match ${n}` : `Flight ${n}`,
      node: `node-${n % BIG_NODES}.example.com:3000`,
      status: [10, 20, 30, 40, 50][n % 5] ?? null,
      progress: (n * 7) % 101,
      imagesCount: 100 + n,
      dateCreated: now - n * 60000,
      where: 'node',
    };
  });
  return { total, offset, limit, tasks };
}

test('admin web page in a headless browser', { timeout: 240_000 }, async (t) => {
  const browser = await launchChromium();
  t.after(() => browser.close());

  const dir = tempDir(t, 'clusterodm-browser-');
  const d = await startDaemon(t, dir, ['--admin-web-port', '1', '--admin-pass', PASSWORD]);
  const base = `http://127.0.0.1:${webPortOf(d)}`;
  // Slow enough that a task is seen RUNNING, and canceled long before it would complete.
  const node = await startTestNode({ processingMs: 120000 });
  t.after(() => node.close());
  const nodeName = `127.0.0.1:${node.port}`;

  const context: BrowserContext = await browser.newContext({
    httpCredentials: { username: 'admin', password: PASSWORD },
    viewport: { width: 1280, height: 720 },
  });
  t.after(() => context.close());
  const page = await context.newPage();
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const alerts = page.locator('#alerts .alert');
  const nodeRow = page.locator(`#nodes-body tr[data-key="${nodeName}"]`);

  await t.test('signs in and shows the header with the version', async () => {
    const res = await page.goto(base);
    assert.equal(res?.status(), 200);
    assert.equal(await page.title(), 'ClusterODM');
    await eventually(text(page.locator('#app-version')), (v) => v === VERSION, 'version in the header');
    assert.equal(await text(page.locator('h1'))(), `ClusterODM ${VERSION}`);
    assert.equal(await page.getByRole('link', { name: 'Signout' }).getAttribute('href'), '/signout');
    await eventually(text(page.locator('#nodes-body')), (v) => v.includes('No nodes yet'), 'empty node list');
    assert.equal(await page.locator('#asr-panel').isHidden(), true, 'no autoscaler panel without an autoscaler');
    // Auto refresh, as an admin watching the cluster would use it: the list follows the node's state.
    await page.getByRole('button', { name: 'Enable Auto Refresh' }).click();
    assert.equal(await page.locator('#auto-refresh').getAttribute('aria-pressed'), 'true');
    assert.equal(await text(page.locator('#auto-refresh'))(), 'Disable Auto Refresh');
  });

  await t.test('adds a node through the Add Node dialog and shows it online', async () => {
    await page.getByRole('button', { name: 'Add Node' }).click();
    assert.equal(await dialogOpen(page, 'add-node-dialog'), true);
    await page.getByLabel('Hostname').fill('127.0.0.1');
    await page.getByLabel('Port number').fill(String(node.port));
    await screenshot(page, 'admin-add-node.png');
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await eventually(() => dialogOpen(page, 'add-node-dialog'), (open) => !open, 'Add Node dialog closed');
    await nodeRow.waitFor({ timeout: UI_TIMEOUT_MS });
    const row = await refreshUntil(page.locator('#nodes-refresh'), () => cells(nodeRow), (c) => c[2] === 'Online' && c[3] === '0/1', 'node online with its queue');
    assert.equal(row[0], '1');
    assert.equal(row[1], nodeName);
    assert.equal(row[4], 'odm ?', 'engine');
    assert.equal(row[5], '2.2.4', 'API version');
    assert.equal(row[6], String(os.cpus().length), 'CPU cores');
    assert.match(row[7] ?? '', /^\d{1,3}%$/, 'RAM available');
    assert.match((await nodeRow.locator('.ram').getAttribute('title')) ?? '', /^[\d.]+ [KMGT]iB available of [\d.]+ [KMGT]iB$/);
    assert.equal(row[8], '', 'no flags');
    assert.equal(await nodeRow.locator('.badge').getAttribute('class'), 'badge badge-online');

    // The same node again: refused, and the dialog says why instead of closing.
    await page.getByRole('button', { name: 'Add Node' }).click();
    await page.getByLabel('Hostname').fill('127.0.0.1');
    await page.getByLabel('Port number').fill(String(node.port));
    await page.getByRole('button', { name: 'Add', exact: true }).click();
    await eventually(text(page.locator('#add-node-error')), (v) => v.includes('already in the list'), 'duplicate refused');
    assert.equal(await dialogOpen(page, 'add-node-dialog'), true);
    await page.locator('#add-node-dialog').getByRole('button', { name: 'Cancel', exact: true }).click();
    assert.equal(await dialogOpen(page, 'add-node-dialog'), false);
    assert.equal(await page.locator('#nodes-body tr[data-key]').count(), 1);
  });

  await t.test('locks and unlocks the node', async () => {
    await page.getByRole('button', { name: `Lock node ${nodeName}` }).click();
    await eventually(() => cells(nodeRow), (c) => c[8] === 'L' && c[10] === 'UNLOCKDEL', 'L flag and UNLOCK button');
    assert.equal(await nodeRow.locator('abbr.flag').getAttribute('title'), 'Locked');
    const listed = (await adminApi(base, 'GET', '/r/node/list')) as Array<{ isLocked: boolean }>;
    assert.equal(listed[0]?.isLocked, true);
    await screenshot(page, 'admin-nodes-locked.png');

    await page.getByRole('button', { name: `Unlock node ${nodeName}` }).click();
    await eventually(() => cells(nodeRow), (c) => c[8] === '' && c[10] === 'LOCKDEL', 'no flag and LOCK button');
    assert.equal(((await adminApi(base, 'GET', '/r/node/list')) as Array<{ isLocked: boolean }>)[0]?.isLocked, false);
  });

  await t.test('shows an error when the node changed behind the page', async () => {
    // A second node, listed by the page, then deleted by someone else: its stale LOCK button must fail loudly.
    const other = await startTestNode();
    t.after(() => other.close());
    const otherName = `127.0.0.1:${other.port}`;
    assert.deepEqual(await adminApi(base, 'POST', '/r/node/add', { hostname: '127.0.0.1', port: other.port }), { success: true });
    await page.getByRole('button', { name: 'Refresh', exact: true }).first().click();
    const otherRow = page.locator(`#nodes-body tr[data-key="${otherName}"]`);
    await otherRow.waitFor({ timeout: UI_TIMEOUT_MS });
    await page.getByRole('button', { name: 'Disable Auto Refresh' }).click(); // keep the stale row on screen
    assert.equal(await adminApi(base, 'DELETE', '/r/node', { hostname: '127.0.0.1', port: other.port }), true);
    await page.getByRole('button', { name: `Lock node ${otherName}` }).click();
    const message = await eventually(text(alerts), (v) => v.includes(`Locking ${otherName} failed`), 'error in the alert bar');
    assert.match(message, /the node is unknown/);
    await screenshot(page, 'admin-error.png');
    // The first node (addressed by host:port, not by row number) was not locked by mistake.
    assert.equal(((await adminApi(base, 'GET', '/r/node/list')) as Array<{ isLocked: boolean }>)[0]?.isLocked, false);
    await otherRow.waitFor({ state: 'detached', timeout: UI_TIMEOUT_MS }); // the failed action refreshed the list
    await page.getByRole('button', { name: 'Dismiss message' }).click();
    assert.equal(await alerts.count(), 0);
    await page.getByRole('button', { name: 'Enable Auto Refresh' }).click();
  });

  await t.test('opens the load chart of a node', async () => {
    await page.getByRole('button', { name: `Load chart of ${nodeName}` }).click();
    assert.equal(await dialogOpen(page, 'chart-dialog'), true);
    assert.equal(await text(page.locator('#chart-title'))(), `Load of ${nodeName} — last hour`);
    await page.locator('#chart-body svg.chart').waitFor();
    assert.ok((await nodeRow.locator('svg.sparkline').count()) === 1, 'sparkline in the row');
    await screenshot(page, 'admin-chart-new-node.png');
    await page.getByRole('button', { name: 'Close', exact: true }).click();
    assert.equal(await dialogOpen(page, 'chart-dialog'), false);
  });

  await t.test('shows a task in the Tasks view, cancels and removes it', async () => {
    const form = new FormData();
    form.append('name', 'Survey <b id="injected">north</b>');
    form.append('images', new Blob([Buffer.from('first image')], { type: 'image/jpeg' }), 'a.jpg');
    form.append('images', new Blob([Buffer.from('second image')], { type: 'image/jpeg' }), 'b.jpg');
    const created = await fetch(`${d.url}/task/new`, { method: 'POST', body: form });
    const { uuid } = (await created.json()) as { uuid?: string };
    assert.ok(uuid, 'task created through the proxy');

    await page.getByRole('tab', { name: 'Tasks' }).click();
    assert.equal(await page.getByRole('tab', { name: 'Tasks' }).getAttribute('aria-selected'), 'true');
    assert.equal(await page.locator('#nodes-panel').isHidden(), true);
    const taskRow = page.locator(`#tasks-body tr[data-key="${uuid}"]`);
    // /task/new answers before the upload is forwarded: the task is first listed as local, then on its node.
    const row = await refreshUntil(page.locator('#tasks-refresh'), () => cells(taskRow), (c) => c[2] === nodeName && c[3] === 'RUNNING', 'task RUNNING on the node');
    assert.equal(row[0], uuid);
    assert.equal(row[1], 'Survey <b id="injected">north</b>', 'the name is shown as text');
    assert.equal(await page.locator('#injected').count(), 0, 'no markup injected');
    assert.equal(row[2], nodeName);
    assert.match(row[4] ?? '', /^\d{1,3}%$/, 'progress');
    const now = await taskRow.getByRole('progressbar').getAttribute('aria-valuenow');
    assert.match(now ?? '', /^\d{1,3}$/);
    assert.equal(row[5], '2', 'images');
    assert.match(row[6] ?? '', /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/, 'created');
    assert.equal(await text(page.locator('#tasks-range'))(), '1–1 of 1');
    assert.equal(await page.locator('#tasks-prev').isDisabled(), true);
    assert.equal(await page.locator('#tasks-next').isDisabled(), true);
    await screenshot(page, 'admin-tasks.png');

    // Search (server side): by a piece of the name, then something that matches nothing.
    await page.getByLabel('Search tasks').fill('north');
    await eventually(text(page.locator('#tasks-body')), (v) => v.includes(uuid), 'found by name');
    await page.getByLabel('Search tasks').fill('no-such-task');
    await eventually(text(page.locator('#tasks-body')), (v) => v.includes('No task matches'), 'search without match');
    assert.equal(await text(page.locator('#tasks-range'))(), '0 of 0');
    await page.getByLabel('Search tasks').fill('');
    await taskRow.waitFor({ timeout: UI_TIMEOUT_MS });

    await page.getByRole('button', { name: `Cancel task Survey <b id="injected">north</b>` }).click();
    await refreshUntil(page.locator('#tasks-refresh'), () => cells(taskRow), (c) => c[3] === 'CANCELED', 'task CANCELED');
    assert.equal(node.tasks().find((x) => x.uuid === uuid)?.status, TaskStatus.CANCELED);
    assert.equal(await taskRow.getByRole('button', { name: /^Cancel task/ }).isDisabled(), true);

    await taskRow.getByRole('button', { name: /^Remove task/ }).click();
    assert.equal(await dialogOpen(page, 'confirm-dialog'), true);
    assert.match(await text(page.locator('#confirm-message'))(), new RegExp(uuid));
    await page.locator('#confirm-dialog').getByRole('button', { name: 'Remove', exact: true }).click();
    await taskRow.waitFor({ state: 'detached', timeout: UI_TIMEOUT_MS });
    assert.equal(await dialogOpen(page, 'confirm-dialog'), false);
    await eventually(text(page.locator('#tasks-body')), (v) => v === 'No tasks.', 'task list empty');
    assert.equal(await alerts.count(), 0, `no error: ${await text(alerts)()}`);
  });

  await t.test('deletes the node after confirmation and closes the dialog', async () => {
    await page.getByRole('tab', { name: 'Nodes' }).click();
    await nodeRow.waitFor({ timeout: UI_TIMEOUT_MS });
    await screenshot(page, 'admin-nodes.png');

    // Cancel first: nothing happens.
    await page.getByRole('button', { name: `Delete node ${nodeName}` }).click();
    assert.equal(await dialogOpen(page, 'confirm-dialog'), true);
    await page.locator('#confirm-dialog').getByRole('button', { name: 'Cancel', exact: true }).click();
    assert.equal(await dialogOpen(page, 'confirm-dialog'), false);
    assert.equal(await nodeRow.count(), 1);

    await page.getByRole('button', { name: `Delete node ${nodeName}` }).click();
    assert.match(await text(page.locator('#confirm-message'))(), new RegExp(nodeName.replace(/\./g, '\\.')));
    await screenshot(page, 'admin-delete-confirm.png');
    await page.locator('#confirm-dialog').getByRole('button', { name: 'Delete', exact: true }).click();
    await nodeRow.waitFor({ state: 'detached', timeout: UI_TIMEOUT_MS });
    assert.equal(await dialogOpen(page, 'confirm-dialog'), false, 'the confirmation dialog closed after delete');
    await eventually(text(page.locator('#nodes-body')), (v) => v.includes('No nodes yet'), 'empty node list');
    assert.deepEqual(await adminApi(base, 'GET', '/r/node/list'), []);
    assert.equal(await alerts.count(), 0, `no error: ${await text(alerts)()}`);
  });

  await t.test('stays usable with 500 nodes, 10,000 tasks and an autoscaler (faked API answers)', async () => {
    const now = Date.now();
    const nodes = JSON.stringify(bigNodeList(now));
    const history = JSON.stringify(bigHistory(now));
    const taskQueries: string[] = [];
    await page.route(`${base}/r/**`, async (route) => {
      const url = new URL(route.request().url());
      const json = (body: string): Promise<void> => route.fulfill({ status: 200, contentType: 'application/json', body });
      if (url.pathname === '/r/node/list') return json(nodes);
      if (url.pathname === '/r/node/history') return json(history);
      if (url.pathname === '/r/asr') {
        return json(JSON.stringify({ enabled: true, provider: 'digitalocean', pending: 2, running: 5, limit: 10, maxRuntime: 7200, maxUploadTime: -1 }));
      }
      if (url.pathname === '/r/tasks') {
        taskQueries.push(url.search);
        return json(JSON.stringify(bigTaskPage(url, now)));
      }
      return route.continue();
    });

    // Auto refresh off: this subtest clicks Refresh itself. Role queries are avoided over the 1,500 row buttons
    // (computing every accessible name is slow); ids and row-scoped locators find the same controls.
    await page.getByRole('button', { name: 'Disable Auto Refresh' }).click();
    const started = Date.now();
    await page.reload(); // the page is at #nodes already: a goto there would only be a same-document navigation
    await eventually(() => page.locator('#nodes-body svg.sparkline path.chart-queue').count(), (n) => n === BIG_NODES, '500 node rows with charts');
    const renderMs = Date.now() - started;
    assert.ok(renderMs < 10000, `500 nodes rendered in ${renderMs} ms`);
    assert.equal(await page.locator('#nodes-body svg.sparkline').count(), BIG_NODES);
    assert.equal(await text(page.locator('#nodes-count'))(), `${BIG_NODES} nodes, 462 online`);
    const third = page.locator('#nodes-body tr[data-key="node-3.example.com:3000"]');
    assert.deepEqual((await cells(third)).slice(0, 9), ['4', 'node-3.example.com:3000', 'Online', '3/2', 'odm 3.5.4', '2.2.4', '8', '25%', 'L']);
    assert.equal(await third.locator('.ram').getAttribute('title'), '4.00 GiB available of 16.0 GiB');

    // The autoscaler panel appears only because /r/asr says enabled.
    await page.locator('#asr-panel').waitFor({ state: 'visible' });
    assert.equal(
      await text(page.locator('#asr-stats'))(),
      'ProviderdigitaloceanPending2Running5Limit10Max runtime2hMax upload timeunlimited',
    );

    // A refresh with unchanged data keeps the existing rows (keyed update), it does not rebuild 500 rows.
    await third.evaluate((el) => el.setAttribute('data-probe', 'kept'));
    const refreshed = page.waitForResponse((r) => r.url().endsWith('/r/node/list'));
    await page.locator('#nodes-refresh').click();
    await refreshed;
    await eventually(text(page.locator('#last-updated')), (v) => v.startsWith('Updated'), 'refreshed');
    assert.equal(await page.locator('#nodes-body tr[data-probe="kept"]').count(), 1);

    const sparkButton = third.locator('button.spark-button');
    assert.equal(await sparkButton.getAttribute('aria-label'), 'Load chart of node-3.example.com:3000');
    await sparkButton.click();
    await page.locator('#chart-body svg.chart circle').first().waitFor();
    await screenshot(page, 'admin-chart.png', false);
    await page.locator('#chart-close').click();
    await screenshot(page, 'admin-large.png', false);

    // Server-side paging and search of 10,000 tasks.
    await page.locator('#tab-tasks').click();
    await eventually(text(page.locator('#tasks-range')), (v) => v === '1–50 of 10000', 'first page');
    assert.equal(await page.locator('#tasks-body tr[data-key]').count(), 50);
    assert.equal(await page.locator('#tasks-prev').isDisabled(), true);
    assert.equal(await page.locator('#tasks-next').getAttribute('aria-label'), 'Next page');
    await page.locator('#tasks-next').click();
    await eventually(text(page.locator('#tasks-range')), (v) => v === '51–100 of 10000', 'second page');
    assert.equal(taskQueries.at(-1), '?offset=50&limit=50');
    assert.equal(await text(page.locator('#tasks-body tr[data-key] td.task-name'))(), 'Flight 50');
    await page.locator('#tasks-search').fill('dji');
    await eventually(text(page.locator('#tasks-range')), (v) => v === '1–3 of 3', 'search results');
    assert.equal(taskQueries.at(-1), '?offset=0&limit=50&q=dji');
    await page.locator('#tasks-search').fill('');
    await eventually(text(page.locator('#tasks-range')), (v) => v === '1–50 of 10000', 'back to all tasks');
    await screenshot(page, 'admin-tasks-paged.png');
    await page.unrouteAll({ behavior: 'ignoreErrors' });
  });

  await t.test('refuses a wrong password and signs out', async () => {
    const wrong = 'not-the-password-42';
    const intruder = await browser.newContext({ httpCredentials: { username: 'admin', password: wrong } });
    t.after(() => intruder.close());
    const p = await intruder.newPage();
    const responses: Array<{ url: string; status: number; challenge: string | undefined }> = [];
    p.on('response', (r) => responses.push({ url: r.url(), status: r.status(), challenge: r.headers()['www-authenticate'] }));
    // The refusal has an empty body, so Chromium shows its own "HTTP ERROR 401" page and goto reports a failure.
    const navigation = await p.goto(base).then(
      (r) => r?.status(),
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    assert.ok(navigation === 401 || /ERR_HTTP_RESPONSE_CODE_FAILURE/.test(String(navigation)), `navigation: ${String(navigation)}`);
    assert.deepEqual(responses.at(-1), { url: `${base}/`, status: 401, challenge: 'Basic realm="ClusterODM"' });
    assert.match(await p.locator('body').innerText(), /HTTP ERROR 401/);
    assert.equal(await p.locator('#nodes-table').count(), 0, 'the admin page is not served');
    await screenshot(p, 'admin-401.png');
    await waitUntil(() => d.output().includes('Failed admin web login from '), { message: 'failed login logged' });
    assert.ok(!d.output().includes(wrong), 'the password is never logged');

    const signout = await page.goto(`${base}/signout`);
    assert.equal(signout?.status(), 401);
    assert.match((await page.locator('body').textContent()) ?? '', /Signed out\./);
  });

  assert.deepEqual(pageErrors, [], 'no script errors on the page');
});
