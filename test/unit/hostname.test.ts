import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostNameOf } from '../../src/admin-web';
import { parseConfig } from '../../src/config';
import { ClusterError, isIpLiteral, isValidHostname, normalizeHostname } from '../../src/core';
import { MASKED_SECRET, maskSecret } from '../../src/nodes';
import { redactTokens } from '../../src/ops';
import { tempDir } from '../helpers/tmp';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

test('normalizeHostname: DNS names and IP literals (IPv6 with or without brackets), nothing else', () => {
  const good: Array<[string, string]> = [
    ['localhost', 'localhost'],
    ['node-1.example.com', 'node-1.example.com'],
    ['node-1.example.com.', 'node-1.example.com.'],
    ['NODE1.Example.COM', 'NODE1.Example.COM'],
    ['clusterodm_node-odm_1', 'clusterodm_node-odm_1'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['a', 'a'],
    ['123.example', '123.example'],
    ['127.0.0.1', '127.0.0.1'],
    ['10.255.0.9', '10.255.0.9'],
    ['::1', '::1'],
    ['[::1]', '::1'],
    ['2001:db8::42', '2001:db8::42'],
    ['[2001:db8::42]', '2001:db8::42'],
    ['::ffff:127.0.0.1', '::ffff:127.0.0.1'],
    [`${'a'.repeat(63)}.b`, `${'a'.repeat(63)}.b`],
  ];
  for (const [input, stored] of good) {
    assert.equal(normalizeHostname(input), stored, input);
    assert.equal(isValidHostname(stored), true, stored);
  }
  const bad = [
    '', ' ', '.', '..', 'a..b', '.a', '-a', 'a-', 'a.-b', `${'a'.repeat(64)}.b`, `${'a.'.repeat(127)}a`,
    '127.0.0.1/', 'http://127.0.0.1', 'h/p', '127.0.0.1#', '127.0.0.1?', 'a?b=c', '"h"', "'h'", '<script>', 'a b', 'a\tb',
    'h\u0000', '\u0000', 'a\nb', 'user@h', 'h:3000', '127.0.0.1:3000', '[::1]:3000', '[::1', '::1]', '[h]', '[127.0.0.1]',
    'fe80::1%eth0', '[fe80::1%25eth0]', '127.1', '0x7f.1', '0x7f.0.0.1', '127.0.0.01', '010.0.0.1', '1.2.3.256', '127.0.0.1.',
    '1.2.3', '4294967295', 'ex.123', 'ex.0x1', '*', '*.example', '%41', 'h%2f', 'ünï.example', 'a\\b', 'a,b', 'a;b',
  ];
  for (const input of bad) {
    assert.equal(normalizeHostname(input), null, JSON.stringify(input));
    assert.equal(isValidHostname(input), false, JSON.stringify(input));
  }
  assert.equal(isValidHostname('[::1]'), false, 'stored without brackets');
  assert.equal(isIpLiteral('::1'), true);
  assert.equal(isIpLiteral('localhost'), false);
});

test('hostNameOf: the name of a Host header, lower case, or null', () => {
  const cases: Array<[string | undefined, string | null]> = [
    ['127.0.0.1:10000', '127.0.0.1'],
    ['localhost', 'localhost'],
    ['LocalHost:80', 'localhost'],
    ['[::1]:10000', '::1'],
    ['[::1]', '::1'],
    ['Admin.Example.com.', 'admin.example.com'],
    ['::1', null],
    ['a b', null],
    ['h:port', null],
    ['h:123456', null],
    ['', null],
    [undefined, null],
    ['user@h', null],
  ];
  for (const [header, name] of cases) assert.equal(hostNameOf(header), name, String(header));
});

test('maskSecret: a set secret always shows as the same mask', () => {
  assert.equal(maskSecret(''), '');
  for (const s of ['a', 'abcd', 'supersecret42', 'x'.repeat(100)]) assert.equal(maskSecret(s), MASKED_SECRET);
  assert.match(MASKED_SECRET, /^\*+$/);
});

test('redactTokens: every form of token value in strings, and string values under token keys', () => {
  const cases: Array<[string, string]> = [
    ['http://h:3000/?token=abc', 'http://h:3000/?token=***'],
    ['http://h/?a=1&token=abc&b=2', 'http://h/?a=1&token=***&b=2'],
    ['run token=abc now', 'run token=*** now'],
    ['TOKEN: abc', 'TOKEN: ***'],
    ['token : abc', 'token : ***'],
    ['{"token":"a b\\"c","x":1}', '{"token":"***","x":1}'],
    ["{'token': 'abc'}", "{'token': '***'}"],
    ['access_token=abc;x', 'access_token=***;x'],
    ['X-Auth-Token: abc', 'X-Auth-Token: ***'],
    ['Tokenizing images', 'Tokenizing images'],
    ['no secrets here', 'no secrets here'],
  ];
  for (const [input, output] of cases) assert.equal(redactTokens(input), output, input);
  assert.deepEqual(redactTokens({ token: 'abc', nodeToken: 'def', tokens: ['token=x'], n: 1, empty: { token: '' } }), {
    token: '***',
    nodeToken: '***',
    tokens: ['token=***'],
    n: 1,
    empty: { token: '' },
  });
  // A long line costs linear time.
  const long = `${'token'.repeat(200_000)}x`;
  const started = Date.now();
  assert.equal(redactTokens(long), long);
  assert.ok(Date.now() - started < 2000, 'no catastrophic backtracking');
});

function hostsOf(argv: string[], cwd = REPO_ROOT): readonly string[] {
  const r = parseConfig({ argv, cwd, appRoot: REPO_ROOT });
  if (r.kind !== 'config') throw new Error('help');
  return r.config.adminWebHosts;
}

test('--admin-web-hosts: comma-separated names (lower case), * for any; anything else stops the start', (t) => {
  assert.deepEqual(hostsOf([]), []);
  assert.deepEqual(hostsOf(['--admin-web-hosts', 'Admin.Example.com, cluster.lan ,']), ['admin.example.com', 'cluster.lan']);
  assert.deepEqual(hostsOf(['--admin-web-hosts', '*']), ['*']);
  assert.deepEqual(hostsOf(['--admin-web-hosts', '[::1],10.0.0.1']), ['::1', '10.0.0.1']);
  assert.ok(Object.isFrozen(hostsOf(['--admin-web-hosts', 'a'])));
  // In a config file: the same string, or an array of names.
  const dir = tempDir(t);
  fs.writeFileSync(path.join(dir, 'c.json'), JSON.stringify({ 'admin-web-hosts': ['a.example', 'B.example'] }));
  assert.deepEqual(hostsOf(['--config', 'c.json'], dir), ['a.example', 'b.example']);
  fs.writeFileSync(path.join(dir, 'd.json'), JSON.stringify({ 'admin-web-hosts': [5] }));
  assert.throws(() => hostsOf(['--config', 'd.json'], dir), /Invalid value for "admin-web-hosts"/);
  for (const bad of ['http://a', 'a:80', 'a/b', 'a b', '*.example']) {
    assert.throws(
      () => hostsOf(['--admin-web-hosts', bad]),
      (e: unknown) => e instanceof ClusterError && e.code === 'CONFIG_INVALID' && e.message.includes('--admin-web-hosts'),
      bad,
    );
  }
});
