import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NodeTaskLedger } from '../../src/proxy/node-task-ledger';

const a = { baseUrl: 'http://127.0.0.1:1/', token: '' };
const b = { baseUrl: 'http://127.0.0.1:2/', token: '' };
const nothing = { upload: false, commitSent: false };
const maybe = { upload: true, commitSent: true };

test('ledger: a task of this run is on no node until sent; one of an earlier run may be on every node', () => {
  const ledger = new NodeTaskLedger();
  assert.deepEqual(ledger.get(a, 'u1'), nothing);
  ledger.set(a, 'u1', { upload: true });
  assert.deepEqual(ledger.get(a, 'u1'), { ...nothing, upload: true });
  assert.deepEqual(ledger.get(b, 'u1'), nothing);
  ledger.set(a, 'u1', { upload: false });
  assert.deepEqual(ledger.get(a, 'u1'), nothing);

  ledger.fromEarlierRun(['u2']);
  assert.deepEqual(ledger.get(a, 'u2'), maybe);
  ledger.set(a, 'u2', { upload: false, commitSent: false });
  assert.deepEqual(ledger.get(a, 'u2'), nothing, 'cleared on a');
  assert.deepEqual(ledger.get(b, 'u2'), maybe, 'still unknown on b');
  ledger.forget('u2');
  assert.deepEqual(ledger.get(b, 'u2'), nothing, 'committed somewhere: forgotten');
});

test('ledger: calls for one task on one node run one at a time, others in parallel', async () => {
  const ledger = new NodeTaskLedger();
  const events: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const first = ledger.exclusive(a, 'u', async () => {
    events.push('first start');
    await gate;
    events.push('first end');
    return 1;
  });
  const second = ledger.exclusive(a, 'u', async () => {
    events.push('second');
    return 2;
  });
  const other = ledger.exclusive(b, 'u', async () => {
    events.push('other node');
    return 3;
  });
  assert.equal(await other, 3);
  open();
  assert.deepEqual(await Promise.all([first, second]), [1, 2]);
  assert.deepEqual(events, ['first start', 'other node', 'first end', 'second']);
  // A failure releases the lock too.
  await assert.rejects(ledger.exclusive(a, 'u', () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await ledger.exclusive(a, 'u', () => Promise.resolve('after')), 'after');
});
