/** A plain JSON object (not null, not an array): the first check of every parser at the edge. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
