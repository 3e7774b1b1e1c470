import assert from 'node:assert/strict';
import { test } from 'node:test';
import { missingNodeFlags, NODE_FLAGS } from '../../src/core';

test('node flags: a flag counts as given by its name, whatever its value or spelling', () => {
  assert.deepEqual(missingNodeFlags([]), [...NODE_FLAGS]);
  assert.deepEqual(missingNodeFlags(['--initial-heap-size=128', '--max-semi-space-size=2']), []);
  assert.deepEqual(missingNodeFlags(['--initial_heap_size=64', '--max_semi_space_size=1']), []);
  assert.deepEqual(missingNodeFlags(['--initial-heap-size=128']), ['--max-semi-space-size=1']);
  assert.deepEqual(missingNodeFlags(['--inspect', '--max-old-space-size=4096']), [...NODE_FLAGS]);
  assert.deepEqual(missingNodeFlags(['--a=1'], ['--a=2', '--b']), ['--b']);
});
