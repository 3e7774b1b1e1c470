/**
 * What the four fake cloud APIs share: a loopback HTTP server that records every request, the fault knobs, the
 * machine records, loopback addresses for the machines, and booting a machine from its user data (boot.ts).
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { bootUserData, type BootOptions, type BootResult } from './boot';

export interface FakeCloudKnobs {
  /** Creations are refused with the cloud's quota error once this many machines exist (-1 = no limit). */
  machineLimit: number;
  /** Creations are refused with the cloud's capacity error (out of stock, placement, InsufficientInstanceCapacity). */
  noCapacity: boolean;
  /** The next this-many creations fail with a server error (5xx). */
  failCreates: number;
  /** The next this-many requests of any kind answer the cloud's rate-limit error (429 / RequestLimitExceeded). */
  rateLimited: number;
  /** A machine's address (and running state) appears only after this many reads of it (0 = at the first read). */
  ipAfterPolls: number;
  /** Run a machine's user data when it boots and start a test node from its `docker run`. */
  boot: boolean;
  bootOptions: BootOptions;
}

export const DEFAULT_KNOBS: Readonly<FakeCloudKnobs> = Object.freeze({
  machineLimit: -1,
  noCapacity: false,
  failCreates: 0,
  rateLimited: 0,
  ipAfterPolls: 0,
  boot: false,
  bootOptions: {},
});

export interface RecordedCall {
  method: string;
  /** Path and query. */
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface FakeRequest {
  method: string;
  url: URL;
  headers: http.IncomingHttpHeaders;
  body: string;
}

export interface FakeResponse {
  status: number;
  /** Sent as JSON. */
  json?: unknown;
  /** Sent as is (XML). */
  text?: string;
  contentType?: string;
  headers?: Record<string, string>;
}

/** A machine as every fake keeps it. */
export interface FakeMachine {
  id: string;
  name: string;
  region: string;
  size: string;
  image: string;
  /** Tags (DigitalOcean, Scaleway), labels as `k=v` (Hetzner), tags as `k=v` (AWS). */
  tags: string[];
  userData: string;
  /** Its loopback address (reported once `polls >= ipAfterPolls`). */
  ip: string;
  privateIp: string;
  polls: number;
  createdAt: number;
  /** The body of the create call, as received (parsed). */
  createBody: unknown;
  boot: Promise<BootResult> | null;
  /** Provider-specific state (Scaleway: stopped/running). */
  state: string;
}

/** A Map that remembers its largest size (the most machines that ever existed at once). */
export class PeakMap<K, V> extends Map<K, V> {
  peak = 0;

  override set(k: K, v: V): this {
    super.set(k, v);
    this.peak = Math.max(this.peak, this.size);
    return this;
  }
}

export class FakeCloudBase {
  readonly knobs: FakeCloudKnobs = { ...DEFAULT_KNOBS };
  readonly requests: RecordedCall[] = [];
  readonly machines = new PeakMap<string, FakeMachine>();
  private server: http.Server | null = null;
  private readonly usedIps = new Set<string>();
  url = '';

  async listen(handler: (r: FakeRequest) => Promise<FakeResponse> | FakeResponse): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        const url = new URL(req.url ?? '/', 'http://fake-cloud');
        this.requests.push({ method: req.method ?? 'GET', path: url.pathname + url.search, headers: req.headers, body });
        Promise.resolve()
          .then(() => handler({ method: req.method ?? 'GET', url, headers: req.headers, body }))
          .then(
            (r) => send(res, r),
            (e: unknown) => send(res, { status: 500, text: `fake cloud crashed: ${e instanceof Error ? e.stack : String(e)}` }),
          );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Takes one from a counter knob (failCreates, rateLimited); true when it fired. */
  take(knob: 'failCreates' | 'rateLimited'): boolean {
    if (this.knobs[knob] <= 0) return false;
    this.knobs[knob]--;
    return true;
  }

  overLimit(): boolean {
    return this.knobs.machineLimit >= 0 && this.machines.size >= this.knobs.machineLimit;
  }

  /** A loopback address no other machine of this fake has (127.78.x.y). */
  allocIp(): string {
    for (;;) {
      const ip = `127.78.${1 + Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
      if (!this.usedIps.has(ip)) {
        this.usedIps.add(ip);
        return ip;
      }
    }
  }

  /** Counts a read of the machine; true once its address is out. */
  poll(m: FakeMachine): boolean {
    m.polls++;
    return m.polls > this.knobs.ipAfterPolls;
  }

  addressed(m: FakeMachine): boolean {
    return m.polls > this.knobs.ipAfterPolls;
  }

  /** The machine starts: its user data runs (when `boot` is on). */
  startBoot(m: FakeMachine): void {
    if (!this.knobs.boot || m.boot) return;
    m.boot = bootUserData(m.userData, m.ip, this.knobs.bootOptions);
  }

  /** The result of the machine's boot (by the fake's id or the client's `<zone>/<id>`); throws when it never booted. */
  async booted(id: string): Promise<BootResult> {
    const m = this.machines.get(id) ?? this.machines.get(id.slice(id.lastIndexOf('/') + 1));
    if (!m?.boot) throw new Error(`machine ${id} has not booted`);
    return m.boot;
  }

  async remove(id: string): Promise<void> {
    const m = this.machines.get(id);
    if (!m) return;
    this.machines.delete(id);
    if (m.boot) await (await m.boot).node?.close();
  }

  async close(): Promise<void> {
    for (const id of [...this.machines.keys()]) await this.remove(id);
    const s = this.server;
    if (s) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  }
}

function send(res: http.ServerResponse, r: FakeResponse): void {
  const text = r.text ?? (r.json === undefined ? '' : JSON.stringify(r.json));
  const headers: Record<string, string> = { ...r.headers };
  if (text !== '') headers['Content-Type'] = r.contentType ?? (r.json !== undefined ? 'application/json' : 'text/plain');
  headers['Content-Length'] = String(Buffer.byteLength(text));
  res.writeHead(r.status, headers);
  res.end(text);
}

/** `page`/`per_page` slicing with the cloud's maximum page size. */
export function paginate<T>(all: readonly T[], url: URL, defaults: { perPage: number; maxPerPage: number }): { items: T[]; page: number; perPage: number; last: number } {
  const perPage = Math.min(defaults.maxPerPage, Math.max(1, Number(url.searchParams.get('per_page') ?? defaults.perPage) || defaults.perPage));
  const page = Math.max(1, Number(url.searchParams.get('page') ?? 1) || 1);
  const last = Math.max(1, Math.ceil(all.length / perPage));
  return { items: all.slice((page - 1) * perPage, page * perPage), page, perPage, last };
}
