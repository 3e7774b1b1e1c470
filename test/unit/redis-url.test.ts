import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config';
import { parseRedisUrl, redactRedisUrl } from '../../src/store/redis/url';
import { tempDir } from '../helpers/tmp';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');

test('--redis takes redis://, rediss:// (password, db) and unix:// URLs, and refuses anything else', (t) => {
  const cwd = tempDir(t);
  const configOf = (argv: string[]): ReturnType<typeof parseConfig> => parseConfig({ argv, cwd, appRoot: REPO_ROOT });
  for (const url of ['redis://127.0.0.1:6379', 'redis://:pw@redis.example:6380/3', 'rediss://user:pw@h/0', 'unix:///run/redis.sock?db=2']) {
    const r = configOf(['--redis', url]);
    assert.equal(r.kind === 'config' ? r.config.redis : null, url);
  }
  const none = configOf([]);
  assert.equal(none.kind === 'config' ? none.config.redis : 'x', undefined, 'no --redis: the JSON files');
  for (const bad of ['http://h:6379', 'redis://h/abc', 'unix:///', 'localhost:6379']) {
    assert.throws(() => configOf(['--redis', bad]), /Invalid value for --redis/, bad);
  }
  const file = path.join(cwd, 'c.json');
  fs.writeFileSync(file, JSON.stringify({ redis: 'redis://10.0.0.5:6379/1' }));
  const fromFile = configOf(['--config', file]);
  assert.equal(fromFile.kind === 'config' ? fromFile.config.redis : null, 'redis://10.0.0.5:6379/1', 'config key "redis"');
  const help = parseConfig({ argv: ['--help'], cwd, appRoot: REPO_ROOT });
  assert.match(help.kind === 'help' ? help.text : '', /--redis <url>/);
});

test('Redis URLs are parsed into a target, and shown without their password', () => {
  assert.deepEqual(parseRedisUrl('unix:///tmp/r.sock?db=4&password=x'), { kind: 'unix', path: '/tmp/r.sock', database: 4, password: 'x' });
  assert.deepEqual(parseRedisUrl('rediss://:pw@h:1/2'), { kind: 'tcp', url: 'rediss://:pw@h:1/2', tls: true });
  assert.equal(redactRedisUrl('redis://:hunter2@h:6379/1'), 'redis://:****@h:6379/1');
  assert.equal(redactRedisUrl('unix:///tmp/r.sock?password=hunter2'), 'unix:///tmp/r.sock?password=****');
});
