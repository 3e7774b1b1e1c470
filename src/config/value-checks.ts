/** How each kind of option value is checked (flags come as strings, config files as JSON values). */
import { errorMessage, LOG_LEVELS, type LogLevel } from '../core';
import { parseRedisUrl } from '../store/redis/url';
import { parseHostList } from './host-list';

export const CLOUD_PROVIDERS = ['local', 'lightning', 'lightningDev'] as const;
export type CloudProviderName = (typeof CLOUD_PROVIDERS)[number];

export type ValueKind = 'port' | 'count' | 'bool' | 'string' | 'path' | 'logLevel' | 'cloudProvider' | 'hostList' | 'redisUrl';

export interface KindValue {
  port: number;
  count: number;
  bool: boolean;
  string: string;
  path: string;
  logLevel: LogLevel;
  cloudProvider: CloudProviderName;
  hostList: readonly string[];
  redisUrl: string;
}

// Value checks

export type Checked<T> = { ok: true; value: T } | { ok: false; expected: string };

const ok = <T>(value: T): Checked<T> => ({ ok: true, value });
const fail = <T>(expected: string): Checked<T> => ({ ok: false, expected });

/** Whole numbers may come as JSON numbers or as decimal strings (flags are always strings). */
function toWholeNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

function checkCount(v: unknown): Checked<number> {
  const n = toWholeNumber(v);
  return n === undefined ? fail('a whole number') : ok(n);
}

function checkPort(v: unknown): Checked<number> {
  const n = toWholeNumber(v);
  if (n === undefined) return fail('a whole number');
  return n <= 65535 ? ok(n) : fail('a port number from 0 to 65535');
}

const TRUE_WORDS: ReadonlySet<string> = new Set(['true', '1', 'yes']);
const FALSE_WORDS: ReadonlySet<string> = new Set(['false', '0', 'no']);

/** The original used Boolean(value), which turned the string "false" into true. */
function checkBool(v: unknown): Checked<boolean> {
  if (typeof v === 'boolean') return ok(v);
  if (v === 1 || v === 0) return ok(v === 1);
  if (typeof v === 'string') {
    const word = v.trim().toLowerCase();
    if (TRUE_WORDS.has(word)) return ok(true);
    if (FALSE_WORDS.has(word)) return ok(false);
  }
  return fail('true or false');
}

/** No String() coercion: a JSON number would silently lose digits (tokens) and false would become "false". */
function checkString(v: unknown): Checked<string> {
  return typeof v === 'string' ? ok(v) : fail('a string (put the value in quotes)');
}

function checkHostList(v: unknown): Checked<readonly string[]> {
  const names = parseHostList(v);
  return names ? ok(names) : fail('comma-separated host names (DNS names or IP addresses), or *');
}

function checkPath(v: unknown): Checked<string> {
  return typeof v === 'string' && v !== '' ? ok(v) : fail('a non-empty path');
}

function checkRedisUrl(v: unknown): Checked<string> {
  if (v === '') return ok(v);
  if (typeof v !== 'string') return fail('a redis://, rediss:// or unix:// URL');
  try {
    parseRedisUrl(v);
    return ok(v);
  } catch (e: unknown) {
    return fail(`a redis://, rediss:// or unix:// URL; ${errorMessage(e)}`);
  }
}

function checkOneOf<T extends string>(choices: readonly T[]): (v: unknown) => Checked<T> {
  const isChoice = (v: unknown): v is T => typeof v === 'string' && (choices as readonly string[]).includes(v);
  return (v) => (isChoice(v) ? ok(v) : fail(`one of ${choices.join(', ')}`));
}

export const CHECKERS: { readonly [K in ValueKind]: (v: unknown) => Checked<KindValue[K]> } = {
  port: checkPort,
  count: checkCount,
  bool: checkBool,
  string: checkString,
  path: checkPath,
  logLevel: checkOneOf(LOG_LEVELS),
  cloudProvider: checkOneOf(CLOUD_PROVIDERS),
  hostList: checkHostList,
  redisUrl: checkRedisUrl,
};

