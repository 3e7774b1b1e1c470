import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CredentialCheck, LoginThrottle, PageSelector, parseBasicAuth, selectPage } from '../../src/admin-web';

const basic = (s: string): string => `Basic ${Buffer.from(s).toString('base64')}`;

test('parseBasicAuth: user and password split at the first colon; anything else is no credentials', () => {
  assert.deepEqual(parseBasicAuth(basic('admin:pa:ss')), { user: 'admin', password: 'pa:ss' });
  assert.deepEqual(parseBasicAuth(basic('admin:')), { user: 'admin', password: '' });
  assert.deepEqual(parseBasicAuth(`basic   ${Buffer.from('a:b').toString('base64')}`), { user: 'a', password: 'b' });
  assert.deepEqual(parseBasicAuth(basic('admin:pässwörd')), { user: 'admin', password: 'pässwörd' });
  for (const h of [undefined, '', 'Basic', 'Basic ', 'Bearer abc', basic('nocolon'), 'Basic a b']) {
    assert.equal(parseBasicAuth(h), null, String(h));
  }
});

test('CredentialCheck: only admin with the exact password', () => {
  const c = new CredentialCheck('secret');
  assert.equal(c.matches({ user: 'admin', password: 'secret' }), true);
  assert.equal(c.matches({ user: 'admin', password: 'secret ' }), false);
  assert.equal(c.matches({ user: 'admin', password: '' }), false);
  assert.equal(c.matches({ user: 'Admin', password: 'secret' }), false);
  assert.equal(c.matches({ user: 'root', password: 'secret' }), false);
});

test('LoginThrottle: a window per address, and a bounded number of addresses', () => {
  const th = new LoginThrottle(1000, 3);
  th.penalize('a', 0);
  assert.equal(th.blocked('a', 500), true);
  assert.equal(th.blocked('b', 500), false);
  assert.equal(th.blocked('a', 1000), false);
  for (const [i, addr] of ['b', 'c', 'd', 'e'].entries()) th.penalize(addr, 100 + i);
  assert.equal(th.size(), 3, 'the oldest entries go when over the bound');
  assert.equal(th.blocked('a', 150), false);
  assert.equal(th.blocked('e', 150), true);
  // Expired entries are dropped as new ones come.
  th.penalize('f', 5000);
  assert.equal(th.size(), 1);
  const big = new LoginThrottle(10, 10_000);
  for (let i = 0; i < 50_000; i++) big.penalize(`10.0.${i >> 8}.${i & 255}`, 1_000_000);
  assert.equal(big.size(), 10_000);
});

interface Item {
  id: string;
  v: number;
}
const ranks = (a: Item, b: Item): boolean => (a.v !== b.v ? a.v > b.v : a.id < b.id);

/** A seeded generator of numbers in [0, 1). */
function lcg(seed: number): () => number {
  let x = seed;
  return () => (x = (x * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648;
}

test('selectPage: the same pages as a full sort, for any offset and limit, ties included', () => {
  const rnd = lcg(42);
  const items: Item[] = Array.from({ length: 1000 }, (_, i) => ({ id: `id${i}`, v: Math.floor(rnd() * 100) }));
  const sorted = [...items].sort((a, b) => (ranks(a, b) ? -1 : 1));
  for (const [offset, limit] of [[0, 50], [0, 1], [37, 13], [990, 50], [1000, 5], [0, 2000], [5000, 10]] as const) {
    const { total, page } = selectPage(items, offset, limit, ranks);
    assert.equal(total, 1000);
    assert.deepEqual(page, sorted.slice(offset, offset + limit), `${offset}/${limit}`);
  }
  assert.deepEqual(selectPage([], 0, 50, ranks), { total: 0, page: [] });
});

test('PageSelector: items ruled out by worst() before they are made give the same pages and totals', () => {
  const rnd = lcg(7);
  // Few distinct values: many ties with the worst kept item, which must still be offered.
  const values = Array.from({ length: 3000 }, () => Math.floor(rnd() * 40));
  const items: Item[] = values.map((v, i) => ({ id: `id${(i * 7919) % 3000}`, v }));
  for (const [offset, limit] of [[0, 50], [0, 1], [37, 13], [2990, 50], [3000, 5], [0, 4000]] as const) {
    const sel = new PageSelector<Item>(offset, limit, ranks);
    let made = 0;
    for (const [i, v] of values.entries()) {
      const worst = sel.worst();
      if (worst !== undefined && v < worst.v) {
        sel.countRuledOut();
        continue;
      }
      made++;
      sel.offer(items[i] as Item);
    }
    const full = selectPage(items, offset, limit, ranks);
    assert.equal(sel.total, 3000);
    assert.deepEqual(sel.page(), full.page, `${offset}/${limit}`);
    if (offset + limit < 100) assert.ok(made < 3000, `the pre-check ruled items out (${made} made)`);
  }
});
