import { isRecord } from '../core';
/**
 * Per-user limits supplied by a cloud provider (SPEC §9): `{maxImages, maxConcurrentTasks, options: {<odm option>: OptionLimit}}`.
 * The local provider answers `limits: []`, which means "no limits" (null here).
 */

export interface OptionLimit {
  remove?: boolean;
  domain?: unknown;
  value?: unknown;
  assure?: boolean;
  between?: { min?: number; max?: number; max_if_equal_to?: unknown };
}

export interface Limits {
  maxImages?: number;
  maxConcurrentTasks?: number;
  options?: Record<string, OptionLimit>;
}

function optionalNumber(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${what} is not a number`);
  return v;
}

function optionalBoolean(v: unknown, what: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new Error(`${what} is not a boolean`);
  return v;
}

function parseOptionLimit(raw: unknown, what: string): OptionLimit {
  if (!isRecord(raw)) throw new Error(`${what} is not an object`);
  const out: OptionLimit = {};
  const remove = optionalBoolean(raw['remove'], `${what}.remove`);
  const assure = optionalBoolean(raw['assure'], `${what}.assure`);
  if (remove !== undefined) out.remove = remove;
  if (assure !== undefined) out.assure = assure;
  if (raw['domain'] !== undefined) out.domain = raw['domain'];
  if (raw['value'] !== undefined) out.value = raw['value'];
  const between = raw['between'];
  if (between !== undefined && between !== null) {
    if (!isRecord(between)) throw new Error(`${what}.between is not an object`);
    const b: NonNullable<OptionLimit['between']> = {};
    const min = optionalNumber(between['min'], `${what}.between.min`);
    const max = optionalNumber(between['max'], `${what}.between.max`);
    if (min !== undefined) b.min = min;
    if (max !== undefined) b.max = max;
    if (between['max_if_equal_to'] !== undefined) b.max_if_equal_to = between['max_if_equal_to'];
    out.between = b;
  }
  return out;
}

/**
 * Validates the `limits` of a provider's `validate()` answer. Anything that is not an object (the local provider's `[]`,
 * null, undefined) means no limits and gives null. Throws with the reason when the shape is wrong.
 */
export function parseLimits(raw: unknown): Limits | null {
  if (!isRecord(raw)) return null;
  const out: Limits = {};
  const maxImages = optionalNumber(raw['maxImages'], 'limits.maxImages');
  const maxConcurrentTasks = optionalNumber(raw['maxConcurrentTasks'], 'limits.maxConcurrentTasks');
  if (maxImages !== undefined) out.maxImages = maxImages;
  if (maxConcurrentTasks !== undefined) out.maxConcurrentTasks = maxConcurrentTasks;
  const options = raw['options'];
  if (options !== undefined && options !== null) {
    if (!isRecord(options)) throw new Error('limits.options is not an object');
    // Object.fromEntries defines own properties, so a key like "__proto__" stays an ordinary key.
    out.options = Object.fromEntries(
      Object.entries(options).map(([name, lo]) => [name, parseOptionLimit(lo, `limits.options[${JSON.stringify(name)}]`)]),
    );
  }
  return out;
}

/**
 * The option limits as a Map keyed by option name (own properties only, so user-supplied names such as
 * "__proto__" or "constructor" never hit Object.prototype), or null when there are no option limits at all.
 * An empty `options` object still counts as "limits exist".
 */
export function limitOptionsMap(limits: Limits | null | undefined): Map<string, OptionLimit> | null {
  const options = limits?.options;
  if (!isRecord(options)) return null;
  const map = new Map<string, OptionLimit>();
  for (const [name, lo] of Object.entries(options)) {
    if (isRecord(lo)) map.set(name, lo);
  }
  return map;
}
