/** Time source and timers, injected everywhere so expiry, polling and vacuum are testable without sleeps. */
/** Opaque timer handle (a Node Timeout, or a fake clock's record). */
export type TimerHandle = object;

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
  sleep(ms: number): Promise<void>;
}

/**
 * Waits `ms` on `clock`, ending early (resolving) when `signal` aborts; the timer is cleared either way, so an
 * aborted wait leaves nothing behind.
 */
export function abortableSleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = (): void => {
      clock.clearTimeout(timer);
      resolve();
    };
    const timer = clock.setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

interface FakeTimer {
  id: number;
  at: number;
  every: number | null;
  fn: () => void;
}

/** A manual clock for tests: time moves only when advance() is called. */
export class FakeClock implements Clock {
  private current: number;
  private timers: FakeTimer[] = [];
  private nextId = 1;

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t: FakeTimer = { id: this.nextId++, at: this.current + ms, every: null, fn };
    this.timers.push(t);
    return t;
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    const t: FakeTimer = { id: this.nextId++, at: this.current + ms, every: Math.max(1, ms), fn };
    this.timers.push(t);
    return t;
  }

  clearTimeout(handle: TimerHandle): void {
    this.timers = this.timers.filter((t) => t !== handle);
  }

  clearInterval(handle: TimerHandle): void {
    this.clearTimeout(handle);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }

  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const end = this.current + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.current = due.at;
      if (due.every === null) this.timers = this.timers.filter((t) => t !== due);
      else due.at += due.every;
      due.fn();
    }
    this.current = end;
  }

  pendingTimers(): number {
    return this.timers.length;
  }
}
