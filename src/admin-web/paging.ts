import type { Request } from 'express';
import { queryString } from './http-util';

export const DEFAULT_PAGE_LIMIT = 50;
export const MAX_PAGE_LIMIT = 200;

export interface PageRequest {
  offset: number;
  limit: number;
  /** Lower-cased search text; '' matches everything. */
  q: string;
}

function wholeNumber(s: string | undefined): number | null {
  return s !== undefined && /^\d{1,15}$/.test(s.trim()) ? Number(s.trim()) : null;
}

/** offset ≥ 0 (default 0), 1 ≤ limit ≤ 200 (default 50); anything unreadable falls back to the default. */
export function parsePageRequest(req: Request): PageRequest {
  const offset = wholeNumber(queryString(req, 'offset')) ?? 0;
  const limit = wholeNumber(queryString(req, 'limit'));
  return {
    offset,
    limit: limit === null || limit < 1 ? DEFAULT_PAGE_LIMIT : Math.min(limit, MAX_PAGE_LIMIT),
    q: (queryString(req, 'q') ?? '').trim().toLowerCase(),
  };
}

/** `a` is listed before `b`. Must be a strict total order so pages never overlap or skip. */
export type Ranks<T> = (a: T, b: T) => boolean;

/**
 * Counts `items` and returns the ones at positions [offset, offset+limit) of the ranked order, without sorting
 * everything: a heap keeps the best offset+limit seen so far (O(n log k)). Sorting a million routes takes seconds
 * and would stall the proxy sharing this event loop; the first pages are what the admin page asks for.
 */
export function selectPage<T>(items: Iterable<T>, offset: number, limit: number, ranks: Ranks<T>): { total: number; page: T[] } {
  const selector = new PageSelector<T>(offset, limit, ranks);
  for (const item of items) selector.offer(item);
  return { total: selector.total, page: selector.page() };
}

/**
 * selectPage fed one item at a time, for callers that can rule an item out before making it: once `worst()` is
 * defined, anything that does not rank before it cannot be on the page, and is only counted with `countRuledOut()`.
 */
export class PageSelector<T> {
  total = 0;
  private readonly heap: WorstFirstHeap<T>;

  constructor(
    private readonly offset: number,
    limit: number,
    ranks: Ranks<T>,
  ) {
    this.heap = new WorstFirstHeap<T>(offset + limit, ranks);
  }

  offer(item: T): void {
    this.total++;
    this.heap.offer(item);
  }

  /** Counts an item that `worst()` already ruled out. */
  countRuledOut(): void {
    this.total++;
  }

  /** The worst item kept, once offset+limit are kept (undefined before: everything still gets in). */
  worst(): T | undefined {
    return this.heap.worst();
  }

  page(): T[] {
    return this.heap.sorted().slice(this.offset);
  }
}

/** Keeps the k best items; its root is the worst of them, so a better newcomer replaces it in O(log k). */
class WorstFirstHeap<T> {
  private readonly a: T[] = [];

  constructor(
    private readonly k: number,
    private readonly ranks: Ranks<T>,
  ) {}

  offer(item: T): void {
    if (this.k <= 0) return;
    if (this.a.length < this.k) {
      this.a.push(item);
      this.up(this.a.length - 1);
      return;
    }
    const root = this.a[0];
    if (root !== undefined && this.ranks(item, root)) {
      this.a[0] = item;
      this.down(0);
    }
  }

  /** The root when k items are kept: a newcomer has to rank before it to get in. */
  worst(): T | undefined {
    return this.a.length >= this.k ? this.a[0] : undefined;
  }

  /** Best first. */
  sorted(): T[] {
    return [...this.a].sort((x, y) => (this.ranks(x, y) ? -1 : this.ranks(y, x) ? 1 : 0));
  }

  /** The heap's order: `i` belongs above `j` when it ranks after it (is worse). */
  private above(i: number, j: number): boolean {
    return this.ranks(this.a[j] as T, this.a[i] as T);
  }

  private swap(i: number, j: number): void {
    const t = this.a[i] as T;
    this.a[i] = this.a[j] as T;
    this.a[j] = t;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.above(i, parent)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let top = i;
      if (l < this.a.length && this.above(l, top)) top = l;
      if (r < this.a.length && this.above(r, top)) top = r;
      if (top === i) return;
      this.swap(i, top);
      i = top;
    }
  }
}
