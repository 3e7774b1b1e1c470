import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { parseLimits } from '../../src/nodeodm/limits';
import {
  augmentTaskOptions,
  filterOptions,
  InvalidOptionsError,
  MAX_TASK_OPTIONS,
  optionsWithLimits,
  parseOptionSpecs,
  parseTaskOptions,
  type Limits,
  type OdmOptionSpec,
  type TaskOption,
} from '../../src/nodeodm/options';

const FIXTURE = path.join(__dirname, '../../../test/fixtures/nodeodm-options.json');
const SPECS: OdmOptionSpec[] = parseOptionSpecs(JSON.parse(fs.readFileSync(FIXTURE, 'utf8')));

/** Synthetic specs for domain kinds the real list does not use. */
const EXTRA: OdmOptionSpec[] = [
  { name: 'pct', type: 'float', value: '0', domain: 'percent' },
  { name: 'frange', type: 'float', value: '0', domain: 'float: -1.5 <= x <= 2.5' },
  { name: 'ige', type: 'int', value: '0', domain: 'integer >= 3' },
  { name: 'flt', type: 'float', value: '0', domain: 'float < 1' },
  { name: 'fle', type: 'float', value: '0', domain: 'float <= 1' },
  { name: 'neg', type: 'int', value: '0', domain: 'negative integer' },
  { name: 'pth', type: 'path', value: '', domain: 'path' },
  { name: 'weird', type: 'string', value: '', domain: 'weird domain' },
  { name: 'oddtype', type: 'blob', value: '', domain: '' },
];

function errorsOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof Error);
    return JSON.parse(e.message);
  }
  assert.fail('expected a throw');
}

test('the fixture is the real 80-option list', () => {
  assert.equal(SPECS.length, 80);
  assert.deepEqual(SPECS[0]?.name, 'end-with');
});

interface FilterCase {
  name: string;
  option: string;
  value: unknown;
  expect?: unknown;
  error?: string;
}

const filterCases: FilterCase[] = [
  // transcript §4 E: an int option given a non-numeric string
  { name: 'int NaN', option: 'min-num-features', value: 'abc', error: 'Invalid value NaN (out of range)' },
  { name: 'int from string', option: 'min-num-features', value: '8000', expect: 8000 },
  { name: 'int truncates', option: 'min-num-features', value: '12.7', expect: 12 },
  { name: 'int from number', option: 'min-num-features', value: 42, expect: 42 },
  { name: 'integer allows negatives', option: 'min-num-features', value: '-5', expect: -5 },
  // positive integer: >= 0 without integer check
  { name: 'positive integer ok', option: 'matcher-neighbors', value: '8', expect: 8 },
  { name: 'positive integer zero', option: 'matcher-neighbors', value: 0, expect: 0 },
  { name: 'positive integer negative', option: 'matcher-neighbors', value: '-1', error: 'Invalid value -1 (out of range)' },
  { name: 'positive integer NaN', option: 'matcher-neighbors', value: 'x', error: 'Invalid value NaN (out of range)' },
  { name: 'positive integer on a float keeps fraction', option: 'rolling-shutter-readout', value: '1.5', expect: 1.5 },
  // positive float
  { name: 'positive float ok', option: 'crop', value: '2.5', expect: 2.5 },
  { name: 'positive float negative', option: 'crop', value: -0.1, error: 'Invalid value -0.1 (out of range)' },
  // plain float: Number.isFinite
  { name: 'float ok', option: 'dem-resolution', value: '-3.25', expect: -3.25 },
  { name: 'float NaN', option: 'dem-resolution', value: 'abc', error: 'Invalid value NaN (out of range)' },
  { name: 'float Infinity', option: 'dem-resolution', value: 'Infinity', error: 'Invalid value Infinity (out of range)' },
  { name: 'float parse prefix', option: 'dem-resolution', value: '4cm', expect: 4 },
  // float > n
  { name: 'float > 0.0 ok', option: 'orthophoto-resolution', value: '0.5', expect: 0.5 },
  { name: 'float > 0.0 zero', option: 'orthophoto-resolution', value: '0', error: 'Invalid value 0 (out of range)' },
  // integer: a <= x <= b
  { name: 'range low edge', option: 'mesh-octree-depth', value: '1', expect: 1 },
  { name: 'range high edge', option: 'mesh-octree-depth', value: 14, expect: 14 },
  { name: 'range above', option: 'mesh-octree-depth', value: '15', error: 'Invalid value 15 (out of range)' },
  { name: 'range below', option: 'mesh-octree-depth', value: '0', error: 'Invalid value 0 (out of range)' },
  // enum
  { name: 'enum ok', option: 'feature-type', value: 'orb', expect: 'orb' },
  { name: 'enum bad', option: 'feature-type', value: 'surf', error: 'Invalid value surf (not in enum)' },
  { name: 'enum is strict', option: 'feature-type', value: 'ORB', error: 'Invalid value ORB (not in enum)' },
  { name: 'enum with empty choice', option: 'rerun-from', value: '', expect: '' },
  // bool
  { name: 'bool true', option: 'dsm', value: true, expect: true },
  { name: 'bool false', option: 'dsm', value: false, expect: false },
  { name: "bool 'true'", option: 'dsm', value: 'true', expect: true },
  { name: "bool 'false'", option: 'dsm', value: 'false', expect: false },
  { name: "bool '1'", option: 'dsm', value: '1', expect: true },
  { name: "bool '0'", option: 'dsm', value: '0', expect: false },
  { name: 'bool yes', option: 'dsm', value: 'yes', error: 'Cannot convert yes to boolean' },
  { name: 'bool number 1', option: 'dsm', value: 1, error: 'Cannot convert 1 to boolean' },
  { name: 'bool TRUE', option: 'dsm', value: 'TRUE', error: 'Cannot convert TRUE to boolean' },
  // json
  { name: 'json ok', option: 'boundary', value: '{"type":"Polygon"}', expect: '{"type":"Polygon"}' },
  { name: 'json bad', option: 'cameras', value: '{nope', error: 'Invalid value {nope (out of range)' },
  { name: 'json not a string', option: 'cameras', value: 5, error: 'Invalid value 5 (out of range)' },
  // string
  { name: 'string anything', option: 'primary-band', value: 'nir', expect: 'nir' },
  { name: 'string keeps a number', option: 'primary-band', value: 7, expect: 7 },
  // synthetic domains
  { name: 'percent ok', option: 'pct', value: '100', expect: 100 },
  { name: 'percent over', option: 'pct', value: '100.5', error: 'Invalid value 100.5 (out of range)' },
  { name: 'percent under', option: 'pct', value: '-1', error: 'Invalid value -1 (out of range)' },
  { name: 'float range ok', option: 'frange', value: '-1.5', expect: -1.5 },
  { name: 'float range over', option: 'frange', value: '2.6', error: 'Invalid value 2.6 (out of range)' },
  { name: 'integer >= ok', option: 'ige', value: '3', expect: 3 },
  { name: 'integer >= below', option: 'ige', value: '2', error: 'Invalid value 2 (out of range)' },
  { name: 'float < bound', option: 'flt', value: '1', error: 'Invalid value 1 (out of range)' },
  { name: 'float < ok', option: 'flt', value: '0.99', expect: 0.99 },
  { name: 'float <= bound', option: 'fle', value: '1', expect: 1 },
  { name: 'negative integer ok', option: 'neg', value: '-4', expect: -4 },
  { name: 'negative integer positive', option: 'neg', value: '4', error: 'Invalid value 4 (out of range)' },
  { name: 'path anything', option: 'pth', value: '/x/../y', expect: '/x/../y' },
  { name: 'unknown domain', option: 'weird', value: 'v', error: "Domain value cannot be handled: 'weird domain' : 'v'" },
  { name: 'unknown type', option: 'oddtype', value: 'v', error: "Cannot convert v: unsupported option type 'blob'" },
  // hostile values
  { name: 'object value', option: 'min-num-features', value: { a: 1 }, error: 'Invalid value type: object' },
  { name: 'array value', option: 'feature-type', value: ['orb'], error: 'Invalid value type: array' },
  { name: 'null value', option: 'primary-band', value: null, error: 'Invalid value type: null' },
  { name: 'missing value', option: 'dsm', value: undefined, error: 'Invalid value type: undefined' },
];

for (const c of filterCases) {
  test(`filterOptions: ${c.name}`, () => {
    const specs = [...SPECS, ...EXTRA];
    const opts: TaskOption[] = [{ name: c.option, value: c.value }];
    if (c.error === undefined) {
      assert.deepEqual(filterOptions(opts, specs), [{ name: c.option, value: c.expect }]);
    } else {
      assert.deepEqual(errorsOf(() => filterOptions(opts, specs)), [{ name: c.option, error: c.error }]);
    }
  });
}

test('filterOptions: error message is exactly the transcript text', () => {
  const opts = parseTaskOptions('[{"name":"min-num-features","value":"abc"}]');
  assert.throws(
    () => filterOptions(opts, SPECS),
    (e: unknown) =>
      e instanceof InvalidOptionsError &&
      e.message === '[{"name":"min-num-features","error":"Invalid value NaN (out of range)"}]' &&
      e.errors.length === 1,
  );
});

test('filterOptions: output follows node order, unknown names dropped, first duplicate wins', () => {
  const opts: TaskOption[] = [
    { name: 'dsm', value: 'true' },
    { name: 'no-such-option', value: 'x' },
    { name: '__proto__', value: 'x' },
    { name: 'constructor', value: 'x' },
    { name: 'end-with', value: 'odm_meshing' },
    { name: 'dsm', value: 'garbage' },
  ];
  assert.deepEqual(filterOptions(opts, SPECS), [
    { name: 'end-with', value: 'odm_meshing' },
    { name: 'dsm', value: true },
  ]);
});

test('filterOptions: all errors collected in node order', () => {
  const opts: TaskOption[] = [
    { name: 'dsm', value: 'nah' },
    { name: 'feature-type', value: 'surf' },
    { name: 'crop', value: '1' },
  ];
  assert.deepEqual(errorsOf(() => filterOptions(opts, SPECS)), [
    { name: 'feature-type', error: 'Invalid value surf (not in enum)' },
    { name: 'dsm', error: 'Cannot convert nah to boolean' },
  ]);
});

test('filterOptions: empty input gives empty output', () => {
  assert.deepEqual(filterOptions([], SPECS), []);
});

// ---------------------------------------------------------------------------------------------------------------------

const parseCases: { name: string; raw: unknown; expect: TaskOption[] }[] = [
  { name: 'JSON string', raw: '[{"name":"dsm","value":true}]', expect: [{ name: 'dsm', value: true }] },
  { name: 'already parsed', raw: [{ name: 'dsm', value: 'true', extra: 1 }], expect: [{ name: 'dsm', value: 'true' }] },
  { name: 'non-array JSON', raw: '{"name":"dsm"}', expect: [] },
  { name: 'JSON null', raw: 'null', expect: [] },
  { name: 'undefined', raw: undefined, expect: [] },
  { name: 'number', raw: 5, expect: [] },
  {
    name: 'entries without a string name are dropped',
    raw: '[null, 3, "dsm", {"name": {"x":1}, "value": 1}, {"value": 2}, {"name":"crop","value":"1"}]',
    expect: [{ name: 'crop', value: '1' }],
  },
  { name: 'missing value kept as undefined', raw: '[{"name":"dsm"}]', expect: [{ name: 'dsm', value: undefined }] },
];

for (const c of parseCases) {
  test(`parseTaskOptions: ${c.name}`, () => {
    assert.deepEqual(parseTaskOptions(c.raw), c.expect);
  });
}

test('parseTaskOptions: invalid JSON rethrows the SyntaxError', () => {
  let expected = '';
  try {
    JSON.parse('not json');
  } catch (e) {
    expected = (e as Error).message;
  }
  assert.throws(() => parseTaskOptions('not json'), { name: 'SyntaxError', message: expected });
});

test('parseTaskOptions: a __proto__ name is an ordinary name', () => {
  const opts = parseTaskOptions('[{"name":"__proto__","value":{"polluted":true}}]');
  assert.equal(opts.length, 1);
  assert.equal(opts[0]?.name, '__proto__');
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
});

test('parseTaskOptions: too many options', () => {
  const many = Array.from({ length: MAX_TASK_OPTIONS + 1 }, (_, i) => ({ name: `o${i}`, value: i }));
  assert.throws(() => parseTaskOptions(JSON.stringify(many)), /Too many options: 1001/);
  assert.equal(parseTaskOptions(many.slice(0, MAX_TASK_OPTIONS)).length, MAX_TASK_OPTIONS);
});

// ---------------------------------------------------------------------------------------------------------------------

test('parseOptionSpecs: rejects bad answers', () => {
  const bad: [unknown, RegExp][] = [
    [{ error: 'Invalid token' }, /^Error: Invalid token$/],
    [{}, /not a JSON array/],
    ['[]', /not a JSON array/],
    [[null], /options\[0\] is not an object/],
    [[{ type: 'int', value: '1', domain: '' }], /options\[0\]\.name/],
    [[{ name: 'a', value: '1', domain: '' }], /options\[0\]\.type/],
    [[{ name: 'a', type: 'int', value: '1', domain: 5 }], /options\[0\]\.domain/],
    [[{ name: 'a', type: 'int', value: '1', domain: '', help: 3 }], /options\[0\]\.help/],
  ];
  for (const [raw, re] of bad) assert.throws(() => parseOptionSpecs(raw), (e: unknown) => re.test(String(e)));
});

test('parseOptionSpecs: keeps the node fields in order, defaults a missing domain', () => {
  assert.deepEqual(parseOptionSpecs([{ name: 'a', type: 'bool', value: 'false', extra: 1 }]), [
    { name: 'a', type: 'bool', value: 'false', domain: '' },
  ]);
  const raw: unknown = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));
  assert.equal(JSON.stringify(SPECS), JSON.stringify(raw));
});

// ---------------------------------------------------------------------------------------------------------------------

function spec(name: string): OdmOptionSpec | undefined {
  return SPECS.find((s) => s.name === name);
}

test('optionsWithLimits: no limits returns the list unchanged', () => {
  for (const limits of [null, {}, { maxImages: 10 }, parseLimits([])]) {
    const out = optionsWithLimits(SPECS, limits);
    assert.deepEqual(out, SPECS);
    assert.ok(out.some((s) => s.name === 'max-concurrency'));
  }
});

test('optionsWithLimits: applies option limits', () => {
  const limits: Limits = {
    options: {
      'pc-quality': { remove: true },
      'feature-quality': { domain: ['low', 'lowest'], value: 'low' },
      'mesh-size': { value: '1000' },
      dsm: { remove: false },
    },
  };
  const out = optionsWithLimits(SPECS, limits);
  const names = out.map((s) => s.name);
  assert.equal(out.length, SPECS.length - 2);
  assert.ok(!names.includes('max-concurrency'));
  assert.ok(!names.includes('pc-quality'));
  assert.ok(names.includes('dsm'));
  assert.deepEqual(out.find((s) => s.name === 'feature-quality'), {
    ...spec('feature-quality'),
    domain: ['low', 'lowest'],
    value: 'low',
  });
  assert.deepEqual(out.find((s) => s.name === 'mesh-size'), { ...spec('mesh-size'), value: '1000' });
  // copies, inputs untouched
  assert.notEqual(out.find((s) => s.name === 'dsm'), spec('dsm'));
  assert.equal(spec('feature-quality')?.value, 'high');
});

test('optionsWithLimits: empty option limits still drop max-concurrency', () => {
  const out = optionsWithLimits(SPECS, { options: {} });
  assert.equal(out.length, SPECS.length - 1);
  assert.ok(!out.some((s) => s.name === 'max-concurrency'));
});

test('optionsWithLimits + filterOptions: limited domain is enforced, removed option dropped', () => {
  const limited = optionsWithLimits(SPECS, {
    options: { 'feature-quality': { domain: ['low'] }, 'pc-quality': { remove: true } },
  });
  assert.deepEqual(
    filterOptions(
      [
        { name: 'pc-quality', value: 'ultra' },
        { name: 'max-concurrency', value: 64 },
      ],
      limited,
    ),
    [],
  );
  assert.deepEqual(errorsOf(() => filterOptions([{ name: 'feature-quality', value: 'high' }], limited)), [
    { name: 'feature-quality', error: 'Invalid value high (not in enum)' },
  ]);
});

// ---------------------------------------------------------------------------------------------------------------------

const URL = 'http://cluster:3000/?token=abc';
const SM = { splitmerge: true, smClusterUrl: URL, limits: null };
const NO_SM = { splitmerge: false, smClusterUrl: URL, limits: null };

interface AugmentCase {
  name: string;
  opts: TaskOption[];
  ctx: { limits: Limits | null; splitmerge: boolean; smClusterUrl: string };
  expect: TaskOption[];
}

const augmentCases: AugmentCase[] = [
  { name: 'nothing to do', opts: [{ name: 'dsm', value: true }], ctx: SM, expect: [{ name: 'dsm', value: true }] },
  {
    name: 'split injects sm-cluster at the end',
    opts: [{ name: 'split', value: 100 }, { name: 'dsm', value: true }],
    ctx: SM,
    expect: [{ name: 'split', value: 100 }, { name: 'dsm', value: true }, { name: 'sm-cluster', value: URL }],
  },
  {
    name: 'user sm-cluster replaced in place',
    opts: [{ name: 'sm-cluster', value: 'http://evil/' }, { name: 'split', value: 100 }],
    ctx: SM,
    expect: [{ name: 'sm-cluster', value: URL }, { name: 'split', value: 100 }],
  },
  {
    name: 'sm-cluster replaced even without split',
    opts: [{ name: 'sm-cluster', value: 'x' }],
    ctx: SM,
    expect: [{ name: 'sm-cluster', value: URL }],
  },
  {
    name: 'no-splitmerge strips sm-cluster',
    opts: [{ name: 'split', value: 100 }, { name: 'sm-cluster', value: 'x' }, { name: 'sm-cluster', value: 'y' }],
    ctx: NO_SM,
    expect: [{ name: 'split', value: 100 }],
  },
  {
    name: 'assure appends when missing, in limit order',
    opts: [{ name: 'dsm', value: true }],
    ctx: {
      ...SM,
      limits: {
        options: {
          'pc-quality': { assure: true, value: 'low' },
          'feature-quality': { assure: true },
          'mesh-size': { assure: false, value: 5 },
          'fast-orthophoto': { assure: true, value: 'true' },
        },
      },
    },
    expect: [
      { name: 'dsm', value: true },
      { name: 'pc-quality', value: 'low' },
      { name: 'fast-orthophoto', value: 'true' },
    ],
  },
  {
    name: 'assure leaves a user value alone',
    opts: [{ name: 'pc-quality', value: 'high' }],
    ctx: { ...SM, limits: { options: { 'pc-quality': { assure: true, value: 'low' } } } },
    expect: [{ name: 'pc-quality', value: 'high' }],
  },
  {
    name: 'between clamps high',
    opts: [{ name: 'split', value: '5000' }],
    ctx: { ...NO_SM, limits: { options: { split: { between: { min: 100, max: 400 } } } } },
    expect: [{ name: 'split', value: 400 }],
  },
  {
    name: 'between clamps low',
    opts: [{ name: 'split', value: 3 }],
    ctx: { ...NO_SM, limits: { options: { split: { between: { min: 100, max: 400 } } } } },
    expect: [{ name: 'split', value: 100 }],
  },
  {
    name: 'between inside range becomes a number',
    opts: [{ name: 'split', value: '250' }],
    ctx: { ...NO_SM, limits: { options: { split: { between: { min: 100, max: 400 } } } } },
    expect: [{ name: 'split', value: 250 }],
  },
  {
    name: 'between with only max does not clamp',
    opts: [{ name: 'split', value: 5000 }],
    ctx: { ...NO_SM, limits: { options: { split: { between: { max: 400 } } } } },
    expect: [{ name: 'split', value: 5000 }],
  },
  {
    name: 'max_if_equal_to (loose ==) sets max',
    opts: [{ name: 'split', value: '999999' }],
    ctx: { ...NO_SM, limits: { options: { split: { between: { max: 400, max_if_equal_to: 999999 } } } } },
    expect: [{ name: 'split', value: 400 }],
  },
  {
    name: 'max_if_equal_to then clamp',
    opts: [{ name: 'split', value: 0 }],
    ctx: { ...NO_SM, limits: { options: { split: { between: { min: 100, max: 400, max_if_equal_to: '0' } } } } },
    expect: [{ name: 'split', value: 400 }],
  },
  {
    name: 'max_if_equal_to not equal',
    opts: [{ name: 'split', value: 7 }],
    ctx: { ...NO_SM, limits: { options: { split: { between: { max: 400, max_if_equal_to: 999999 } } } } },
    expect: [{ name: 'split', value: 7 }],
  },
  {
    name: "limit value 'true' forces true",
    opts: [{ name: 'fast-orthophoto', value: false }],
    ctx: { ...SM, limits: { options: { 'fast-orthophoto': { value: 'true' } } } },
    expect: [{ name: 'fast-orthophoto', value: true }],
  },
  {
    name: 'object values are not coerced by clamping',
    opts: [{ name: 'split', value: { a: 1 } }],
    ctx: { ...NO_SM, limits: { options: { split: { between: { min: 1, max: 4 } } } } },
    expect: [{ name: 'split', value: { a: 1 } }],
  },
  {
    name: 'prototype keys never match limits',
    opts: [{ name: '__proto__', value: 1 }, { name: 'constructor', value: 2 }, { name: 'toString', value: 3 }],
    ctx: { ...SM, limits: { options: { split: { between: { min: 1, max: 4 } } } } },
    expect: [{ name: '__proto__', value: 1 }, { name: 'constructor', value: 2 }, { name: 'toString', value: 3 }],
  },
  {
    name: 'injected sm-cluster counts as passed for assure',
    opts: [{ name: 'split', value: 10 }],
    ctx: { ...SM, limits: { options: { 'sm-cluster': { assure: true, value: 'other' } } } },
    expect: [{ name: 'split', value: 10 }, { name: 'sm-cluster', value: URL }],
  },
];

for (const c of augmentCases) {
  test(`augmentTaskOptions: ${c.name}`, () => {
    const before = JSON.stringify(c.opts);
    assert.deepEqual(augmentTaskOptions(c.opts, c.ctx), c.expect);
    assert.equal(JSON.stringify(c.opts), before, 'input not mutated');
  });
}

test('augment + filter: split-merge task end to end', () => {
  const opts = parseTaskOptions('[{"name":"split","value":"200"},{"name":"dsm","value":"1"}]');
  const limits = parseLimits({ options: { split: { between: { min: 100, max: 150 } } } });
  const out = filterOptions(
    augmentTaskOptions(opts, { limits, splitmerge: true, smClusterUrl: URL }),
    optionsWithLimits(SPECS, limits),
  );
  assert.deepEqual(out, [
    { name: 'dsm', value: true },
    { name: 'split', value: 150 },
    { name: 'sm-cluster', value: URL },
  ]);
});

// ---------------------------------------------------------------------------------------------------------------------

test('parseLimits: shapes', () => {
  assert.equal(parseLimits([]), null);
  assert.equal(parseLimits(null), null);
  assert.equal(parseLimits(undefined), null);
  assert.deepEqual(parseLimits({ maxImages: 50, maxConcurrentTasks: 2, extra: 1 }), { maxImages: 50, maxConcurrentTasks: 2 });
  assert.deepEqual(
    parseLimits({ options: { split: { between: { min: 1, max: 2, max_if_equal_to: 0 } }, dsm: { remove: true } } }),
    { options: { split: { between: { min: 1, max: 2, max_if_equal_to: 0 } }, dsm: { remove: true } } },
  );
  const proto = parseLimits(JSON.parse('{"options":{"__proto__":{"remove":true}}}'));
  assert.ok(proto?.options && Object.hasOwn(proto.options, '__proto__'));
  assert.equal(Object.getPrototypeOf(proto.options), Object.prototype);
});

test('parseLimits: rejects bad shapes', () => {
  const bad: unknown[] = [
    { maxImages: '5' },
    { options: [] },
    { options: { dsm: 5 } },
    { options: { dsm: { remove: 'yes' } } },
    { options: { split: { between: { min: 'a' } } } },
    { options: { split: { between: 3 } } },
  ];
  for (const raw of bad) assert.throws(() => parseLimits(raw), Error, JSON.stringify(raw));
});
