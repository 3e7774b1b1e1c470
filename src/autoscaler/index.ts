import { AsrConfig, mergeConfig, readAsrFile } from './asr-config';
import { Autoscaler, type AutoscalerCommonDeps } from './autoscaler';
import { DockerMachine, type DockerMachineTimeouts } from './docker-machine';
import { ApiDriver } from './drivers/api-driver';
import { providerEntry } from './providers';
import { apiProviderFromConfig } from './providers/api/config';
import type { FetchLike } from './providers/api/http';
import { downloadsBaseUrl, S3Store } from './s3';

export * from './asr-config';
export * from './autoscaler';
export * from './docker-machine';
export * from './drivers/api-driver';
export * from './drivers/docker-machine-driver';
export * from './drivers/driver';
export * from './provider';
export * from './reconcile';
export * from './providers';
export * from './s3';
export * from './secrets';
export * from './shell';
export * from './task-records';
export * from './types';
export * from './vacuum';

/** The autoscaler's dependencies, less what is built from the file. */
export type AutoscalerFromFileDeps = Omit<AutoscalerCommonDeps, 's3' | 'downloadsBase'> & {
  dockerMachineBin?: string;
  /** `--downloads-from-s3`, when given; otherwise the bucket's URL. */
  downloadsFromS3?: string;
  timeouts?: Partial<DockerMachineTimeouts>;
  /** Where the api driver keeps `install-id` (the data directory); required for `"driver": "api"`. */
  dataDir?: string;
  /** The api driver's HTTP client (tests). */
  fetch?: FetchLike;
  /** The api driver's pause between polls of a new machine. */
  apiPollMs?: number;
};

/** `driver` in the ASR file: `docker-machine` (the default, today's path) or `api`. */
export function driverOf(user: Record<string, unknown>): 'docker-machine' | 'api' {
  const v = user['driver'];
  if (v === undefined || v === null || v === 'docker-machine') return 'docker-machine';
  if (v === 'api') return 'api';
  throw new Error(`Invalid config key driver: must be "docker-machine" or "api"`);
}

/** Builds the autoscaler from the `--asr` file: provider from the fixed table, defaults merged key by key. */
export function autoscalerFromFile(file: string, deps: AutoscalerFromFileDeps): Autoscaler {
  const user = readAsrFile(file);
  if (driverOf(user) === 'api') return apiAutoscaler(user, deps);
  const entry = providerEntry(String(user['provider']));
  const config = new AsrConfig(mergeConfig(entry.defaults, user));
  const provider = entry.create(config, { logger: deps.logger });
  deps.logger.info(`ASR: ${provider.className}`);
  deps.logger.info('ASR driver: docker-machine');
  provider.validate();
  // Holder so the runner masks the autoscaler's runtime secrets too.
  let scaler: Autoscaler | null = null;
  const machines = new DockerMachine({
    logger: deps.logger,
    ...(deps.dockerMachineBin ? { bin: deps.dockerMachineBin } : {}),
    ...(deps.timeouts ? { timeouts: deps.timeouts } : {}),
    secrets: () => scaler?.secrets() ?? provider.secrets(),
  });
  let s3: S3Store;
  try {
    s3 = new S3Store(provider.s3, deps.logger);
  } catch (e: unknown) {
    // An endpoint that is not even a URL: the same message as a failed write test.
    throw new Error(`Cannot connect to S3. Check your S3 configuration: ${e instanceof Error ? e.message : String(e)}`);
  }
  const { downloadsFromS3, dockerMachineBin: _bin, timeouts: _t, dataDir: _dd, fetch: _f, apiPollMs: _p, ...rest } = deps;
  scaler = new Autoscaler({ provider, machines, s3, ...rest, downloadsBase: downloadsFromS3 || downloadsBaseUrl(provider.s3) });
  return scaler;
}
// The api driver's building blocks (cloud APIs, cloud-init, install id).
export * from './drivers/cloud-init';
export * from './install-id';
export * from './machine-api';
export * from './providers/api';

/** `"driver": "api"`: the cloud's own API and cloud-init; no docker-machine. */
function apiAutoscaler(user: Record<string, unknown>, deps: AutoscalerFromFileDeps): Autoscaler {
  const { downloadsFromS3, dockerMachineBin: _bin, timeouts: _t, dataDir, fetch, apiPollMs, ...rest } = deps;
  if (!dataDir) throw new Error('The api driver needs a data directory');
  const provider = apiProviderFromConfig(user, { clock: deps.clock, ...(fetch ? { fetch } : {}) });
  deps.logger.info(`ASR: ${provider.className}`);
  deps.logger.info(`ASR driver: api (${provider.name})`);
  let s3: S3Store;
  try {
    s3 = new S3Store(provider.s3, deps.logger);
  } catch (e: unknown) {
    throw new Error(`Cannot connect to S3. Check your S3 configuration: ${e instanceof Error ? e.message : String(e)}`);
  }
  let scaler: Autoscaler | null = null;
  const mask = (text: string): string => scaler?.mask(text) ?? text;
  const driver = new ApiDriver({ provider, dataDir, clock: deps.clock, logger: deps.logger, mask, ...(apiPollMs ? { pollMs: apiPollMs } : {}) });
  scaler = new Autoscaler({ provider, driver, s3, ...rest, downloadsBase: downloadsFromS3 || downloadsBaseUrl(provider.s3) });
  return scaler;
}
