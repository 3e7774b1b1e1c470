import type { NodeEndpoint, NodeInfo } from '../nodeodm';
import { isRecord, isValidHostname } from '../core';

/** How long after the last successful refresh a node counts as online. */
export const ONLINE_WINDOW_MS = 2 * 60 * 1000;

export interface DockerMachineRecord {
  name: string;
  created: number;
  maxRuntime: number;
  maxUploadTime: number;
  /** sha256 (hex) of the secret the machine's NodeODM sends with its webhook (new; the original had none). */
  secretHash?: string;
  /** The cloud's id of the machine (api driver); absent for docker-machine machines. */
  machineId?: string;
  /** api driver: size and region it was created with, and its hourly price then (admin page, maxHourlySpend). */
  size?: string;
  region?: string;
  hourlyPrice?: number;
  currency?: string;
}

/** The persisted part of a node: one element of data/nodes.json, in the original's format. */
export interface NodeRecord {
  hostname: string;
  /** A number or a string, as the original stores whatever was given. */
  port: number | string;
  token: string;
  locked?: boolean;
  dockerMachine?: DockerMachineRecord;
  /** Keys we do not know are kept so that a file from another version round-trips unchanged. */
  extra?: Record<string, unknown>;
}

/** Canonical identity of a node: `"3000"` and `3000` are the same node. */
export function nodeKey(hostname: string, port: number | string): string {
  return `${hostname.toLowerCase()}:${Number(port)}`;
}

/** A set secret as shown to admins: always the same mask, so neither its characters nor its length show. */
export const MASKED_SECRET = '********';

/** Masks a secret for display: "" stays "" (there is none), anything else is MASKED_SECRET. */
export function maskSecret(secret: string): string {
  return secret ? MASKED_SECRET : '';
}

/** A NodeODM backend: its persisted record plus runtime state (last /info, refresh time, turn, transients). */
export class ClusterNode implements NodeEndpoint {
  readonly record: NodeRecord;
  info: NodeInfo = {};
  /** ms epoch of the last successful /info; 0 after a failed poll (as the original). */
  lastRefreshed = 0;
  /** ms epoch of the last time the node was seen online; survives failed polls (used by the vacuum). */
  lastSeenOnline = 0;
  /** Round-robin tie-break counter. */
  turn = 0;
  /** Forwards in flight to this node, counted against its free slots. */
  transients = 0;
  /**
   * Uploads streamed to this node that their clients have not committed yet. Not counted against its free slots
   * (the node runs nothing for them, and may never: an upload can be abandoned); see selectStreamingNode.
   */
  uploads = 0;
  /**
   * False when the hostname is neither a DNS name nor an IP literal (only possible for an entry loaded from
   * nodes.json): such a node is never polled, never online, and nothing is ever sent to it.
   */
  readonly addressable: boolean;

  constructor(record: NodeRecord) {
    this.record = record;
    this.addressable = isValidHostname(record.hostname);
  }

  get hostname(): string {
    return this.record.hostname;
  }

  get port(): number | string {
    return this.record.port;
  }

  get token(): string {
    return this.record.token;
  }

  get key(): string {
    return nodeKey(this.record.hostname, this.record.port);
  }

  /** host:port as shown to users. */
  get name(): string {
    return `${this.record.hostname}:${this.record.port}`;
  }

  /** https for port 443 whether it was stored as a number or a string (the original only matched the number). */
  get baseUrl(): string {
    const scheme = Number(this.record.port) === 443 ? 'https' : 'http';
    const host = this.record.hostname.includes(':') ? `[${this.record.hostname}]` : this.record.hostname;
    return `${scheme}://${host}:${Number(this.record.port)}`;
  }

  isOnline(now: number): boolean {
    return this.addressable && this.lastRefreshed > 0 && this.lastRefreshed >= now - ONLINE_WINDOW_MS;
  }

  isLocked(): boolean {
    return this.record.locked === true;
  }

  isAutoSpawned(): boolean {
    return this.record.dockerMachine !== undefined;
  }

  maxImages(): number | null {
    const m = this.info.maxImages;
    return typeof m === 'number' && m > 0 ? m : null;
  }

  availableSlots(): number {
    return Math.max(0, (this.info.maxParallelTasks ?? 0) - (this.info.taskQueueCount ?? 0) - this.transients);
  }

  queueCount(): number {
    return this.info.taskQueueCount ?? 0;
  }

  getVersion(): string {
    return this.info.version ?? '?';
  }

  getEngineInfo(): string {
    return this.info.engine !== undefined ? `${this.info.engine} ${this.info.engineVersion ?? '?'}` : '?';
  }

  getMaxParallelTasks(): number | '?' {
    return this.info.maxParallelTasks ?? '?';
  }

  getTaskQueueCount(): number | '?' {
    return this.info.taskQueueCount ?? '?';
  }

  /** The persisted form, exactly as the original's Node.toJSON (no info, no lastRefreshed). */
  toJSON(): Record<string, unknown> {
    const { extra, ...known } = this.record;
    const out: Record<string, unknown> = { ...(extra ?? {}), hostname: known.hostname, port: known.port, token: known.token };
    if (known.locked !== undefined) out['locked'] = known.locked;
    if (known.dockerMachine !== undefined) out['dockerMachine'] = known.dockerMachine;
    return out;
  }

  /** The node as shown to admins (NODE INFO, ROUTE ..., web): the token is masked. */
  toPublicJSON(withRuntime: boolean): Record<string, unknown> {
    const out = this.toJSON();
    out['token'] = maskSecret(this.record.token);
    if (this.record.dockerMachine?.secretHash !== undefined) {
      const { secretHash: _hidden, ...dm } = this.record.dockerMachine;
      out['dockerMachine'] = dm;
    }
    if (withRuntime) {
      out['info'] = this.info;
      out['lastRefreshed'] = this.lastRefreshed;
    }
    return out;
  }
}

const KNOWN_KEYS = new Set(['hostname', 'port', 'token', 'locked', 'dockerMachine', 'info', 'lastRefreshed']);

function parseDockerMachine(v: unknown, where: string): DockerMachineRecord {
  if (!isRecord(v) || typeof v['name'] !== 'string') throw new Error(`${where}.dockerMachine.name is missing`);
  const num = (k: string): number => {
    const n = v[k];
    if (n === undefined || n === null) return -1;
    if (typeof n !== 'number' || !Number.isFinite(n)) throw new Error(`${where}.dockerMachine.${k} is not a number`);
    return n;
  };
  const rec: DockerMachineRecord = { name: v['name'], created: num('created'), maxRuntime: num('maxRuntime'), maxUploadTime: num('maxUploadTime') };
  if (typeof v['secretHash'] === 'string') rec.secretHash = v['secretHash'];
  if (typeof v['machineId'] === 'string' && v['machineId'] !== '') rec.machineId = v['machineId'];
  for (const k of ['size', 'region', 'currency'] as const) if (typeof v[k] === 'string' && v[k] !== '') rec[k] = v[k];
  if (typeof v['hourlyPrice'] === 'number' && Number.isFinite(v['hourlyPrice']) && v['hourlyPrice'] >= 0) rec.hourlyPrice = v['hourlyPrice'];
  return rec;
}

export function isValidPort(port: unknown): boolean {
  const n = typeof port === 'string' && /^\d+$/.test(port.trim()) ? Number(port) : port;
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** Parses one element of nodes.json (or of a route's `node`), accepting the port as a number or a string. */
export function parseNodeRecord(v: unknown, where: string): NodeRecord {
  if (!isRecord(v)) throw new Error(`${where} is not an object`);
  const hostname = v['hostname'];
  if (typeof hostname !== 'string' || hostname === '') throw new Error(`${where}.hostname is missing`);
  const port = v['port'];
  if ((typeof port !== 'number' && typeof port !== 'string') || !isValidPort(port)) {
    throw new Error(`${where}.port is not a valid port`);
  }
  const token = v['token'] ?? '';
  if (typeof token !== 'string') throw new Error(`${where}.token is not a string`);
  const rec: NodeRecord = { hostname, port, token };
  if (v['locked'] !== undefined) rec.locked = v['locked'] === true;
  if (v['dockerMachine'] !== undefined && v['dockerMachine'] !== null) {
    rec.dockerMachine = parseDockerMachine(v['dockerMachine'], where);
  }
  const extra: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) if (!KNOWN_KEYS.has(k)) extra[k] = val;
  if (Object.keys(extra).length > 0) rec.extra = extra;
  return rec;
}

/** Parses the whole nodes.json: a JSON array of node records. */
export function parseNodesFile(raw: unknown): NodeRecord[] {
  if (!Array.isArray(raw)) throw new Error('nodes.json is not a JSON array');
  return raw.map((v, i) => parseNodeRecord(v, `node #${i + 1}`));
}
