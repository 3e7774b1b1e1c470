/**
 * Errors of a staged upload (upload-staging.ts). Each is a ClusterError whose code callers branch on; `kind` says
 * more precisely what went wrong. The text is what the client is answered (NodeODM's words where clients know them).
 */
import { ClusterError, errorMessage, systemErrorCode, type ErrorCode } from '../core/errors';

export type StagingErrorKind = 'malformed' | 'limit' | 'unexpected-field' | 'aborted' | 'io';

const CODE_OF_KIND: Readonly<Record<StagingErrorKind, ErrorCode>> = {
  malformed: 'INVALID_INPUT',
  'unexpected-field': 'INVALID_INPUT',
  limit: 'LIMIT_REACHED',
  aborted: 'ABORTED',
  io: 'IO_FAILED',
};

export class StagingError extends ClusterError {
  readonly kind: StagingErrorKind;
  constructor(kind: StagingErrorKind, message: string, options?: { cause?: unknown }) {
    super(CODE_OF_KIND[kind], message, options);
    this.name = 'StagingError';
    this.kind = kind;
  }
}

/** A body that ends inside a part: NodeODM's (multer's) text, which clients know. */
export const TRUNCATED = 'Unexpected end of multipart data';

/** User-controlled names are echoed in error messages; keep those short. */
const MAX_NAME_IN_MESSAGE = 200;

export function shortName(name: string): string {
  return name.length > MAX_NAME_IN_MESSAGE ? `${name.slice(0, MAX_NAME_IN_MESSAGE)}…` : name;
}

/**
 * The only place where busboy's messages are read: busboy 1.x throws plain Errors without codes, and two of its
 * texts must be answered in NodeODM's words (TRANSCRIPTS §4 E): a truncated body ("Unexpected end of form" / "... of
 * file" → multer's "Unexpected end of multipart data") and a multipart type without a boundary (the same text as
 * NodeODM). `contentType` is given for errors of the busboy() constructor, which rejects the request's type.
 * Everything else from the parser is malformed input, answered with the parser's own text.
 */
export function fromBusboy(err: unknown, contentType?: string): StagingError {
  if (err instanceof StagingError) return err;
  const message = errorMessage(err);
  if (message === 'Unexpected end of form' || message === 'Unexpected end of file') {
    return new StagingError('malformed', TRUNCATED, { cause: err });
  }
  if (contentType === undefined) return new StagingError('malformed', message, { cause: err });
  const text = message === 'Multipart: Boundary not found' ? message : `Unsupported content type: ${contentType}`;
  return new StagingError('malformed', text, { cause: err });
}

/** Errors from a file's write path: our own limits, the filesystem, or the part's source stream (the parser). */
export function writeError(err: unknown): StagingError {
  if (err instanceof StagingError) return err;
  const isSystemError = err instanceof Error && typeof (err as NodeJS.ErrnoException).syscall === 'string';
  // The client sees the message: give the code, not the server's paths (the cause keeps them for the logs).
  if (isSystemError) {
    const reason = systemErrorCode(err) ?? errorMessage(err);
    return new StagingError('io', `Cannot store uploaded file: ${reason}`, { cause: err });
  }
  return fromBusboy(err);
}

/** A file part in a field other than `images` (or files where none are taken). */
export function unexpectedField(field: string | undefined): StagingError {
  return new StagingError('unexpected-field', `Unexpected field ${shortName(field ?? '(unnamed)')}`);
}
