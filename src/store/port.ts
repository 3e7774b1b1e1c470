import type { ClusterCoordination } from './cluster-port';

/**
 * The state port: what stateful modules (the node registry, and next the route and task tables) talk to,
 * whichever backend keeps the state. A document is one piece of state saved whole (the node list).
 * Implemented by JsonStateFile (data/*.json, the default) and RedisStateDoc (--redis, shared by instances).
 */
export interface StateDoc<T> {
  /** The saved state, or null when there is none yet. */
  load(): Promise<T | null>;
  /** Saves the state `serialize` gives (JSON text); durable (and seen by other instances) when it resolves. */
  save(serialize: () => string | AsyncIterable<string>): Promise<void>;
  /** Waits for writes in progress (shutdown). */
  flush(): Promise<void>;
  /**
   * `listener` runs when another instance changed the state (never for this instance's own saves); the JSON
   * backend has no other writer and never calls it.
   */
  onRemoteChange(listener: () => void): void;
}

export interface StateDocSpec<T> {
  /** The document's name: its file is `<name>.json` in the data folder, its Redis key `clusterodm:<name>`. */
  name: string;
  /** Validates parsed JSON; throws with a clear message if the shape is wrong. */
  parse: (raw: unknown) => T;
  /** How many items a value holds (for log lines such as an import's). */
  count: (value: T) => number;
}

/** A change another instance made to a shared table. */
export type TableChange = { op: 'put'; entries: Array<[string, string]> } | { op: 'del'; keys: string[] };

/**
 * A table of many small entries (key → JSON text) shared by instances, changed entry by entry (routes). Local
 * backends have none: their owners keep their own files (routes.json and its journal).
 */
export interface SharedTable {
  /** Every entry, in batches of about `count` (the table can hold millions). */
  scan(count?: number): AsyncIterable<Array<[string, string]>>;
  /** One entry's text, or null. */
  get(key: string): Promise<string | null>;
  /** Adds or replaces entries; seen by other instances when it resolves. */
  put(entries: Array<[string, string]>): Promise<void>;
  delete(keys: string[]): Promise<void>;
  /**
   * Replaces each entry `[key, expected, next]` only if it still holds `expected` (a compare and set per entry);
   * resolves with the keys written. For changes that must not overwrite another instance's newer one.
   */
  putIfUnchanged(entries: Array<[string, string, string]>): Promise<Set<string>>;
  /** `listener` runs for each change another instance made (never for this instance's own). */
  onRemoteChange(listener: (change: TableChange) => void): void;
  /** Whether an import into this table completed (see markImported). */
  imported(): Promise<boolean>;
  /** Writes entries without notifying (an import at first start: other instances read the table when they start). */
  importEntries(entries: Array<[string, string]>): Promise<void>;
  markImported(): Promise<void>;
}

/** Per-token counts of inits not yet committed (--flood-limit), shared by instances. */
export interface SharedFloodCounts {
  /** Counts one more init; resolves with the new count. */
  add(token: string): Promise<number>;
  /** One init committed: its count goes down (gone at 0; nothing for a token without a count). */
  commit(token: string): Promise<void>;
  /** The forgive pass (counts shrink by a third), done by one instance per `intervalMs`; true if this one did it. */
  forgive(intervalMs: number): Promise<boolean>;
  count(token: string): Promise<number>;
}

/** Per-token commit times within a sliding window, shared by instances. */
export interface SharedCommitWindow {
  /** Drops times older than `windowMs`, records `now`, resolves with how many the window holds. */
  add(token: string, now: number, windowMs: number): Promise<number>;
  /** Frees one slot: the oldest time goes. */
  release(token: string): Promise<void>;
}

export interface SharedCounters {
  flood: SharedFloodCounts;
  commits: SharedCommitWindow;
}

/** Picks where the state lives; app.ts makes one and nothing else knows which. */
export interface StateBackend {
  /** Connects (Redis) and imports data/ on the first start; throws a clear error when the state is unreachable. */
  open(): Promise<void>;
  doc<T>(spec: StateDocSpec<T>): StateDoc<T>;
  /** Whether the state answers now (Redis: a PING within a second, while connected); local files always do. */
  reachable(): Promise<boolean>;
  /** The shared table `name`, or null when the state is local (the caller then keeps its own files). */
  sharedTable(name: string): SharedTable | null;
  /** How instances sharing the state coordinate (cluster-port.ts); null when the state is local (one instance). */
  cluster(): ClusterCoordination | null;
  /** The request guards' counters when instances share them, or null (each process counts in memory). */
  counters(): SharedCounters | null;
  close(): Promise<void>;
}
