import { isRecord } from '../../../core';
import {
  failureFromStatus,
  INSTALL_TAG_KEY,
  installTag,
  MachineApiError,
  type Machine,
  type MachineApi,
  type MachinePrice,
  type MachineSpec,
  type MachineState,
} from '../../machine-api';
import { bodyString, JsonHttp, retryAfterMs, type Classifier, type HttpClientOptions } from './http';

export interface DigitalOceanApiOptions extends HttpClientOptions {
  /** API token (Bearer); sent in a header only. */
  token: string;
  /** DigitalOcean monitoring agent on the droplets (`monitoring`, default true as the original). */
  monitoring?: boolean;
  /** SSH key ids or fingerprints already on the account (`sshKey.fingerprint`), for debugging access only. */
  sshKeys?: readonly string[];
  /** Page size of list calls (DigitalOcean allows up to 200). */
  perPage?: number;
}

/** DigitalOcean's tag rule; the install tag (`clusterodm-install:<id>`) fits it. */
const TAG = /^[a-zA-Z0-9_\-:]+$/;
const MAX_PAGES = 1000;

/** `{"id": "...", "message": "..."}`; the droplet limit only shows in the message of a 422 (observed, not in the spec). */
export const classifyDigitalOcean: Classifier = (a) => {
  const id = bodyString(a.body, 'id');
  const message = bodyString(a.body, 'message') ?? `HTTP ${a.status}`;
  let failure = failureFromStatus(a.status);
  // The one signal of the account's droplet limit is this text; any other 422 is bad input.
  if (a.status === 422 && /droplet limit/i.test(message)) failure = 'quota';
  return { failure, cloudCode: id, message, retryAfterMs: a.status === 429 ? retryAfterMs(a.headers) : null };
};

/** Droplets over the DigitalOcean API v2 (clouds.md §1). Machine ids are droplet ids. */
export class DigitalOceanMachineApi implements MachineApi {
  readonly provider = 'digitalocean';
  private readonly http: JsonHttp;
  private readonly o: DigitalOceanApiOptions;

  constructor(o: DigitalOceanApiOptions) {
    this.o = o;
    this.http = new JsonHttp(this.provider, o, () => ({ Authorization: `Bearer ${o.token}` }), classifyDigitalOcean);
  }

  async create(spec: MachineSpec): Promise<Machine> {
    const tags = [...(spec.tags ?? []), installTag(spec.installId, ':')];
    const bad = tags.find((t) => !TAG.test(t));
    if (bad !== undefined) {
      throw new MachineApiError({ provider: this.provider, failure: 'invalid', message: `tag "${bad}" has characters DigitalOcean does not allow (letters, digits, _ - : only)` });
    }
    const body: Record<string, unknown> = {
      name: spec.name,
      region: spec.region,
      size: spec.size,
      // A snapshot is given by its numeric id, a public image by its slug.
      image: /^\d+$/.test(spec.image) ? Number(spec.image) : spec.image,
      tags: [...new Set(tags)],
      user_data: spec.userData,
      monitoring: this.o.monitoring ?? true,
    };
    if (this.o.sshKeys && this.o.sshKeys.length > 0) body['ssh_keys'] = [...this.o.sshKeys];
    const a = await this.http.request({ method: 'POST', path: '/v2/droplets', json: body });
    const d = isRecord(a.body) ? a.body['droplet'] : undefined;
    if (!isRecord(d)) throw this.malformed('POST /v2/droplets');
    return this.machine(d);
  }

  async get(id: string): Promise<Machine | null> {
    const a = await this.http.send({ method: 'GET', path: `/v2/droplets/${encodeURIComponent(id)}` });
    if (a.status === 404) return null;
    if (a.status !== 200) throw this.http.error(a, 'GET /v2/droplets/{id}');
    const d = isRecord(a.body) ? a.body['droplet'] : undefined;
    if (!isRecord(d)) throw this.malformed('GET /v2/droplets/{id}');
    return this.machine(d);
  }

  async listByInstall(installId: string): Promise<Machine[]> {
    const tag = encodeURIComponent(installTag(installId, ':'));
    const perPage = this.o.perPage ?? 200;
    const out: Machine[] = [];
    // Pages are walked by number: the `links.pages.next` URL is never followed, so the token goes to our base only.
    for (let page = 1; page <= MAX_PAGES; page++) {
      const a = await this.http.request({ method: 'GET', path: `/v2/droplets?tag_name=${tag}&per_page=${perPage}&page=${page}` });
      const droplets = isRecord(a.body) && Array.isArray(a.body['droplets']) ? a.body['droplets'] : null;
      if (droplets === null) throw this.malformed('GET /v2/droplets');
      for (const d of droplets) if (isRecord(d)) out.push(this.machine(d));
      const links = isRecord(a.body) ? a.body['links'] : undefined;
      const pages = isRecord(links) ? links['pages'] : undefined;
      if (!isRecord(pages) || typeof pages['next'] !== 'string' || droplets.length === 0) break;
    }
    // The server filters by tag already; checked again so nothing of another install can slip through.
    return out.filter((m) => m.installId === installId);
  }

  async destroy(id: string): Promise<void> {
    const a = await this.http.send({ method: 'DELETE', path: `/v2/droplets/${encodeURIComponent(id)}` });
    if (a.status === 204 || a.status === 202 || a.status === 200 || a.status === 404) return;
    throw this.http.error(a, 'DELETE /v2/droplets/{id}');
  }

  async hourlyPrice(size: string): Promise<MachinePrice | null> {
    for (let page = 1; page <= MAX_PAGES; page++) {
      const a = await this.http.request({ method: 'GET', path: `/v2/sizes?per_page=200&page=${page}` });
      const sizes = isRecord(a.body) && Array.isArray(a.body['sizes']) ? a.body['sizes'] : [];
      for (const s of sizes) {
        if (isRecord(s) && s['slug'] === size && typeof s['price_hourly'] === 'number') return { hourly: s['price_hourly'], currency: 'USD' };
      }
      const links = isRecord(a.body) ? a.body['links'] : undefined;
      const pages = isRecord(links) ? links['pages'] : undefined;
      if (!isRecord(pages) || typeof pages['next'] !== 'string' || sizes.length === 0) break;
    }
    return null;
  }

  /** A private snapshot by name (the original's `snapshot: true`): its image id and the regions it is in. */
  async findSnapshot(name: string): Promise<{ id: string; regions: string[] } | null> {
    for (let page = 1; page <= MAX_PAGES; page++) {
      const a = await this.http.request({ method: 'GET', path: `/v2/images?private=true&per_page=200&page=${page}` });
      const images = isRecord(a.body) && Array.isArray(a.body['images']) ? a.body['images'] : [];
      for (const i of images) {
        if (isRecord(i) && i['name'] === name && (typeof i['id'] === 'number' || typeof i['id'] === 'string')) {
          const regions = Array.isArray(i['regions']) ? i['regions'].filter((r): r is string => typeof r === 'string') : [];
          return { id: String(i['id']), regions };
        }
      }
      const links = isRecord(a.body) ? a.body['links'] : undefined;
      const pages = isRecord(links) ? links['pages'] : undefined;
      if (!isRecord(pages) || typeof pages['next'] !== 'string' || images.length === 0) break;
    }
    return null;
  }

  private machine(d: Record<string, unknown>): Machine {
    const networks = isRecord(d['networks']) && Array.isArray(d['networks']['v4']) ? d['networks']['v4'] : [];
    const addr = (type: string): string | null => {
      const n = networks.find((x: unknown) => isRecord(x) && x['type'] === type && typeof x['ip_address'] === 'string');
      return isRecord(n) ? String(n['ip_address']) : null;
    };
    const tags = Array.isArray(d['tags']) ? d['tags'].filter((t): t is string => typeof t === 'string') : [];
    const prefix = `${INSTALL_TAG_KEY}:`;
    const own = tags.find((t) => t.toLowerCase().startsWith(prefix));
    const status = typeof d['status'] === 'string' ? d['status'] : 'unknown';
    const publicIp = addr('public');
    const region = isRecord(d['region']) && typeof d['region']['slug'] === 'string' ? d['region']['slug'] : '';
    const size = typeof d['size_slug'] === 'string' ? d['size_slug'] : isRecord(d['size']) && typeof d['size']['slug'] === 'string' ? d['size']['slug'] : '';
    return {
      id: String(d['id']),
      name: typeof d['name'] === 'string' ? d['name'] : '',
      state: DO_STATES[status] ?? 'unknown',
      status,
      publicIp,
      privateIp: addr('private'),
      ip: publicIp,
      region,
      size,
      tags,
      installId: own !== undefined ? own.slice(prefix.length).toLowerCase() : null,
    };
  }

  private malformed(what: string): MachineApiError {
    return new MachineApiError({ provider: this.provider, failure: 'server', message: `${what}: unexpected answer` });
  }
}

const DO_STATES: Readonly<Record<string, MachineState>> = { new: 'pending', active: 'running', off: 'stopped', archive: 'stopped' };
