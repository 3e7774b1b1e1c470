import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nodePath } from '../../src/proxy/node-path';

const u = (s: string): URL => new URL(s, 'http://clusterodm.invalid');

test('nodePath: the user token is replaced by the node token, other parameters pass through', () => {
  assert.equal(nodePath(u('/task/a-b-c-d-e/info?token=user&with_output=3'), { baseUrl: 'http://n:1', token: 'nt' }), '/task/a-b-c-d-e/info?with_output=3&token=nt');
  assert.equal(nodePath(u('/task/a-b-c-d-e/info?with_output=3&token=user'), { baseUrl: 'http://n:1', token: '' }), '/task/a-b-c-d-e/info?with_output=3');
  assert.equal(nodePath(u('/task/a-b-c-d-e/info'), { baseUrl: 'http://n:1', token: '' }), '/task/a-b-c-d-e/info');
  assert.equal(nodePath(u('/task/a-b-c-d-e/info?token=x'), { baseUrl: 'http://n:1', token: '' }), '/task/a-b-c-d-e/info');
  assert.equal(nodePath(u('/x?'), { baseUrl: 'http://n:1', token: 'a b&c' }), '/x?token=a%20b%26c');
});

test('nodePath: every spelling of the token parameter is dropped, look-alikes are kept', () => {
  const node = { baseUrl: 'http://n:1', token: '' };
  assert.equal(nodePath(u('/x?token=a&token=b&tok%65n=c&token&&q=1'), node), '/x?q=1');
  assert.equal(nodePath(u('/x?tokens=1&mytoken=2&%zz=3'), node), '/x?tokens=1&mytoken=2&%zz=3');
  const parsed = new URL(`http://n${nodePath(u('/x?a=%20b+c&token=t&d=%C3%A9'), { baseUrl: 'http://n:1', token: 'n' })}`).searchParams;
  assert.deepEqual([...parsed], [['a', ' b c'], ['d', 'é'], ['token', 'n']]);
});
