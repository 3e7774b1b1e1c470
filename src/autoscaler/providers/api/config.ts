import type { Clock } from '../../../core';
import type { S3Settings } from '../../s3';
import { AsrConfig, CHANGE_ME, mergeConfig, type ConfigObject } from '../../asr-config';
import { cloudInitSettings, type CloudInitParams } from '../../drivers/cloud-init';
import type { MachineApi, MachineSpec } from '../../machine-api';
import { DIGITALOCEAN_DEFAULTS } from '../digitalocean';
import { AwsMachineApi } from './aws';
import { DigitalOceanMachineApi } from './digitalocean';
import { HetznerMachineApi } from './hetzner';
import type { FetchLike } from './http';
import { MachinePlanner } from './plan';
import { parsePrices, PriceBook } from './prices';
import { ScalewayMachineApi } from './scaleway';

/**
 * A cloud as the `api` driver uses it, built from the ASR file: its machine API, the size/region plan, the limit
 * key and the cloud-init settings. The lifecycle (a later step) creates machines through this and nothing else.
 */
export interface ApiProvider {
  readonly name: string;
  readonly api: MachineApi;
  canHandle(images: number): boolean;
  /** The spec of the machine for a task of `images` at creation attempt `attempt` (1-based: regions rotate). */
  machineSpec(r: { images: number; attempt: number; name: string; installId: string; userData: string }): Promise<MachineSpec>;
  /** `dropletsLimit`, `machinesLimit` or `instanceLimit`; -1 = none. */
  machinesLimit(): number;
  readonly cloudInit: Omit<CloudInitParams, 'nodeToken' | 'webhookUrl'>;
  /** Every secret of the configuration, for masking. */
  secrets(): string[];
  /** Logged at start (`ASR: digitalocean (api driver)`). */
  readonly className: string;
  readonly s3: S3Settings;
  createRetries(): number;
  /** Pause after a failed attempt (1-based), as the docker-machine path. */
  failureSleepMs(attempt: number): number;
  /** Seconds; -1 = none. */
  maxRuntime(): number;
  maxUploadTime(): number;
  /** `bootTimeout` (seconds, default 600): from the create call until NodeODM answers /info with its token. */
  bootTimeoutMs(): number;
  /** `maxHourlySpend`: a create that would take the machines' hourly total over it counts as "no capacity"; -1 = none. */
  maxHourlySpend(): number;
  /** Hourly prices: `prices` in the file, else the cloud's size list (cached). */
  readonly prices: PriceBook;
}

/** Default `bootTimeout`: installing Docker and pulling NodeODM takes minutes on a fresh image. */
export const DEFAULT_BOOT_TIMEOUT_S = 600;

export interface ApiProviderDeps {
  clock: Clock;
  /** HTTP clients (DigitalOcean, Hetzner, Scaleway). */
  fetch?: FetchLike;
  /** AWS SDK attempts per call. */
  awsMaxAttempts?: number;
}

const S3_KEYS = ['s3.accessKey', 's3.secretKey', 's3.endpoint', 's3.bucket'];
const COMMON = {
  maxRuntime: -1,
  maxUploadTime: -1,
  createRetries: 1,
  minImages: -1,
  addSwap: 1,
  dockerImage: 'opendronemap/nodeodm',
  dockerGpu: false,
  dockerRegistry: { username: '', password: '', url: '' },
  tags: ['clusterodm'],
};
const S3_DEFAULT = { accessKey: CHANGE_ME, secretKey: CHANGE_ME, endpoint: CHANGE_ME, bucket: CHANGE_ME, ignoreSSL: false };

/** Defaults of the api driver: the original's keys (SPEC §8.7–8.10) with images that still exist and have cloud-init. */
export const API_DEFAULTS: Readonly<Record<string, ConfigObject>> = {
  digitalocean: { ...DIGITALOCEAN_DEFAULTS, image: 'ubuntu-24-04-x64' },
  hetzner: {
    ...COMMON,
    apiToken: CHANGE_ME,
    s3: S3_DEFAULT,
    machinesLimit: -1,
    location: 'fsn1',
    image: 'ubuntu-24.04',
    sshKey: { name: '' },
    imageSizeMapping: [
      { maxImages: 5, slug: 'cpx22' },
      { maxImages: 50, slug: 'cpx42' },
    ],
    apiUrl: 'https://api.hetzner.cloud',
  },
  scaleway: {
    ...COMMON,
    secretToken: CHANGE_ME,
    organization: CHANGE_ME,
    projectId: '',
    s3: S3_DEFAULT,
    machinesLimit: -1,
    region: 'fr-par-1',
    image: 'ubuntu_noble',
    imageSizeMapping: [
      { maxImages: 5, slug: 'GP1-XS' },
      { maxImages: 50, slug: 'GP1-S' },
    ],
    apiUrl: 'https://api.scaleway.com',
  },
  aws: {
    ...COMMON,
    accessKey: CHANGE_ME,
    secretKey: CHANGE_ME,
    s3: { endpoint: CHANGE_ME, bucket: CHANGE_ME, acl: 'public-read' },
    instanceLimit: -1,
    region: 'us-west-2',
    zone: '',
    vpc: '',
    subnet: '',
    securityGroup: CHANGE_ME,
    usePrivateAddress: false,
    assignPrivateAddressOnly: false,
    monitoring: false,
    ami: CHANGE_ME,
    spot: false,
    iamrole: '',
    keyName: '',
    rootDeviceName: '/dev/sda1',
    nodeSetupCmd: '',
    dockerDataDirMountPath: '',
    imageSizeMapping: [
      { maxImages: 5, slug: 't2.micro', spotPrice: 0.1, storage: 10 },
      { maxImages: 50, slug: 't2.medium', spotPrice: 0.1, storage: 100 },
    ],
    endpoint: '',
  },
};

/** Builds the api driver's provider from the user's ASR object (defaults merged key by key). Throws the operator's message. */
export function apiProviderFromConfig(user: ConfigObject, deps: ApiProviderDeps): ApiProvider {
  const name = String(user['provider'] ?? '');
  const defaults = Object.prototype.hasOwnProperty.call(API_DEFAULTS, name) ? API_DEFAULTS[name] : undefined;
  if (!defaults) throw new Error(`Unknown ASR provider "${name}" for the api driver (available: ${Object.keys(API_DEFAULTS).join(', ')})`);
  const c = new AsrConfig(mergeConfig(defaults, user));
  const fetchOpt = deps.fetch ? { fetch: deps.fetch } : {};
  switch (name) {
    case 'digitalocean': {
      c.require(['accessToken', ...S3_KEYS]);
      const api = new DigitalOceanMachineApi({
        baseUrl: c.string('apiUrl'),
        token: c.string('accessToken'),
        monitoring: c.boolean('monitoring', true),
        sshKeys: c.string('sshKey.fingerprint') ? [c.string('sshKey.fingerprint')] : [],
        ...fetchOpt,
      });
      return build(name, c, api, deps.clock, 'region', 'dropletsLimit', ['accessToken'], async (image) => {
        if (!c.boolean('snapshot', false)) return { image };
        const snap = await api.findSnapshot(image);
        if (!snap) throw new Error(`Snapshot ${image} not found.`);
        return { image: snap.id, regions: snap.regions };
      });
    }
    case 'hetzner': {
      c.require(['apiToken', 'image', ...S3_KEYS]);
      const key = c.string('sshKey.name');
      const api = new HetznerMachineApi({ baseUrl: c.string('apiUrl'), token: c.string('apiToken'), clock: deps.clock, sshKeys: key ? [key] : [], ...fetchOpt });
      return build(name, c, api, deps.clock, 'location', 'machinesLimit', ['apiToken']);
    }
    case 'scaleway': {
      c.require(['secretToken', ...S3_KEYS]);
      const project = c.string('projectId') || c.string('organization');
      if (!project || project === CHANGE_ME) throw new Error('You need to create a configuration file and set projectId.');
      const api = new ScalewayMachineApi({ baseUrl: c.string('apiUrl'), secretKey: c.string('secretToken'), projectId: project, zones: c.stringArray('region'), ...fetchOpt });
      return build(name, c, api, deps.clock, 'region', 'machinesLimit', ['secretToken']);
    }
    default: {
      c.require(['accessKey', 'secretKey', 's3.endpoint', 's3.bucket', 's3.acl', 'securityGroup', 'ami']);
      const api = new AwsMachineApi({
        accessKey: c.string('accessKey'),
        secretKey: c.string('secretKey'),
        regions: c.stringArray('region'),
        securityGroup: c.string('securityGroup'),
        vpc: c.string('vpc'),
        subnet: c.string('subnet'),
        zone: c.string('zone'),
        iamRole: c.string('iamrole') || c.string('iamRole'),
        monitoring: c.boolean('monitoring', false),
        spot: c.boolean('spot', false),
        usePrivateAddress: c.boolean('usePrivateAddress', false),
        privateAddressOnly: c.boolean('assignPrivateAddressOnly', false),
        keyName: c.string('keyName'),
        rootDeviceName: c.string('rootDeviceName', '/dev/sda1'),
        clock: deps.clock,
        ...(c.string('endpoint') ? { endpoint: c.string('endpoint') } : {}),
        ...(deps.awsMaxAttempts ? { maxAttempts: deps.awsMaxAttempts } : {}),
      });
      return build(name, c, api, deps.clock, 'region', 'instanceLimit', ['accessKey', 'secretKey'], async () => ({ image: c.string('ami') }));
    }
  }
}

type ImageResolver = (image: string) => Promise<{ image: string; regions?: string[] }>;

function build(
  name: string,
  c: AsrConfig,
  api: MachineApi,
  clock: Clock,
  regionKey: string,
  limitKey: string,
  secretKeys: string[],
  resolve?: ImageResolver,
): ApiProvider {
  const planner = new MachinePlanner(c, regionKey);
  const cloudInit = cloudInitSettings(c, name);
  for (const k of ['maxRuntime', 'maxUploadTime', limitKey, 'createRetries', 'minImages', 'addSwap', 'bootTimeout']) c.number(k, 0);
  const bootTimeout = c.number('bootTimeout', DEFAULT_BOOT_TIMEOUT_S);
  if (bootTimeout <= 0) throw new Error('Invalid config key bootTimeout: must be a number of seconds > 0');
  const regions = Math.max(1, planner.regionList().length);
  const tags = c.stringArray('tags');
  const maxSpend = c.number('maxHourlySpend', -1);
  if (maxSpend < 0 && maxSpend !== -1) throw new Error('Invalid config key maxHourlySpend: must be a price per hour >= 0 (or -1 for none)');
  const prices = new PriceBook(api, parsePrices(c), clock);
  return {
    name,
    className: `${name} (api driver)`,
    api,
    cloudInit,
    s3: cloudInit.s3,
    createRetries: () => Math.max(1, c.number('createRetries', 1)),
    failureSleepMs: (attempt) => (attempt <= regions ? 1000 : 10_000 * (attempt - regions)),
    maxRuntime: () => c.number('maxRuntime', -1),
    maxUploadTime: () => c.number('maxUploadTime', -1),
    bootTimeoutMs: () => bootTimeout * 1000,
    maxHourlySpend: () => maxSpend,
    prices,
    canHandle: (images) => planner.canHandle(images),
    machinesLimit: () => c.number(limitKey, -1),
    async machineSpec(r) {
      const plan = planner.plan(r.images, r.attempt);
      const img = resolve ? await resolve(c.string('image')) : { image: c.string('image') };
      // A snapshot that is not in the planned region: its first region instead (the original's fallback).
      const region = img.regions && img.regions.length > 0 && !img.regions.includes(plan.region) ? (img.regions[0] ?? plan.region) : plan.region;
      return { ...plan, region, image: img.image, name: r.name, installId: r.installId, userData: r.userData, tags };
    },
    secrets: () => [
      ...new Set(
        [...secretKeys.map((k) => c.string(k)), cloudInit.s3.accessKey, cloudInit.s3.secretKey, cloudInit.registry?.password ?? ''].filter(
          (s) => s !== '' && s !== CHANGE_ME,
        ),
      ),
    ],
  };
}
