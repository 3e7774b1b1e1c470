import assert from 'node:assert/strict';
import { test } from 'node:test';
import { selectNode, selectStreamingNode, TURN_RESET_LIMIT, type Candidate } from '../../src/nodes';

function c(p: Partial<Candidate>): Candidate {
  return { online: true, locked: false, autoSpawned: false, maxImages: null, availableSlots: 1, queueCount: 0, turn: 0, ...p };
}

interface Case {
  name: string;
  nodes: Candidate[];
  images: number;
  expect: number | null;
}

const cases: Case[] = [
  { name: 'no nodes', nodes: [], images: 5, expect: null },
  { name: 'single online node', nodes: [c({})], images: 5, expect: 0 },
  { name: 'offline nodes are skipped', nodes: [c({ online: false }), c({})], images: 5, expect: 1 },
  { name: 'locked nodes are skipped', nodes: [c({ locked: true }), c({})], images: 5, expect: 1 },
  { name: 'autospawned nodes are never selected', nodes: [c({ autoSpawned: true, availableSlots: 9 }), c({})], images: 5, expect: 1 },
  { name: 'everything locked', nodes: [c({ locked: true }), c({ locked: true })], images: 5, expect: null },
  { name: 'maxImages too small excludes a node', nodes: [c({ maxImages: 10, availableSlots: 5 }), c({ maxImages: 100 })], images: 50, expect: 1 },
  { name: 'maxImages equal to the count fits', nodes: [c({ maxImages: 50 })], images: 50, expect: 0 },
  { name: 'nobody fits', nodes: [c({ maxImages: 10 }), c({ maxImages: 20 })], images: 50, expect: null },
  {
    name: 'smallest fitting maxImages wins over free slots',
    nodes: [c({ maxImages: null, availableSlots: 8 }), c({ maxImages: 500, availableSlots: 4 }), c({ maxImages: 100, availableSlots: 1 })],
    images: 50,
    expect: 2,
  },
  { name: 'then most free slots', nodes: [c({ availableSlots: 1 }), c({ availableSlots: 3 }), c({ availableSlots: 2 })], images: 5, expect: 1 },
  { name: 'then shortest queue', nodes: [c({ queueCount: 3 }), c({ queueCount: 1 }), c({ queueCount: 2 })], images: 5, expect: 1 },
  { name: 'then lowest turn (round robin)', nodes: [c({ turn: 5 }), c({ turn: 2 }), c({ turn: 7 })], images: 5, expect: 1 },
  { name: 'then list order', nodes: [c({}), c({})], images: 5, expect: 0 },
  {
    name: 'a full node is passed over for one with a free slot even if it fits better',
    nodes: [c({ maxImages: 60, availableSlots: 0 }), c({ maxImages: 100, availableSlots: 1 })],
    images: 50,
    expect: 1,
  },
  {
    name: 'everyone full: the smallest fitting node (the task queues there)',
    nodes: [c({ maxImages: 100, availableSlots: 0, queueCount: 1 }), c({ maxImages: 60, availableSlots: 0, queueCount: 4 })],
    images: 50,
    expect: 1,
  },
  {
    name: 'everyone full, same size: shortest queue',
    nodes: [c({ availableSlots: 0, queueCount: 4 }), c({ availableSlots: 0, queueCount: 2 })],
    images: 5,
    expect: 1,
  },
  { name: 'maxImages 0 means no limit', nodes: [c({ maxImages: null }), c({ maxImages: 10 })], images: 5, expect: 1 },
];

for (const tc of cases) {
  test(`selection: ${tc.name}`, () => {
    const sel = selectNode(tc.nodes, tc.images);
    assert.equal(sel === null ? null : sel.index, tc.expect);
  });
}

test('selection: the chosen node gets max turn + 1', () => {
  const sel = selectNode([c({ turn: 3 }), c({ turn: 9, availableSlots: 0 })], 1);
  assert.deepEqual(sel, { index: 0, newTurn: 10, resetTurns: false });
});

test('selection: turns reset past the limit, and the reset turns decide the order', () => {
  const sel = selectNode([c({ turn: TURN_RESET_LIMIT + 5 }), c({ turn: 1 })], 1);
  // After the reset both turns are 0, so list order decides and the new turn is 1.
  assert.deepEqual(sel, { index: 0, newTurn: 1, resetTurns: true });
});

test('selection: repeated picks rotate between equal nodes', () => {
  const nodes = [c({}), c({}), c({})];
  const picks: number[] = [];
  for (let i = 0; i < 6; i++) {
    const sel = selectNode(nodes, 1);
    assert.ok(sel);
    picks.push(sel.index);
    const n = nodes[sel.index];
    assert.ok(n);
    nodes[sel.index] = { ...n, turn: sel.newTurn };
  }
  assert.deepEqual(picks, [0, 1, 2, 0, 1, 2]);
});

test('selection: the node holding a streamed task is kept when it is as good a choice', () => {
  // Same size, both with a free slot: the finer tie-breaks (2 free slots against 1) do not send the task twice.
  assert.equal(selectNode([c({ availableSlots: 2 }), c({ availableSlots: 1 })], 5, 1)?.index, 1);
  // Full while another node of its size has a free slot: the task goes there.
  assert.equal(selectNode([c({ availableSlots: 1 }), c({ availableSlots: 0 })], 5, 1)?.index, 0);
  // Everyone full: kept (it queues either way).
  assert.equal(selectNode([c({ availableSlots: 0 }), c({ availableSlots: 0, queueCount: 3 })], 5, 1)?.index, 1);
  // A bigger node than the smallest that fits is not kept, nor one that does not fit.
  assert.equal(selectNode([c({ maxImages: 50 }), c({ maxImages: 5000 })], 10, 1)?.index, 0);
  assert.equal(selectNode([c({ maxImages: 50 }), c({ maxImages: 5 })], 10, 1)?.index, 0);
});

const streaming: Array<{ name: string; nodes: Candidate[]; images?: number; needFreeSlot?: boolean; expect: number | null }> = [
  { name: 'no nodes', nodes: [], expect: null },
  { name: 'the smallest node that fits, as at commit', nodes: [c({ maxImages: 5000 }), c({ maxImages: 50 })], expect: 1 },
  { name: 'a limit beats no limit', nodes: [c({ maxImages: null, availableSlots: 3 }), c({ maxImages: 500 })], expect: 1 },
  { name: 'the images staged so far must fit', nodes: [c({ maxImages: 50 }), c({ maxImages: 5000 })], images: 51, expect: 1 },
  { name: 'nobody fits the staged images', nodes: [c({ maxImages: 50 })], images: 51, expect: null },
  { name: 'a full node is passed over for one with a free slot, as at commit', nodes: [c({ maxImages: 10, availableSlots: 0 }), c({})], expect: 1 },
  { name: 'everyone full: the node the task would queue on', nodes: [c({ availableSlots: 0, queueCount: 2 }), c({ availableSlots: 0, queueCount: 1 })], expect: 1 },
  { name: 'everyone full, with an autoscaler: no streaming', nodes: [c({ availableSlots: 0 }), c({ availableSlots: 0 })], needFreeSlot: true, expect: null },
  { name: 'locked, offline and autospawned are skipped', nodes: [c({ locked: true }), c({ online: false }), c({ autoSpawned: true })], expect: null },
  { name: 'open uploads are not busy slots', nodes: [c({ maxImages: 50, availableSlots: 1, uploading: 3 }), c({ maxImages: 5000 })], needFreeSlot: true, expect: 0 },
  { name: 'same size: open uploads spread over the nodes', nodes: [c({ availableSlots: 2, uploading: 2 }), c({ availableSlots: 2, uploading: 1 })], expect: 1 },
  { name: 'then more free slots', nodes: [c({ availableSlots: 1 }), c({ availableSlots: 2 })], expect: 1 },
  { name: 'then shorter queue', nodes: [c({ queueCount: 2 }), c({ queueCount: 1 })], expect: 1 },
  { name: 'then lower turn, then list order', nodes: [c({ turn: 4 }), c({ turn: 2 }), c({ turn: 2 })], expect: 1 },
];
for (const tc of streaming) {
  test(`streaming selection: ${tc.name}`, () => {
    assert.equal(selectStreamingNode(tc.nodes, tc.images ?? 1, tc.needFreeSlot ?? false), tc.expect);
  });
}

test('streaming selection: the node chosen while uploading is the one the commit keeps', () => {
  // Mixed sizes, slots and queues: whatever the streaming choice for n images, selectNode for n keeps it.
  const nodes = [
    c({ maxImages: 5000, availableSlots: 3 }),
    c({ maxImages: 50, availableSlots: 0, queueCount: 2 }),
    c({ maxImages: 50, availableSlots: 1, uploading: 1 }),
    c({ maxImages: 50, availableSlots: 2, uploading: 4 }),
    c({ maxImages: null, availableSlots: 1 }),
  ];
  for (const n of [1, 10, 50, 51, 5000, 5001]) {
    const streamed = selectStreamingNode(nodes, n, false);
    assert.notEqual(streamed, null);
    assert.equal(selectNode(nodes, n, streamed)?.index, streamed, `${n} images`);
  }
});
