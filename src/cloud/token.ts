import { createHash, timingSafeEqual } from 'node:crypto';

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Constant-time token comparison. Hashing first gives both sides the same length, so neither the
 * content nor the length of the configured token leaks through timing.
 */
export function tokensEqual(a: string, b: string): boolean {
  return timingSafeEqual(sha256(a), sha256(b));
}

/**
 * What a log line may say about a token: a short digest, enough to correlate lines for one user
 * without writing a usable credential into log files (the original logged tokens in clear).
 */
export function tokenTag(token: string): string {
  if (!token) return '<no token>';
  return `token#${sha256(token).toString('hex').slice(0, 8)}`;
}
