/**
 * The node selection policy of the original (findBestAvailableNode), as a pure function.
 * Order: smallest fitting maxImages, then most free slots, then shortest queue, then lowest round-robin turn,
 * then list order (the original's comparator was inconsistent for equal items; list order is the stable reading).
 */

export interface Candidate {
  readonly online: boolean;
  readonly locked: boolean;
  readonly autoSpawned: boolean;
  /** null = no limit. */
  readonly maxImages: number | null;
  readonly availableSlots: number;
  readonly queueCount: number;
  readonly turn: number;
}

export interface Selection {
  /** Index of the chosen candidate in the input list. */
  readonly index: number;
  /** The chosen node's new turn. */
  readonly newTurn: number;
  /** True when turns passed the limit: every node's turn must first be reset to 0. */
  readonly resetTurns: boolean;
}

export const TURN_RESET_LIMIT = 2_000_000_000;
const NO_LIMIT = 999_999_999;

/** Whether a node may receive a new task at all (one availability predicate). */
export function isEligible(c: Candidate, numImages: number): boolean {
  return c.online && !c.locked && !c.autoSpawned && (c.maxImages === null || c.maxImages >= numImages);
}

export function selectNode(candidates: readonly Candidate[], numImages: number): Selection | null {
  let maxTurn = candidates.reduce((m, c) => Math.max(m, c.turn), 0);
  const resetTurns = maxTurn > TURN_RESET_LIMIT;
  if (resetTurns) maxTurn = 0;
  const turnOf = (c: Candidate): number => (resetTurns ? 0 : c.turn);

  const eligible = candidates.map((c, index) => ({ c, index })).filter(({ c }) => isEligible(c, numImages));
  if (eligible.length === 0) return null;

  eligible.sort(
    (a, b) =>
      (a.c.maxImages ?? NO_LIMIT) - (b.c.maxImages ?? NO_LIMIT) ||
      b.c.availableSlots - a.c.availableSlots ||
      a.c.queueCount - b.c.queueCount ||
      turnOf(a.c) - turnOf(b.c) ||
      a.index - b.index,
  );
  // First node with a free slot; when every node is full, the smallest fitting one (the task queues there).
  const chosen = eligible.find(({ c }) => c.availableSlots > 0) ?? eligible[0];
  if (!chosen) return null;
  return { index: chosen.index, newTurn: maxTurn + 1, resetTurns };
}

/**
 * The node that receives a task's images while the client is still uploading them (before their number is known):
 * among nodes that could take any task and have a free slot, the one that can take the most images (no limit first),
 * then most free slots, shortest queue, lowest turn, list order. At commit the usual policy checks the choice; if the
 * final count does not fit, the task is re-sent from the staged copy.
 */
export function selectStreamingNode(candidates: readonly Candidate[]): number | null {
  const capacity = (c: Candidate): number => c.maxImages ?? Number.POSITIVE_INFINITY;
  let best: { c: Candidate; index: number } | null = null;
  for (const [index, c] of candidates.entries()) {
    if (!isEligible(c, 1) || c.availableSlots <= 0) continue;
    if (
      !best ||
      capacity(c) > capacity(best.c) ||
      (capacity(c) === capacity(best.c) &&
        (c.availableSlots - best.c.availableSlots || best.c.queueCount - c.queueCount || best.c.turn - c.turn) > 0)
    ) {
      best = { c, index };
    }
  }
  return best ? best.index : null;
}
