import type * as http from 'node:http';

/**
 * ClusterODM's own answers: HTTP 200 with exactly `Content-Type: application/json`, errors included
 * (`{"error": "..."}`), as the original and NodeODM clients expect.
 */
export function sendJson(res: http.ServerResponse, body: unknown, status = 200): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: http.ServerResponse, message: string): void {
  sendJson(res, { error: message });
}

/** The bare 401 of the original (reason phrase "unauthorized", empty body). */
export function sendUnauthorized(res: http.ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(401, 'unauthorized', { 'Content-Length': 0 });
  res.end();
}
