import { ClusterError } from '../../core';

/**
 * How long a Redis command that a request waits on may take. node-redis fails a command at once only when it knows
 * the connection is gone; a Redis that hangs, or a network that drops packets without a reset, keeps the
 * connection open and the command unanswered for minutes. A request gets its clear error after this instead.
 */
export const REDIS_DEADLINE_MS = 3000;

/** `p`, or STATE_UNAVAILABLE once `ms` pass (the command itself stays queued and lands or fails later). */
export async function withinDeadline<T>(p: Promise<T>, ms: number = REDIS_DEADLINE_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ClusterError('STATE_UNAVAILABLE', `Redis did not answer within ${ms} ms`)), ms);
  });
  // A late failure of the command after the deadline is nobody's error.
  p.catch(() => undefined);
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
