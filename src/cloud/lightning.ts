import type { Clock, Logger } from '../core';
import { describeRequestError, postJson, type FetchLike, type JsonReply } from './http';
import { finishedError, parseApproval, parseValidation } from './parse';
import { tokenTag } from './token';
import { TtlCache } from './ttl-cache';
import type { ApprovalResult, AuthInfo, CloudProvider, ValidationResult } from './types';

export const LIGHTNING_URL_BASE = 'https://webodm.net/r';
export const LIGHTNING_DEV_URL_BASE = 'http://localhost:5000/r';

/** Tunables; the defaults are production values, tests shrink nothing but inject a FakeClock. */
export interface LightningTimings {
  /** Per-request timeout (the original's axios timeout). */
  requestTimeoutMs: number;
  /** How long a VALID validation answer is reused. */
  validateCacheMs: number;
  /** Validation attempts per call; the original made 10 and could block a request for ~4 minutes. */
  validateAttempts: number;
  /** Sleep before retry i is validateBackoffMs × i. */
  validateBackoffMs: number;
  /** Hard cap on the time one validate() call may take, retries and timeouts included. */
  validateBudgetMs: number;
  /** /tasks/finished attempts (kept from the original: billing must not be lost to a blip). */
  finishedAttempts: number;
  /** Sleep after failed attempt i (0-based) is finishedBackoffMs × i, so the first retry is immediate. */
  finishedBackoffMs: number;
}

export const DEFAULT_LIGHTNING_TIMINGS: LightningTimings = {
  requestTimeoutMs: 15_000,
  validateCacheMs: 15 * 60 * 1000,
  validateAttempts: 3,
  validateBackoffMs: 1_000,
  validateBudgetMs: 20_000,
  finishedAttempts: 10,
  finishedBackoffMs: 10_000,
};

export interface LightningOptions {
  urlBase: string;
  clock: Clock;
  logger: Logger;
  fetch?: FetchLike;
  cacheEnabled: boolean;
  /** lightningDev: a local webodm.net, with localhost wording in the auth info. */
  dev: boolean;
  timings?: Partial<LightningTimings>;
}

/** One validation on its way; the object's identity tells whether clearCache() came in between. */
interface Flight {
  promise?: Promise<ValidationResult>;
}

const APPROVE_FAILED = 'Cannot approve task. Please contact support.';

/** webodm.net: tokens, quotas and billing live in a remote API (SPEC §9). */
export class LightningCloudProvider implements CloudProvider {
  readonly name: string;
  private readonly urlBase: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly fetchFn: FetchLike;
  private readonly dev: boolean;
  private readonly t: LightningTimings;
  private readonly validateCache: TtlCache<ValidationResult>;
  /** Concurrent validations of one token share one API round trip. */
  private readonly inflight = new Map<string, Flight>();
  /** Background /tasks/finished reports still running; see idle() and close(). */
  private readonly reports = new Set<Promise<void>>();
  private readonly sleepers = new Set<() => void>();
  private closed = false;

  constructor(opts: LightningOptions) {
    this.urlBase = opts.urlBase.replace(/\/+$/, '');
    this.clock = opts.clock;
    this.logger = opts.logger;
    // Wrapped so the global fetch is never called with a foreign `this`.
    this.fetchFn = opts.fetch ?? ((url, init) => fetch(url, init));
    this.dev = opts.dev;
    this.name = opts.dev ? 'LightningDevCloudProvider' : 'LightningCloudProvider';
    this.t = { ...DEFAULT_LIGHTNING_TIMINGS, ...opts.timings };
    this.validateCache = new TtlCache(opts.clock, this.t.validateCacheMs, opts.cacheEnabled);
  }

  clearCache(token: string): void {
    this.validateCache.delete(token);
    // A validation already on its way must not re-fill the entry that was just cleared.
    this.inflight.delete(token);
  }

  async validate(token: string): Promise<ValidationResult> {
    if (!token) return { valid: false, limits: null };
    const cached = this.validateCache.get(token);
    if (cached !== undefined) return cached;
    const pending = this.inflight.get(token)?.promise;
    if (pending) return pending;

    const flight: Flight = {};
    this.inflight.set(token, flight);
    flight.promise = this.validateAndRemember(token, flight);
    return flight.promise;
  }

  private async validateAndRemember(token: string, flight: Flight): Promise<ValidationResult> {
    try {
      const result = await this.validateRemote(token);
      // Only positive answers are cached: a refused token (e.g. one whose credits were just bought)
      // must be re-checked on the next request, not locked out for 15 minutes (SPEC §12 item 34).
      // A clearCache() meanwhile removed this flight; then the answer is not stored either.
      if (result.valid && this.inflight.get(token) === flight) this.validateCache.set(token, result);
      return result;
    } finally {
      if (this.inflight.get(token) === flight) this.inflight.delete(token);
    }
  }

  /** A few short attempts within a fixed budget; giving up means "invalid", as in the original. */
  private async validateRemote(token: string): Promise<ValidationResult> {
    const tag = tokenTag(token);
    const deadline = this.clock.now() + this.t.validateBudgetMs;
    for (let i = 1; i <= this.t.validateAttempts; i++) {
      const remaining = deadline - this.clock.now();
      if (remaining <= 0) break;
      const problem = await this.tryValidate(token, Math.min(this.t.requestTimeoutMs, remaining));
      if (typeof problem !== 'string') return problem;
      this.logger.warn(`Cannot validate token ${tag}: ${problem}, attempt ${i}/${this.t.validateAttempts}`);
      if (i === this.t.validateAttempts) break;
      const pause = this.t.validateBackoffMs * i;
      if (this.clock.now() + pause >= deadline) break;
      await this.clock.sleep(pause);
    }
    this.logger.warn(`Cannot validate token ${tag}: gave up`);
    return { valid: false, limits: null };
  }

  /** One attempt: the parsed answer, or a description of what went wrong. */
  private async tryValidate(token: string, timeoutMs: number): Promise<ValidationResult | string> {
    let reply: JsonReply;
    try {
      reply = await postJson(this.fetchFn, this.clock, this.urlFor('/tokens/validate'), { token }, timeoutMs);
    } catch (e: unknown) {
      return describeRequestError(e);
    }
    if (reply.status !== 200) return `returned status ${reply.status}`;
    const parsed = parseValidation(reply.body);
    return parsed.ok ? parsed.value : `unexpected answer (${parsed.reason})`;
  }

  async approveNewTask(token: string, imagesCount: number): Promise<ApprovalResult> {
    if (!token) return { approved: false, error: 'Invalid token' };
    if (!imagesCount) return { approved: false, error: 'Invalid images count' };
    const tag = tokenTag(token);
    let reply: JsonReply;
    try {
      const payload = { token, imagesCount };
      reply = await postJson(this.fetchFn, this.clock, this.urlFor('/tasks/approve'), payload, this.t.requestTimeoutMs);
    } catch (e: unknown) {
      const msg = describeRequestError(e);
      this.logger.warn(`Cannot approve task with ${tag}:${imagesCount}: ${msg}`);
      return { approved: false, error: `${APPROVE_FAILED} ${msg}` };
    }
    if (reply.status !== 200) {
      this.logger.warn(`Cannot approve task with ${tag}:${imagesCount}, returned status ${reply.status}`);
      return { approved: false, error: `${APPROVE_FAILED} Service responded with status ${reply.status}` };
    }
    const parsed = parseApproval(reply.body);
    if (parsed.ok) return parsed.value;
    this.logger.warn(`Cannot approve task with ${tag}:${imagesCount}: unexpected answer (${parsed.reason})`);
    return { approved: false, error: `${APPROVE_FAILED} Service returned an unexpected answer` };
  }

  /**
   * Starts reporting in the background and resolves at once: the original awaited up to ten attempts
   * with growing sleeps (minutes) inside the request that finished the task.
   */
  taskFinished(token: string, taskInfo: unknown): Promise<void> {
    const body = serializeTaskInfo(taskInfo);
    if (!token) {
      // Something is not right: this transaction cannot be recorded, so an admin must see it.
      this.logger.error(`Cannot record transaction, token is missing: ${body ?? String(taskInfo)}`);
      return Promise.resolve();
    }
    if (body === null || taskInfo === undefined || taskInfo === null) {
      this.logger.error(`Cannot record transaction for ${tokenTag(token)}: invalid taskInfo parameter`);
      return Promise.resolve();
    }
    const report = this.reportFinished(token, body, taskUuid(taskInfo)).catch((e: unknown) => {
      this.logger.error(`Cannot record transaction for task ${taskUuid(taskInfo)}: ${describeRequestError(e)}`);
    });
    this.reports.add(report);
    void report.finally(() => this.reports.delete(report));
    return Promise.resolve();
  }

  private async reportFinished(token: string, taskInfoJson: string, uuid: string): Promise<void> {
    const tag = tokenTag(token);
    const n = this.t.finishedAttempts;
    for (let i = 0; i < n && !this.closed; i++) {
      const problem = await this.tryFinished(token, taskInfoJson);
      if (problem === null) return;
      this.logger.error(`Cannot call /tasks/finished for ${uuid}, ${tag}: ${problem}, attempt (${i + 1}/${n})`);
      if (i < n - 1) await this.interruptibleSleep(this.t.finishedBackoffMs * i);
    }
    const why = this.closed ? 'shutting down' : `gave up after ${n} attempts`;
    this.logger.error(`Cannot record transaction for task ${uuid}, ${tag}: ${why}`);
  }

  /** One attempt: null when the API recorded the task, else what went wrong. */
  private async tryFinished(token: string, taskInfoJson: string): Promise<string | null> {
    let reply: JsonReply;
    try {
      const payload = { token, taskInfo: taskInfoJson };
      reply = await postJson(this.fetchFn, this.clock, this.urlFor('/tasks/finished'), payload, this.t.requestTimeoutMs);
    } catch (e: unknown) {
      return describeRequestError(e);
    }
    if (reply.status !== 200) return `returned status ${reply.status}`;
    const error = finishedError(reply.body);
    return error === null ? null : `returned: ${error}`;
  }

  authInfo(): AuthInfo {
    if (this.dev) {
      return {
        message:
          "Please enter your localhost credentials. If you don't have an account, register for free at http://localhost:5000/register",
        loginUrl: `${this.urlBase}/auth/getToken`,
        registerUrl: null,
      };
    }
    return {
      message:
        "Please enter your webodm.net credentials. If you don't have an account, register for free at https://webodm.net/register",
      loginUrl: `${this.urlBase}/auth/getToken`,
      registerUrl: null,
    };
  }

  /** Resolves when every background /tasks/finished report has ended (tests, orderly shutdown). */
  async idle(): Promise<void> {
    while (this.reports.size > 0) await Promise.allSettled([...this.reports]);
  }

  /** Stops retrying background reports (each logs that it was abandoned) and waits for them. */
  async close(): Promise<void> {
    this.closed = true;
    for (const wake of [...this.sleepers]) wake();
    await this.idle();
  }

  private urlFor(path: string): string {
    return `${this.urlBase}${path}`;
  }

  /** A clock sleep that close() can cut short, so shutdown does not wait minutes for a retry. */
  private interruptibleSleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = (): void => {
        this.sleepers.delete(wake);
        this.clock.clearTimeout(timer);
        resolve();
      };
      const timer = this.clock.setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }
}

function serializeTaskInfo(taskInfo: unknown): string | null {
  try {
    const s = JSON.stringify(taskInfo);
    return typeof s === 'string' ? s : null;
  } catch {
    return null;
  }
}

function taskUuid(taskInfo: unknown): string {
  if (typeof taskInfo === 'object' && taskInfo !== null && 'uuid' in taskInfo) {
    const uuid = (taskInfo as { uuid: unknown }).uuid;
    if (typeof uuid === 'string') return uuid;
  }
  return '<unknown task>';
}
