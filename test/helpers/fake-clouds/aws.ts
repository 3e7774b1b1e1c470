/**
 * A fake EC2 endpoint (clouds.md §4) on loopback, speaking the Query protocol the real SDK sends (form-encoded
 * `Action=…&Version=2016-11-15`, SigV4 `Authorization` header whose access key is checked) and answering XML in
 * the 2016-11-15 namespace: RunInstances, DescribeInstances (InstanceId.N or Filter.N: tag:K, tag-key,
 * instance-state-name; MaxResults + NextToken, at most `pageSize` per page), TerminateInstances (idempotent while
 * the instance is visible; terminated instances stay visible), DescribeSecurityGroups (group-name, vpc-id).
 * Errors as `<Response><Errors><Error><Code>`: InstanceLimitExceeded (400), InsufficientInstanceCapacity (500),
 * RequestLimitExceeded (503), InternalError (500), AuthFailure (401), InvalidInstanceID.NotFound (400).
 */
import { FakeCloudBase, type FakeMachine, type FakeRequest, type FakeResponse } from './common';

const NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

export interface FakeSecurityGroup {
  id: string;
  name: string;
  vpcId: string;
}

export class FakeEc2Api extends FakeCloudBase {
  /** Instances terminated: still answered by DescribeInstances, as `terminated`. */
  readonly terminated = new Map<string, FakeMachine>();
  readonly securityGroups: FakeSecurityGroup[] = [{ id: 'sg-0a1b2c3d4e5f60718', name: 'clusterodm', vpcId: 'vpc-0abc1234' }];
  /** Most instances per DescribeInstances page, whatever MaxResults asks. */
  pageSize = 1000;
  /** DescribeInstances by id answers InvalidInstanceID.NotFound this many times after a creation (eventual consistency). */
  notFoundAfterCreate = 0;
  /** The form parameters of every call, in order. */
  readonly calls: Array<URLSearchParams> = [];
  private seq = 0;
  private readonly hidden = new Map<string, number>();

  constructor(private readonly accessKey: string) {
    super();
  }

  static async start(accessKey: string): Promise<FakeEc2Api> {
    const f = new FakeEc2Api(accessKey);
    await f.listen((r) => f.handle(r));
    return f;
  }

  /** An instance launched by someone else in the same account and region. */
  addInstance(d: { name: string; tags: Record<string, string> }): FakeMachine {
    return this.add({ name: d.name, tags: [`Name=${d.name}`, ...Object.entries(d.tags).map(([k, v]) => `${k}=${v}`)], region: 'us-west-2a', size: 't2.micro', image: 'ami-0123456789abcdef0', userData: '', createBody: null });
  }

  private add(p: Pick<FakeMachine, 'name' | 'tags' | 'region' | 'size' | 'image' | 'userData' | 'createBody'>): FakeMachine {
    const id = `i-0${(0x1000000 + ++this.seq).toString(16)}abcdef0123`.slice(0, 19);
    const m: FakeMachine = { ...p, id, ip: this.allocIp(), privateIp: `172.31.${this.seq % 250}.10`, polls: 0, createdAt: Date.now(), boot: null, state: 'pending' };
    this.machines.set(m.id, m);
    return m;
  }

  private handle(r: FakeRequest): FakeResponse | Promise<FakeResponse> {
    const q = new URLSearchParams(r.body);
    this.calls.push(q);
    const auth = String(r.headers.authorization ?? '');
    if (!auth.startsWith('AWS4-HMAC-SHA256 ') || !auth.includes(`Credential=${this.accessKey}/`)) {
      return error(401, 'AuthFailure', 'AWS was not able to validate the provided access credentials');
    }
    if (q.get('Version') !== '2016-11-15') return error(400, 'InvalidParameterValue', 'bad Version');
    if (this.take('rateLimited')) return error(503, 'RequestLimitExceeded', 'Request limit exceeded.');
    switch (q.get('Action')) {
      case 'RunInstances':
        return this.run(q);
      case 'DescribeInstances':
        return this.describe(q);
      case 'TerminateInstances':
        return this.terminate(q);
      case 'DescribeSecurityGroups': {
        const f = filters(q);
        const groups = this.securityGroups.filter((g) => (!f['group-name'] || f['group-name'].includes(g.name)) && (!f['vpc-id'] || f['vpc-id'].includes(g.vpcId)));
        const items = groups.map((g) => `<item><ownerId>123456789012</ownerId><groupId>${g.id}</groupId><groupName>${esc(g.name)}</groupName><groupDescription>x</groupDescription><vpcId>${g.vpcId}</vpcId></item>`);
        return ok('DescribeSecurityGroupsResponse', `<securityGroupInfo>${items.join('')}</securityGroupInfo>`);
      }
      default:
        return error(400, 'InvalidAction', `The action ${q.get('Action') ?? ''} is not valid for this web service.`);
    }
  }

  private run(q: URLSearchParams): FakeResponse {
    for (const k of ['ImageId', 'InstanceType', 'MinCount', 'MaxCount']) if (!q.get(k)) return error(400, 'MissingParameter', `The request must contain the parameter ${k}`);
    const b64 = q.get('UserData') ?? '';
    if (b64 !== '' && !/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) return error(400, 'InvalidParameterValue', 'Invalid BASE64 encoding of user data.');
    const userData = Buffer.from(b64, 'base64').toString('utf8');
    if (Buffer.byteLength(userData) > 16384) return error(400, 'InvalidParameterValue', 'User data is limited to 16384 bytes');
    const tags: string[] = [];
    for (let i = 1; q.has(`TagSpecification.${i}.ResourceType`); i++) {
      if (q.get(`TagSpecification.${i}.ResourceType`) !== 'instance') continue;
      for (let j = 1; q.has(`TagSpecification.${i}.Tag.${j}.Key`); j++) tags.push(`${q.get(`TagSpecification.${i}.Tag.${j}.Key`) ?? ''}=${q.get(`TagSpecification.${i}.Tag.${j}.Value`) ?? ''}`);
    }
    const token = q.get('ClientToken');
    const same = token ? [...this.machines.values()].find((m) => (m.createBody as URLSearchParams | null)?.get('ClientToken') === token) : undefined;
    if (same) return ok('RunInstancesResponse', this.reservation(same));
    if (this.overLimit()) return error(400, 'InstanceLimitExceeded', `You have requested more instances (${this.machines.size + 1}) than your current instance limit of ${this.knobs.machineLimit} allows for the specified instance type.`);
    if (this.knobs.noCapacity) return error(500, 'InsufficientInstanceCapacity', `We currently do not have sufficient ${q.get('InstanceType') ?? ''} capacity in the Availability Zone you requested.`);
    if (this.take('failCreates')) return error(500, 'InternalError', 'An internal error has occurred');
    const name = tags.find((t) => t.startsWith('Name='))?.slice(5) ?? '';
    const az = q.get('Placement.AvailabilityZone') ?? 'us-west-2a';
    const m = this.add({ name, tags, region: az, size: q.get('InstanceType') ?? '', image: q.get('ImageId') ?? '', userData, createBody: q });
    if (this.notFoundAfterCreate > 0) this.hidden.set(m.id, this.notFoundAfterCreate);
    this.startBoot(m);
    return ok('RunInstancesResponse', this.reservation(m));
  }

  private reservation(m: FakeMachine): string {
    return `<reservationId>r-0${m.id.slice(2)}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>${this.item(m, false)}</instancesSet>`;
  }

  private describe(q: URLSearchParams): FakeResponse {
    const ids = indexed(q, 'InstanceId');
    const visible = [...this.machines.values(), ...this.terminated.values()];
    let found: FakeMachine[];
    if (ids.length > 0) {
      if (q.has('MaxResults')) return error(400, 'InvalidParameterCombination', 'The parameter instancesSet cannot be used with the parameter maxResults');
      found = [];
      for (const id of ids) {
        const m = visible.find((x) => x.id === id);
        const hide = this.hidden.get(id) ?? 0;
        if (hide > 0) this.hidden.set(id, hide - 1);
        if (!m || hide > 0) return error(400, 'InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
        if (this.machines.has(m.id)) this.poll(m);
        found.push(m);
      }
    } else {
      const f = filters(q);
      found = visible.filter((m) =>
        Object.entries(f).every(([name, values]) => {
          if (name === 'instance-state-name') return values.includes(this.state(m));
          if (name === 'tag-key') return m.tags.some((t) => values.includes(t.split('=')[0] ?? ''));
          if (name.startsWith('tag:')) {
            const key = `${name.slice('tag:'.length)}=`;
            return m.tags.some((t) => t.startsWith(key) && values.includes(t.slice(key.length)));
          }
          return true;
        }),
      );
    }
    const max = Math.min(Number(q.get('MaxResults') ?? 1000), this.pageSize);
    const start = Number(Buffer.from(q.get('NextToken') ?? '', 'base64').toString('utf8') || 0);
    const page = found.slice(start, start + max);
    const next = start + max < found.length ? `<nextToken>${Buffer.from(String(start + max)).toString('base64')}</nextToken>` : '';
    const items = page.map((m) => `<item><reservationId>r-0${m.id.slice(2)}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>${this.item(m, true)}</instancesSet></item>`);
    return ok('DescribeInstancesResponse', `<reservationSet>${items.join('')}</reservationSet>${next}`);
  }

  private terminate(q: URLSearchParams): FakeResponse | Promise<FakeResponse> {
    const ids = indexed(q, 'InstanceId');
    const known = ids.map((id) => this.machines.get(id) ?? this.terminated.get(id));
    const missing = ids.find((_, i) => !known[i]);
    // One wrong id and none is terminated.
    if (missing !== undefined) return error(400, 'InvalidInstanceID.NotFound', `The instance ID '${missing}' does not exist`);
    return (async () => {
      const items: string[] = [];
      for (const m of known) {
        if (!m) continue;
        const before = this.state(m);
        if (this.machines.has(m.id)) {
          await this.remove(m.id);
          m.state = 'terminated';
          this.terminated.set(m.id, m);
        }
        items.push(`<item><instanceId>${m.id}</instanceId><currentState><code>${before === 'terminated' ? 48 : 32}</code><name>${before === 'terminated' ? 'terminated' : 'shutting-down'}</name></currentState><previousState><code>${CODES[before] ?? 16}</code><name>${before}</name></previousState></item>`);
      }
      return ok('TerminateInstancesResponse', `<instancesSet>${items.join('')}</instancesSet>`);
    })();
  }

  private state(m: FakeMachine): string {
    if (m.state === 'terminated') return 'terminated';
    return this.addressed(m) ? 'running' : 'pending';
  }

  private item(m: FakeMachine, describe: boolean): string {
    const s = describe ? this.state(m) : 'pending';
    const up = describe && s === 'running';
    const tags = m.tags.map((t) => {
      const i = t.indexOf('=');
      return `<item><key>${esc(t.slice(0, i))}</key><value>${esc(t.slice(i + 1))}</value></item>`;
    });
    return (
      `<item><instanceId>${m.id}</instanceId><imageId>${esc(m.image)}</imageId>` +
      `<instanceState><code>${CODES[s] ?? 0}</code><name>${s}</name></instanceState>` +
      `<privateIpAddress>${m.privateIp}</privateIpAddress>${up ? `<ipAddress>${m.ip}</ipAddress>` : ''}` +
      `<instanceType>${esc(m.size)}</instanceType><launchTime>${new Date(m.createdAt).toISOString()}</launchTime>` +
      `<placement><availabilityZone>${esc(m.region)}</availabilityZone><tenancy>default</tenancy></placement>` +
      `<tagSet>${tags.join('')}</tagSet></item>`
    );
  }
}

const CODES: Readonly<Record<string, number>> = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48, stopping: 64, stopped: 80 };

/** `Name.1`, `Name.2`, … */
function indexed(q: URLSearchParams, name: string): string[] {
  const out: string[] = [];
  for (let i = 1; q.has(`${name}.${i}`); i++) out.push(q.get(`${name}.${i}`) ?? '');
  return out;
}

/** `Filter.N.Name` / `Filter.N.Value.M` → name → values. */
function filters(q: URLSearchParams): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (let i = 1; q.has(`Filter.${i}.Name`); i++) out[q.get(`Filter.${i}.Name`) ?? ''] = indexed(q, `Filter.${i}.Value`);
  return out;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function ok(root: string, inner: string): FakeResponse {
  return { status: 200, contentType: 'text/xml;charset=UTF-8', text: `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${NS}"><requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>${inner}</${root}>` };
}

function error(status: number, code: string, message: string): FakeResponse {
  return {
    status,
    contentType: 'text/xml;charset=UTF-8',
    text: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${esc(message)}</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>`,
  };
}
