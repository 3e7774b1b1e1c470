import { randomUUID } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Logger } from '../../core';
import { ClusterError, errorMessage, isRecord } from '../../core';
import { isNotFound } from '../atomic-file';
import type { SharedCounters, SharedTable, StateBackend, StateDoc, StateDocSpec } from '../port';
import type { ClusterCoordination } from '../cluster-port';
import { RedisConnection } from './connection';
import { RedisCoordination } from './coordination';
import { RedisCounters } from './counters';
import { parseTableChange, RedisTable } from './table';

/** Every key and channel of ClusterODM starts with this (one Redis can hold other data too). */
export const KEY_PREFIX = 'clusterodm:';
/** Change notifications: JSON `{"doc": name, "from": instance id}`. */
export const CHANGES_CHANNEL = `${KEY_PREFIX}changes`;

/** A readiness probe's PING that takes longer than this counts as Redis not answering. */
const PING_TIMEOUT_MS = 1000;

interface DocHandle {
  readonly name: string;
  importFrom(dataDir: string): Promise<void>;
  changed(): void;
}

/**
 * Shared state in Redis. Each document is one key (`clusterodm:<name>`, its JSON text), written together with a
 * notification on `clusterodm:changes` in one MULTI, so every other instance reloads it within milliseconds.
 * On the first start, a document missing in Redis is imported from `<dataDir>/<name>.json` (SET NX: once).
 */
export class RedisBackend implements StateBackend {
  /** This process, so it can tell its own notifications from the others'. */
  readonly instanceId = randomUUID();
  private readonly opts: { url: string; dataDir: string; logger: Logger; connectTimeoutMs?: number };
  private conn: RedisConnection | null = null;
  private readonly docs = new Map<string, DocHandle>();
  private readonly tables = new Map<string, RedisTable>();
  private coordination: RedisCoordination | null = null;
  private sharedCounters: RedisCounters | null = null;

  constructor(opts: { url: string; dataDir: string; logger: Logger; connectTimeoutMs?: number }) {
    this.opts = opts;
  }

  connection(): RedisConnection {
    if (!this.conn) throw new ClusterError('STATE_UNAVAILABLE', 'Redis is not connected yet');
    return this.conn;
  }

  async open(): Promise<void> {
    const { url, logger, dataDir } = this.opts;
    const conn = await RedisConnection.open(url, logger, {
      ...(this.opts.connectTimeoutMs !== undefined ? { connectTimeoutMs: this.opts.connectTimeoutMs } : {}),
    });
    this.conn = conn;
    await conn.sub.subscribe(CHANGES_CHANNEL, (message: string) => this.onMessage(message));
    for (const d of this.docs.values()) await d.importFrom(dataDir);
  }

  private onMessage(message: string): void {
    let v: unknown;
    try {
      v = JSON.parse(message) as unknown;
    } catch {
      return;
    }
    if (!isRecord(v) || v['from'] === this.instanceId || typeof v['doc'] !== 'string') return;
    const table = this.tables.get(v['doc']);
    if (table) {
      const change = parseTableChange(v['change']);
      if (change) table.changed(change);
      return;
    }
    this.docs.get(v['doc'])?.changed();
  }

  doc<T>(spec: StateDocSpec<T>): StateDoc<T> {
    const d = new RedisStateDoc<T>(spec, this, this.opts.logger);
    this.docs.set(spec.name, d);
    return d;
  }

  cluster(): ClusterCoordination {
    this.coordination ??= new RedisCoordination({ prefix: KEY_PREFIX, processId: this.instanceId, connection: () => this.connection() });
    return this.coordination;
  }

  async reachable(): Promise<boolean> {
    const conn = this.conn;
    // While reconnecting, commands wait in node-redis's queue: not ready is the answer, without waiting.
    if (!conn || !conn.cmd.isReady) return false;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
    });
    try {
      return await Promise.race([conn.cmd.ping().then(() => true, () => false), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  sharedTable(name: string): SharedTable {
    let t = this.tables.get(name);
    if (!t) {
      t = new RedisTable({ name, key: `${KEY_PREFIX}${name}`, channel: CHANGES_CHANNEL, instanceId: this.instanceId, connection: () => this.connection() });
      this.tables.set(name, t);
    }
    return t;
  }

  counters(): SharedCounters {
    this.sharedCounters ??= new RedisCounters(KEY_PREFIX, () => this.connection());
    return this.sharedCounters;
  }

  async close(): Promise<void> {
    const conn = this.conn;
    this.conn = null;
    if (conn) await conn.close();
  }
}

/** KEYS[1] doc; ARGV: expected exists (0/1), expected text, new text, channel, notification. */
const COMPARE_AND_SET = `
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
`;

class RedisStateDoc<T> implements StateDoc<T>, DocHandle {
  private readonly spec: StateDocSpec<T>;
  private readonly backend: RedisBackend;
  private readonly logger: Logger;
  private readonly listeners: Array<() => void> = [];
  private writing: Promise<void> = Promise.resolve();
  /**
   * The text this instance last read or wrote (null: the key did not exist), or undefined before the first read: a
   * save before the state was read would overwrite what other instances saved (a start that failed midway).
   */
  private seen: string | null | undefined = undefined;

  constructor(spec: StateDocSpec<T>, backend: RedisBackend, logger: Logger) {
    this.spec = spec;
    this.backend = backend;
    this.logger = logger;
  }

  get name(): string {
    return this.spec.name;
  }

  private get key(): string {
    return `${KEY_PREFIX}${this.spec.name}`;
  }

  async load(): Promise<T | null> {
    const text = await this.backend.connection().cmd.get(this.key);
    this.seen = text;
    if (text === null) return null;
    try {
      return this.spec.parse(JSON.parse(text) as unknown);
    } catch (e: unknown) {
      throw new ClusterError('STATE_CORRUPT', `Redis key ${this.key} is invalid: ${errorMessage(e)}`, { cause: e });
    }
  }

  save(serialize: () => string | AsyncIterable<string>): Promise<void> {
    if (this.seen === undefined) return Promise.reject(new ClusterError('STATE_UNAVAILABLE', `${this.spec.name} was not read from Redis`));
    // One write at a time, in call order; each sees the newest state when it starts.
    const p = this.writing.then(async () => {
      const text = await collect(serialize());
      const note = JSON.stringify({ doc: this.spec.name, from: this.backend.instanceId });
      // Compare and set: written only if nobody changed it since this instance read it (else STATE_CONFLICT).
      const expected = this.seen;
      const done = await this.backend.connection().cmd.eval(COMPARE_AND_SET, {
        keys: [this.key],
        arguments: [expected === null || expected === undefined ? '0' : '1', expected ?? '', text, CHANGES_CHANNEL, note],
      });
      if (done !== 1) {
        throw new ClusterError('STATE_CONFLICT', `${this.spec.name} was changed by another instance meanwhile`);
      }
      this.seen = text;
    });
    this.writing = p.catch(() => undefined);
    return p;
  }

  async flush(): Promise<void> {
    await this.writing;
  }

  onRemoteChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  changed(): void {
    for (const l of this.listeners) l();
  }

  /** `<dataDir>/<name>.json` into Redis when the key does not exist yet; once, whichever instance starts first. */
  async importFrom(dataDir: string): Promise<void> {
    const file = path.join(dataDir, `${this.spec.name}.json`);
    const cmd = this.backend.connection().cmd;
    if ((await cmd.exists(this.key)) > 0) return;
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch (e: unknown) {
      if (isNotFound(e)) return;
      throw e;
    }
    let value: T;
    try {
      value = this.spec.parse(JSON.parse(text) as unknown);
    } catch (e: unknown) {
      throw new ClusterError('STATE_CORRUPT', `Cannot import ${file} into Redis: ${errorMessage(e)}`, { cause: e });
    }
    const set = await cmd.set(this.key, text, { condition: 'NX' });
    if (set === null) this.logger.info(`${this.spec.name}: another instance imported it first, ${file} not imported`);
    else this.logger.info(`Imported ${this.spec.count(value)} ${this.spec.name} from ${file} into Redis`);
  }
}

async function collect(data: string | AsyncIterable<string>): Promise<string> {
  if (typeof data === 'string') return data;
  const parts: string[] = [];
  for await (const piece of data) parts.push(piece);
  return parts.join('');
}
