import { isRecord } from '../../../core';
import {
  failureFromStatus,
  INSTALL_TAG_KEY,
  installTag,
  MachineApiError,
  type Machine,
  type MachineApi,
  type MachineFailure,
  type MachinePrice,
  type MachineSpec,
  type MachineState,
} from '../../machine-api';
import { bodyString, JsonHttp, retryAfterMs, type Classifier, type HttpClientOptions } from './http';

export interface ScalewayApiOptions extends HttpClientOptions {
  /** IAM secret key (`X-Auth-Token`); sent in a header only. */
  secretKey: string;
  /** Project id the servers are billed to (the original's `organization` is the default project's id). */
  projectId: string;
  /** Every zone machines may be in (`fr-par-1`, …): listByInstall asks each. */
  zones: readonly string[];
  perPage?: number;
}

const MAX_PAGES = 1000;
/** The original's `region` values (docker-machine's scaleway driver) → Instance API zones. */
const LEGACY_ZONES: Readonly<Record<string, string>> = { par1: 'fr-par-1', ams1: 'nl-ams-1' };

export function scalewayZone(region: string): string {
  return LEGACY_ZONES[region] ?? region;
}

const SCALEWAY_FAILURES: Readonly<Record<string, MachineFailure>> = {
  quotas_exceeded: 'quota',
  out_of_stock: 'capacity',
  not_found: 'not_found',
  unknown_resource: 'not_found',
  denied_authentication: 'auth',
  permissions_denied: 'auth',
  invalid_arguments: 'invalid',
  precondition_failed: 'invalid',
  resource_expired: 'invalid',
  transient_state: 'conflict',
  locked: 'conflict',
};

/** `{"type", "message", …}` (clouds.md §3). */
export const classifyScaleway: Classifier = (a) => {
  const type = bodyString(a.body, 'type');
  const message = bodyString(a.body, 'message') ?? `HTTP ${a.status}`;
  let failure = type !== null ? SCALEWAY_FAILURES[type] : undefined;
  // The legacy form of the quota refusal carries only this text; the Scaleway SDK maps it the same way.
  if (type === 'invalid_request_error' && /quota exceeded/i.test(message)) failure = 'quota';
  if (a.status === 429) failure = 'rate_limit';
  failure ??= failureFromStatus(a.status);
  return { failure, cloudCode: type, message, retryAfterMs: a.status === 429 ? retryAfterMs(a.headers) : null };
};

/**
 * Servers over the Scaleway Instance API v1 (clouds.md §3): created stopped, given their cloud-init through the
 * user data store, then powered on. Machine ids are `<zone>/<server id>`; the install id is a `key=value` tag.
 */
export class ScalewayMachineApi implements MachineApi {
  readonly provider = 'scaleway';
  private readonly http: JsonHttp;
  private readonly o: ScalewayApiOptions;

  constructor(o: ScalewayApiOptions) {
    this.o = o;
    this.http = new JsonHttp(this.provider, o, () => ({ 'X-Auth-Token': o.secretKey }), classifyScaleway);
  }

  async create(spec: MachineSpec): Promise<Machine> {
    const zone = scalewayZone(spec.region);
    const tags = [...new Set([...(spec.tags ?? []), installTag(spec.installId)])];
    const a = await this.http.request({
      method: 'POST',
      path: `${zonePath(zone)}/servers`,
      json: { name: spec.name, commercial_type: spec.size, image: spec.image, project: this.o.projectId, tags, dynamic_ip_required: true },
    });
    const s = isRecord(a.body) ? a.body['server'] : undefined;
    if (!isRecord(s) || typeof s['id'] !== 'string') throw this.malformed('POST /servers');
    const id = `${zone}/${s['id']}`;
    try {
      // cloud-init reads the `cloud-init` key; it must be there before the first boot.
      await this.http.request({ method: 'PATCH', path: `${serverPath(zone, s['id'])}/user_data/cloud-init`, text: spec.userData });
      await this.http.request({ method: 'POST', path: `${serverPath(zone, s['id'])}/action`, json: { action: 'poweron' } });
    } catch (e: unknown) {
      // Never leave a stopped server (and its volume) behind; it is tagged, so a reconciliation would find it too.
      await this.destroy(id).catch(() => undefined);
      throw e;
    }
    return (await this.get(id)) ?? this.machine(zone, s);
  }

  async get(id: string): Promise<Machine | null> {
    const { zone, server } = this.splitId(id);
    const a = await this.http.send({ method: 'GET', path: serverPath(zone, server) });
    if (a.status === 404) return null;
    if (a.status !== 200) throw this.http.error(a, 'GET /servers/{id}');
    const s = isRecord(a.body) ? a.body['server'] : undefined;
    if (!isRecord(s)) throw this.malformed('GET /servers/{id}');
    return this.machine(zone, s);
  }

  async listByInstall(installId: string): Promise<Machine[]> {
    const tag = encodeURIComponent(installTag(installId));
    const perPage = this.o.perPage ?? 100;
    const out: Machine[] = [];
    for (const zone of [...new Set(this.o.zones.map(scalewayZone))]) {
      let seen = 0;
      for (let page = 1; page <= MAX_PAGES; page++) {
        const a = await this.http.request({ method: 'GET', path: `${zonePath(zone)}/servers?tags=${tag}&per_page=${perPage}&page=${page}` });
        const servers = isRecord(a.body) && Array.isArray(a.body['servers']) ? a.body['servers'] : null;
        if (servers === null) throw this.malformed('GET /servers');
        for (const s of servers) if (isRecord(s)) out.push(this.machine(zone, s));
        seen += servers.length;
        const total = Number(a.headers.get('x-total-count'));
        if (servers.length === 0 || !Number.isFinite(total) || seen >= total) break;
      }
    }
    return out.filter((m) => m.installId === installId);
  }

  /**
   * A stopped server is deleted with its volumes (DELETE keeps them); a running one is terminated (which deletes its
   * local volumes). A server in a transient state gives a retryable `conflict`.
   */
  async destroy(id: string): Promise<void> {
    const { zone, server } = this.splitId(id);
    const a = await this.http.send({ method: 'GET', path: serverPath(zone, server) });
    if (a.status === 404) return;
    if (a.status !== 200) throw this.http.error(a, 'GET /servers/{id}');
    const s = isRecord(a.body) ? a.body['server'] : undefined;
    if (!isRecord(s)) throw this.malformed('GET /servers/{id}');
    const volumes = isRecord(s['volumes']) ? Object.values(s['volumes']).filter(isRecord) : [];
    if (s['state'] === 'stopped' || s['state'] === 'stopped in place') {
      const d = await this.http.send({ method: 'DELETE', path: serverPath(zone, server) });
      if (d.status !== 204 && d.status !== 200 && d.status !== 404) throw this.http.error(d, 'DELETE /servers/{id}');
      for (const v of volumes) await this.deleteVolume(zone, v);
      return;
    }
    const t = await this.http.send({ method: 'POST', path: `${serverPath(zone, server)}/action`, json: { action: 'terminate' } });
    if (t.status === 404) return;
    if (t.status < 200 || t.status >= 300) throw this.http.error(t, 'POST /servers/{id}/action terminate');
    // terminate deletes local volumes; a block volume is only detached, and goes when it can.
    for (const v of volumes) if (v['volume_type'] === 'sbs_volume') await this.deleteVolume(zone, v).catch(() => undefined);
  }

  async hourlyPrice(size: string, region: string): Promise<MachinePrice | null> {
    const zone = scalewayZone(region);
    for (let page = 1; page <= MAX_PAGES; page++) {
      const a = await this.http.request({ method: 'GET', path: `${zonePath(zone)}/products/servers?per_page=100&page=${page}` });
      const servers = isRecord(a.body) && isRecord(a.body['servers']) ? a.body['servers'] : {};
      const p = servers[size];
      if (isRecord(p) && typeof p['hourly_price'] === 'number') return { hourly: p['hourly_price'], currency: 'EUR' };
      if (Object.keys(servers).length === 0) break;
    }
    return null;
  }

  private async deleteVolume(zone: string, v: Record<string, unknown>): Promise<void> {
    if (typeof v['id'] !== 'string') return;
    const path =
      v['volume_type'] === 'sbs_volume'
        ? `/block/v1alpha1/zones/${encodeURIComponent(zone)}/volumes/${encodeURIComponent(v['id'])}`
        : `${zonePath(zone)}/volumes/${encodeURIComponent(v['id'])}`;
    const d = await this.http.send({ method: 'DELETE', path });
    if (d.status !== 204 && d.status !== 200 && d.status !== 404) throw this.http.error(d, 'DELETE volume');
  }

  private splitId(id: string): { zone: string; server: string } {
    const i = id.indexOf('/');
    if (i <= 0 || i === id.length - 1) throw new MachineApiError({ provider: this.provider, failure: 'invalid', message: `machine id "${id}" is not <zone>/<server id>` });
    return { zone: id.slice(0, i), server: id.slice(i + 1) };
  }

  private machine(zone: string, s: Record<string, unknown>): Machine {
    const ips = Array.isArray(s['public_ips']) ? s['public_ips'].filter(isRecord) : [];
    const v4 = ips.find((p) => p['family'] !== 'inet6' && typeof p['address'] === 'string');
    const legacy = isRecord(s['public_ip']) && typeof s['public_ip']['address'] === 'string' ? s['public_ip']['address'] : null;
    const publicIp = v4 ? String(v4['address']) : legacy;
    const tags = Array.isArray(s['tags']) ? s['tags'].filter((t): t is string => typeof t === 'string') : [];
    const prefix = `${INSTALL_TAG_KEY}=`;
    const own = tags.find((t) => t.startsWith(prefix));
    const status = typeof s['state'] === 'string' ? s['state'] : 'unknown';
    return {
      id: `${zone}/${String(s['id'])}`,
      name: typeof s['name'] === 'string' ? s['name'] : '',
      state: SCALEWAY_STATES[status] ?? 'unknown',
      status,
      publicIp,
      privateIp: typeof s['private_ip'] === 'string' ? s['private_ip'] : null,
      ip: publicIp,
      region: zone,
      size: typeof s['commercial_type'] === 'string' ? s['commercial_type'] : '',
      tags,
      installId: own !== undefined ? own.slice(prefix.length) : null,
    };
  }

  private malformed(what: string): MachineApiError {
    return new MachineApiError({ provider: this.provider, failure: 'server', message: `${what}: unexpected answer` });
  }
}

function zonePath(zone: string): string {
  return `/instance/v1/zones/${encodeURIComponent(zone)}`;
}

function serverPath(zone: string, server: string): string {
  return `${zonePath(zone)}/servers/${encodeURIComponent(server)}`;
}

const SCALEWAY_STATES: Readonly<Record<string, MachineState>> = {
  running: 'running',
  starting: 'pending',
  stopping: 'stopping',
  stopped: 'stopped',
  'stopped in place': 'stopped',
};
