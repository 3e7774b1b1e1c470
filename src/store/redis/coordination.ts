import type {
  ClusterCoordination,
  InstanceDirectory,
  Leadership,
  MachineSlots,
  NodeHealthBoard,
  StagingDirectory,
  StagingRecord,
} from '../cluster-port';
import { ClusterError, isRecord } from '../../core';
import type { RedisConnection } from './connection';
import { withinDeadline } from './deadline';
import { randomUUID } from 'node:crypto';

/**
 * The coordination of instances in Redis (keys under `clusterodm:`, see the README):
 * - `instance:<address>`: a live instance's heartbeat (expires unless renewed);
 * - `staging` (hash uuid → JSON): which instance stages an upload, or why it failed;
 * - `leader` (`<instance>|<token>`, expires) and `leader:token` (INCR): the autoscaler's lease and fencing token;
 * - `machines:pending` (hash id → JSON): places under the machine limit held by instances making a machine;
 * - `poll:<node>` (expires) and `node-health` (hash node → JSON): one poller per node per interval, its findings.
 */
export class RedisCoordination implements ClusterCoordination {
  readonly instances: InstanceDirectory;
  readonly staging: StagingDirectory;
  readonly leadership: Leadership;
  readonly machines: MachineSlots;
  readonly nodeHealth: NodeHealthBoard;

  constructor(opts: { prefix: string; processId: string; connection: () => RedisConnection }) {
    const { prefix, connection } = opts;
    let self = '';
    // Commands that must not wait for a lost connection (node-redis queues them until it is back): they fail at
    // once, so a poll, a lease renewal or a new task never hangs on a Redis outage.
    const cmd = (): RedisConnection['cmd'] => {
      const c = connection().cmd;
      if (!c.isReady) throw new ClusterError('STATE_UNAVAILABLE', 'Redis is not connected');
      return c;
    };
    // Commands that wait for the connection (giving back a place or forgetting a record must not be lost).
    const queued = (): RedisConnection['cmd'] => connection().cmd;
    const instanceKey = (address: string): string => `${prefix}instance:${address}`;
    this.instances = {
      self: () => self,
      beat: async (address, ttlMs) => {
        self = address;
        await withinDeadline(cmd().set(instanceKey(address), JSON.stringify({ process: opts.processId }), { expiration: { type: 'PX', value: ttlMs } }));
      },
      alive: async (address) => (await withinDeadline(cmd().exists(instanceKey(address)))) > 0,
    };
    this.staging = new RedisStaging(`${prefix}staging`, () => self, cmd, queued);
    const me = opts.processId;
    this.leadership = {
      acquire: async (ttlMs) => {
        const r = await withinDeadline(cmd().eval(LEASE_ACQUIRE, { keys: [`${prefix}leader`, `${prefix}leader:token`], arguments: [me, String(ttlMs)] }));
        return typeof r === 'number' && r > 0 ? r : null;
      },
      // Fencing fails closed: a Redis that does not answer in time means "not the leader" (no destroy).
      holds: async (token) => (await withinDeadline(cmd().eval(LEASE_HOLDS, { keys: [`${prefix}leader`], arguments: [`${me}|${token}`] }))) === 1,
      resign: async (token) => {
        await cmd().eval(LEASE_RESIGN, { keys: [`${prefix}leader`], arguments: [`${me}|${token}`] });
      },
    };
    const pending = `${prefix}machines:pending`;
    this.machines = {
      take: async (limit) => {
        if (!self) throw new Error('This instance is not registered yet');
        const id = randomUUID();
        const r = await cmd().eval(SLOT_TAKE, {
          keys: [pending, `${prefix}nodes`],
          arguments: [String(limit), id, JSON.stringify({ owner: self }), instanceKey('')],
        });
        return r === 1 ? id : null;
      },
      name: async (id, machine) => {
        await cmd().eval(SLOT_NAME, { keys: [pending], arguments: [id, machine] });
      },
      give: async (id) => {
        await queued().hDel(pending, id);
      },
      creating: async () => {
        const all = await cmd().hGetAll(pending);
        const names = new Set<string>();
        for (const text of Object.values(all)) {
          const v = parseJson(String(text));
          if (isRecord(v) && typeof v['name'] === 'string') names.add(v['name']);
        }
        return names;
      },
    };
    const health = `${prefix}node-health`;
    this.nodeHealth = {
      claim: async (nodeKey, ttlMs) =>
        (await cmd().set(`${prefix}poll:${nodeKey}`, self || me, { condition: 'NX', expiration: { type: 'PX', value: ttlMs } })) !== null,
      write: async (nodeKey, state) => {
        await cmd().hSet(health, nodeKey, state);
      },
      read: async () => {
        const all = await cmd().hGetAll(health);
        return new Map(Object.entries(all).map(([k, v]) => [String(k), String(v)]));
      },
    };
  }
}

class RedisStaging implements StagingDirectory {
  constructor(
    private readonly key: string,
    private readonly self: () => string,
    private readonly cmd: () => RedisConnection['cmd'],
    private readonly queued: () => RedisConnection['cmd'],
  ) {}

  async claim(uuid: string, now: number): Promise<void> {
    const owner = this.self();
    if (!owner) throw new Error('This instance is not registered yet');
    // A new task is refused at once while Redis is away, and after the deadline while it does not answer.
    await withinDeadline(this.cmd().hSet(this.key, uuid, JSON.stringify({ owner, at: now })));
  }

  async lookup(uuid: string): Promise<StagingRecord | null> {
    const text = await withinDeadline(this.cmd().hGet(this.key, uuid));
    return text === null ? null : parseRecord(String(text));
  }

  async fail(uuid: string, reason: string, now: number): Promise<StagingRecord> {
    const r = await withinDeadline(this.cmd().eval(STAGING_FAIL, { keys: [this.key], arguments: [uuid, reason, String(now)] }));
    return (typeof r === 'string' ? parseRecord(r) : null) ?? { owner: '', failed: reason, at: now };
  }

  async release(uuid: string): Promise<void> {
    await this.queued().hDel(this.key, uuid);
  }

  async all(): Promise<Map<string, StagingRecord>> {
    const out = new Map<string, StagingRecord>();
    for await (const batch of this.cmd().hScanIterator(this.key, { COUNT: 1000 })) {
      for (const e of batch) {
        const rec = parseRecord(String(e.value));
        if (rec) out.set(String(e.field), rec);
      }
    }
    return out;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return null;
  }
}

function parseRecord(text: string): StagingRecord | null {
  const v = parseJson(text);
  if (!isRecord(v) || typeof v['owner'] !== 'string') return null;
  const rec: StagingRecord = { owner: v['owner'], at: typeof v['at'] === 'number' ? v['at'] : 0 };
  if (typeof v['failed'] === 'string') rec.failed = v['failed'];
  return rec;
}

/** KEYS: staging hash. ARGV: uuid, reason, now. Marks the record failed once; returns the record that holds. */
const STAGING_FAIL = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local rec = {}
if cur then rec = cjson.decode(cur) end
if rec.failed then return cur end
rec.failed = ARGV[2]
rec.at = tonumber(ARGV[3])
if not rec.owner then rec.owner = '' end
local text = cjson.encode(rec)
redis.call('HSET', KEYS[1], ARGV[1], text)
return text
`;

/** KEYS: leader, token counter. ARGV: process id, ttl. The token while this process holds the lease, else 0. */
const LEASE_ACQUIRE = `
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and string.sub(cur, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, sep + 1))
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. token, 'PX', ARGV[2])
return token
`;

/** KEYS: leader. ARGV: `<process>|<token>`. */
const LEASE_HOLDS = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
`;

const LEASE_RESIGN = `
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`;

/**
 * KEYS: pending places (hash), the node list document. ARGV: limit (-1 none), id, record, heartbeat key prefix.
 * Places of instances whose heartbeat expired are dropped; autoscaled nodes (with a dockerMachine) and live places
 * count against the limit; a place is taken only under it.
 */
const SLOT_TAKE = `
local live = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, rec = pcall(cjson.decode, all[i + 1])
  if ok and type(rec) == 'table' and rec.owner and redis.call('EXISTS', ARGV[4] .. rec.owner) == 1 then
    live = live + 1
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
local running = 0
local doc = redis.call('GET', KEYS[2])
if doc then
  local ok, nodes = pcall(cjson.decode, doc)
  if ok and type(nodes) == 'table' then
    for _, n in ipairs(nodes) do
      if type(n) == 'table' and type(n.dockerMachine) == 'table' then running = running + 1 end
    end
  end
end
local limit = tonumber(ARGV[1])
if limit ~= -1 and live + running >= limit then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
`;

/** KEYS: pending places. ARGV: id, machine name. */
const SLOT_NAME = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
local rec = cjson.decode(cur)
rec.name = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(rec))
return 1
`;
