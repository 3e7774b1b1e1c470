/** One catalogue of error codes; the text a user sees is produced here or passed through verbatim. */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'STATE_CORRUPT'
  | 'STATE_WRITE_FAILED'
  /** The shared state (Redis) does not answer. */
  | 'STATE_UNAVAILABLE'
  /** Another instance changed the shared state since this one read it: reload and try again. */
  | 'STATE_CONFLICT'
  | 'NODE_REQUEST_FAILED'
  | 'NODE_NOT_FOUND'
  /** A node holds a committed task under the uuid being sent, that this process did not commit: it is kept. */
  | 'NODE_TASK_EXISTS'
  /** A node committed a task with another number of files than was sent: its copy is removed, the task goes again. */
  | 'NODE_TASK_INCOMPLETE'
  | 'INVALID_INPUT'
  | 'NOT_FOUND'
  | 'UNAUTHORIZED'
  | 'LIMIT_REACHED'
  | 'ABORTED'
  /** A cloud refused a machine for quota, capacity or rate reasons: wait (queue) and try again later. */
  | 'NO_CAPACITY'
  /** A cloud machine API call failed for any other reason (auth, bad input, server error, network). */
  | 'MACHINE_API_FAILED'
  /** A local file could not be read or written (full or read-only disk, ...). */
  | 'IO_FAILED'
  | 'INTERNAL';

export class ClusterError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ClusterError';
    this.code = code;
  }
}

/** Message of anything thrown, for logs and `{"error": ...}` answers. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

/** Node's system error code (ECONNREFUSED, ENOENT, ...) if there is one. */
export function systemErrorCode(e: unknown): string | undefined {
  if (typeof e === 'object' && e !== null && 'code' in e) {
    const code = (e as { code: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}
