// What the bench's reference proxies (ref-proxy*.ts) share: the end-to-end headers they pass on, and how they
// listen and stop (the bench reads the port from "Reference proxy listening on N" and stops them with SIGTERM).
import type * as http from 'node:http';

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

export function endToEnd(h: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

/** Listens on a free loopback port, prints it, and closes (then `release`s the upstream side) on SIGTERM/SIGINT. */
export function serveReference(server: http.Server, release: () => void): void {
  server.keepAliveTimeout = 65_000;
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    console.log(`Reference proxy listening on ${typeof address === 'object' && address ? address.port : 0}`);
  });
  const stop = (): void => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    release();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
