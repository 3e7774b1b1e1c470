import type * as http from 'node:http';

/**
 * How a client request's body is delimited. Node's parser has already refused every ambiguous form (Content-Length
 * with Transfer-Encoding, a Transfer-Encoding whose last coding is not chunked, duplicate or malformed lengths,
 * bare LF/CR, obs-fold), so a Transfer-Encoding that got this far means chunked.
 */
export type Framing = 'none' | 'chunked' | 'length';

/** Methods whose requests may carry a body. Every body of the NodeODM API is a POST; PUT and PATCH pass as is. */
const BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH']);

export function framingOf(req: http.IncomingMessage): Framing {
  const h = req.headers;
  if (h['transfer-encoding'] !== undefined) return 'chunked';
  const cl = h['content-length'];
  if (cl === undefined || cl === '0' || Number(cl) === 0) return 'none';
  return 'length';
}

/** A body (even an empty chunked one) on a method that carries none: GET, HEAD, OPTIONS, DELETE, … */
export function hasUnexpectedBody(req: http.IncomingMessage): boolean {
  return framingOf(req) !== 'none' && !BODY_METHODS.has(req.method ?? 'GET');
}

/**
 * Refuses a request whose body has no place (HTTP 400, JSON error) and closes the connection after the answer, so
 * nothing the client sent after its headers is ever read as a request of its own.
 */
export function refuseBody(req: http.IncomingMessage, res: http.ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify({ error: `A ${req.method ?? 'GET'} request carries no body` });
  res.writeHead(400, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), Connection: 'close' });
  res.end(text);
}
