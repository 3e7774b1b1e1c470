import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import type { Logger } from '../core';
import { isRecord } from '../core';

/** Request bodies are never trusted: everything read from them starts as `unknown` and is narrowed. */
export function bodyOf(req: Request): unknown {
  const body: unknown = req.body;
  return body;
}

/** An own property of a parsed body; inherited names (`constructor`, `toString`, ...) read as absent. */
export function field(body: unknown, key: string): unknown {
  return isRecord(body) && Object.hasOwn(body, key) ? body[key] : undefined;
}

/** A query parameter given once as a string; repeated or nested forms count as absent. */
export function queryString(req: Request, key: string): string | undefined {
  const v: unknown = Object.hasOwn(req.query, key) ? req.query[key] : undefined;
  return typeof v === 'string' ? v : undefined;
}

export function sendError(res: Response, status: number, message: string): void {
  res.status(status).json({ error: message });
}

/**
 * Headers for every answer: no MIME sniffing, and no framing, so another site cannot overlay the admin page
 * and trick a logged-in admin into clicking its buttons.
 */
export const securityHeaders: RequestHandler = (_req, res, next) => {
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  next();
};

/** API answers change all the time and may hold node details: never cached. */
export const noStore: RequestHandler = (_req, res, next) => {
  res.setHeader('Cache-Control', 'no-store');
  next();
};

interface HttpErrorLike {
  type?: unknown;
  status?: unknown;
  statusCode?: unknown;
  message?: unknown;
}

function statusOf(e: HttpErrorLike): number {
  const s = typeof e.status === 'number' ? e.status : e.statusCode;
  return typeof s === 'number' && s >= 400 && s < 600 ? s : 500;
}

/**
 * Turns errors into JSON answers. Body-parser errors get the contract's texts; other client errors keep
 * their message; server errors are logged and answered without details (the original sent a stack trace).
 */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, _req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const e: HttpErrorLike = typeof err === 'object' && err !== null ? err : {};
    if (e.type === 'entity.parse.failed') return sendError(res, 400, 'Malformed JSON');
    if (e.type === 'entity.too.large') return sendError(res, 413, 'Request body too large');
    const status = statusOf(e);
    if (status < 500) return sendError(res, status, typeof e.message === 'string' ? e.message : 'Bad request');
    logger.error(`Admin web error: ${typeof e.message === 'string' ? e.message : String(err)}`);
    sendError(res, 500, 'Internal error');
  };
}
