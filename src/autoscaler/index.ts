import { AsrConfig, mergeConfig, readAsrFile } from './asr-config';
import { Autoscaler, type AutoscalerDeps } from './autoscaler';
import { DockerMachine, type DockerMachineTimeouts } from './docker-machine';
import { providerEntry } from './providers';
import { downloadsBaseUrl, S3Store } from './s3';

export * from './asr-config';
export * from './autoscaler';
export * from './docker-machine';
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
export type AutoscalerFromFileDeps = Omit<AutoscalerDeps, 'provider' | 'machines' | 's3' | 'downloadsBase'> & {
  dockerMachineBin?: string;
  /** `--downloads-from-s3`, when given; otherwise the bucket's URL. */
  downloadsFromS3?: string;
  timeouts?: Partial<DockerMachineTimeouts>;
};

/** Builds the autoscaler from the `--asr` file: provider from the fixed table, defaults merged key by key. */
export function autoscalerFromFile(file: string, deps: AutoscalerFromFileDeps): Autoscaler {
  const user = readAsrFile(file);
  const entry = providerEntry(String(user['provider']));
  const config = new AsrConfig(mergeConfig(entry.defaults, user));
  const provider = entry.create(config, { logger: deps.logger });
  deps.logger.info(`ASR: ${provider.className}`);
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
  const { downloadsFromS3, dockerMachineBin: _bin, timeouts: _t, ...rest } = deps;
  scaler = new Autoscaler({ provider, machines, s3, ...rest, downloadsBase: downloadsFromS3 || downloadsBaseUrl(provider.s3) });
  return scaler;
}
// The api driver (cloud APIs + cloud-init, no docker-machine); the lifecycle is wired to it in a later step.
export * from './drivers/cloud-init';
export * from './install-id';
export * from './machine-api';
export * from './providers/api';
