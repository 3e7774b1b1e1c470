/**
 * Where the shared state lives: a redis:// or rediss:// (TLS) URL with optional password and database
 * (`redis://:secret@host:6379/2`), or a unix socket (`unix:///run/redis.sock?db=2`, optional `password=`).
 * No dependency on the Redis client, so the config parser can check a URL without loading it.
 */
export type RedisTarget =
  | { kind: 'tcp'; url: string; tls: boolean }
  | { kind: 'unix'; path: string; database: number; password: string | undefined };

export function parseRedisUrl(text: string): RedisTarget {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new Error(`not a URL: ${JSON.stringify(redactRedisUrl(text))}`);
  }
  if (u.protocol === 'redis:' || u.protocol === 'rediss:') {
    if (!u.hostname) throw new Error('the URL has no host');
    const db = u.pathname.replace(/^\//, '');
    if (db !== '' && !/^\d+$/.test(db)) throw new Error(`the database must be a number, not ${JSON.stringify(db)}`);
    return { kind: 'tcp', url: text, tls: u.protocol === 'rediss:' };
  }
  if (u.protocol === 'unix:') {
    if (!u.pathname || u.pathname === '/') throw new Error('the unix:// URL has no socket path');
    const db = u.searchParams.get('db') ?? '0';
    if (!/^\d+$/.test(db)) throw new Error(`the database must be a number, not ${JSON.stringify(db)}`);
    return { kind: 'unix', path: decodeURIComponent(u.pathname), database: Number(db), password: u.searchParams.get('password') ?? undefined };
  }
  throw new Error(`unsupported scheme ${JSON.stringify(u.protocol)}`);
}

/** The URL as shown in logs and messages: any password replaced by ****. */
export function redactRedisUrl(text: string): string {
  try {
    const u = new URL(text);
    if (u.password) u.password = '****';
    if (u.searchParams.has('password')) u.searchParams.set('password', '****');
    return u.toString();
  } catch {
    return text.replace(/\/\/[^@/]*@/, '//****@');
  }
}
