import * as path from 'node:path';
import type { Clock, Logger } from '../core';
import type { SharedCounters, SharedTable, StateBackend, StateDoc, StateDocSpec } from './port';
import { JsonStateFile } from './state-file';

/** The embedded default: each document is `<dataDir>/<name>.json`, written atomically. */
export class JsonBackend implements StateBackend {
  private readonly opts: { dataDir: string; clock: Clock; logger: Logger };

  constructor(opts: { dataDir: string; clock: Clock; logger: Logger }) {
    this.opts = opts;
  }

  open(): Promise<void> {
    return Promise.resolve();
  }

  doc<T>(spec: StateDocSpec<T>): StateDoc<T> {
    const { dataDir, clock, logger } = this.opts;
    return new JsonStateFile<T>({ file: path.join(dataDir, `${spec.name}.json`), parse: spec.parse, logger, clock });
  }

  reachable(): Promise<boolean> {
    return Promise.resolve(true);
  }

  sharedTable(_name: string): SharedTable | null {
    return null;
  }

  cluster(): null {
    return null;
  }

  counters(): SharedCounters | null {
    return null;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
