import * as fs from 'node:fs';
import type { Logger } from '../../core';
import { errorMessage } from '../../core';
import { AsrConfig, isObject, type ConfigObject } from '../asr-config';
import type { AsrProvider, CloudMachine, MachineShell, SetupParams } from '../provider';
import type { S3Settings } from '../s3';
import { command, quote } from '../shell';

/** The original's defaults (SPEC §8.7). `apiUrl` is new: the DigitalOcean API base (tests point it at a fake). */
export const DIGITALOCEAN_DEFAULTS: ConfigObject = {
  accessToken: 'CHANGEME!',
  s3: { accessKey: 'CHANGEME!', secretKey: 'CHANGEME!', endpoint: 'CHANGEME!', bucket: 'CHANGEME!', ignoreSSL: false },
  maxRuntime: -1,
  maxUploadTime: -1,
  dropletsLimit: -1,
  createRetries: 1,
  region: 'nyc3',
  monitoring: true,
  tags: ['clusterodm'],
  image: 'ubuntu-16-04-x64',
  snapshot: false,
  sshKey: { fingerprint: '', path: '' },
  imageSizeMapping: [
    { maxImages: 5, slug: 's-1vcpu-1gb' },
    { maxImages: 50, slug: 's-4vcpu-8gb' },
  ],
  minImages: -1,
  addSwap: 1,
  dockerImage: 'opendronemap/nodeodm',
  dockerGpu: false,
  dockerRegistry: { username: '', password: '', url: '' },
  apiUrl: 'https://api.digitalocean.com',
};

interface SizeMapping {
  maxImages: number;
  slug: string;
}

export interface DigitalOceanDeps {
  logger: Logger;
  fetch?: (url: string, init?: RequestInit) => Promise<Response>;
  apiTimeoutMs?: number;
}

/** DigitalOcean droplets through docker-machine's `digitalocean` driver. */
export class DigitalOceanAsrProvider implements AsrProvider {
  readonly name = 'digitalocean';
  readonly className = 'DigitalOceanAsrProvider';
  readonly driver = 'digitalocean';
  readonly servicePort = 3000;
  private readonly c: AsrConfig;
  private readonly d: DigitalOceanDeps;
  private mapping: SizeMapping[] = [];

  constructor(config: AsrConfig, deps: DigitalOceanDeps) {
    this.c = config;
    this.d = deps;
  }

  get s3(): S3Settings {
    return {
      accessKey: this.c.string('s3.accessKey'),
      secretKey: this.c.string('s3.secretKey'),
      endpoint: this.c.string('s3.endpoint'),
      bucket: this.c.string('s3.bucket'),
      ignoreSSL: this.c.boolean('s3.ignoreSSL', false),
      acl: this.c.string('s3.acl', ''),
    };
  }

  validate(): void {
    this.c.require(['accessToken', 's3.accessKey', 's3.secretKey', 's3.endpoint', 's3.bucket']);
    this.c.boolean('s3.ignoreSSL', false);
    const raw = this.c.get('imageSizeMapping');
    if (!Array.isArray(raw)) throw new Error('Invalid config key imageSizeMapping: must be an array');
    this.mapping = raw
      .map((m: unknown, i): SizeMapping => {
        if (!isObject(m) || typeof m['maxImages'] !== 'number' || typeof m['slug'] !== 'string' || m['slug'] === '') {
          throw new Error(`Invalid config key imageSizeMapping[${i}]: needs a number maxImages and a slug`);
        }
        return { maxImages: m['maxImages'], slug: m['slug'] };
      })
      .sort((a, b) => a.maxImages - b.maxImages);
    if (this.c.stringArray('region').length === 0) throw new Error('You need to create a configuration file and set region.');
    for (const k of ['maxRuntime', 'maxUploadTime', 'dropletsLimit', 'createRetries', 'minImages', 'addSwap']) {
      this.c.number(k, 0);
    }
    if (this.createRetries() < 1) throw new Error('Invalid config key createRetries: must be at least 1');
    const keyPath = this.c.string('sshKey.path');
    if (keyPath) {
      this.d.logger.info('Using existing SSH key');
      if (!fs.existsSync(keyPath)) throw new Error('Invalid config key sshKey.path: file does not exist');
    }
  }

  canHandle(images: number): boolean {
    const min = this.c.number('minImages', -1);
    return this.sizeFor(images) !== null && (min === -1 || images >= min);
  }

  private sizeFor(images: number): string | null {
    return this.mapping.find((m) => m.maxImages >= images)?.slug ?? null;
  }

  async createArgs(images: number, attempt: number): Promise<string[]> {
    const slug = this.sizeFor(images);
    if (!slug) throw new Error(`Cannot handle ${images} images.`);
    const regions = this.c.stringArray('region');
    let region = regions[(attempt - 1) % regions.length] ?? 'nyc3';
    let image = this.c.string('image');
    if (this.c.boolean('snapshot', false)) {
      const snap = await this.snapshot(image);
      image = snap.id;
      if (!snap.regions.includes(region)) {
        const other = snap.regions[0];
        if (!other) throw new Error('Snapshot found, but not available in any region.');
        this.d.logger.warn(`Snapshot ${this.c.string('image')} is not available in ${region}, using ${other} instead`);
        region = other;
      }
    }
    const args = [
      '--digitalocean-access-token',
      this.c.string('accessToken'),
      '--digitalocean-region',
      region,
      '--digitalocean-image',
      image,
      '--digitalocean-size',
      slug,
    ];
    if (this.c.boolean('monitoring', true)) args.push('--digitalocean-monitoring=true');
    const tags = this.c.stringArray('tags');
    if (tags.length > 0) args.push('--digitalocean-tags', tags.join(','));
    const fp = this.c.string('sshKey.fingerprint');
    if (fp) args.push('--digitalocean-ssh-key-fingerprint', fp);
    const keyPath = this.c.string('sshKey.path');
    if (keyPath) args.push('--digitalocean-ssh-key-path', keyPath);
    const engine = this.c.string('engineInstallUrl');
    if (engine) args.push('--engine-install-url', engine);
    return args;
  }

  createRetries(): number {
    return this.c.number('createRetries', 1);
  }

  /** 1 s while each region gets its first try, then 10 s × the attempts past that (the original's schedule). */
  failureSleepMs(attempt: number): number {
    const regions = Math.max(1, this.c.stringArray('region').length);
    return attempt <= regions ? 1000 : 10_000 * (attempt - regions);
  }

  machinesLimit(): number {
    return this.c.number('dropletsLimit', -1);
  }

  maxRuntime(): number {
    return this.c.number('maxRuntime', -1);
  }

  maxUploadTime(): number {
    return this.c.number('maxUploadTime', -1);
  }

  /** Swap, registry login and the NodeODM container, each over ssh, every value quoted (SPEC §8.7, §12 item 28). */
  async setupMachine(shell: MachineShell, p: SetupParams): Promise<void> {
    const addSwap = this.c.number('addSwap', 1);
    if (addSwap > 0) {
      shell.step('Adding swap');
      const out = (await shell.ssh("awk '/MemTotal/ {print $2}' /proc/meminfo")).trim();
      const kb = Number(out);
      if (out === '' || !Number.isFinite(kb)) throw new Error(`Failed to allocate swap: ${out}`);
      const bytes = Math.ceil(kb * addSwap * 1024);
      await shell.ssh(
        `fallocate -l ${quote(bytes)} /swapfile && chmod 600 /swapfile && mkswap /swapfile && swapon /swapfile && free -h`,
      );
    }
    const reg = { url: this.c.string('dockerRegistry.url'), user: this.c.string('dockerRegistry.username'), pass: this.c.string('dockerRegistry.password') };
    if (reg.url) {
      shell.step('Logging in to the docker registry');
      // The password goes through stdin, not the remote command line's arguments.
      await shell.ssh(`printf '%s' ${quote(reg.pass)} | docker login -u ${quote(reg.user)} --password-stdin ${quote(reg.url)}`);
    }
    shell.step('Starting NodeODM');
    await shell.ssh(this.dockerRunCommand(p));
  }

  dockerRunCommand(p: SetupParams): string {
    const s3 = this.s3;
    const words: string[] = ['docker', 'run', '-d', '-p', `${this.servicePort}:3000`];
    if (this.c.boolean('dockerGpu', false)) words.push('--gpus', 'all');
    words.push(this.c.string('dockerImage'), '-q', '1');
    words.push('--s3_access_key', s3.accessKey, '--s3_secret_key', s3.secretKey, '--s3_endpoint', s3.endpoint, '--s3_bucket', s3.bucket);
    if (s3.ignoreSSL) words.push('--s3_ignore_ssl');
    if (s3.acl) words.push('--s3_acl', s3.acl);
    words.push('--webhook', p.webhookUrl, '--token', p.nodeToken);
    return command(words);
  }

  async listTaggedMachines(): Promise<CloudMachine[]> {
    const tag = this.c.stringArray('tags')[0];
    if (!tag) return [];
    const out: CloudMachine[] = [];
    let url: string | null = `${this.apiBase()}/v2/droplets?tag_name=${encodeURIComponent(tag)}&per_page=200&page=1`;
    for (let page = 0; url && page < 100; page++) {
      const body = await this.api(url);
      const droplets = isObject(body) && Array.isArray(body['droplets']) ? body['droplets'] : [];
      for (const d of droplets) {
        if (isObject(d) && (typeof d['id'] === 'number' || typeof d['id'] === 'string') && typeof d['name'] === 'string') {
          out.push({ id: String(d['id']), name: d['name'] });
        }
      }
      const links = isObject(body) ? body['links'] : undefined;
      const pages = isObject(links) ? links['pages'] : undefined;
      const next = isObject(pages) ? pages['next'] : undefined;
      url = typeof next === 'string' ? next : null;
    }
    return out;
  }

  async deleteMachine(id: string): Promise<void> {
    const res = await this.request(`${this.apiBase()}/v2/droplets/${encodeURIComponent(id)}`, 'DELETE');
    // 404: already gone.
    if (res.status !== 204 && res.status !== 200 && res.status !== 202 && res.status !== 404) {
      throw new Error(`Cannot contact DigitalOcean API: ${res.status}`);
    }
  }

  secrets(): string[] {
    const s3 = this.s3;
    return [this.c.string('accessToken'), s3.accessKey, s3.secretKey, this.c.string('dockerRegistry.password')].filter((s) => s !== '');
  }

  private async snapshot(name: string): Promise<{ id: string; regions: string[] }> {
    const body = await this.api(`${this.apiBase()}/v2/images?page=1&per_page=9999999&private=true`);
    const images = isObject(body) && Array.isArray(body['images']) ? body['images'] : [];
    const img = images.find((i: unknown) => isObject(i) && i['name'] === name);
    if (!isObject(img)) throw new Error(`Snapshot ${name} not found.`);
    const regions = Array.isArray(img['regions']) ? img['regions'].filter((r): r is string => typeof r === 'string') : [];
    return { id: String(img['id']), regions };
  }

  private apiBase(): string {
    return this.c.string('apiUrl', 'https://api.digitalocean.com').replace(/\/+$/, '');
  }

  private async api(url: string): Promise<unknown> {
    const res = await this.request(url, 'GET');
    if (res.status !== 200) throw new Error(`Cannot contact DigitalOcean API: ${res.status}`);
    try {
      return (await res.json()) as unknown;
    } catch {
      throw new Error('Cannot contact DigitalOcean API: invalid JSON answer');
    }
  }

  private async request(url: string, method: string): Promise<Response> {
    const f = this.d.fetch ?? ((u: string, i?: RequestInit) => fetch(u, i));
    try {
      return await f(url, {
        method,
        headers: { Authorization: `Bearer ${this.c.string('accessToken')}` },
        signal: AbortSignal.timeout(this.d.apiTimeoutMs ?? 10_000),
      });
    } catch (e: unknown) {
      throw new Error(`Cannot contact DigitalOcean API: ${errorMessage(e)}`);
    }
  }
}
