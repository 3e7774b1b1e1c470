import type { S3Settings } from './s3';

/** A machine the cloud knows about (for reconciliation against nodes.json). */
export interface CloudMachine {
  id: string;
  name: string;
}

/** What machine setup may do on the new machine. */
export interface MachineShell {
  /** Runs a command (already quoted) with `docker-machine ssh`; resolves to its stdout. */
  ssh(command: string): Promise<string>;
  /** Reports a step (logged, and shown in the task output and on the admin page). */
  step(message: string): void;
}

export interface SetupParams {
  /** The token the new NodeODM requires. */
  nodeToken: string;
  /** Where NodeODM posts the task info when the task is done (carries the machine's secret). */
  webhookUrl: string;
}

/** What the lifecycle needs of the configuration, whichever driver makes the machines. */
export interface AsrSettings {
  /** The key in the ASR file (`digitalocean`). */
  readonly name: string;
  /** The class name logged at start, as the original: `ASR: DigitalOceanAsrProvider`. */
  readonly className: string;
  readonly s3: S3Settings;
  canHandle(images: number): boolean;
  createRetries(): number;
  failureSleepMs(attempt: number): number;
  /** -1 = no limit. */
  machinesLimit(): number;
  /** Seconds; -1 = none. */
  maxRuntime(): number;
  maxUploadTime(): number;
  /** Every secret of the configuration, masked in logs and ASR VIEWCMD. */
  secrets(): string[];
  /** `maxHourlySpend` (api driver): a create that would go over it counts as "no capacity"; -1 = none. */
  maxHourlySpend?(): number;
}

/** An autoscaler back end of the docker-machine driver, chosen by the `provider` key of the ASR file (SPEC §8.2). */
export interface AsrProvider extends AsrSettings {
  /** docker-machine driver. */
  readonly driver: string;
  /** Port NodeODM listens on on the new machine. */
  readonly servicePort: number;
  /** Validates the configuration (throws the operator's message). */
  validate(): void;
  canHandle(images: number): boolean;
  /** `docker-machine create` arguments after `--driver <driver>`, for the given attempt (1-based). */
  createArgs(images: number, attempt: number): Promise<string[]>;
  createRetries(): number;
  failureSleepMs(attempt: number): number;
  /** -1 = no limit. */
  machinesLimit(): number;
  /** Seconds; -1 = none. */
  maxRuntime(): number;
  maxUploadTime(): number;
  setupMachine(shell: MachineShell, params: SetupParams): Promise<void>;
  /** The provider's machines that carry our tag (for reconciliation); [] when it cannot tell. */
  listTaggedMachines(): Promise<CloudMachine[]>;
  /** Deletes a machine by the cloud's id; an already deleted machine is not an error. */
  deleteMachine(id: string): Promise<void>;
  /** Every secret of the configuration, masked in logs and ASR VIEWCMD. */
  secrets(): string[];
}
