/**
 * A fake DigitalOcean API v2 on loopback for the autoscaler's tests: images (snapshots), droplets by tag, create
 * (used by the fake docker-machine, as the real driver does), delete (404 for an unknown id). Bearer auth.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeDroplet {
  id: number;
  name: string;
  region: string;
  size: string;
  image: string;
  tags: string[];
  createdAt: number;
}

export interface FakeImage {
  id: number;
  name: string;
  regions: string[];
}

export interface FakeDigitalOcean {
  readonly url: string;
  readonly droplets: Map<number, FakeDroplet>;
  readonly images: FakeImage[];
  readonly requests: Array<{ method: string; path: string; auth: string }>;
  /** The most droplets that ever existed at once. */
  peak(): number;
  /** Adds a droplet as if something else created it (e.g. a machine whose creation was interrupted). */
  addDroplet(d: Omit<FakeDroplet, 'id' | 'createdAt'>): FakeDroplet;
  close(): Promise<void>;
}

export async function startFakeDigitalOcean(opts: { token: string; perPage?: number }): Promise<FakeDigitalOcean> {
  const droplets = new Map<number, FakeDroplet>();
  const images: FakeImage[] = [];
  const requests: FakeDigitalOcean['requests'] = [];
  let nextId = 1000;
  let peak = 0;
  const add = (d: Omit<FakeDroplet, 'id' | 'createdAt'>): FakeDroplet => {
    const droplet = { ...d, id: nextId++, createdAt: Date.now() };
    droplets.set(droplet.id, droplet);
    peak = Math.max(peak, droplets.size);
    return droplet;
  };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fake-do');
    const auth = req.headers.authorization ?? '';
    requests.push({ method: req.method ?? 'GET', path: url.pathname + url.search, auth });
    const send = (status: number, body?: unknown): void => {
      const text = body === undefined ? '' : JSON.stringify(body);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    };
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (auth !== `Bearer ${opts.token}`) return send(401, { id: 'unauthorized', message: 'Unable to authenticate you' });
      const m = /^\/v2\/droplets\/(\d+)$/.exec(url.pathname);
      if (req.method === 'GET' && url.pathname === '/v2/images') return send(200, { images, meta: { total: images.length } });
      if (req.method === 'GET' && url.pathname === '/v2/droplets') {
        const tag = url.searchParams.get('tag_name');
        const all = [...droplets.values()].filter((d) => !tag || d.tags.includes(tag));
        const perPage = Math.min(opts.perPage ?? 200, Number(url.searchParams.get('per_page') ?? 20));
        const page = Number(url.searchParams.get('page') ?? 1);
        const slice = all.slice((page - 1) * perPage, page * perPage);
        const more = page * perPage < all.length;
        const next = `http://${req.headers.host ?? ''}/v2/droplets?tag_name=${encodeURIComponent(tag ?? '')}&per_page=${perPage}&page=${page + 1}`;
        return send(200, { droplets: slice, links: more ? { pages: { next } } : {}, meta: { total: all.length } });
      }
      if (req.method === 'POST' && url.pathname === '/v2/droplets') {
        const b = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Partial<FakeDroplet>;
        return send(202, { droplet: add({ name: b.name ?? '', region: b.region ?? '', size: b.size ?? '', image: String(b.image ?? ''), tags: b.tags ?? [] }) });
      }
      if (req.method === 'DELETE' && m) {
        return droplets.delete(Number(m[1])) ? send(204) : send(404, { id: 'not_found', message: 'The resource you were accessing could not be found.' });
      }
      send(404, { id: 'not_found', message: 'not found' });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    droplets,
    images,
    requests,
    peak: () => peak,
    addDroplet: add,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
