import { isRecord, type Clock } from '../../../core';
import {
  failureFromStatus,
  INSTALL_TAG_KEY,
  MachineApiError,
  type Machine,
  type MachineApi,
  type MachineFailure,
  type MachinePrice,
  type MachineSpec,
  type MachineState,
} from '../../machine-api';
import { JsonHttp, retryAfterMs, type Classifier, type HttpClientOptions } from './http';

export interface HetznerApiOptions extends HttpClientOptions {
  /** Project API token (Bearer, read & write); sent in a header only. */
  token: string;
  /** SSH key ids or names already in the Project, for debugging access only. */
  sshKeys?: readonly string[];
  /** For `RateLimit-Reset` (a Unix time) → how long to wait. */
  clock: Clock;
  perPage?: number;
}

const MAX_PAGES = 1000;
/** Label values: ≤63 characters, alphanumeric at both ends, `-_.` inside. */
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

const HETZNER_FAILURES: Readonly<Record<string, MachineFailure>> = {
  resource_limit_exceeded: 'quota',
  // No capacity for that type in that location.
  resource_unavailable: 'capacity',
  placement_error: 'capacity',
  rate_limit_exceeded: 'rate_limit',
  limit_reached: 'rate_limit',
  unauthorized: 'auth',
  forbidden: 'auth',
  token_readonly: 'auth',
  not_found: 'not_found',
  invalid_input: 'invalid',
  json_error: 'invalid',
  // A name clash: retrying the same call cannot succeed (and Hetzner locks accounts that keep trying).
  uniqueness_error: 'invalid',
  protected: 'invalid',
  unsupported_error: 'invalid',
  locked: 'conflict',
  conflict: 'conflict',
  server_error: 'server',
  service_error: 'server',
  maintenance: 'server',
  timeout: 'server',
  bad_gateway: 'server',
};

/** `{"error": {"code", "message", "details"}}` (clouds.md §2). */
export function classifierForHetzner(clock: Clock): Classifier {
  return (a) => {
    const err = isRecord(a.body) && isRecord(a.body['error']) ? a.body['error'] : null;
    const code = err && typeof err['code'] === 'string' ? err['code'] : null;
    const message = err && typeof err['message'] === 'string' ? err['message'] : `HTTP ${a.status}`;
    let failure = code !== null ? HETZNER_FAILURES[code] : undefined;
    if (failure === undefined && code !== null && /_limit_exceeded$/.test(code)) failure = 'quota';
    failure ??= failureFromStatus(a.status);
    let wait: number | null = null;
    if (failure === 'rate_limit') {
      wait = retryAfterMs(a.headers);
      const reset = Number(a.headers.get('ratelimit-reset'));
      if (wait === null && Number.isFinite(reset) && reset > 0) wait = Math.max(0, reset * 1000 - clock.now());
    }
    return { failure, cloudCode: code, message, retryAfterMs: wait };
  };
}

/** Servers over the Hetzner Cloud API v1 (clouds.md §2). Machine ids are server ids; the install id is a label. */
export class HetznerMachineApi implements MachineApi {
  readonly provider = 'hetzner';
  private readonly http: JsonHttp;
  private readonly o: HetznerApiOptions;

  constructor(o: HetznerApiOptions) {
    this.o = o;
    this.http = new JsonHttp(this.provider, o, () => ({ Authorization: `Bearer ${o.token}` }), classifierForHetzner(o.clock));
  }

  async create(spec: MachineSpec): Promise<Machine> {
    const labels: Record<string, string> = {};
    for (const t of spec.tags ?? []) {
      const [k = '', v = ''] = t.split('=', 2);
      if (k !== '') labels[k] = v;
    }
    labels[INSTALL_TAG_KEY] = spec.installId;
    for (const [k, v] of Object.entries(labels)) {
      if (!LABEL_VALUE.test(v)) {
        throw new MachineApiError({ provider: this.provider, failure: 'invalid', message: `label ${k}=${v}: value not allowed by Hetzner` });
      }
    }
    const body: Record<string, unknown> = {
      name: spec.name,
      server_type: spec.size,
      image: spec.image,
      location: spec.region,
      labels,
      user_data: spec.userData,
      start_after_create: true,
      public_net: { enable_ipv4: true, enable_ipv6: true },
    };
    if (this.o.sshKeys && this.o.sshKeys.length > 0) body['ssh_keys'] = [...this.o.sshKeys];
    const a = await this.http.request({ method: 'POST', path: '/v1/servers', json: body });
    const s = isRecord(a.body) ? a.body['server'] : undefined;
    if (!isRecord(s)) throw this.malformed('POST /v1/servers');
    return this.machine(s);
  }

  async get(id: string): Promise<Machine | null> {
    const a = await this.http.send({ method: 'GET', path: `/v1/servers/${encodeURIComponent(id)}` });
    if (a.status === 404) return null;
    if (a.status !== 200) throw this.http.error(a, 'GET /v1/servers/{id}');
    const s = isRecord(a.body) ? a.body['server'] : undefined;
    if (!isRecord(s)) throw this.malformed('GET /v1/servers/{id}');
    return this.machine(s);
  }

  async listByInstall(installId: string): Promise<Machine[]> {
    const selector = encodeURIComponent(`${INSTALL_TAG_KEY}==${installId}`);
    const perPage = this.o.perPage ?? 50;
    const out: Machine[] = [];
    for (let page = 1; page <= MAX_PAGES; page++) {
      const a = await this.http.request({ method: 'GET', path: `/v1/servers?label_selector=${selector}&per_page=${perPage}&page=${page}` });
      const servers = isRecord(a.body) && Array.isArray(a.body['servers']) ? a.body['servers'] : null;
      if (servers === null) throw this.malformed('GET /v1/servers');
      for (const s of servers) if (isRecord(s)) out.push(this.machine(s));
      const meta = isRecord(a.body) ? a.body['meta'] : undefined;
      const pagination = isRecord(meta) ? meta['pagination'] : undefined;
      const next = isRecord(pagination) ? pagination['next_page'] : null;
      if (typeof next !== 'number' || servers.length === 0) break;
      page = next - 1;
    }
    return out.filter((m) => m.installId === installId && m.status !== 'deleting');
  }

  async destroy(id: string): Promise<void> {
    const a = await this.http.send({ method: 'DELETE', path: `/v1/servers/${encodeURIComponent(id)}` });
    if (a.status === 200 || a.status === 204 || a.status === 404) return;
    throw this.http.error(a, 'DELETE /v1/servers/{id}');
  }

  /** Gross hourly price in the Project's currency (`GET /v1/server_types?name=`). */
  async hourlyPrice(size: string, region: string): Promise<MachinePrice | null> {
    const a = await this.http.request({ method: 'GET', path: `/v1/server_types?name=${encodeURIComponent(size)}` });
    const types = isRecord(a.body) && Array.isArray(a.body['server_types']) ? a.body['server_types'] : [];
    const t = types.find((x: unknown) => isRecord(x) && x['name'] === size);
    const prices = isRecord(t) && Array.isArray(t['prices']) ? t['prices'] : [];
    const p = prices.find((x: unknown) => isRecord(x) && x['location'] === region);
    const hourly = isRecord(p) && isRecord(p['price_hourly']) ? Number(p['price_hourly']['gross']) : NaN;
    return Number.isFinite(hourly) ? { hourly, currency: 'EUR' } : null;
  }

  private machine(s: Record<string, unknown>): Machine {
    const pn = isRecord(s['public_net']) ? s['public_net'] : {};
    const v4 = isRecord(pn['ipv4']) ? pn['ipv4'] : null;
    const publicIp = v4 && typeof v4['ip'] === 'string' ? v4['ip'] : null;
    const priv = Array.isArray(s['private_net']) ? s['private_net'].find((n: unknown) => isRecord(n) && typeof n['ip'] === 'string') : undefined;
    const labels = isRecord(s['labels']) ? s['labels'] : {};
    const tags = Object.entries(labels).map(([k, v]) => `${k}=${String(v)}`);
    const own = labels[INSTALL_TAG_KEY];
    const status = typeof s['status'] === 'string' ? s['status'] : 'unknown';
    const dc = isRecord(s['datacenter']) ? s['datacenter'] : {};
    const loc = isRecord(dc['location']) && typeof dc['location']['name'] === 'string' ? dc['location']['name'] : '';
    const type = isRecord(s['server_type']) && typeof s['server_type']['name'] === 'string' ? s['server_type']['name'] : '';
    return {
      id: String(s['id']),
      name: typeof s['name'] === 'string' ? s['name'] : '',
      state: HETZNER_STATES[status] ?? 'unknown',
      status,
      publicIp,
      privateIp: isRecord(priv) ? String(priv['ip']) : null,
      ip: publicIp,
      region: loc,
      size: type,
      tags,
      installId: typeof own === 'string' ? own : null,
    };
  }

  private malformed(what: string): MachineApiError {
    return new MachineApiError({ provider: this.provider, failure: 'server', message: `${what}: unexpected answer` });
  }
}

const HETZNER_STATES: Readonly<Record<string, MachineState>> = {
  initializing: 'pending',
  starting: 'pending',
  running: 'running',
  stopping: 'stopping',
  deleting: 'stopping',
  off: 'stopped',
  migrating: 'pending',
  rebuilding: 'pending',
};
