import type { Logger } from '../../core';
import type { AsrConfig, ConfigObject } from '../asr-config';
import type { AsrProvider } from '../provider';
import { DIGITALOCEAN_DEFAULTS, DigitalOceanAsrProvider } from './digitalocean';

interface ProviderEntry {
  defaults: ConfigObject;
  create(config: AsrConfig, deps: { logger: Logger }): AsrProvider;
}

/** The `provider` key picks one of these (the original required a file path built from the value). */
export const PROVIDERS: Readonly<Record<string, ProviderEntry>> = Object.freeze({
  digitalocean: { defaults: DIGITALOCEAN_DEFAULTS, create: (c, d) => new DigitalOceanAsrProvider(c, d) },
});

export function providerEntry(name: string): ProviderEntry {
  const e = Object.prototype.hasOwnProperty.call(PROVIDERS, name) ? PROVIDERS[name] : undefined;
  if (!e) throw new Error(`Unknown ASR provider "${name}" (available: ${Object.keys(PROVIDERS).join(', ')})`);
  return e;
}

export { DigitalOceanAsrProvider, DIGITALOCEAN_DEFAULTS };
