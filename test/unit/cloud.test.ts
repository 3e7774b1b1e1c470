import assert from 'node:assert/strict';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { FakeClock, MemoryLogger } from '../../src/core';
import {
  createCloudProvider,
  LightningCloudProvider,
  LocalCloudProvider,
  tokenTag,
  type FetchLike,
  type LightningOptions,
} from '../../src/cloud';

// ---------------------------------------------------------------------------------------------
// Fake webodm.net API on loopback

type Endpoint = 'validate' | 'approve' | 'finished';
const PATHS: Record<string, Endpoint> = {
  '/r/tokens/validate': 'validate',
  '/r/tasks/approve': 'approve',
  '/r/tasks/finished': 'finished',
};

interface Knobs {
  /** Answer 500 to this many requests first. */
  failTimes: number;
  /** Answer 500 to every request. */
  alwaysFail: boolean;
  /** Keep requests open until release() (a server that answers slowly). */
  hold: boolean;
  /** The JSON answered with status 200. */
  answer: unknown;
}

interface Hit {
  endpoint: Endpoint;
  body: Record<string, unknown>;
  at: number;
}

class FakeLightningApi {
  readonly hits: Hit[] = [];
  readonly knobs: Record<Endpoint, Knobs> = {
    validate: { failTimes: 0, alwaysFail: false, hold: false, answer: { valid: true } },
    approve: { failTimes: 0, alwaysFail: false, hold: false, answer: { approved: true, error: '' } },
    finished: { failTimes: 0, alwaysFail: false, hold: false, answer: { credits_used: 1 } },
  };
  private readonly held = new Set<{ res: http.ServerResponse; endpoint: Endpoint }>();
  private readonly server: http.Server;

  constructor(private readonly clock: FakeClock) {
    this.server = http.createServer((req, res) => this.handle(req, res));
  }

  async listen(t: TestContext): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      this.server.closeAllConnections();
      this.server.close();
    });
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}/r`;
  }

  count(endpoint: Endpoint): number {
    return this.hits.filter((h) => h.endpoint === endpoint).length;
  }

  get heldCount(): number {
    return this.held.size;
  }

  release(): void {
    for (const h of [...this.held]) {
      this.held.delete(h);
      this.reply(h.res, h.endpoint);
    }
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const endpoint = PATHS[req.url ?? ''];
      if (req.method !== 'POST' || !endpoint) {
        res.writeHead(404).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      this.hits.push({ endpoint, body, at: this.clock.now() });
      const k = this.knobs[endpoint];
      if (k.alwaysFail || k.failTimes > 0) {
        k.failTimes--;
        res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"error":"boom"}');
      } else if (k.hold) {
        const entry = { res, endpoint };
        this.held.add(entry);
        res.on('close', () => this.held.delete(entry));
      } else {
        this.reply(res, endpoint);
      }
    });
  }

  private reply(res: http.ServerResponse, endpoint: Endpoint): void {
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(this.knobs[endpoint].answer));
  }
}

/**
 * Wraps the real fetch to know when a request is on the wire. Fake time is moved only while no
 * request is in flight (the provider is then waiting on a clock timer), or while the server is
 * deliberately holding one (so the provider's clock-driven timeout can fire).
 */
interface Harness {
  clock: FakeClock;
  logger: MemoryLogger;
  api: FakeLightningApi;
  urlBase: string;
  fetch: FetchLike;
  provider: LightningCloudProvider;
  drive<T>(p: Promise<T>): Promise<T>;
}

async function harness(t: TestContext, opts: Partial<LightningOptions> = {}): Promise<Harness> {
  const clock = new FakeClock();
  const logger = new MemoryLogger();
  const api = new FakeLightningApi(clock);
  const urlBase = await api.listen(t);
  let inFlight = 0;
  const countingFetch: FetchLike = async (url, init) => {
    inFlight++;
    try {
      const res = await fetch(url, init);
      const text = await res.text();
      return { status: res.status, text: () => Promise.resolve(text) };
    } finally {
      inFlight--;
    }
  };
  const provider = new LightningCloudProvider({
    urlBase,
    clock,
    logger,
    fetch: countingFetch,
    cacheEnabled: true,
    dev: false,
    ...opts,
  });
  const drive = async <T>(p: Promise<T>): Promise<T> => {
    let settled = false;
    p.then(
      () => (settled = true),
      () => (settled = true),
    );
    const realDeadline = Date.now() + 4000;
    while (!settled) {
      if (Date.now() > realDeadline) throw new Error('drive: promise did not settle');
      await new Promise((resolve) => setImmediate(resolve));
      if (inFlight === 0 || api.heldCount > 0) clock.advance(500);
    }
    return p;
  };
  return { clock, logger, api, urlBase, fetch: countingFetch, provider, drive };
}

const TOKEN = 'user-secret-token-0123456789';

function assertNoTokenInLogs(logger: MemoryLogger, token = TOKEN): void {
  for (const line of logger.lines) assert.ok(!line.includes(token), `token leaked into log line: ${line}`);
}

// ---------------------------------------------------------------------------------------------
// Local provider

test('local: an empty configured token lets everyone in, with no limits', async () => {
  const p = new LocalCloudProvider({ token: '' });
  assert.deepEqual(await p.validate(''), { valid: true, limits: null });
  assert.deepEqual(await p.validate('anything'), { valid: true, limits: null });
});

test('local: a configured token must match exactly', async () => {
  const p = new LocalCloudProvider({ token: 'secret' });
  assert.deepEqual(await p.validate('secret'), { valid: true, limits: null });
  for (const wrong of ['', 'Secret', 'secretx', 'secre', ' secret']) {
    assert.equal((await p.validate(wrong)).valid, false, wrong);
  }
});

test('local: approves everything, records nothing, has no auth', async () => {
  const p = new LocalCloudProvider({ token: 'secret' });
  assert.equal(p.name, 'LocalCloudProvider');
  assert.deepEqual(await p.approveNewTask('secret', 1000), { approved: true, error: '' });
  await p.taskFinished('secret', { uuid: 'x' });
  p.clearCache('secret');
  assert.equal(
    JSON.stringify(p.authInfo()),
    '{"message":"Authentication not available on this node","loginUrl":null,"registerUrl":null}',
  );
});

// ---------------------------------------------------------------------------------------------
// createCloudProvider

test('createCloudProvider: fixed table of names, logs "Cloud: <name>"', () => {
  const logger = new MemoryLogger();
  const deps = { token: '', clock: new FakeClock(), logger, debug: false };
  assert.equal(createCloudProvider('local', deps).name, 'LocalCloudProvider');
  assert.equal(createCloudProvider('lightning', deps).name, 'LightningCloudProvider');
  assert.equal(createCloudProvider('lightningDev', deps).name, 'LightningDevCloudProvider');
  assert.deepEqual(logger.lines, [
    'info: Cloud: LocalCloudProvider',
    'info: Cloud: LightningCloudProvider',
    'info: Cloud: LightningDevCloudProvider',
  ]);
  for (const bad of ['../../evil', 'Local', 'constructor', '__proto__']) {
    assert.throws(
      () => createCloudProvider(bad as 'local', deps),
      (e: unknown) => e instanceof Error && e.message === `Invalid cloud provider: ${bad}`,
    );
  }
});

test('lightning: auth info texts (production and dev)', () => {
  const deps = { token: '', clock: new FakeClock(), logger: new MemoryLogger(), debug: false };
  assert.deepEqual(createCloudProvider('lightning', deps).authInfo(), {
    message:
      "Please enter your webodm.net credentials. If you don't have an account, register for free at https://webodm.net/register",
    loginUrl: 'https://webodm.net/r/auth/getToken',
    registerUrl: null,
  });
  assert.deepEqual(createCloudProvider('lightningDev', deps).authInfo(), {
    message:
      "Please enter your localhost credentials. If you don't have an account, register for free at http://localhost:5000/register",
    loginUrl: 'http://localhost:5000/r/auth/getToken',
    registerUrl: null,
  });
});

// ---------------------------------------------------------------------------------------------
// Lightning: validate

test('lightning: a valid token is cached for 15 minutes; clearCache drops it', async (t) => {
  const h = await harness(t);
  h.api.knobs.validate.answer = {
    valid: true,
    limits: { maxImages: 100, maxConcurrentTasks: 2, options: { 'max-concurrency': { remove: true } } },
  };
  const expected = {
    valid: true,
    limits: { maxImages: 100, maxConcurrentTasks: 2, options: { 'max-concurrency': { remove: true } } },
  };
  assert.deepEqual(await h.provider.validate(TOKEN), expected);
  assert.deepEqual(h.api.hits[0]?.body, { token: TOKEN });
  assert.deepEqual(await h.provider.validate(TOKEN), expected);
  assert.equal(h.api.count('validate'), 1, 'second call is answered from the cache');

  h.clock.advance(15 * 60 * 1000 - 1);
  await h.provider.validate(TOKEN);
  assert.equal(h.api.count('validate'), 1, 'still fresh just before 15 minutes');
  h.clock.advance(1);
  await h.provider.validate(TOKEN);
  assert.equal(h.api.count('validate'), 2, 'expired after 15 minutes');

  h.provider.clearCache(TOKEN);
  await h.provider.validate(TOKEN);
  assert.equal(h.api.count('validate'), 3, 'cleared entry is fetched again');
});

test('lightning: an invalid token is not cached (the original locked it out for 15 min)', async (t) => {
  const h = await harness(t);
  h.api.knobs.validate.answer = { valid: false };
  assert.deepEqual(await h.provider.validate(TOKEN), { valid: false, limits: null });
  h.api.knobs.validate.answer = { valid: true };
  assert.deepEqual(await h.provider.validate(TOKEN), { valid: true, limits: null });
  assert.equal(h.api.count('validate'), 2);
});

test('lightning: a missing token is invalid without asking the API', async (t) => {
  const h = await harness(t);
  assert.deepEqual(await h.provider.validate(''), { valid: false, limits: null });
  assert.equal(h.api.hits.length, 0);
});

test('lightning: validation retries after failures, then succeeds and caches', async (t) => {
  const h = await harness(t);
  h.api.knobs.validate.failTimes = 2;
  assert.deepEqual(await h.drive(h.provider.validate(TOKEN)), { valid: true, limits: null });
  assert.equal(h.api.count('validate'), 3);
  await h.provider.validate(TOKEN);
  assert.equal(h.api.count('validate'), 3);
  assertNoTokenInLogs(h.logger);
});

test('lightning: validation gives up after 3 attempts, answers invalid, logs without the token', async (t) => {
  const h = await harness(t);
  h.api.knobs.validate.alwaysFail = true;
  const start = h.clock.now();
  assert.deepEqual(await h.drive(h.provider.validate(TOKEN)), { valid: false, limits: null });
  assert.equal(h.api.count('validate'), 3);
  assert.ok(h.clock.now() - start < 10_000, 'short backoff');
  const tag = tokenTag(TOKEN);
  assert.ok(h.logger.lines.includes(`warn: Cannot validate token ${tag}: gave up`), h.logger.lines.join('\n'));
  assert.ok(h.logger.lines.some((l) => l.includes('returned status 500')));
  assertNoTokenInLogs(h.logger);
  // A give-up is not cached either: the next request asks again.
  h.api.knobs.validate.alwaysFail = false;
  assert.equal((await h.provider.validate(TOKEN)).valid, true);
});

test('lightning: a malformed answer counts as a failure, not as a valid token', async (t) => {
  const h = await harness(t);
  h.api.knobs.validate.answer = { valid: 'yes' };
  assert.deepEqual(await h.drive(h.provider.validate(TOKEN)), { valid: false, limits: null });
  assert.equal(h.api.count('validate'), 3);
  assert.ok(h.logger.lines.some((l) => l.includes('unexpected answer (answer.valid is not a boolean)')));
});

test('lightning: a slow API cannot block validation for long (total time is bounded)', async (t) => {
  const h = await harness(t);
  h.api.knobs.validate.hold = true;
  const start = h.clock.now();
  assert.deepEqual(await h.drive(h.provider.validate(TOKEN)), { valid: false, limits: null });
  const elapsed = h.clock.now() - start;
  assert.ok(elapsed <= 21_000, `validate took ${elapsed} ms of clock time`);
  assert.equal(h.api.count('validate'), 2, 'a 15 s timeout, a 1 s pause, then the rest of the 20 s budget');
  assert.ok(h.logger.lines.some((l) => l.includes('timeout of 15000ms exceeded')), h.logger.lines.join('\n'));
});

test('lightning: concurrent validations of one token share one request', async (t) => {
  const h = await harness(t);
  h.api.knobs.validate.hold = true;
  const a = h.provider.validate(TOKEN);
  const b = h.provider.validate(TOKEN);
  await waitFor(() => h.api.heldCount === 1);
  h.api.release();
  assert.deepEqual(await Promise.all([a, b]), [
    { valid: true, limits: null },
    { valid: true, limits: null },
  ]);
  assert.equal(h.api.count('validate'), 1);
});

test('lightning: clearCache during a validation keeps its answer out of the cache', async (t) => {
  const h = await harness(t);
  h.api.knobs.validate.hold = true;
  const first = h.provider.validate(TOKEN);
  await waitFor(() => h.api.heldCount === 1);
  h.provider.clearCache(TOKEN);
  h.api.knobs.validate.hold = false;
  h.api.release();
  assert.equal((await first).valid, true);
  await h.provider.validate(TOKEN);
  assert.equal(h.api.count('validate'), 2);
});

test('lightning: --debug disables the validation cache', async (t) => {
  const h = await harness(t);
  const p = createCloudProvider('lightning', {
    token: '',
    clock: h.clock,
    logger: h.logger,
    debug: true,
    lightningUrlBase: h.urlBase,
    fetch: h.fetch,
  });
  await p.validate(TOKEN);
  await p.validate(TOKEN);
  assert.equal(h.api.count('validate'), 2);
});

test('lightningDev never caches', async (t) => {
  const h = await harness(t);
  const p = createCloudProvider('lightningDev', {
    token: '',
    clock: h.clock,
    logger: h.logger,
    debug: false,
    lightningUrlBase: h.urlBase,
    fetch: h.fetch,
  });
  await p.validate(TOKEN);
  await p.validate(TOKEN);
  assert.equal(h.api.count('validate'), 2);
  assert.equal(p.authInfo().loginUrl, `${h.urlBase}/auth/getToken`);
});

// ---------------------------------------------------------------------------------------------
// Lightning: approveNewTask

test('lightning: approve passes the API answer through', async (t) => {
  const h = await harness(t);
  assert.deepEqual(await h.provider.approveNewTask(TOKEN, 42), { approved: true, error: '' });
  assert.deepEqual(h.api.hits[0]?.body, { token: TOKEN, imagesCount: 42 });
  h.api.knobs.approve.answer = { approved: false, error: 'Not enough credits' };
  assert.deepEqual(await h.provider.approveNewTask(TOKEN, 42), { approved: false, error: 'Not enough credits' });
});

test('lightning: approve without token or images is refused locally', async (t) => {
  const h = await harness(t);
  assert.deepEqual(await h.provider.approveNewTask('', 5), { approved: false, error: 'Invalid token' });
  assert.deepEqual(await h.provider.approveNewTask(TOKEN, 0), { approved: false, error: 'Invalid images count' });
  assert.equal(h.api.hits.length, 0);
});

test('lightning: an API error gives the friendly error, not a ReferenceError', async (t) => {
  const h = await harness(t);
  h.api.knobs.approve.alwaysFail = true;
  assert.deepEqual(await h.provider.approveNewTask(TOKEN, 5), {
    approved: false,
    error: 'Cannot approve task. Please contact support. Service responded with status 500',
  });
  assert.ok(h.logger.lines.some((l) => l.startsWith('warn: Cannot approve task with ')));
  assertNoTokenInLogs(h.logger);
});

test('lightning: an unreachable API gives the friendly error', async (t) => {
  const h = await harness(t);
  // Nothing listens on port 1 of loopback: the connection is refused.
  const p = new LightningCloudProvider({
    urlBase: 'http://127.0.0.1:1/r',
    clock: h.clock,
    logger: h.logger,
    cacheEnabled: true,
    dev: false,
  });
  const r = await p.approveNewTask(TOKEN, 5);
  assert.equal(r.approved, false);
  assert.match(r.error, /^Cannot approve task\. Please contact support\. fetch failed/);
  assertNoTokenInLogs(h.logger);
});

test('lightning: a slow approve times out after 15 s with the friendly error', async (t) => {
  const h = await harness(t);
  h.api.knobs.approve.hold = true;
  assert.deepEqual(await h.drive(h.provider.approveNewTask(TOKEN, 5)), {
    approved: false,
    error: 'Cannot approve task. Please contact support. timeout of 15000ms exceeded',
  });
});

// ---------------------------------------------------------------------------------------------
// Lightning: taskFinished

test('lightning: taskFinished returns at once and reports in the background', async (t) => {
  const h = await harness(t);
  h.api.knobs.finished.hold = true;
  await h.provider.taskFinished(TOKEN, { uuid: 'task-1', imagesCount: 3 });
  // Resolved although the API has not even received the report yet; now let it answer.
  await waitFor(() => h.api.heldCount === 1);
  h.api.knobs.finished.hold = false;
  h.api.release();
  await h.drive(h.provider.idle());
  assert.equal(h.api.count('finished'), 1);
  assert.deepEqual(h.api.hits[0]?.body, { token: TOKEN, taskInfo: '{"uuid":"task-1","imagesCount":3}' });
});

test('lightning: taskFinished retries with 10 s × i backoff until recorded', async (t) => {
  const h = await harness(t);
  h.api.knobs.finished.failTimes = 3;
  await h.provider.taskFinished(TOKEN, { uuid: 'task-2' });
  await h.drive(h.provider.idle());
  const times = h.api.hits.map((x) => x.at);
  assert.equal(times.length, 4);
  const gaps = times.slice(1).map((at, i) => at - (times[i] ?? 0));
  // Fake time moves in 500 ms steps, so each gap is exact to within one step.
  [0, 10_000, 20_000].forEach((want, i) => assert.ok(Math.abs((gaps[i] ?? -1) - want) <= 500, `gaps ${gaps}`));
  assert.ok(!h.logger.lines.some((l) => l.includes('gave up')));
});

test('lightning: taskFinished treats an {error} answer as a failure and gives up after 10 attempts', async (t) => {
  const h = await harness(t);
  h.api.knobs.finished.answer = { error: 'Invalid token' };
  await h.provider.taskFinished(TOKEN, { uuid: 'task-3' });
  await h.drive(h.provider.idle());
  assert.equal(h.api.count('finished'), 10);
  assert.ok(h.logger.lines.some((l) => l.includes('returned: Invalid token, attempt (1/10)')));
  const tag = tokenTag(TOKEN);
  assert.ok(
    h.logger.lines.includes(`error: Cannot record transaction for task task-3, ${tag}: gave up after 10 attempts`),
    h.logger.lines.join('\n'),
  );
  assertNoTokenInLogs(h.logger);
});

test('lightning: taskFinished without a token logs an error and sends nothing', async (t) => {
  const h = await harness(t);
  await h.provider.taskFinished('', { uuid: 'task-4' });
  await h.provider.idle();
  assert.equal(h.api.hits.length, 0);
  assert.deepEqual(h.logger.lines, ['error: Cannot record transaction, token is missing: {"uuid":"task-4"}']);
});

test('lightning: close() stops pending retries instead of waiting minutes', async (t) => {
  const h = await harness(t);
  h.api.knobs.finished.alwaysFail = true;
  await h.provider.taskFinished(TOKEN, { uuid: 'task-5' });
  await h.drive(waitFor(() => h.api.count('finished') >= 2));
  await h.provider.close();
  assert.ok(h.api.count('finished') < 10);
  assert.ok(h.logger.lines.some((l) => l.endsWith(': shutting down')), h.logger.lines.join('\n'));
});

/** Polls real time for a condition that depends on loopback I/O (never a fixed sleep). */
async function waitFor(pred: () => boolean): Promise<void> {
  const deadline = Date.now() + 4000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('waitFor: condition not met');
    await new Promise((r) => setTimeout(r, 1));
  }
}
