/** --export-state in JSON-file mode: the data folder's state, as the program reads it, written to another folder. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../helpers/tmp';

test('--export-state without --redis writes nodes.json, routes.json and tasks.json as the data folder holds them', (t) => {
  const dir = tempDir(t);
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  const now = Date.now();
  const nodes = [{ hostname: '127.0.0.1', port: 4001, token: '' }];
  const routes = { [randomUUID()]: { node: nodes[0], token: 'u', accessed: now } };
  const uuid = randomUUID();
  const tasks = {
    [uuid]: {
      phase: 'failed',
      taskInfo: { uuid, name: 'x', dateCreated: now, status: { code: 30 }, options: [], imagesCount: 1 },
      output: ['Cannot reach a node'],
      accessed: now,
      updated: now,
    },
  };
  fs.writeFileSync(path.join(data, 'nodes.json'), JSON.stringify(nodes));
  fs.writeFileSync(path.join(data, 'routes.json'), JSON.stringify(routes));
  fs.writeFileSync(path.join(data, 'tasks.json'), JSON.stringify(tasks));
  const out = path.join(dir, 'out');
  const run = spawnSync(
    process.execPath,
    [path.join(__dirname, '..', 'helpers', 'daemon-main.js'), '--data-dir', data, '--log-dir', dir, '--export-state', out],
    { encoding: 'utf8', timeout: 60_000 },
  );
  assert.equal(run.status, 0, run.stdout + run.stderr);
  assert.match(run.stdout + run.stderr, /Exported 1 nodes, 1 routes and 1 tasks to /);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'nodes.json'), 'utf8')), nodes);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'routes.json'), 'utf8')), routes);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'tasks.json'), 'utf8')), tasks);
});
