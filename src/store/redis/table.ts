import type { SharedTable, TableChange } from '../port';
import { ClusterError } from '../../core';
import { withinDeadline } from './deadline';
import type { RedisConnection } from './connection';

/** Entries per notification and per HSET (a touch flush can carry thousands). */
const BATCH = 1000;

/**
 * KEYS[1] the hash; ARGV: channel, notification prefix, then (field, expected, next) triples. Writes each field
 * still holding its expected text, publishes one notification with those written, returns their fields.
 */
const PUT_IF_UNCHANGED = `
local written, entries = {}, {}
for i = 3, #ARGV, 3 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    written[#written + 1] = ARGV[i]
    entries[#entries + 1] = { ARGV[i], ARGV[i + 2] }
  end
end
if #entries > 0 then redis.call('PUBLISH', ARGV[1], ARGV[2] .. cjson.encode(entries) .. '}}') end
return written
`;

/**
 * A shared table as one Redis hash (`clusterodm:<name>`, key → JSON text). Each change is written in one MULTI
 * with its notification on the changes channel (`{"doc": name, "from": instance, "change": {...}}`), so the other
 * instances apply it to their local copy within milliseconds.
 */
export class RedisTable implements SharedTable {
  private readonly listeners: Array<(c: TableChange) => void> = [];
  private readonly opts: { name: string; key: string; channel: string; instanceId: string; connection: () => RedisConnection };

  constructor(opts: { name: string; key: string; channel: string; instanceId: string; connection: () => RedisConnection }) {
    this.opts = opts;
  }

  /** The next HSCAN is on its way while the caller works on a batch (a million entries: a third less time). */
  async *scan(count = BATCH): AsyncIterable<Array<[string, string]>> {
    const cmd = this.opts.connection().cmd;
    type Reply = { cursor: unknown; entries: Array<{ field: unknown; value: unknown }> };
    const next = (cursor: string): Promise<Reply> => {
      const p: Promise<Reply> = cmd.hScan(this.opts.key, cursor, { COUNT: count });
      // A caller that stops early leaves the last one unread: its failure is nobody's error.
      p.catch(() => undefined);
      return p;
    };
    let pending: Promise<Reply> | null = next('0');
    while (pending) {
      const reply: Reply = await pending;
      const cursor = String(reply.cursor);
      pending = cursor === '0' ? null : next(cursor);
      yield reply.entries.map((e): [string, string] => [String(e.field), String(e.value)]);
    }
  }

  /** One entry, for a request that is waiting on it: bounded by the deadline, never queued for a lost connection. */
  async get(key: string): Promise<string | null> {
    const cmd = this.opts.connection().cmd;
    if (!cmd.isReady) throw new ClusterError('STATE_UNAVAILABLE', 'Redis is not connected');
    const v = await withinDeadline(cmd.hGet(this.opts.key, key));
    return v === null || v === undefined ? null : String(v);
  }

  async put(entries: Array<[string, string]>): Promise<void> {
    for (let i = 0; i < entries.length; i += BATCH) {
      const part = entries.slice(i, i + BATCH);
      await this.write({ op: 'put', entries: part }, (m) => m.hSet(this.opts.key, Object.fromEntries(part)));
    }
  }

  async delete(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += BATCH) {
      const part = keys.slice(i, i + BATCH);
      await this.write({ op: 'del', keys: part }, (m) => m.hDel(this.opts.key, part));
    }
  }

  async putIfUnchanged(entries: Array<[string, string, string]>): Promise<Set<string>> {
    const done = new Set<string>();
    const prefix = `{"doc":${JSON.stringify(this.opts.name)},"from":${JSON.stringify(this.opts.instanceId)},"change":{"op":"put","entries":`;
    for (let i = 0; i < entries.length; i += BATCH) {
      const part = entries.slice(i, i + BATCH);
      const written = await this.opts.connection().cmd.eval(PUT_IF_UNCHANGED, {
        keys: [this.opts.key],
        arguments: [this.opts.channel, prefix, ...part.flat()],
      });
      if (Array.isArray(written)) for (const k of written) done.add(String(k));
    }
    return done;
  }

  async imported(): Promise<boolean> {
    return (await this.opts.connection().cmd.exists(`${this.opts.key}:imported`)) > 0;
  }

  async importEntries(entries: Array<[string, string]>): Promise<void> {
    // Sent together (node-redis pipelines commands issued in the same turn): an import of 1,000,000 entries
    // costs a few round trips, not a thousand.
    const cmd = this.opts.connection().cmd;
    const writes: Array<Promise<unknown>> = [];
    for (let i = 0; i < entries.length; i += BATCH) writes.push(cmd.hSet(this.opts.key, Object.fromEntries(entries.slice(i, i + BATCH))));
    await Promise.all(writes);
  }

  async markImported(): Promise<void> {
    await this.opts.connection().cmd.set(`${this.opts.key}:imported`, String(Date.now()));
  }

  onRemoteChange(listener: (change: TableChange) => void): void {
    this.listeners.push(listener);
  }

  /** From the backend's subscriber: a change another instance made. */
  changed(change: TableChange): void {
    for (const l of this.listeners) l(change);
  }

  private async write(change: TableChange, op: (m: Multi) => Multi): Promise<void> {
    const note = JSON.stringify({ doc: this.opts.name, from: this.opts.instanceId, change });
    await op(this.opts.connection().cmd.multi()).publish(this.opts.channel, note).exec();
  }
}

type Multi = ReturnType<RedisConnection['cmd']['multi']>;

/** A change as it arrives in a notification; null when it is not one. */
export function parseTableChange(v: unknown): TableChange | null {
  if (typeof v !== 'object' || v === null) return null;
  const c = v as { op?: unknown; entries?: unknown; keys?: unknown };
  if (c.op === 'put' && Array.isArray(c.entries)) {
    const entries = c.entries.filter(
      (e): e is [string, string] => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'string',
    );
    return { op: 'put', entries };
  }
  if (c.op === 'del' && Array.isArray(c.keys)) return { op: 'del', keys: c.keys.filter((k): k is string => typeof k === 'string') };
  return null;
}
