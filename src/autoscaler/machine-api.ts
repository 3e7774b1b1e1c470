import type { Clock } from '../core';
import { abortableSleep, ClusterError } from '../core';

/**
 * The cloud side of the `api` machine driver: one implementation per cloud (DigitalOcean, Hetzner, Scaleway, AWS
 * EC2), each talking to the cloud's HTTP API directly, with no docker-machine. A machine gets its NodeODM from the
 * cloud-init user data it is created with (drivers/cloud-init.ts), so nothing is ever run over ssh.
 */

/** The tag/label key that carries the install id on every machine (`clusterodm-install`). */
export const INSTALL_TAG_KEY = 'clusterodm-install';

/** Where a machine is in its life, across the four clouds' own status words (kept in `Machine.status`). */
export type MachineState = 'pending' | 'running' | 'stopping' | 'stopped' | 'unknown';

export interface Machine {
  /** The cloud's id, opaque to callers; it carries the zone/region where the cloud needs one (`fr-par-1/<uuid>`). */
  id: string;
  name: string;
  state: MachineState;
  /** The cloud's own status word (`new`, `initializing`, `stopped`, `pending`, …). */
  status: string;
  publicIp: string | null;
  privateIp: string | null;
  /** The address ClusterODM reaches NodeODM at (public, or private when configured); null until assigned. */
  ip: string | null;
  /** Region, location or zone slug. */
  region: string;
  /** Size slug, server type, commercial type or instance type. */
  size: string;
  /** Tags or labels as `key=value` (DigitalOcean's `key:value` tags as they are). */
  tags: string[];
  /** The install id found on the machine (null: not one of ours). */
  installId: string | null;
}

export interface MachineSpec {
  /** Hostname-like name, unique per install (`clusterodm-<images>-<random>`). */
  name: string;
  region: string;
  size: string;
  /** Image slug/name/id or AMI id. */
  image: string;
  /** Cloud-init user data (rendered by drivers/cloud-init.ts); holds secrets, never logged. */
  userData: string;
  /** Tagged on the machine so listByInstall finds it, and only it. */
  installId: string;
  /** Extra tags from the configuration (`tags`). */
  tags?: readonly string[];
  /** Root disk in GB (AWS `storage`). */
  storageGb?: number;
  /** Spot maximum price (AWS `spotPrice`), when spot instances are on. */
  spotPrice?: string;
}

export interface MachinePrice {
  hourly: number;
  currency: string;
}

/** What a cloud offers the api driver. Every call throws a MachineApiError on failure. */
export interface MachineApi {
  /** `digitalocean`, `hetzner`, `scaleway`, `aws`. */
  readonly provider: string;
  /** Creates (and, on Scaleway, powers on) a machine; the address usually comes later (see waitForAddress). */
  create(spec: MachineSpec): Promise<Machine>;
  /** The machine now; null when the cloud does not know it (any more). */
  get(id: string): Promise<Machine | null>;
  /** Every live machine tagged with this install id, across all pages (and all configured zones/regions). */
  listByInstall(installId: string): Promise<Machine[]>;
  /** Destroys a machine; one that is already gone (404, not found) is a success. */
  destroy(id: string): Promise<void>;
  /** The hourly price of a size in a region; null when the cloud's API does not say (AWS). */
  hourlyPrice(size: string, region: string): Promise<MachinePrice | null>;
  /** Releases connections (the AWS SDK keeps some); optional. */
  close?(): void;
}

/** Why a call failed, as far as the caller needs to branch on it. */
export type MachineFailure =
  | 'quota'
  | 'capacity'
  | 'rate_limit'
  | 'auth'
  | 'invalid'
  | 'not_found'
  | 'conflict'
  | 'server'
  | 'network'
  | 'unknown';

const NO_CAPACITY_FAILURES: ReadonlySet<MachineFailure> = new Set(['quota', 'capacity', 'rate_limit']);
const RETRYABLE_FAILURES: ReadonlySet<MachineFailure> = new Set(['quota', 'capacity', 'rate_limit', 'server', 'network', 'conflict']);

export interface MachineApiErrorInit {
  provider: string;
  failure: MachineFailure;
  /** The cloud's message (never a request: no token, no user data). */
  message: string;
  httpStatus?: number | null;
  /** The cloud's error code (`unprocessable_entity`, `resource_limit_exceeded`, `InstanceLimitExceeded`, …). */
  cloudCode?: string | null;
  retryAfterMs?: number | null;
  cause?: unknown;
}

/**
 * A failed machine API call. `code` is `NO_CAPACITY` for quota, capacity and rate-limit refusals (the caller queues
 * the task and tries later), `MACHINE_API_FAILED` for everything else; `failure` says which, `retryable` whether
 * the same call may succeed later.
 */
export class MachineApiError extends ClusterError {
  readonly provider: string;
  readonly failure: MachineFailure;
  readonly httpStatus: number | null;
  readonly cloudCode: string | null;
  readonly retryAfterMs: number | null;
  readonly retryable: boolean;

  constructor(init: MachineApiErrorInit) {
    const code = NO_CAPACITY_FAILURES.has(init.failure) ? 'NO_CAPACITY' : 'MACHINE_API_FAILED';
    const status = init.httpStatus ? ` (HTTP ${init.httpStatus}${init.cloudCode ? ` ${init.cloudCode}` : ''})` : init.cloudCode ? ` (${init.cloudCode})` : '';
    super(code, `${init.provider}: ${init.message}${status}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'MachineApiError';
    this.provider = init.provider;
    this.failure = init.failure;
    this.httpStatus = init.httpStatus ?? null;
    this.cloudCode = init.cloudCode ?? null;
    this.retryAfterMs = init.retryAfterMs ?? null;
    this.retryable = RETRYABLE_FAILURES.has(init.failure);
  }
}

export function isNoCapacity(e: unknown): e is MachineApiError {
  return e instanceof MachineApiError && e.code === 'NO_CAPACITY';
}

/** The failure an HTTP status implies when the body names nothing more specific. */
export function failureFromStatus(status: number): MachineFailure {
  if (status === 401 || status === 403) return 'auth';
  if (status === 404) return 'not_found';
  if (status === 409 || status === 423) return 'conflict';
  if (status === 429) return 'rate_limit';
  if (status >= 500) return 'server';
  if (status >= 400) return 'invalid';
  return 'unknown';
}

export interface WaitForAddressOptions {
  clock: Clock;
  /** Give up after this long (the boot deadline's share for getting an address). */
  timeoutMs: number;
  /** Pause between two polls. */
  intervalMs: number;
  signal?: AbortSignal;
}

/**
 * Polls `get` until the machine has an address. Throws MACHINE_API_FAILED when the machine disappears, when the
 * time is up, or when `signal` aborts.
 */
export async function waitForAddress(api: MachineApi, id: string, o: WaitForAddressOptions): Promise<Machine & { ip: string }> {
  const deadline = o.clock.now() + o.timeoutMs;
  const signal = o.signal ?? new AbortController().signal;
  for (;;) {
    if (signal.aborted) throw new MachineApiError({ provider: api.provider, failure: 'unknown', message: `waiting for an address of ${id}: aborted` });
    const m = await api.get(id);
    if (!m) throw new MachineApiError({ provider: api.provider, failure: 'not_found', message: `machine ${id} disappeared before it got an address` });
    if (m.ip !== null && m.state === 'running') return { ...m, ip: m.ip };
    if (o.clock.now() >= deadline) {
      throw new MachineApiError({ provider: api.provider, failure: 'unknown', message: `machine ${id} got no address within ${Math.round(o.timeoutMs / 1000)} s` });
    }
    await abortableSleep(o.clock, o.intervalMs, signal);
  }
}

/** `key=value` for a tag or label. */
export function installTag(installId: string, sep = '='): string {
  return `${INSTALL_TAG_KEY}${sep}${installId}`;
}
