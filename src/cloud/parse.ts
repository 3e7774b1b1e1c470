/** Guards for the Lightning API's answers, which arrive as `unknown` and are trusted only after these. */
import type { ApprovalResult, Limits, OptionLimit, ValidationResult } from './types';
import { isRecord } from '../core';

class Malformed extends Error {}

/** null counts as absent: JSON APIs often send `"maxImages": null` for "no limit". */
function optionalNumber(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  throw new Malformed(`${what} is not a number`);
}

function optionalBoolean(v: unknown, what: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'boolean') return v;
  throw new Malformed(`${what} is not a boolean`);
}

function parseBetween(v: unknown, what: string): OptionLimit['between'] {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) throw new Malformed(`${what} is not an object`);
  const between: NonNullable<OptionLimit['between']> = {};
  const min = optionalNumber(v['min'], `${what}.min`);
  const max = optionalNumber(v['max'], `${what}.max`);
  if (min !== undefined) between.min = min;
  if (max !== undefined) between.max = max;
  if ('max_if_equal_to' in v) between.max_if_equal_to = v['max_if_equal_to'];
  return between;
}

function parseOptionLimit(v: unknown, what: string): OptionLimit {
  if (!isRecord(v)) throw new Malformed(`${what} is not an object`);
  const limit: OptionLimit = {};
  const remove = optionalBoolean(v['remove'], `${what}.remove`);
  const assure = optionalBoolean(v['assure'], `${what}.assure`);
  const between = parseBetween(v['between'], `${what}.between`);
  if (remove !== undefined) limit.remove = remove;
  if (assure !== undefined) limit.assure = assure;
  if (between !== undefined) limit.between = between;
  // domain and value are handed to clients as they are; their shape depends on the option.
  if ('domain' in v) limit.domain = v['domain'];
  if ('value' in v) limit.value = v['value'];
  return limit;
}

function parseOptionLimits(v: unknown): Record<string, OptionLimit> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isRecord(v)) throw new Malformed('limits.options is not an object');
  const out: Record<string, OptionLimit> = {};
  for (const [name, lim] of Object.entries(v)) out[name] = parseOptionLimit(lim, `limits.options.${name}`);
  return out;
}

/** Parses a limits object; null/absent means "no limits". Throws Malformed. */
function parseLimitsOrThrow(v: unknown): Limits | null {
  if (v === undefined || v === null) return null;
  // The original's local provider used `[]` for "no limits"; accept it with the same meaning.
  if (Array.isArray(v) && v.length === 0) return null;
  if (!isRecord(v)) throw new Malformed('limits is not an object');
  const limits: Limits = {};
  const maxImages = optionalNumber(v['maxImages'], 'limits.maxImages');
  const maxConcurrentTasks = optionalNumber(v['maxConcurrentTasks'], 'limits.maxConcurrentTasks');
  const options = parseOptionLimits(v['options']);
  if (maxImages !== undefined) limits.maxImages = maxImages;
  if (maxConcurrentTasks !== undefined) limits.maxConcurrentTasks = maxConcurrentTasks;
  if (options !== undefined) limits.options = options;
  return limits;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

function guard<T>(fn: () => T): Parsed<T> {
  try {
    return { ok: true, value: fn() };
  } catch (e: unknown) {
    if (e instanceof Malformed) return { ok: false, reason: e.message };
    throw e;
  }
}

/** `/tokens/validate` answer: `{valid, limits}`. */
export function parseValidation(body: unknown): Parsed<ValidationResult> {
  return guard(() => {
    if (!isRecord(body)) throw new Malformed('answer is not a JSON object');
    if (typeof body['valid'] !== 'boolean') throw new Malformed('answer.valid is not a boolean');
    // An invalid token carries no quotas worth reading.
    if (!body['valid']) return { valid: false, limits: null };
    return { valid: true, limits: parseLimitsOrThrow(body['limits']) };
  });
}

/** `/tasks/approve` answer: `{approved, error}`; anything but `approved: true` is a refusal. */
export function parseApproval(body: unknown): Parsed<ApprovalResult> {
  return guard(() => {
    if (!isRecord(body)) throw new Malformed('answer is not a JSON object');
    const error = body['error'];
    return { approved: body['approved'] === true, error: typeof error === 'string' ? error : '' };
  });
}

/** `/tasks/finished` answer: success unless it carries a non-empty `error`. */
export function finishedError(body: unknown): string | null {
  if (!isRecord(body)) return 'answer is not a JSON object';
  const error = body['error'];
  if (error === undefined || error === null || error === '' || error === false) return null;
  return typeof error === 'string' ? error : JSON.stringify(error);
}
