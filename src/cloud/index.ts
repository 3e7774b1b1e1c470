import { ClusterError, type Clock, type Logger } from '../core';
import type { FetchLike } from './http';
import { LIGHTNING_DEV_URL_BASE, LIGHTNING_URL_BASE, LightningCloudProvider } from './lightning';
import { LocalCloudProvider } from './local';
import type { CloudProvider, CloudProviderKind } from './types';

export * from './types';
export { LocalCloudProvider, type LocalOptions } from './local';
export {
  LightningCloudProvider,
  LIGHTNING_URL_BASE,
  LIGHTNING_DEV_URL_BASE,
  DEFAULT_LIGHTNING_TIMINGS,
  type LightningOptions,
  type LightningTimings,
} from './lightning';
export type { FetchLike, FetchInit, FetchResponseLike } from './http';
export { tokenTag, tokensEqual } from './token';

export interface CloudProviderDeps {
  /** --token, used by the local provider. */
  token: string;
  clock: Clock;
  logger: Logger;
  /** --debug: disables caches, as in the original. */
  debug: boolean;
  /** Overrides the Lightning API base (tests point it at a loopback fake). */
  lightningUrlBase?: string;
  fetch?: FetchLike;
}

type Factory = (deps: CloudProviderDeps) => CloudProvider;

function lightning(deps: CloudProviderDeps, dev: boolean): LightningCloudProvider {
  return new LightningCloudProvider({
    urlBase: deps.lightningUrlBase ?? (dev ? LIGHTNING_DEV_URL_BASE : LIGHTNING_URL_BASE),
    clock: deps.clock,
    logger: deps.logger,
    ...(deps.fetch ? { fetch: deps.fetch } : {}),
    // lightningDev never caches, so changes made on the local dev server show at once.
    cacheEnabled: !deps.debug && !dev,
    dev,
  });
}

/** A fixed table: the original built a require() path from the flag's value (SPEC §12 item 32). */
const FACTORIES: Readonly<Record<CloudProviderKind, Factory>> = {
  local: (deps) => new LocalCloudProvider({ token: deps.token }),
  lightning: (deps) => lightning(deps, false),
  lightningDev: (deps) => lightning(deps, true),
};

export function createCloudProvider(name: CloudProviderKind, deps: CloudProviderDeps): CloudProvider {
  // Config validation already restricts the name; this guards callers that bypass it.
  if (!Object.prototype.hasOwnProperty.call(FACTORIES, name)) {
    throw new ClusterError('CONFIG_INVALID', `Invalid cloud provider: ${String(name)}`);
  }
  const provider = FACTORIES[name](deps);
  deps.logger.info(`Cloud: ${provider.name}`);
  return provider;
}
