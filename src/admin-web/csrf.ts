import type { Request, RequestHandler } from 'express';
import { sendError } from './http-util';

/** Methods that only read; everything else changes state and is checked. */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

function mediaType(req: Request): string {
  return (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

/** A missing Origin (curl, scripts) is fine; a present one must name this very host ("null" never does). */
function sameOrigin(req: Request): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const host = req.headers.host;
  if (!host) return false;
  try {
    return new URL(origin).host.toLowerCase() === host.toLowerCase();
  } catch {
    return false;
  }
}

/**
 * Refuses cross-site state changes. A page on another site can make a browser send a form post (urlencoded,
 * multipart or text/plain) with the admin's cached Basic credentials, but it cannot send application/json
 * without a CORS preflight, which this server never grants; a same-site fetch that forges nothing still carries
 * an Origin, which must match Host.
 */
export const csrfGuard: RequestHandler = (req, res, next) => {
  if (SAFE_METHODS.has(req.method) || (mediaType(req) === 'application/json' && sameOrigin(req))) {
    next();
    return;
  }
  sendError(res, 403, 'Cross-site request refused');
};
