import type { Clock, Logger } from '../core';
import { errorMessage } from '../core';
import { JsonStateFile, type SharedTable, type StoreFs, type TableChange } from '../store';
import type { TaskEntry } from './task-entry';

/** What the table changed since its last save. */
export interface TaskChanges {
  /** The whole table (a file store rewrites it). */
  all: () => Iterable<TaskEntry>;
  /** Entries added or changed, and uuids removed (an entry store writes only these). */
  put: TaskEntry[];
  del: string[];
  /** Entries whose only change is their `accessed` time: written unless another instance changed them meanwhile. */
  touched: TaskEntry[];
}

/** Tasks another instance added, changed or removed (shared state). */
export type RemoteTaskChange = { op: 'put'; entries: TaskEntry[] } | { op: 'del'; uuids: string[] };

/** Persistence of the task table: data/tasks.json (FileTaskStore) or a table shared by instances (SharedTaskStore). */
export interface TaskStore {
  load(): Promise<TaskEntry[] | null>;
  save(changes: TaskChanges): Promise<void>;
  /** Waits for writes in progress (shutdown). */
  flush(): Promise<void>;
  /** Shared stores only: changes other instances made, applied to this instance's table as they come. */
  onRemoteChange?(listener: (change: RemoteTaskChange) => void): void;
}

/** How entries are read and written: task-table.ts owns the format (one validator for the file and for writes). */
export interface TaskCodec {
  parseFile: (raw: unknown) => TaskEntry[];
  serializeAll: (entries: Iterable<TaskEntry>) => string;
  /** One entry as stored in a shared table: the tasks.json value, without the uuid (its key). */
  encode: (e: TaskEntry) => string;
  /** Throws with a clear message when the text is not a valid entry. */
  decode: (uuid: string, text: string) => TaskEntry;
}

/** data/tasks.json, rewritten whole (atomically, through JsonStateFile, which coalesces overlapping saves). */
export class FileTaskStore implements TaskStore {
  private readonly file: JsonStateFile<TaskEntry[]>;
  private readonly codec: TaskCodec;

  constructor(opts: { file: string; codec: TaskCodec; clock: Clock; logger: Logger; fs?: StoreFs }) {
    this.codec = opts.codec;
    this.file = new JsonStateFile({
      file: opts.file,
      parse: opts.codec.parseFile,
      logger: opts.logger,
      clock: opts.clock,
      ...(opts.fs ? { fs: opts.fs } : {}),
    });
  }

  load(): Promise<TaskEntry[] | null> {
    return this.file.load();
  }

  save(changes: TaskChanges): Promise<void> {
    return this.file.save(() => this.codec.serializeAll(changes.all()));
  }

  flush(): Promise<void> {
    return this.file.flush();
  }
}

/**
 * The task table in a table shared by instances (`--redis`): one entry per task, so a change is one small write
 * whatever the table size, seen by every other instance through its notification. On the first start, tasks.json
 * of the data folder is imported once.
 */
export class SharedTaskStore implements TaskStore {
  private readonly table: SharedTable;
  private readonly codec: TaskCodec;
  private readonly logger: Logger;
  private readonly importFrom: FileTaskStore | null;
  private readonly importName: string;
  /** The text of each entry as last read, written or received: what an `accessed` bump expects to replace. */
  private readonly seen = new Map<string, string>();

  /** Imported tasks were staged by the instance that imports them (their files are in its tmp/). */
  private readonly instance: string | undefined;

  constructor(opts: { table: SharedTable; codec: TaskCodec; logger: Logger; importFrom?: FileTaskStore; importName?: string; instance?: string }) {
    this.instance = opts.instance;
    this.table = opts.table;
    this.codec = opts.codec;
    this.logger = opts.logger;
    this.importFrom = opts.importFrom ?? null;
    this.importName = opts.importName ?? 'data/tasks.json';
  }

  /** Once per shared table; a start that dies midway imports again (writing an entry twice is harmless). */
  private async importOnce(): Promise<void> {
    if (!this.importFrom || (await this.table.imported())) return;
    const list = (await this.importFrom.load()) ?? [];
    for (let i = 0; i < list.length; i += 1000) {
      const part = list.slice(i, i + 1000).map((e) => (this.instance !== undefined && e.stagedBy === undefined ? { ...e, stagedBy: this.instance } : e));
      await this.table.importEntries(part.map((e): [string, string] => [e.uuid, this.codec.encode(e)]));
    }
    await this.table.markImported();
    this.logger.info(`Imported ${list.length} tasks from ${this.importName} into the shared state`);
  }

  async load(): Promise<TaskEntry[]> {
    await this.importOnce();
    const out: TaskEntry[] = [];
    this.seen.clear();
    for await (const batch of this.table.scan()) {
      for (const [uuid, text] of batch) {
        try {
          out.push(this.codec.decode(uuid, text));
          this.seen.set(uuid, text);
        } catch (e: unknown) {
          this.logger.error(`Ignoring an invalid shared task entry ${uuid}: ${errorMessage(e)}`);
        }
      }
    }
    return out;
  }

  async save(changes: TaskChanges): Promise<void> {
    if (changes.del.length > 0) {
      for (const u of changes.del) this.seen.delete(u);
      await this.table.delete(changes.del);
    }
    if (changes.put.length > 0) {
      const entries = changes.put.map((e): [string, string] => [e.uuid, this.codec.encode(e)]);
      for (const [u, text] of entries) this.seen.set(u, text);
      await this.table.put(entries);
    }
    const bumps: Array<[string, string, string]> = [];
    for (const e of changes.touched) {
      const expected = this.seen.get(e.uuid);
      if (expected !== undefined) bumps.push([e.uuid, expected, this.codec.encode(e)]);
    }
    if (bumps.length > 0) {
      // Another instance's change since this one read the entry wins over a mere access-time bump.
      const applied = await this.table.putIfUnchanged(bumps);
      for (const [u, , text] of bumps) if (applied.has(u)) this.seen.set(u, text);
    }
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  onRemoteChange(listener: (change: RemoteTaskChange) => void): void {
    this.table.onRemoteChange((c: TableChange) => {
      if (c.op === 'del') {
        for (const u of c.keys) this.seen.delete(u);
        listener({ op: 'del', uuids: c.keys });
        return;
      }
      const entries: TaskEntry[] = [];
      for (const [uuid, text] of c.entries) {
        try {
          entries.push(this.codec.decode(uuid, text));
          this.seen.set(uuid, text);
        } catch (e: unknown) {
          this.logger.error(`Ignoring an invalid shared task entry ${uuid}: ${errorMessage(e)}`);
        }
      }
      listener({ op: 'put', entries });
    });
  }
}
