import type { RequestHandler } from 'express';
import type { Logger } from '../core';
import { isIpLiteral, normalizeHostname } from '../core';

/** In --admin-web-hosts: any Host is answered (the check is off). */
export const ANY_HOST = '*';

/** The name part of a Host header (`name`, `name:port`, `[v6]`, `[v6]:port`), lower case, or null if malformed. */
export function hostNameOf(header: string | undefined): string | null {
  const m = /^(\[[^\]]*\]|[^:[\]]+)(?::\d{1,5})?$/.exec(header ?? '');
  const name = m?.[1] === undefined ? null : normalizeHostname(m[1]);
  return name === null ? null : name.toLowerCase().replace(/\.$/, '');
}

/** The text of a refusal: the Host as received (quoted, cut short), and how to allow it. */
function refusal(host: string | undefined): string {
  const shown = host === undefined ? 'no Host header' : `the Host ${JSON.stringify(host.slice(0, 100))}`;
  return (
    `Misdirected request: this admin web answers to IP addresses, localhost and the names given with ` +
    `--admin-web-hosts (config key "admin-web-hosts"), not to ${shown}.\n`
  );
}

/**
 * Refuses (421) a request whose Host is not an IP literal, `localhost` or a configured name. A page of another site
 * whose name was rebound to this machine's address (DNS rebinding) sends its own name as Host, and it would
 * otherwise pass the same-origin check and drive an admin web that has no password.
 */
export function hostCheck(allowed: readonly string[], logger: Logger): RequestHandler {
  const names = new Set(allowed.map((n) => n.toLowerCase().replace(/\.$/, '')));
  return (req, res, next) => {
    const name = hostNameOf(req.headers.host);
    if (names.has(ANY_HOST) || (name !== null && (isIpLiteral(name) || name === 'localhost' || names.has(name)))) {
      next();
      return;
    }
    logger.verbose(`Admin web refused a request for ${JSON.stringify((req.headers.host ?? '').slice(0, 100))} from ${req.socket.remoteAddress ?? '?'}`);
    res.status(421).type('text/plain').send(refusal(req.headers.host));
  };
}
