import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ClusterNode } from '../../src/nodes';
import { RouteMap, type RouteEntry } from '../../src/routing';

const NODES = [0, 1, 2].map((i) => new ClusterNode({ hostname: `n${i}`, port: 3000 + i, token: '' }));
const KEYS = ['a', 'b', 'c', 'dd', 'e-e', 'ü-non-ascii', '00000000-0000-4000-8000-000000000001', '00000000-0000-4000-8000-000000000002'];

type Op =
  | { op: 'addBytes'; key: string; node: number; token: string | undefined; accessed: number }
  | { op: 'set'; key: string; node: number; token: string | undefined; accessed: number }
  | { op: 'delete'; key: string }
  | { op: 'get'; key: string; bump: number }
  | { op: 'trim' };

const key = fc.constantFrom(...KEYS);
const fields = { node: fc.integer({ min: 0, max: 2 }), token: fc.option(fc.constantFrom('', 'tok', 'other'), { nil: undefined }), accessed: fc.integer() };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant('addBytes' as const), key: key.filter((k) => /^[\x20-\x7e]+$/.test(k)), ...fields }),
  fc.record({ op: fc.constant('set' as const), key, ...fields }),
  fc.record({ op: fc.constant('delete' as const), key }),
  fc.record({ op: fc.constant('get' as const), key, bump: fc.integer() }),
  fc.record({ op: fc.constant('trim' as const) }),
);

function view(m: Iterable<[string, RouteEntry]>): Array<[string, string, string | undefined, number]> {
  return [...m].map(([k, r]) => [k, r.node.hostname, r.token, r.accessed]);
}

test('route map: behaves as a Map (order, values, size, has) under random adds from bytes, sets, deletes, reads and trims', () => {
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 60 }), fc.boolean(), (ops, hinted) => {
      const m = hinted ? new RouteMap({ count: 4, keyBytes: 8 }) : new RouteMap();
      const model = new Map<string, RouteEntry>();
      for (const o of ops) {
        if (o.op === 'addBytes' || o.op === 'set') {
          const entry = { node: NODES[o.node] as ClusterNode, token: o.token, accessed: o.accessed };
          if (o.op === 'addBytes') {
            const b = Buffer.from(`xx${o.key}yy`, 'latin1');
            m.addBytes(b, 2, 2 + o.key.length, entry.node, entry.token, entry.accessed);
          } else m.set(o.key, entry);
          model.set(o.key, { ...entry });
        } else if (o.op === 'trim') {
          m.trim();
        } else if (o.op === 'delete') {
          assert.equal(m.delete(o.key), model.delete(o.key));
        } else {
          // A read object is the route itself: a change to it is seen by later reads and by iteration.
          const r = m.get(o.key);
          const e = model.get(o.key);
          assert.equal(r === undefined, e === undefined);
          if (r && e) {
            assert.deepEqual([r.node, r.token, r.accessed], [e.node, e.token, e.accessed]);
            r.accessed = o.bump;
            e.accessed = o.bump;
            assert.equal(m.get(o.key), r, 'one object per route');
          }
        }
        assert.equal(m.size, model.size);
        for (const k of KEYS) assert.equal(m.has(k), model.has(k), k);
      }
      assert.deepEqual(view(m), view(model));
      assert.deepEqual([...m.keys()], [...model.keys()]);
      assert.deepEqual(
        m.keysWhere((n, accessed) => n === NODES[1] || accessed < 0),
        [...model].filter(([, r]) => r.node === NODES[1] || r.accessed < 0).map(([k]) => k),
      );
      const scanned: Array<[string, string, number, string | undefined]> = [];
      m.scan((n) => n !== NODES[0], (uuid, n, accessed, token) => scanned.push([uuid, n.hostname, accessed, token]));
      assert.deepEqual(
        scanned,
        [...model].filter(([, r]) => r.node !== NODES[0]).map(([k, r]) => [k, r.node.hostname, r.accessed, r.token]),
      );
      for (const token of [undefined, '', 'tok']) {
        const owned: string[] = [];
        m.scan((_n, _a, t) => t === token, (uuid) => owned.push(uuid));
        assert.deepEqual(owned, [...model].filter(([, r]) => r.token === token).map(([k]) => k), `token ${String(token)}`);
      }
    }),
    { numRuns: 3000, seed: 6 },
  );
});

test('route map: 100,000 routes from bytes grow the base and stay findable; iteration is live while it runs', () => {
  const m = new RouteMap();
  const uuid = (i: number): string => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
  const b = Buffer.from(Array.from({ length: 100_000 }, (_, i) => uuid(i)).join(''), 'latin1');
  for (let i = 0; i < 100_000; i++) m.addBytes(b, i * 36, i * 36 + 36, NODES[i % 3] as ClusterNode, i % 2 ? 'tok' : undefined, i);
  assert.equal(m.size, 100_000);
  m.trim();
  for (const i of [0, 1, 4_095, 65_536, 99_999]) assert.deepEqual(m.get(uuid(i))?.accessed, i);
  m.addBytes(b, 0, 36, NODES[2] as ClusterNode, undefined, -1); // after a trim the base still takes changes
  assert.equal(m.get(uuid(0))?.node, NODES[2]);
  assert.equal(m.get(uuid(100_000)), undefined);
  let seen = 0;
  for (const [k] of m) {
    if (seen === 0) {
      m.delete(uuid(1)); // not seen yet: skipped
      m.set('added-during', { node: NODES[0] as ClusterNode, token: undefined, accessed: 0 }); // seen at the end
    }
    if (k === uuid(1)) assert.fail('a deleted route was iterated');
    seen++;
  }
  assert.equal(seen, 100_000);
  assert.deepEqual([...m.keys()].slice(-1), ['added-during']);
});
