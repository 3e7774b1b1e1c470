/** What the autoscaler hands to its callers: tasks (dispatch) and the admin views. */

/** A place under the machines limit, taken synchronously when a task decides to autoscale. */
export interface Reservation {
  readonly images: number;
  released: boolean;
  /** Several instances: the place under the limit taken in the shared state (see Autoscaler.confirm). */
  slot?: string;
}

/** What a task tells the autoscaler when it needs a machine. */
export interface MachineRequest {
  uuid: string;
  images: number;
  /** `<public address>/commit?token=<user token>`; the machine's secret is added to it. */
  commitUrl: string;
  /** Progress of the steps (also logged). */
  onStep?: (message: string) => void;
}

/** A creation in progress, for the admin page. */
export interface MachineProgress {
  name: string;
  uuid: string;
  step: string;
  since: number;
  /** Its hourly price once the driver knows it (api driver), counted against maxHourlySpend. */
  hourlyPrice?: number;
}

/** A running machine as the admin page's autoscaler panel shows it. */
export interface MachineCost {
  name: string;
  /** The node's `host:port`. */
  node: string;
  size: string | null;
  region: string | null;
  /** When it was created (ms); its age is now minus this. */
  created: number;
  /** Per hour, as the cloud's size list said at its creation; null when unknown (docker-machine, no price). */
  hourlyPrice: number | null;
  currency: string | null;
}

/** What the admin page shows of the autoscaler. */
export interface AsrStatus {
  provider: string;
  pending: number;
  running: number;
  limit: number;
  maxRuntime: number;
  maxUploadTime: number;
  /** Machines being created and their current step. */
  creating: MachineProgress[];
  machines?: MachineCost[];
  /** Sum of the known hourly prices of the machines running and being created. */
  hourlySpend?: number;
  /** -1 = none. */
  maxHourlySpend?: number;
}

/** The leader lease as the autoscaler sees it (LeaderLease). */
export interface AutoscalerLeader {
  isLeader(): boolean;
  /** Whether this instance may take a destructive step now (its fencing token is still current). */
  fence(): Promise<boolean>;
  onElected(listener: () => void): void;
}
