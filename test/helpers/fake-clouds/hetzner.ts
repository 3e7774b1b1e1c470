/**
 * A fake Hetzner Cloud API v1 (clouds.md §2) on loopback: servers create (201 with action and next_actions)/get/list
 * with `label_selector` (k==v, k=v, k!=v, k, !k; comma = AND) and page/per_page (max 50) with `meta.pagination`
 * and a `Link` header/delete (200 with an action, 404 not_found), server types with prices; Bearer auth;
 * `RateLimit-*` headers; errors as `{"error": {"code", "message", "details"}}`: resource_limit_exceeded (403,
 * as issue logs suggest), resource_unavailable (503, a guess) for capacity, rate_limit_exceeded (429),
 * uniqueness_error (409), invalid_input (400), server_error (500).
 */
import { FakeCloudBase, paginate, type FakeMachine, type FakeRequest, type FakeResponse } from './common';

const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

export class FakeHetznerApi extends FakeCloudBase {
  readonly serverTypes = [
    { id: 22, name: 'cpx22', cores: 2, memory: 4, prices: [{ location: 'fsn1', price_hourly: { net: '0.0120', gross: '0.0143' }, price_monthly: { net: '7.4900', gross: '8.9131' } }] },
  ];
  private nextId = 42;

  constructor(private readonly token: string) {
    super();
  }

  static async start(token: string): Promise<FakeHetznerApi> {
    const f = new FakeHetznerApi(token);
    await f.listen((r) => f.handle(r));
    return f;
  }

  /** A server made by someone else on the same Project. */
  addServer(d: { name: string; labels: Record<string, string> }): FakeMachine {
    return this.add({ name: d.name, tags: Object.entries(d.labels).map(([k, v]) => `${k}=${v}`), region: 'fsn1', size: 'cpx22', image: 'ubuntu-24.04', userData: '', createBody: null });
  }

  private add(p: Pick<FakeMachine, 'name' | 'tags' | 'region' | 'size' | 'image' | 'userData' | 'createBody'>): FakeMachine {
    const m: FakeMachine = { ...p, id: String(this.nextId++), ip: this.allocIp(), privateIp: '10.0.0.2', polls: 0, createdAt: Date.now(), boot: null, state: 'initializing' };
    this.machines.set(m.id, m);
    return m;
  }

  private handle(r: FakeRequest): FakeResponse | Promise<FakeResponse> {
    const headers = { 'RateLimit-Limit': '3600', 'RateLimit-Remaining': '3599', 'RateLimit-Reset': String(Math.floor(Date.now() / 1000) + 1) };
    const res = this.route(r);
    return res instanceof Promise ? res.then((x) => ({ ...x, headers: { ...headers, ...x.headers } })) : { ...res, headers: { ...headers, ...res.headers } };
  }

  private route(r: FakeRequest): FakeResponse | Promise<FakeResponse> {
    if (r.headers.authorization !== `Bearer ${this.token}`) return err(401, 'unauthorized', 'unable to authenticate');
    if (this.take('rateLimited')) return err(429, 'rate_limit_exceeded', 'limit of 3600 requests per hour reached');
    const p = r.url.pathname;
    const one = /^\/v1\/servers\/(\d+)$/.exec(p);
    if (r.method === 'POST' && p === '/v1/servers') return this.create(r);
    if (r.method === 'GET' && p === '/v1/servers') return this.list(r);
    if (one) {
      const m = this.machines.get(one[1] ?? '');
      if (!m) return err(404, 'not_found', `server with ID ${one[1] ?? ''} not found`);
      if (r.method === 'GET') {
        this.poll(m);
        return { status: 200, json: { server: this.view(m) } };
      }
      if (r.method === 'DELETE') {
        return this.remove(m.id).then(() => ({ status: 200, json: { action: action('delete_server', m.id, 'running') } }));
      }
    }
    if (r.method === 'GET' && p === '/v1/server_types') {
      const name = r.url.searchParams.get('name');
      const types = this.serverTypes.filter((t) => name === null || t.name === name);
      return { status: 200, json: { server_types: types, meta: { pagination: { page: 1, per_page: 25, previous_page: null, next_page: null, last_page: 1, total_entries: types.length } } } };
    }
    return err(404, 'not_found', 'not found');
  }

  private create(r: FakeRequest): FakeResponse {
    let b: Record<string, unknown>;
    try {
      b = JSON.parse(r.body) as Record<string, unknown>;
    } catch {
      return err(400, 'json_error', 'invalid JSON');
    }
    const missing = ['name', 'server_type', 'image'].filter((k) => typeof b[k] !== 'string' || b[k] === '');
    if (missing.length > 0) return err(400, 'invalid_input', 'invalid input in fields', { fields: missing.map((name) => ({ name, messages: ['Missing data for required field.'] })) });
    if (b['location'] !== undefined && b['datacenter'] !== undefined) return err(400, 'invalid_input', 'location and datacenter are mutually exclusive');
    const labels = typeof b['labels'] === 'object' && b['labels'] !== null ? (b['labels'] as Record<string, unknown>) : {};
    for (const [k, v] of Object.entries(labels)) {
      if (!LABEL_KEY.test(k) || typeof v !== 'string' || !LABEL_VALUE.test(v)) return err(400, 'invalid_input', `invalid label ${k}`);
    }
    const userData = typeof b['user_data'] === 'string' ? b['user_data'] : '';
    if (Buffer.byteLength(userData) > 32 * 1024) return err(400, 'invalid_input', 'user_data too long');
    const name = String(b['name']);
    if ([...this.machines.values()].some((m) => m.name === name)) return err(409, 'uniqueness_error', 'server name is already used', { fields: [{ name: 'name' }] });
    if (this.overLimit()) return err(403, 'resource_limit_exceeded', 'server limit exceeded', { limits: [{ name: 'server_limit' }] });
    if (this.knobs.noCapacity) return err(503, 'resource_unavailable', 'server type cpx22 is unavailable in this location');
    if (this.take('failCreates')) return err(500, 'server_error', 'internal server error');
    const m = this.add({
      name,
      tags: Object.entries(labels).map(([k, v]) => `${k}=${String(v)}`),
      region: typeof b['location'] === 'string' ? b['location'] : 'fsn1',
      size: String(b['server_type']),
      image: String(b['image']),
      userData,
      createBody: b,
    });
    this.startBoot(m);
    return {
      status: 201,
      json: {
        server: this.view(m),
        action: action('create_server', m.id, 'running'),
        next_actions: b['start_after_create'] === false ? [] : [action('start_server', m.id, 'running')],
        root_password: Array.isArray(b['ssh_keys']) && b['ssh_keys'].length > 0 ? null : 'YItygq1v3GYjjMomLaKc',
      },
    };
  }

  private list(r: FakeRequest): FakeResponse {
    const selector = r.url.searchParams.get('label_selector');
    const all = [...this.machines.values()].filter((m) => selector === null || matches(selector, labelsOf(m)));
    const pg = paginate(all, r.url, { perPage: 25, maxPerPage: 50 });
    const link = (n: number, rel: string): string => {
      const q = new URLSearchParams(r.url.searchParams);
      q.set('page', String(n));
      return `<https://api.hetzner.cloud/v1/servers?${q.toString()}>; rel="${rel}"`;
    };
    const links = [pg.page > 1 ? link(pg.page - 1, 'prev') : '', pg.page < pg.last ? link(pg.page + 1, 'next') : '', link(pg.last, 'last')].filter(Boolean);
    return {
      status: 200,
      headers: { Link: links.join(', ') },
      json: {
        servers: pg.items.map((m) => this.view(m)),
        meta: {
          pagination: {
            page: pg.page,
            per_page: pg.perPage,
            previous_page: pg.page > 1 ? pg.page - 1 : null,
            next_page: pg.page < pg.last ? pg.page + 1 : null,
            last_page: pg.last,
            total_entries: all.length,
          },
        },
      },
    };
  }

  private view(m: FakeMachine): Record<string, unknown> {
    const up = this.addressed(m);
    return {
      id: Number(m.id),
      name: m.name,
      status: up ? 'running' : 'initializing',
      created: new Date(m.createdAt).toISOString(),
      public_net: {
        ipv4: up ? { id: Number(m.id) + 1000, ip: m.ip, blocked: false, dns_ptr: 'static.example.your-server.de' } : null,
        ipv6: up ? { id: Number(m.id) + 2000, ip: '2001:db8::/64', blocked: false, dns_ptr: [] } : null,
        floating_ips: [],
        firewalls: [],
      },
      private_net: [],
      server_type: { id: 22, name: m.size, cores: 2, memory: 4, disk: 80 },
      datacenter: { id: 4, name: `${m.region}-dc14`, location: { id: 1, name: m.region, city: 'Falkenstein', country: 'DE' } },
      image: { id: 161547269, type: 'system', name: m.image },
      labels: labelsOf(m),
      protection: { delete: false, rebuild: false },
      primary_disk_size: 80,
    };
  }
}

function labelsOf(m: FakeMachine): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of m.tags) {
    const i = t.indexOf('=');
    out[i < 0 ? t : t.slice(0, i)] = i < 0 ? '' : t.slice(i + 1);
  }
  return out;
}

/** The label-selector language: `k==v`, `k=v`, `k!=v`, `k`, `!k`, joined by commas (AND). */
function matches(selector: string, labels: Record<string, string>): boolean {
  return selector.split(',').every((term) => {
    const t = term.trim();
    let m: RegExpExecArray | null;
    if ((m = /^(.+?)!=(.*)$/.exec(t))) return labels[m[1] ?? ''] !== m[2];
    if ((m = /^(.+?)==?(.*)$/.exec(t))) return labels[m[1] ?? ''] === m[2];
    if (t.startsWith('!')) return !(t.slice(1) in labels);
    return t in labels;
  });
}

function action(command: string, id: string, status: string): Record<string, unknown> {
  return { id: 13, command, status, progress: 0, started: new Date().toISOString(), finished: null, resources: [{ id: Number(id), type: 'server' }], error: null };
}

function err(status: number, code: string, message: string, details: unknown = null): FakeResponse {
  return { status, json: { error: { code, message, details } } };
}
