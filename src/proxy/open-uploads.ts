/**
 * Upload sessions (`/task/new/init` until commit or abandonment): the caps on how many may be open, in all and per
 * client address (--max-open-uploads, --max-open-uploads-per-address), and the per-session state that must go when
 * the session goes (the name reserver its uploads share). The durable task table stays the truth about which
 * sessions are open: a session whose table entry is gone or no longer uploading (swept, expired, committed) is
 * forgotten at the next check, whatever removed it.
 */
import * as net from 'node:net';
import type * as http from 'node:http';
import * as path from 'node:path';
import { ClusterError } from '../core';
import type { TaskTable } from '../routing';
import { NameReserver } from './upload-staging';

export const TOO_MANY_FROM_ADDRESS = (n: number): string =>
  `Too many uploads in progress from your address (${n}). Please commit the uploads you have started, then try again.`;
export const TOO_MANY_UPLOADS = (n: number): string => `Too many uploads in progress (${n}). Please try again later.`;

export interface OpenUploadsOptions {
  table: TaskTable;
  tmpDir: string;
  /** 0 = no cap. */
  maxTotal: number;
  /** 0 = no cap. */
  maxPerAddress: number;
}

interface Session {
  /** '' when unknown (a session loaded from the task table after a restart): it counts in the total only. */
  address: string;
  /** The init has recorded the task in the table; until then the table cannot tell whether it is open. */
  recorded: boolean;
  reserver: NameReserver | null;
}

export class OpenUploads {
  private readonly o: OpenUploadsOptions;
  private readonly sessions = new Map<string, Session>();
  private readonly perAddress = new Map<string, number>();
  private adopted = false;

  constructor(opts: OpenUploadsOptions) {
    this.o = opts;
  }

  /**
   * Takes a place for a new upload session from `address` (see clientAddress), synchronously so that concurrent
   * inits see each other. Throws ClusterError LIMIT_REACHED, with the message for the client, when there is none.
   */
  open(uuid: string, address: string): void {
    this.refresh();
    // Two inits with one set-uuid at once: the second is refused here, before either has stored anything.
    if (this.sessions.has(uuid)) throw new ClusterError('INVALID_INPUT', `Invalid set-uuid: ${uuid}`);
    const { maxTotal, maxPerAddress } = this.o;
    // The client's own cap first: when both apply, that is the one it can do something about.
    if (address !== '' && maxPerAddress > 0 && (this.perAddress.get(address) ?? 0) >= maxPerAddress) {
      throw new ClusterError('LIMIT_REACHED', TOO_MANY_FROM_ADDRESS(maxPerAddress));
    }
    if (maxTotal > 0 && this.sessions.size >= maxTotal) throw new ClusterError('LIMIT_REACHED', TOO_MANY_UPLOADS(maxTotal));
    this.add(uuid, address, false);
  }

  /** The init stored the task: from now on the task table tells when the session ends. */
  recorded(uuid: string): void {
    const s = this.sessions.get(uuid);
    if (s) s.recorded = true;
  }

  /** The session ended (committed, refused, failed, swept); its place is free again. Unknown uuids are ignored. */
  close(uuid: string): void {
    const s = this.sessions.get(uuid);
    if (!s) return;
    this.sessions.delete(uuid);
    if (s.address === '') return;
    const n = (this.perAddress.get(s.address) ?? 1) - 1;
    if (n <= 0) this.perAddress.delete(s.address);
    else this.perAddress.set(s.address, n);
  }

  /** The name reserver shared by the uploads of an uploading task (the caller checked that it is uploading). */
  reserver(uuid: string): NameReserver {
    this.adopt();
    let s = this.sessions.get(uuid);
    if (!s) s = this.add(uuid, '', true);
    s.reserver ??= new NameReserver(path.join(this.o.tmpDir, uuid));
    return s.reserver;
  }

  /** Sessions held (open ones, and inits on their way); for tests and diagnostics. */
  get size(): number {
    return this.sessions.size;
  }

  private add(uuid: string, address: string, recorded: boolean): Session {
    this.close(uuid);
    const s: Session = { address, recorded, reserver: null };
    this.sessions.set(uuid, s);
    if (address !== '') this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    return s;
  }

  /** Forgets the sessions the table no longer has as uploading. At most maxTotal sessions: a cheap pass. */
  private refresh(): void {
    this.adopt();
    for (const [uuid, s] of this.sessions) {
      if (s.recorded && this.o.table.get(uuid)?.phase !== 'uploading') this.close(uuid);
    }
  }

  /** Once, after the table is loaded: uploads that survived a restart hold their places (address unknown). */
  private adopt(): void {
    if (this.adopted) return;
    this.adopted = true;
    for (const e of this.o.table.entries({ phase: 'uploading', stagedHere: true })) if (!this.sessions.has(e.uuid)) this.add(e.uuid, '', true);
  }
}

/**
 * The address a client is counted under: IPv4 as is (also when IPv4-mapped), IPv6 by its /64 (one subscriber's
 * network, which hands out any number of addresses). '' when unknown.
 */
export function clientAddress(req: http.IncomingMessage): string {
  return addressKey(req.socket.remoteAddress ?? '');
}

export function addressKey(raw: string): string {
  const addr = raw.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  if (mapped?.[1]) return mapped[1];
  if (net.isIPv4(addr)) return addr;
  if (!net.isIPv6(addr)) return '';
  const groups = ipv6Groups(addr);
  return groups ? `${groups.slice(0, 4).join(':')}::/64` : '';
}

/** The eight groups of an IPv6 address, as lowercase hex without leading zeros. */
function ipv6Groups(addr: string): string[] | null {
  let text = addr.toLowerCase();
  // A trailing dotted IPv4 part stands for the last two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const b = v4.slice(1, 5).map(Number);
    const hi = (((b[0] ?? 0) << 8) | (b[1] ?? 0)).toString(16);
    const lo = (((b[2] ?? 0) << 8) | (b[3] ?? 0)).toString(16);
    text = `${text.slice(0, v4.index)}${hi}:${lo}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const missing = 8 - left.length - right.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return null;
  return [...left, ...Array.from({ length: missing }, () => '0'), ...right].map((g) => Number.parseInt(g, 16).toString(16));
}
