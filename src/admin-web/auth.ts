import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import type { Clock, Logger } from '../core';

export const ADMIN_USER = 'admin';
export const REALM = 'ClusterODM';
/** How many addresses the failure throttle remembers at most; an address flood cannot grow memory. */
export const MAX_TRACKED_ADDRESSES = 10_000;

export interface Credentials {
  user: string;
  password: string;
}

/** The credentials of an `Authorization: Basic ...` header, or null when there are none or they are malformed. */
export function parseBasicAuth(header: string | undefined): Credentials | null {
  const m = /^Basic[ \t]+([A-Za-z0-9+/=._~-]+)[ \t]*$/i.exec(header ?? '');
  if (!m?.[1]) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Compares credentials in constant time: digests have a fixed length, so neither the length nor the content
 * of the password leaks through timing. Both comparisons always run.
 */
export class CredentialCheck {
  private readonly user: Buffer;
  private readonly password: Buffer;

  constructor(password: string, user = ADMIN_USER) {
    this.user = digest(user);
    this.password = digest(password);
  }

  matches(c: Credentials): boolean {
    const userOk = timingSafeEqual(digest(c.user), this.user);
    const passwordOk = timingSafeEqual(digest(c.password), this.password);
    return userOk && passwordOk;
  }
}

/**
 * Per-address windows after a logged failed login, so a flood of failures logs one line per address and window. They
 * never refuse anything: every attempt is checked, or an attacker sharing the admin's address (NAT, a reverse
 * proxy) would lock the admin out. Entries are kept in expiry order (re-inserted on update, every window has the
 * same length), so pruning reads from the front.
 */
export class LoginThrottle {
  private readonly until = new Map<string, number>();

  constructor(
    private readonly windowMs: number,
    private readonly maxTracked = MAX_TRACKED_ADDRESSES,
  ) {}

  blocked(addr: string, now: number): boolean {
    return (this.until.get(addr) ?? 0) > now;
  }

  penalize(addr: string, now: number): void {
    this.until.delete(addr);
    this.until.set(addr, now + this.windowMs);
    this.prune(now);
  }

  size(): number {
    return this.until.size;
  }

  private prune(now: number): void {
    for (const [addr, until] of this.until) {
      if (until > now && this.until.size <= this.maxTracked) break;
      this.until.delete(addr);
    }
  }
}

export interface BasicAuthOptions {
  password: string;
  /** Delay of a refused login's answer, and the penalty window of its address. */
  delayMs: number;
  clock: Clock;
  logger: Logger;
}

function challenge(res: Response): void {
  res.status(401).setHeader('WWW-Authenticate', `Basic realm="${REALM}"`).end();
}

/**
 * HTTP Basic auth (user `admin`). A request without credentials is just challenged: that is how every browser
 * starts. Every attempt is checked, and the right credentials are always accepted at once; wrong ones are logged
 * (address only, never the password; one line per address and window) and answered after a delay.
 */
export function basicAuth(opts: BasicAuthOptions): RequestHandler {
  const check = new CredentialCheck(opts.password);
  const throttle = new LoginThrottle(opts.delayMs);
  return async (req, res, next) => {
    const creds = parseBasicAuth(req.headers.authorization);
    if (!creds) return challenge(res);
    if (check.matches(creds)) return next();
    const addr = req.socket.remoteAddress ?? 'unknown address';
    const now = opts.clock.now();
    // One line per address and window, even under a flood (the window is not extended by the failures it hides).
    if (!throttle.blocked(addr, now)) {
      opts.logger.warn(`Failed admin web login from ${addr}`);
      throttle.penalize(addr, now);
    }
    await opts.clock.sleep(opts.delayMs);
    challenge(res);
  };
}
