import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../../src/core';
import {
  COMMIT_WINDOW_MESSAGE,
  CommitWindow,
  concurrencyLimitReached,
  FLOOD_MESSAGE,
  FloodMonitor,
  MAX_CONCURRENT_COMMIT,
  MAX_CONCURRENT_INIT,
} from '../../src/proxy/guards';

const MIN = 60_000;

test('flood: limit 0 is off and keeps no records', () => {
  const flood = new FloodMonitor({ limit: 0, clock: new FakeClock() });
  for (let i = 0; i < 100; i++) flood.recordInit('t');
  assert.equal(flood.isFlooding('t'), false);
  assert.equal(flood.size, 0);
});

test('flood: the (limit+1)-th pending init floods; commits free slots; empty token is "default"', () => {
  const flood = new FloodMonitor({ limit: 2, clock: new FakeClock() });
  flood.recordInit('a');
  flood.recordInit('a');
  assert.equal(flood.isFlooding('a'), false);
  flood.recordInit('a');
  assert.equal(flood.isFlooding('a'), true);
  assert.equal(flood.isFlooding('b'), false);
  flood.recordCommit('a');
  assert.equal(flood.count('a'), 2);
  assert.equal(flood.isFlooding('a'), false);

  for (let i = 0; i < 3; i++) flood.recordInit('');
  assert.equal(flood.count('default'), 3);
  assert.equal(flood.isFlooding(''), true);
});

test('flood: commit without init never goes negative/NaN and leaves no record', () => {
  const flood = new FloodMonitor({ limit: 1, clock: new FakeClock() });
  flood.recordCommit('x');
  flood.recordCommit('x');
  assert.equal(flood.size, 0);
  flood.recordInit('x');
  flood.recordCommit('x');
  flood.recordCommit('x');
  assert.equal(flood.size, 0);
  assert.equal(flood.count('x'), 0);
  // A fresh init after over-committing counts from zero again.
  flood.recordInit('x');
  flood.recordInit('x');
  assert.equal(flood.isFlooding('x'), true);
});

test('flood: forgive pass every 15 min, 10 -> 6 -> 3 -> 1 -> deleted; stop() clears the timer', () => {
  const clock = new FakeClock();
  const flood = new FloodMonitor({ limit: 5, clock });
  flood.start();
  flood.start(); // idempotent
  assert.equal(clock.pendingTimers(), 1);
  for (let i = 0; i < 10; i++) flood.recordInit('t');
  assert.equal(flood.isFlooding('t'), true);

  clock.advance(15 * MIN - 1);
  assert.equal(flood.count('t'), 10);
  const seen: number[] = [];
  for (let i = 0; i < 4; i++) {
    clock.advance(i === 0 ? 1 : 15 * MIN);
    seen.push(flood.count('t'));
  }
  assert.deepEqual(seen, [6, 3, 1, 0]);
  assert.equal(flood.size, 0);

  flood.stop();
  assert.equal(clock.pendingTimers(), 0);
});

test('commit window: 0 always blocks, undefined/NaN never, otherwise > max within 60 s', () => {
  const clock = new FakeClock();
  const win = new CommitWindow({ clock });
  assert.equal(win.check(0, 't'), true);
  assert.equal(win.check(undefined, 't'), false);
  assert.equal(win.check(Number.NaN, 't'), false);
  assert.equal(win.size, 0);

  assert.equal(win.check(2, 't'), false);
  clock.advance(10_000);
  assert.equal(win.check(2, 't'), false);
  assert.equal(win.check(2, 't'), true); // a rejected commit still counts
  assert.equal(win.count('t'), 3);
  assert.equal(win.check(2, 'other'), false); // per token

  // At exactly 60 s the first entry is still inside the window; 1 ms later it is dropped.
  clock.advance(50_000);
  assert.equal(win.check(2, 't'), true);
  assert.equal(win.count('t'), 4);
  clock.advance(1);
  assert.equal(win.check(10, 't'), false);
  assert.equal(win.count('t'), 4);

  // Long after, every token's old entries are pruned, empty tokens included.
  clock.advance(2 * MIN);
  assert.equal(win.check(1, ''), false);
  assert.equal(win.size, 1);
  assert.equal(win.count('default'), 1);
});

test('commit window: decrease shifts one timestamp and drops empty tokens', () => {
  const win = new CommitWindow({ clock: new FakeClock() });
  win.decrease('nobody');
  assert.equal(win.size, 0);
  win.check(1, 't');
  assert.equal(win.check(1, 't'), true);
  win.decrease('t');
  assert.equal(win.count('t'), 1);
  win.decrease('t');
  assert.equal(win.size, 0);
  assert.equal(win.check(1, 't'), false);
});

test('concurrencyLimitReached: 0, undefined, and counting QUEUED/RUNNING only', async () => {
  let calls = 0;
  const codes = (list: number[]) => async (): Promise<number[]> => {
    calls++;
    return list;
  };
  assert.equal(await concurrencyLimitReached(0, codes([])), true);
  assert.equal(await concurrencyLimitReached(undefined, codes([10, 20, 20])), false);
  assert.equal(calls, 0, 'no node queries when no limit applies');

  assert.equal(await concurrencyLimitReached(2, codes([10, 30, 40, 50])), false);
  assert.equal(await concurrencyLimitReached(2, codes([10, 20, 40])), true);
  assert.equal(await concurrencyLimitReached(3, codes([20, 20])), false);
  assert.equal(await concurrencyLimitReached(1, codes([])), false);
});

test('messages keep the original wording', () => {
  assert.match(FLOOD_MESSAGE, /^Uuh, slow down!.*wait 15 minutes and try again\.$/);
  assert.equal(
    MAX_CONCURRENT_INIT(3),
    'Reached maximum number of concurrent tasks: 3. Please wait until other tasks have finished, then restart the task.',
  );
  assert.match(COMMIT_WINDOW_MESSAGE, /^Reached maximum number of concurrent tasks, please wait/);
  assert.match(MAX_CONCURRENT_COMMIT, /^Reached maximum number of concurrent tasks\. Please wait/);
});
