/**
 * ODM task options: a node's option list (GET /options), per-user limits on it (SPEC §4.3), and the validation of the
 * options a user sends with a new task (SPEC §5 step 7, §4.15). Pure functions; nothing here mutates its inputs.
 */
import { limitOptionsMap, type Limits, type OptionLimit } from './limits';
import { isRecord } from '../core';

export type { Limits, OptionLimit } from './limits';

/** One entry of a node's GET /options answer. */
export interface OdmOptionSpec {
  name: string;
  type: string;
  value: unknown;
  domain: unknown;
  help?: string;
}

/** One user-supplied task option, as found in the `options` form field. */
export interface TaskOption {
  name: string;
  value: unknown;
}

/** One failed option; `filterOptions` throws the JSON array of these as its message. */
export interface OptionError {
  name: string;
  error: string;
}

export class InvalidOptionsError extends Error {
  constructor(readonly errors: readonly OptionError[]) {
    super(JSON.stringify(errors));
    this.name = 'InvalidOptionsError';
  }
}

/** More user options than any ODM version has is hostile input. */
export const MAX_TASK_OPTIONS = 1000;
/** Sanity bound on a node's option list (ODM has about 80). */
export const MAX_NODE_OPTIONS = 10000;

export const SM_CLUSTER = 'sm-cluster';
const MAX_CONCURRENCY = 'max-concurrency';

type Primitive = string | number | boolean;

function isPrimitive(v: unknown): v is Primitive {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  return Array.isArray(v) ? 'array' : typeof v;
}

// ---------------------------------------------------------------------------------------------------------------------
// Node option list

/** Validates a node's GET /options answer. Throws with the reason when it is not a usable option list. */
export function parseOptionSpecs(raw: unknown): OdmOptionSpec[] {
  if (isRecord(raw) && typeof raw['error'] === 'string') throw new Error(raw['error']);
  if (!Array.isArray(raw)) throw new Error('options is not a JSON array');
  if (raw.length > MAX_NODE_OPTIONS) throw new Error(`options has too many entries (${raw.length})`);
  return raw.map((o: unknown, i): OdmOptionSpec => {
    if (!isRecord(o)) throw new Error(`options[${i}] is not an object`);
    const { name, type, value, domain, help } = o;
    if (typeof name !== 'string' || name === '') throw new Error(`options[${i}].name is not a string`);
    if (typeof type !== 'string') throw new Error(`options[${i}].type is not a string`);
    if (domain !== undefined && domain !== null && typeof domain !== 'string' && !Array.isArray(domain)) {
      throw new Error(`options[${i}].domain is neither a string nor an array`);
    }
    if (help !== undefined && typeof help !== 'string') throw new Error(`options[${i}].help is not a string`);
    const spec: OdmOptionSpec = { name, type, value, domain: domain ?? '' };
    if (help !== undefined) spec.help = help;
    return spec;
  });
}

/**
 * SPEC §4.3. Without option limits the node's list is returned as is (a new array, same entries). Otherwise
 * `max-concurrency` is always dropped, options whose limit has `remove` are dropped, and `domain`/`value` are overridden
 * from the limit when present; every entry is a shallow copy.
 */
export function optionsWithLimits(specs: OdmOptionSpec[], limits: Limits | null): OdmOptionSpec[] {
  const lims = limitOptionsMap(limits);
  if (!lims) return [...specs];
  const out: OdmOptionSpec[] = [];
  for (const spec of specs) {
    if (spec.name === MAX_CONCURRENCY) continue;
    const lo = lims.get(spec.name);
    if (lo?.remove) continue;
    const copy = { ...spec };
    if (lo?.domain !== undefined) copy.domain = lo.domain;
    if (lo?.value !== undefined) copy.value = lo.value;
    out.push(copy);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// User options

/**
 * Reads the `options` form field: a JSON string or an already-parsed value. A non-array gives [] and entries that are
 * not objects with a string `name` are dropped (they could never match a node option). Invalid JSON throws JSON.parse's
 * SyntaxError; more than MAX_TASK_OPTIONS entries throws.
 */
export function parseTaskOptions(raw: unknown): TaskOption[] {
  const parsed: unknown = typeof raw === 'string' ? JSON.parse(raw) : raw;
  if (!Array.isArray(parsed)) return [];
  if (parsed.length > MAX_TASK_OPTIONS) {
    throw new Error(`Too many options: ${parsed.length} (at most ${MAX_TASK_OPTIONS} allowed)`);
  }
  const out: TaskOption[] = [];
  for (const o of parsed as unknown[]) {
    if (isRecord(o) && typeof o['name'] === 'string') out.push({ name: o['name'], value: o['value'] });
  }
  return out;
}

/** JS `==` for primitives; objects only equal themselves (no toString coercion of user input). */
function looseEquals(a: unknown, b: unknown): boolean {
  if ((typeof a === 'object' && a !== null) || (typeof b === 'object' && b !== null)) return a === b;
  return a == b;
}

/** The numeric coercion `Math.min`/`Math.max` apply; objects are left alone for filterOptions to reject. */
function clamp(value: unknown, min: number, max: number): unknown {
  if (typeof value === 'object' && value !== null) return value;
  return Math.max(min, Math.min(max, Number(value)));
}

function applyLimit(value: unknown, lo: OptionLimit): unknown {
  let v = value;
  const b = lo.between;
  if (b) {
    if (b.max_if_equal_to !== undefined && b.max !== undefined && looseEquals(v, b.max_if_equal_to)) v = b.max;
    if (b.min !== undefined && b.max !== undefined) v = clamp(v, b.min, b.max);
  }
  if (lo.value === 'true') v = true;
  return v;
}

function applySplitMerge(opts: TaskOption[], splitmerge: boolean, smClusterUrl: string): TaskOption[] {
  if (!splitmerge) return opts.filter((o) => o.name !== SM_CLUSTER).map((o) => ({ name: o.name, value: o.value }));
  const out = opts.map((o) => ({ name: o.name, value: o.name === SM_CLUSTER ? smClusterUrl : o.value }));
  if (opts.some((o) => o.name === 'split') && !opts.some((o) => o.name === SM_CLUSTER)) {
    out.push({ name: SM_CLUSTER, value: smClusterUrl });
  }
  return out;
}

/**
 * SPEC §5 step 7 and §4.15. Split-merge: with `splitmerge` every `sm-cluster` gets `smClusterUrl`, and one is appended
 * when the task has `split` but no `sm-cluster`; without it `sm-cluster` is stripped. Then, when option limits exist:
 * `between.max_if_equal_to` (loose ==) sets `between.max`, `between.min`+`max` clamp, a limit `value === 'true'` forces
 * true, and every `assure` limit with a value the user did not pass is appended (in limit order).
 */
export function augmentTaskOptions(
  opts: TaskOption[],
  ctx: { limits: Limits | null; splitmerge: boolean; smClusterUrl: string },
): TaskOption[] {
  const out = applySplitMerge(opts, ctx.splitmerge, ctx.smClusterUrl);
  const lims = limitOptionsMap(ctx.limits);
  if (!lims) return out;
  const given = new Set(out.map((o) => o.name));
  const limited = out.map((o) => {
    const lo = lims.get(o.name);
    return lo ? { name: o.name, value: applyLimit(o.value, lo) } : o;
  });
  for (const [name, lo] of lims) {
    if (lo.assure && lo.value !== undefined && !given.has(name)) limited.push({ name, value: lo.value });
  }
  return limited;
}

// ---------------------------------------------------------------------------------------------------------------------
// Validation against the node's list

function convert(type: string, value: Primitive): Primitive {
  switch (type) {
    case 'float':
      return Number.parseFloat(String(value));
    case 'int':
      return Number.parseInt(String(value));
    case 'bool':
      if (value === true || value === 'true' || value === '1') return true;
      if (value === false || value === 'false' || value === '0') return false;
      throw new Error(`Cannot convert ${value} to boolean`);
    case 'string':
    case 'path':
    case 'enum':
      return value;
    default:
      throw new Error(`Cannot convert ${value}: unsupported option type '${type}'`);
  }
}

function compare(oper: string, x: number, bound: number): boolean {
  switch (oper) {
    case '>=':
      return x >= bound;
    case '>':
      return x > bound;
    case '<=':
      return x <= bound;
    case '<':
      return x < bound;
    default:
      return false;
  }
}

function parseBound(type: string | undefined, s: string | undefined): number {
  return type === 'float' ? Number.parseFloat(s ?? '') : Number.parseInt(s ?? '');
}

function isJson(value: Primitive): boolean {
  if (typeof value !== 'string') return false;
  try {
    JSON.parse(value);
    return true;
  } catch {
    return false;
  }
}

interface DomainCheck {
  regex: RegExp;
  validate(m: RegExpMatchArray, value: Primitive): boolean;
}

// Comparisons go through Number(value): that is what JS relational operators do when one side is a number.
const DOMAIN_CHECKS: readonly DomainCheck[] = [
  {
    regex: /^(positive |negative )?(integer|float)$/,
    validate: (m, v) => {
      if (m[1] === 'positive ') return Number(v) >= 0;
      if (m[1] === 'negative ') return Number(v) <= 0;
      return m[2] === 'integer' ? Number.isInteger(v) : Number.isFinite(v);
    },
  },
  { regex: /^percent$/, validate: (_m, v) => Number(v) >= 0 && Number(v) <= 100 },
  {
    regex: /^(float|integer): ([-+.\d]+) <= x <= ([-+.\d]+)$/,
    validate: (m, v) => Number(v) >= parseBound(m[1], m[2]) && Number(v) <= parseBound(m[1], m[3]),
  },
  {
    regex: /^(float|integer) (>=|>|<|<=) ([-+.\d]+)$/,
    validate: (m, v) => compare(m[2] ?? '', Number(v), parseBound(m[1], m[3])),
  },
  { regex: /^json$/, validate: (_m, v) => isJson(v) },
  { regex: /^(string|path)$/, validate: () => true },
];

/** Returns the error text for `value` outside `domain`, or null when it is fine. */
function domainError(domain: unknown, value: Primitive): string | null {
  if (Array.isArray(domain)) return domain.indexOf(value) !== -1 ? null : `Invalid value ${value} (not in enum)`;
  if (typeof domain === 'string') {
    for (const dc of DOMAIN_CHECKS) {
      const m = domain.match(dc.regex);
      if (m) return dc.validate(m, value) ? null : `Invalid value ${value} (out of range)`;
    }
  }
  return `Domain value cannot be handled: '${String(domain)}' : '${value}'`;
}

function checkOption(spec: OdmOptionSpec, raw: unknown): Primitive {
  if (!isPrimitive(raw)) throw new Error(`Invalid value type: ${kindOf(raw)}`);
  const value = convert(spec.type, raw);
  if (spec.domain) {
    const err = domainError(spec.domain, value);
    if (err !== null) throw new Error(err);
  }
  return value;
}

/**
 * SPEC §5 step 7. Walks the node's option list (so the output follows the node's order); for each option the user
 * supplied (the first entry with that name) converts the value by type and checks the domain. User options the node
 * does not know are dropped. Throws InvalidOptionsError (message: JSON array of {name, error}) when any option fails.
 */
export function filterOptions(opts: TaskOption[], specs: OdmOptionSpec[]): TaskOption[] {
  const byName = new Map<string, TaskOption>();
  for (const o of opts) if (!byName.has(o.name)) byName.set(o.name, o);

  const result: TaskOption[] = [];
  const errors: OptionError[] = [];
  for (const spec of specs) {
    const opt = byName.get(spec.name);
    if (!opt) continue;
    try {
      result.push({ name: spec.name, value: checkOption(spec, opt.value) });
    } catch (e) {
      errors.push({ name: opt.name, error: e instanceof Error ? e.message : String(e) });
    }
  }
  if (errors.length > 0) throw new InvalidOptionsError(errors);
  return result;
}
