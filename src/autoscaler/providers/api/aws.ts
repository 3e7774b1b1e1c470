import type * as Ec2Sdk from '@aws-sdk/client-ec2';
import type { EC2Client, Instance, RunInstancesCommandInput, Tag } from '@aws-sdk/client-ec2';
import { errorMessage, isRecord, type Clock } from '../../../core';
import {
  failureFromStatus,
  INSTALL_TAG_KEY,
  MachineApiError,
  type Machine,
  type MachineApi,
  type MachineFailure,
  type MachinePrice,
  type MachineSpec,
  type MachineState,
} from '../../machine-api';

/** The EC2 client is loaded only when AWS machines are used (it takes about 2 s to load cold). */
function sdk(): typeof Ec2Sdk {
  return require('@aws-sdk/client-ec2') as typeof Ec2Sdk;
}

export interface AwsApiOptions {
  accessKey: string;
  secretKey: string;
  /** Every region machines may be in (`region`, rotated per attempt): listByInstall asks each. */
  regions: readonly string[];
  /** Endpoint override (a VPC endpoint, or the loopback fake in tests); the region's public endpoint otherwise. */
  endpoint?: string;
  /** `securityGroup`: an id (`sg-…`), or a name looked up in `vpc` (or the default VPC). It must let ClusterODM reach port 3000. */
  securityGroup: string;
  vpc?: string;
  subnet?: string;
  /** Availability zone: a letter (`a`, appended to the region, as docker-machine's) or a full zone name. */
  zone?: string;
  /** `iamrole`: the instance profile name given to the machines. */
  iamRole?: string;
  monitoring?: boolean;
  /** `spot`: spot instances at each size's `spotPrice`. */
  spot?: boolean;
  /** `usePrivateAddress`: ClusterODM reaches the machine at its private address. */
  usePrivateAddress?: boolean;
  /** `assignPrivateAddressOnly`: no public address at all (implies the private one is used). */
  privateAddressOnly?: boolean;
  /** An EC2 key pair name, for debugging access only. */
  keyName?: string;
  /** Root device of the AMI, for `storage` (Ubuntu: /dev/sda1; Amazon Linux: /dev/xvda). */
  rootDeviceName?: string;
  clock: Clock;
  /** SDK attempts per call (SDK default 3: throttling and 5xx are retried with backoff). */
  maxAttempts?: number;
  /** How long a just-created instance that DescribeInstances does not know yet counts as pending (EC2 is eventually consistent). */
  consistencyGraceMs?: number;
}

/** EC2's limit on user data before base64. */
const USER_DATA_MAX = 16 * 1024;
const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped', 'shutting-down'];

const AWS_FAILURES: Readonly<Record<string, MachineFailure>> = {
  InstanceLimitExceeded: 'quota',
  VcpuLimitExceeded: 'quota',
  MaxSpotInstanceCountExceeded: 'quota',
  InsufficientInstanceCapacity: 'capacity',
  InsufficientHostCapacity: 'capacity',
  InsufficientReservedInstanceCapacity: 'capacity',
  InsufficientCapacity: 'capacity',
  InsufficientFreeAddressesInSubnet: 'capacity',
  SpotMaxPriceTooLow: 'capacity',
  RequestLimitExceeded: 'rate_limit',
  Throttling: 'rate_limit',
  ThrottlingException: 'rate_limit',
  AuthFailure: 'auth',
  UnauthorizedOperation: 'auth',
  InvalidClientTokenId: 'auth',
  SignatureDoesNotMatch: 'auth',
  OptInRequired: 'auth',
  'InvalidInstanceID.NotFound': 'not_found',
  IdempotentParameterMismatch: 'invalid',
  IncorrectInstanceState: 'conflict',
};

/** An SDK exception (its `name` is the EC2 error code) → MachineApiError. */
export function classifyAwsError(e: unknown, what: string): MachineApiError {
  if (e instanceof MachineApiError) return e;
  const name = e instanceof Error ? e.name : '';
  const meta = isRecord(e) && isRecord(e['$metadata']) ? e['$metadata'] : {};
  const status = typeof meta['httpStatusCode'] === 'number' ? meta['httpStatusCode'] : null;
  let failure = AWS_FAILURES[name];
  if (failure === undefined) failure = status === null ? 'network' : failureFromStatus(status);
  return new MachineApiError({
    provider: 'aws',
    failure,
    message: `${what}: ${errorMessage(e)}`,
    httpStatus: status,
    cloudCode: name !== '' && name !== 'Error' ? name : null,
    cause: e,
  });
}

/**
 * EC2 instances through `@aws-sdk/client-ec2` (clouds.md §4): RunInstances with base64 UserData and tags at launch,
 * DescribeInstances by tag with NextToken pages, TerminateInstances. Machine ids are `<region>/<instance id>`.
 */
export class AwsMachineApi implements MachineApi {
  readonly provider = 'aws';
  private readonly o: AwsApiOptions;
  private readonly clients = new Map<string, EC2Client>();
  private readonly groupIds = new Map<string, string>();
  private readonly created = new Map<string, { machine: Machine; at: number }>();

  constructor(o: AwsApiOptions) {
    this.o = o;
  }

  private client(region: string): EC2Client {
    let c = this.clients.get(region);
    if (!c) {
      c = new (sdk().EC2Client)({
        region,
        credentials: { accessKeyId: this.o.accessKey, secretAccessKey: this.o.secretKey },
        ...(this.o.endpoint ? { endpoint: this.o.endpoint } : {}),
        ...(this.o.maxAttempts ? { maxAttempts: this.o.maxAttempts } : {}),
      });
      this.clients.set(region, c);
    }
    return c;
  }

  async create(spec: MachineSpec): Promise<Machine> {
    const region = spec.region;
    if (Buffer.byteLength(spec.userData) > USER_DATA_MAX) {
      throw new MachineApiError({ provider: this.provider, failure: 'invalid', message: `user data is ${Buffer.byteLength(spec.userData)} bytes; EC2 takes ${USER_DATA_MAX} at most` });
    }
    const group = await this.securityGroupId(region);
    const tags: Tag[] = [
      { Key: 'Name', Value: spec.name },
      { Key: INSTALL_TAG_KEY, Value: spec.installId },
      ...(spec.tags ?? []).map((t) => {
        const i = t.indexOf('=');
        return i < 0 ? { Key: t, Value: '' } : { Key: t.slice(0, i), Value: t.slice(i + 1) };
      }),
    ];
    const input: RunInstancesCommandInput = {
      MinCount: 1,
      MaxCount: 1,
      ImageId: spec.image,
      InstanceType: spec.size as RunInstancesCommandInput['InstanceType'],
      UserData: Buffer.from(spec.userData, 'utf8').toString('base64'),
      TagSpecifications: [{ ResourceType: 'instance', Tags: tags }],
      // The name is unique: a retried call after a lost answer cannot start a second instance.
      ClientToken: spec.name.slice(0, 64),
      NetworkInterfaces: [
        {
          DeviceIndex: 0,
          Groups: [group],
          AssociatePublicIpAddress: !this.o.privateAddressOnly,
          DeleteOnTermination: true,
          ...(this.o.subnet ? { SubnetId: this.o.subnet } : {}),
        },
      ],
      Monitoring: { Enabled: this.o.monitoring ?? false },
    };
    if (this.o.zone) input.Placement = { AvailabilityZone: /^[a-z]$/.test(this.o.zone) ? `${region}${this.o.zone}` : this.o.zone };
    if (this.o.iamRole) input.IamInstanceProfile = { Name: this.o.iamRole };
    if (this.o.keyName) input.KeyName = this.o.keyName;
    if (spec.storageGb !== undefined) {
      input.BlockDeviceMappings = [
        { DeviceName: this.o.rootDeviceName ?? '/dev/sda1', Ebs: { VolumeSize: spec.storageGb, VolumeType: 'gp3', DeleteOnTermination: true } },
      ];
    }
    if (this.o.spot) {
      input.InstanceMarketOptions = {
        MarketType: 'spot',
        SpotOptions: {
          SpotInstanceType: 'one-time',
          InstanceInterruptionBehavior: 'terminate',
          ...(spec.spotPrice !== undefined ? { MaxPrice: spec.spotPrice } : {}),
        },
      };
    }
    let out;
    try {
      out = await this.client(region).send(new (sdk().RunInstancesCommand)(input));
    } catch (e: unknown) {
      throw classifyAwsError(e, 'RunInstances');
    }
    const inst = out.Instances?.[0];
    if (!inst?.InstanceId) throw new MachineApiError({ provider: this.provider, failure: 'server', message: 'RunInstances: no instance in the answer' });
    const m = this.machine(region, inst);
    this.created.set(m.id, { machine: m, at: this.o.clock.now() });
    return m;
  }

  async get(id: string): Promise<Machine | null> {
    const { region, instance } = this.splitId(id);
    let out;
    try {
      out = await this.client(region).send(new (sdk().DescribeInstancesCommand)({ InstanceIds: [instance] }));
    } catch (e: unknown) {
      const err = classifyAwsError(e, 'DescribeInstances');
      if (err.failure !== 'not_found') throw err;
      // A fresh instance id can be unknown to DescribeInstances for a while.
      const recent = this.created.get(id);
      if (recent && this.o.clock.now() - recent.at < (this.o.consistencyGraceMs ?? 120_000)) return recent.machine;
      this.created.delete(id);
      return null;
    }
    const inst = out.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instance);
    if (!inst) return null;
    this.created.delete(id);
    // Terminated instances stay visible for about an hour: they are gone.
    if (inst.State?.Name === 'terminated') return null;
    return this.machine(region, inst);
  }

  async listByInstall(installId: string): Promise<Machine[]> {
    const out: Machine[] = [];
    for (const region of new Set(this.o.regions)) {
      let token: string | undefined;
      for (let page = 0; page < 1000; page++) {
        let res;
        try {
          res = await this.client(region).send(
            new (sdk().DescribeInstancesCommand)({
              Filters: [
                { Name: `tag:${INSTALL_TAG_KEY}`, Values: [installId] },
                { Name: 'instance-state-name', Values: LIVE_STATES },
              ],
              MaxResults: 1000,
              ...(token ? { NextToken: token } : {}),
            }),
          );
        } catch (e: unknown) {
          throw classifyAwsError(e, 'DescribeInstances');
        }
        for (const r of res.Reservations ?? []) for (const i of r.Instances ?? []) out.push(this.machine(region, i));
        token = res.NextToken || undefined;
        if (!token) break;
      }
    }
    return out.filter((m) => m.installId === installId && m.status !== 'terminated');
  }

  async destroy(id: string): Promise<void> {
    const { region, instance } = this.splitId(id);
    try {
      await this.client(region).send(new (sdk().TerminateInstancesCommand)({ InstanceIds: [instance] }));
    } catch (e: unknown) {
      const err = classifyAwsError(e, 'TerminateInstances');
      if (err.failure !== 'not_found') throw err;
    }
    this.created.delete(id);
  }

  /** The EC2 API has no on-demand prices (the Price List API would be another client). */
  async hourlyPrice(): Promise<MachinePrice | null> {
    return null;
  }

  /** Closes the SDK's connections. */
  close(): void {
    for (const c of this.clients.values()) c.destroy();
    this.clients.clear();
  }

  private async securityGroupId(region: string): Promise<string> {
    const sg = this.o.securityGroup;
    if (/^sg-[0-9a-f]+$/.test(sg)) return sg;
    const cached = this.groupIds.get(region);
    if (cached) return cached;
    let res;
    try {
      res = await this.client(region).send(
        new (sdk().DescribeSecurityGroupsCommand)({
          Filters: [{ Name: 'group-name', Values: [sg] }, ...(this.o.vpc ? [{ Name: 'vpc-id', Values: [this.o.vpc] }] : [])],
        }),
      );
    } catch (e: unknown) {
      throw classifyAwsError(e, 'DescribeSecurityGroups');
    }
    const id = res.SecurityGroups?.[0]?.GroupId;
    if (!id) {
      throw new MachineApiError({
        provider: this.provider,
        failure: 'invalid',
        message: `security group "${sg}" not found in ${region}${this.o.vpc ? ` (VPC ${this.o.vpc})` : ''}; create it (port 3000 open to ClusterODM) or give its sg- id`,
      });
    }
    this.groupIds.set(region, id);
    return id;
  }

  private splitId(id: string): { region: string; instance: string } {
    const i = id.indexOf('/');
    if (i <= 0 || i === id.length - 1) throw new MachineApiError({ provider: this.provider, failure: 'invalid', message: `machine id "${id}" is not <region>/<instance id>` });
    return { region: id.slice(0, i), instance: id.slice(i + 1) };
  }

  private machine(region: string, i: Instance): Machine {
    const tags = (i.Tags ?? []).filter((t) => t.Key !== undefined);
    const name = tags.find((t) => t.Key === 'Name')?.Value ?? '';
    const own = tags.find((t) => t.Key === INSTALL_TAG_KEY)?.Value;
    const status = i.State?.Name ?? 'unknown';
    const publicIp = i.PublicIpAddress ?? null;
    const privateIp = i.PrivateIpAddress ?? null;
    const usePrivate = this.o.usePrivateAddress === true || this.o.privateAddressOnly === true;
    return {
      id: `${region}/${i.InstanceId ?? ''}`,
      name,
      state: AWS_STATES[status] ?? 'unknown',
      status,
      publicIp,
      privateIp,
      ip: usePrivate ? privateIp : publicIp,
      region,
      size: i.InstanceType ?? '',
      tags: tags.map((t) => `${t.Key ?? ''}=${t.Value ?? ''}`),
      installId: own ?? null,
    };
  }
}

const AWS_STATES: Readonly<Record<string, MachineState>> = {
  pending: 'pending',
  running: 'running',
  stopping: 'stopping',
  'shutting-down': 'stopping',
  stopped: 'stopped',
  terminated: 'stopped',
};
