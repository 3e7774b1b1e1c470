/** Size and count limits of a staged upload (upload-staging.ts). */
import type busboy from 'busboy';

export interface StagingLimits {
  /** Files stored by one call. */
  maxFiles: number;
  maxFileBytes: number;
  /** Sum of the stored files' bytes in one call. */
  maxTotalBytes: number;
  maxFieldBytes: number;
  maxFields: number;
  /**
   * The request is destroyed when no body bytes are read for this long (the original used a 30 s socket timeout).
   * Reads pause only when the client stops sending or the disk stops taking data, so this catches both.
   */
  idleTimeoutMs: number;
}

export const DEFAULT_STAGING_LIMITS: StagingLimits = Object.freeze({
  maxFiles: 20000,
  maxFileBytes: 4 * 1024 ** 3,
  // 1 TiB: in practice the disk is the bound; the limit exists so that the caller can lower it per token.
  maxTotalBytes: 1024 ** 4,
  maxFieldBytes: 1024 * 1024,
  maxFields: 100,
  idleTimeoutMs: 30_000,
});

export function resolveLimits(partial: Partial<StagingLimits> | undefined): StagingLimits {
  const limits = { ...DEFAULT_STAGING_LIMITS };
  for (const [key, value] of Object.entries(partial ?? {}) as [keyof StagingLimits, number | undefined][]) {
    if (value !== undefined) limits[key] = value;
  }
  return limits;
}

/** busboy's limits are inclusive ("reached" at exactly N), ours are "more than N is too much": hence the +1s. */
export function busboyLimits(limits: StagingLimits): busboy.Limits {
  return {
    fieldSize: limits.maxFieldBytes + 1,
    fields: limits.maxFields + 1,
    files: limits.maxFiles + 1,
  };
}
