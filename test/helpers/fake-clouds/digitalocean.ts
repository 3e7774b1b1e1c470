/**
 * A fake DigitalOcean API v2 (clouds.md §1) on loopback: droplets create/get/list by tag (page/per_page, max 200,
 * `links.pages`, `meta.total`)/delete (204, 404), sizes with prices, private images; Bearer auth; `ratelimit-*`
 * headers; errors as `{"id", "message"}`: 422 for the droplet limit (the observed text) and bad input, 429 with
 * `retry-after`, 500. The address appears on GET after `ipAfterPolls` reads, with status `active`.
 */
import { FakeCloudBase, paginate, type FakeMachine, type FakeRequest, type FakeResponse } from './common';

export interface FakeDoSize {
  slug: string;
  price_hourly: number;
}

const TAG = /^[a-zA-Z0-9_\-:]+$/;

export class FakeDigitalOceanApi extends FakeCloudBase {
  readonly sizes: FakeDoSize[] = [
    { slug: 's-1vcpu-1gb', price_hourly: 0.00893 },
    { slug: 's-4vcpu-8gb', price_hourly: 0.07143 },
  ];
  readonly images: Array<{ id: number; name: string; regions: string[] }> = [];
  private nextId = 3164444;

  constructor(private readonly token: string) {
    super();
  }

  static async start(token: string): Promise<FakeDigitalOceanApi> {
    const f = new FakeDigitalOceanApi(token);
    await f.listen((r) => f.handle(r));
    return f;
  }

  /** A droplet made by someone else (another install, by hand) on the same account. */
  addDroplet(d: { name: string; tags: string[]; region?: string; size?: string }): FakeMachine {
    return this.add({ name: d.name, tags: d.tags, region: d.region ?? 'nyc3', size: d.size ?? 's-1vcpu-1gb', image: 'ubuntu-24-04-x64', userData: '', createBody: null });
  }

  private add(p: Pick<FakeMachine, 'name' | 'tags' | 'region' | 'size' | 'image' | 'userData' | 'createBody'>): FakeMachine {
    const m: FakeMachine = { ...p, id: String(this.nextId++), ip: this.allocIp(), privateIp: '10.10.0.5', polls: 0, createdAt: Date.now(), boot: null, state: 'new' };
    this.machines.set(m.id, m);
    return m;
  }

  private handle(r: FakeRequest): FakeResponse | Promise<FakeResponse> {
    const headers = { 'ratelimit-limit': '5000', 'ratelimit-remaining': '4999', 'ratelimit-reset': String(Math.floor(Date.now() / 1000) + 60) };
    const res = this.route(r);
    if (res instanceof Promise) return res.then((x) => ({ ...x, headers: { ...headers, ...x.headers } }));
    return { ...res, headers: { ...headers, ...res.headers } };
  }

  private route(r: FakeRequest): FakeResponse | Promise<FakeResponse> {
    if (r.headers.authorization !== `Bearer ${this.token}`) return err(401, 'unauthorized', 'Unable to authenticate you');
    if (this.take('rateLimited')) return { ...err(429, 'too_many_requests', 'API Rate limit exceeded.'), headers: { 'retry-after': '2' } };
    const p = r.url.pathname;
    const one = /^\/v2\/droplets\/(\d+)$/.exec(p);
    if (r.method === 'POST' && p === '/v2/droplets') return this.create(r);
    if (r.method === 'GET' && p === '/v2/droplets') return this.list(r);
    if (one && r.method === 'GET') {
      const m = this.machines.get(one[1] ?? '');
      if (!m) return notFound();
      this.poll(m);
      return { status: 200, json: { droplet: this.view(m) } };
    }
    if (one && r.method === 'DELETE') {
      const id = one[1] ?? '';
      if (!this.machines.has(id)) return notFound();
      return this.remove(id).then(() => ({ status: 204 }));
    }
    if (r.method === 'GET' && p === '/v2/sizes') {
      const pg = paginate(this.sizes, r.url, { perPage: 20, maxPerPage: 200 });
      return { status: 200, json: { sizes: pg.items, links: this.links('/v2/sizes', r.url, pg), meta: { total: this.sizes.length } } };
    }
    if (r.method === 'GET' && p === '/v2/images') {
      const pg = paginate(this.images, r.url, { perPage: 20, maxPerPage: 200 });
      return { status: 200, json: { images: pg.items, links: this.links('/v2/images', r.url, pg), meta: { total: this.images.length } } };
    }
    return notFound();
  }

  private create(r: FakeRequest): FakeResponse {
    let b: Record<string, unknown>;
    try {
      b = JSON.parse(r.body) as Record<string, unknown>;
    } catch {
      return err(400, 'bad_request', 'unexpected end of JSON input');
    }
    for (const k of ['name', 'size', 'image']) {
      if (b[k] === undefined || b[k] === '') return err(422, 'unprocessable_entity', `${k} is required`);
    }
    const tags = Array.isArray(b['tags']) ? b['tags'].map(String) : [];
    const bad = tags.find((t) => !TAG.test(t));
    if (bad !== undefined) return err(422, 'unprocessable_entity', `tag "${bad}" is invalid`);
    const userData = typeof b['user_data'] === 'string' ? b['user_data'] : '';
    if (Buffer.byteLength(userData) > 64 * 1024) return err(422, 'unprocessable_entity', 'user_data is too long');
    if (this.overLimit() || this.knobs.noCapacity) return err(422, 'unprocessable_entity', 'creating this/these droplet(s) will exceed your droplet limit');
    if (this.take('failCreates')) return err(500, 'server_error', 'Server Error');
    const m = this.add({ name: String(b['name']), tags, region: String(b['region'] ?? 'nyc3'), size: String(b['size']), image: String(b['image']), userData, createBody: b });
    this.startBoot(m);
    const view = this.view(m);
    return { status: 202, json: { droplet: { ...view, status: 'new', networks: { v4: [], v6: [] } }, links: { actions: [{ id: 36804636, rel: 'create', href: `${this.url}/v2/actions/36804636` }] } } };
  }

  private list(r: FakeRequest): FakeResponse {
    const tag = r.url.searchParams.get('tag_name');
    // DigitalOcean tags are case-insensitive.
    const all = [...this.machines.values()].filter((m) => tag === null || m.tags.some((t) => t.toLowerCase() === tag.toLowerCase()));
    const pg = paginate(all, r.url, { perPage: 20, maxPerPage: 200 });
    return { status: 200, json: { droplets: pg.items.map((m) => this.view(m)), links: this.links('/v2/droplets', r.url, pg), meta: { total: all.length } } };
  }

  private links(path: string, url: URL, pg: { page: number; perPage: number; last: number }): Record<string, unknown> {
    if (pg.last <= 1) return {};
    const at = (n: number): string => {
      const q = new URLSearchParams(url.searchParams);
      q.set('page', String(n));
      q.set('per_page', String(pg.perPage));
      // The real API answers with its own host; a client must not send its token wherever a link points.
      return `https://api.digitalocean.com${path}?${q.toString()}`;
    };
    const pages: Record<string, string> = {};
    if (pg.page > 1) Object.assign(pages, { first: at(1), prev: at(pg.page - 1) });
    if (pg.page < pg.last) Object.assign(pages, { next: at(pg.page + 1), last: at(pg.last) });
    return { pages };
  }

  private view(m: FakeMachine): Record<string, unknown> {
    const up = this.addressed(m);
    const price = this.sizes.find((s) => s.slug === m.size)?.price_hourly ?? 0.01;
    return {
      id: Number(m.id),
      name: m.name,
      memory: 1024,
      vcpus: 1,
      disk: 25,
      locked: false,
      status: up ? 'active' : 'new',
      created_at: new Date(m.createdAt).toISOString(),
      image: { slug: m.image, name: m.image },
      size: { slug: m.size, price_hourly: price },
      size_slug: m.size,
      networks: up
        ? {
            v4: [
              { ip_address: m.privateIp, netmask: '255.255.0.0', gateway: '10.10.0.1', type: 'private' },
              { ip_address: m.ip, netmask: '255.255.240.0', gateway: '127.78.0.1', type: 'public' },
            ],
            v6: [],
          }
        : { v4: [], v6: [] },
      region: { slug: m.region, name: m.region },
      tags: m.tags,
      vpc_uuid: '760e09ef-dc84-11e8-981e-3cfdfeaae000',
    };
  }
}

function err(status: number, id: string, message: string): FakeResponse {
  return { status, json: { id, message, request_id: '4d9d8375-3c56-4925-a3e7-eceb6e30c7a1' } };
}

function notFound(): FakeResponse {
  return err(404, 'not_found', 'The resource you were accessing could not be found.');
}
