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
  /**
   * Uploads being streamed to the node that their clients have not committed yet. They are not busy slots (the
   * node runs nothing for them, and may never); they only spread streamed uploads over equal nodes.
   */
  readonly uploading?: number;
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

/**
 * `keep`: the index of the node that already holds the task's images (streamed during its upload). It is kept when
 * it is as good a choice under this policy: same maxImages as the chosen node, and a free slot unless the chosen
 * node has none either; only the finer tie-breaks (how many slots, queue, turn) would not send the task twice.
 */
export function selectNode(candidates: readonly Candidate[], numImages: number, keep: number | null = null): Selection | null {
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
  let chosen = eligible.find(({ c }) => c.availableSlots > 0) ?? eligible[0];
  if (!chosen) return null;
  const kept = keep === null ? undefined : eligible.find(({ index }) => index === keep);
  if (kept && sameSize(kept.c, chosen.c) && (kept.c.availableSlots > 0 || chosen.c.availableSlots === 0)) chosen = kept;
  return { index: chosen.index, newTurn: maxTurn + 1, resetTurns };
}

function sameSize(a: Candidate, b: Candidate): boolean {
  return (a.maxImages ?? NO_LIMIT) === (b.maxImages ?? NO_LIMIT);
}

/**
 * The node that receives a task's images while the client is still uploading them: the node `selectNode` would
 * choose at commit for `numImages` images (the images staged so far; 1 at init, when the count is not known: NodeODM's
 * init carries no image count). Same tiers, so the commit keeps this node (see `keep`): the smallest maxImages that
 * fits, a node with a free slot in it if any; within that, the one with the most free slots left over by the other
 * uploads streamed to it, then fewest such uploads, shortest queue, lowest turn, list order. When every node is full,
 * the node the task would queue on, unless `needFreeSlot` (with an autoscaler such a task gets a machine of its own).
 * A task whose staged count outgrows its node moves on (see StreamForwarder), so the choice only has to hold for
 * the images seen so far.
 */
export function selectStreamingNode(candidates: readonly Candidate[], numImages: number, needFreeSlot: boolean): number | null {
  const uploading = (c: Candidate): number => c.uploading ?? 0;
  const eligible = candidates.map((c, index) => ({ c, index })).filter(({ c }) => isEligible(c, numImages));
  eligible.sort(
    (a, b) =>
      (a.c.maxImages ?? NO_LIMIT) - (b.c.maxImages ?? NO_LIMIT) ||
      b.c.availableSlots - uploading(b.c) - (a.c.availableSlots - uploading(a.c)) ||
      uploading(a.c) - uploading(b.c) ||
      a.c.queueCount - b.c.queueCount ||
      a.c.turn - b.c.turn ||
      a.index - b.index,
  );
  const chosen = eligible.find(({ c }) => c.availableSlots > 0) ?? (needFreeSlot ? undefined : eligible[0]);
  return chosen ? chosen.index : null;
}
