/**
 * A fake Scaleway Instance API v1 (clouds.md §3) on loopback, per zone: servers created **stopped** with an l_ssd
 * volume, `PATCH …/user_data/cloud-init` (text/plain, 204), `POST …/action` poweron (202 task; the machine boots
 * from the `cloud-init` key) and terminate (running only; deletes local volumes), get, list by `tags` with
 * page/per_page (max 100), `X-Total-Count` and `Link`, DELETE (stopped only; 400 otherwise; volumes survive),
 * volume DELETE, products with hourly prices; `X-Auth-Token` auth; errors as `{"type", "message", …}`: quota as
 * 403 invalid_request_error "Quota exceeded for this resource." or 403 quotas_exceeded (`quotaStyle`),
 * out_of_stock (409, a guess), 429, 500.
 */
import { FakeCloudBase, paginate, type FakeMachine, type FakeRequest, type FakeResponse } from './common';

export interface FakeVolume {
  id: string;
  zone: string;
  serverId: string | null;
  type: 'l_ssd' | 'sbs_volume';
}

export class FakeScalewayApi extends FakeCloudBase {
  readonly volumes = new Map<string, FakeVolume>();
  /** Which form the quota refusal takes. */
  quotaStyle: 'legacy' | 'quotas_exceeded' = 'legacy';
  /** The next this-many user data PATCHes fail (500). */
  failUserData = 0;
  readonly userData = new Map<string, Map<string, string>>();
  private seq = 0;

  constructor(private readonly secret: string) {
    super();
  }

  static async start(secret: string): Promise<FakeScalewayApi> {
    const f = new FakeScalewayApi(secret);
    await f.listen((r) => f.handle(r));
    return f;
  }

  private uuid(): string {
    const n = (++this.seq).toString(16).padStart(12, '0');
    return `5a8e1b2c-7d3f-4e6a-9b0c-${n}`;
  }

  /** A server made by someone else in the same project, stopped. */
  addServer(d: { name: string; tags: string[]; zone?: string }): FakeMachine {
    return this.add({ name: d.name, tags: d.tags, region: d.zone ?? 'fr-par-1', size: 'GP1-XS', image: 'ubuntu_noble', userData: '', createBody: null });
  }

  private add(p: Pick<FakeMachine, 'name' | 'tags' | 'region' | 'size' | 'image' | 'userData' | 'createBody'>): FakeMachine {
    const m: FakeMachine = { ...p, id: this.uuid(), ip: this.allocIp(), privateIp: '10.68.0.3', polls: 0, createdAt: Date.now(), boot: null, state: 'stopped' };
    this.machines.set(m.id, m);
    const vol: FakeVolume = { id: this.uuid(), zone: m.region, serverId: m.id, type: 'l_ssd' };
    this.volumes.set(vol.id, vol);
    return m;
  }

  private handle(r: FakeRequest): FakeResponse | Promise<FakeResponse> {
    if (r.headers['x-auth-token'] !== this.secret) return { status: 401, json: { message: 'authentication is denied', method: 'api_key', reason: 'invalid_argument', type: 'denied_authentication' } };
    if (this.take('rateLimited')) return err(429, 'too_many_requests', 'rate limit exceeded');
    const z = /^\/instance\/v1\/zones\/([a-z]{2}-[a-z]{3}-\d)(\/.*)$/.exec(r.url.pathname);
    const blockVol = /^\/block\/v1alpha1\/zones\/([a-z]{2}-[a-z]{3}-\d)\/volumes\/([^/]+)$/.exec(r.url.pathname);
    if (blockVol && r.method === 'DELETE') return this.deleteVolume(blockVol[2] ?? '', 'sbs_volume');
    if (!z) return err(404, 'not_found', 'resource is not found');
    const zone = z[1] ?? '';
    const rest = z[2] ?? '';
    if (rest === '/servers' && r.method === 'POST') return this.create(zone, r);
    if (rest === '/servers' && r.method === 'GET') return this.list(zone, r);
    if (rest === '/products/servers' && r.method === 'GET') {
      const page = Number(r.url.searchParams.get('page') ?? 1);
      return { status: 200, json: { servers: page === 1 ? { 'GP1-XS': { hourly_price: 0.091, monthly_price: 66.43, ncpus: 4, ram: 17179869184, arch: 'x86_64' } } : {} } };
    }
    const vol = /^\/volumes\/([^/]+)$/.exec(rest);
    if (vol && r.method === 'DELETE') return this.deleteVolume(vol[1] ?? '', 'l_ssd');
    const srv = /^\/servers\/([^/]+)(\/action|\/user_data\/([^/]+))?$/.exec(rest);
    if (!srv) return err(404, 'not_found', 'resource is not found');
    const m = this.machines.get(srv[1] ?? '');
    if (!m || m.region !== zone) return { status: 404, json: { type: 'not_found', message: 'resource is not found', resource: 'instance_server', resource_id: srv[1] ?? '' } };
    if (srv[2] === '/action' && r.method === 'POST') return this.action(m, r);
    if (srv[3] !== undefined && r.method === 'PATCH') {
      if (this.failUserData > 0) {
        this.failUserData--;
        return err(500, 'internal_error', 'internal error');
      }
      if (!String(r.headers['content-type'] ?? '').startsWith('text/plain')) return err(400, 'invalid_arguments', 'user data must be text/plain');
      const kv = this.userData.get(m.id) ?? new Map<string, string>();
      kv.set(srv[3], r.body);
      this.userData.set(m.id, kv);
      if (srv[3] === 'cloud-init') m.userData = r.body;
      return { status: 204 };
    }
    if (srv[2] === undefined && r.method === 'GET') {
      if (m.state !== 'stopped') this.poll(m);
      return { status: 200, json: { server: this.view(m) } };
    }
    if (srv[2] === undefined && r.method === 'DELETE') {
      if (m.state !== 'stopped') return err(400, 'invalid_request_error', 'server should be stopped');
      // DELETE keeps the volumes (detached).
      for (const v of this.volumes.values()) if (v.serverId === m.id) v.serverId = null;
      return this.remove(m.id).then(() => ({ status: 204 }));
    }
    return err(404, 'not_found', 'resource is not found');
  }

  private create(zone: string, r: FakeRequest): FakeResponse {
    let b: Record<string, unknown>;
    try {
      b = JSON.parse(r.body) as Record<string, unknown>;
    } catch {
      return err(400, 'invalid_arguments', 'invalid JSON');
    }
    const missing = ['name', 'commercial_type', 'image', 'project'].filter((k) => typeof b[k] !== 'string' || b[k] === '');
    if (missing.length > 0) {
      return { status: 400, json: { type: 'invalid_arguments', message: 'invalid argument(s)', details: missing.map((argument_name) => ({ argument_name, reason: 'required', help_message: `${argument_name} is required` })) } };
    }
    if (this.overLimit()) {
      return this.quotaStyle === 'legacy'
        ? { status: 403, json: { type: 'invalid_request_error', message: 'Quota exceeded for this resource.', resource: 'compute_instances' } }
        : { status: 403, json: { type: 'quotas_exceeded', message: 'quota(s) exceeded for this resource', details: [{ resource: 'compute_instances', quota: this.knobs.machineLimit, current: this.machines.size }] } };
    }
    if (this.knobs.noCapacity) return { status: 409, json: { type: 'out_of_stock', message: 'server is out of stock', resource: String(b['commercial_type']) } };
    if (this.take('failCreates')) return err(500, 'internal_error', 'internal error');
    const tags = Array.isArray(b['tags']) ? b['tags'].map(String) : [];
    const m = this.add({ name: String(b['name']), tags, region: zone, size: String(b['commercial_type']), image: String(b['image']), userData: '', createBody: b });
    return { status: 201, json: { server: this.view(m) } };
  }

  private action(m: FakeMachine, r: FakeRequest): FakeResponse | Promise<FakeResponse> {
    const a = (JSON.parse(r.body || '{}') as { action?: string }).action;
    const task = (description: string): FakeResponse => ({
      status: 202,
      json: { task: { id: this.uuid(), description, status: 'pending', href_from: `/servers/${m.id}/action`, href_result: `/servers/${m.id}`, progress: 0, zone: m.region } },
    });
    if (a === 'poweron') {
      if (m.state !== 'stopped') return err(400, 'invalid_request_error', 'server should be stopped');
      m.state = 'starting';
      this.startBoot(m);
      return task('server_batch_poweron');
    }
    if (a === 'terminate') {
      if (m.state === 'stopped') return err(400, 'invalid_request_error', 'server should be running');
      for (const [id, v] of this.volumes) if (v.serverId === m.id && v.type === 'l_ssd') this.volumes.delete(id);
      return this.remove(m.id).then(() => task('server_terminate'));
    }
    return err(400, 'invalid_arguments', `unknown action ${String(a)}`);
  }

  private deleteVolume(id: string, type: FakeVolume['type']): FakeResponse {
    const v = this.volumes.get(id);
    if (!v || v.type !== type) return { status: 404, json: { type: 'not_found', message: 'resource is not found', resource: 'instance_volume', resource_id: id } };
    if (v.serverId !== null) return err(400, 'invalid_request_error', 'volume is attached to a server');
    this.volumes.delete(id);
    return { status: 204 };
  }

  private list(zone: string, r: FakeRequest): FakeResponse {
    const want = (r.url.searchParams.get('tags') ?? '').split(',').filter(Boolean);
    const all = [...this.machines.values()].filter((m) => m.region === zone && want.every((t) => m.tags.includes(t)));
    const pg = paginate(all, r.url, { perPage: 50, maxPerPage: 100 });
    const link = (n: number, rel: string): string => `</servers?page=${n}&per_page=${pg.perPage}>; rel="${rel}"`;
    const links = [pg.page < pg.last ? link(pg.page + 1, 'next') : '', link(pg.last, 'last')].filter(Boolean);
    return { status: 200, headers: { 'X-Total-Count': String(all.length), Link: links.join(', ') }, json: { servers: pg.items.map((m) => this.view(m)) } };
  }

  private view(m: FakeMachine): Record<string, unknown> {
    const up = m.state !== 'stopped' && this.addressed(m);
    if (up && m.state === 'starting') m.state = 'running';
    const vols: Record<string, unknown> = {};
    let i = 0;
    for (const v of this.volumes.values()) if (v.serverId === m.id) vols[String(i++)] = { id: v.id, name: `${m.name}-vol`, volume_type: v.type, size: 20000000000, state: 'available', zone: v.zone };
    return {
      id: m.id,
      name: m.name,
      commercial_type: m.size,
      state: m.state,
      allowed_actions: m.state === 'stopped' ? ['poweron', 'backup'] : ['poweroff', 'terminate', 'reboot', 'stop_in_place', 'backup'],
      tags: m.tags,
      image: { id: '6a601340-19c1-4ca7-9c1c-0704bcc9f5fe', name: m.image },
      public_ip: up ? { id: this.uuid(), address: m.ip, dynamic: true } : null,
      public_ips: up ? [{ id: '7a0e2f6c-1111-4d3c-9f8e-000000000001', address: m.ip, family: 'inet', dynamic: true }] : [],
      private_ip: null,
      volumes: vols,
      zone: m.region,
      project: '2f1b9ec8-7a51-4d3c-9f8e-3b7b4a9c1d2e',
      creation_date: new Date(m.createdAt).toISOString(),
    };
  }
}

function err(status: number, type: string, message: string): FakeResponse {
  return { status, json: { type, message } };
}
