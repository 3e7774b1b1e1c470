import * as fs from 'node:fs';
import { errorMessage } from '../core';

/** A JSON object as read from the ASR file. */
export type ConfigObject = { [key: string]: unknown };

export function isObject(v: unknown): v is ConfigObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value the original's defaults use for keys the user must set. */
export const CHANGE_ME = 'CHANGEME!';

/**
 * Provider defaults merged with the user's file: nested objects key by key (the original replaced a whole `s3`
 * object by the user's, losing e.g. `ignoreSSL`), arrays and scalars replaced.
 */
export function mergeConfig(defaults: ConfigObject, user: ConfigObject): ConfigObject {
  const out: ConfigObject = { ...defaults };
  for (const [k, v] of Object.entries(user)) {
    const d = out[k];
    out[k] = isObject(d) && isObject(v) ? mergeConfig(d, v) : v;
  }
  return out;
}

/** Reads the `--asr` file: a JSON object with a `provider` key. Throws the message the operator sees. */
export function readAsrFile(file: string): ConfigObject {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e: unknown) {
    throw new Error(`Cannot read ASR configuration ${file}: ${errorMessage(e)}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e: unknown) {
    throw new Error(`ASR configuration ${file} is not valid JSON: ${errorMessage(e)}`);
  }
  if (!isObject(parsed)) throw new Error(`ASR configuration ${file} must be a JSON object`);
  if (typeof parsed['provider'] !== 'string' || parsed['provider'] === '') {
    throw new Error("Your ASR configuration must specify a provider key (we didn't find it).");
  }
  return parsed;
}

/** Typed, validated access to a merged ASR configuration (dotted paths as the original's getConfig). */
export class AsrConfig {
  constructor(readonly raw: ConfigObject) {}

  get(path: string): unknown {
    let cur: unknown = this.raw;
    for (const part of path.split('.')) {
      if (!isObject(cur)) return undefined;
      cur = cur[part];
    }
    return cur;
  }

  /** The original's check: a key left at CHANGEME! or missing stops the start (its missing-key check was dead code). */
  require(paths: readonly string[]): void {
    for (const p of paths) {
      const v = this.get(p);
      if (v === undefined || v === null || v === CHANGE_ME || v === '') {
        throw new Error(`You need to create a configuration file and set ${p}.`);
      }
    }
  }

  string(path: string, fallback = ''): string {
    const v = this.get(path);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'string') throw new Error(`Invalid config key ${path}: must be a string`);
    return v;
  }

  number(path: string, fallback: number): number {
    const v = this.get(path);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`Invalid config key ${path}: must be a number`);
    return v;
  }

  boolean(path: string, fallback: boolean): boolean {
    const v = this.get(path);
    if (v === undefined || v === null) return fallback;
    if (typeof v !== 'boolean') throw new Error(`Invalid config key ${path}: must be true or false`);
    return v;
  }

  /** A scalar is an array of one (the original's getConfigArray: `region` may be "nyc3" or ["nyc3", "sfo2"]). */
  stringArray(path: string): string[] {
    const v = this.get(path);
    if (v === undefined || v === null || v === '') return [];
    const arr = Array.isArray(v) ? v : [v];
    if (!arr.every((x) => typeof x === 'string')) throw new Error(`Invalid config key ${path}: must be a string or a list of strings`);
    return arr as string[];
  }
}
