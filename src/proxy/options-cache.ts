import type { Clock } from '../core';
import { errorMessage } from '../core';
import { optionsWithLimits, parseOptionSpecs, type Limits, type NodeClient, type OdmOptionSpec } from '../nodeodm';
import type { ClusterNode } from '../nodes';

const OPTIONS_TTL_MS = 60 * 60 * 1000;

/** The reference node's /options passed through the caller's limits, cached per user token for an hour. */
export class OptionsCache {
  private readonly cache = new Map<string, { expires: number; value: OdmOptionSpec[] }>();
  private readonly client: NodeClient;
  private readonly clock: Clock;
  private readonly enabled: boolean;

  constructor(opts: { client: NodeClient; clock: Clock; enabled: boolean }) {
    this.client = opts.client;
    this.clock = opts.clock;
    this.enabled = opts.enabled;
  }

  async get(token: string, limits: Limits | null, node: ClusterNode): Promise<OdmOptionSpec[]> {
    const now = this.clock.now();
    const hit = this.enabled ? this.cache.get(token) : undefined;
    if (hit && hit.expires > now) return hit.value;
    let specs: OdmOptionSpec[];
    try {
      specs = parseOptionSpecs(await this.client.getJson(node, '/options'));
    } catch (e: unknown) {
      throw new Error(`Cannot get options for ${node.name}: ${errorMessage(e)}`);
    }
    const value = optionsWithLimits(specs, limits);
    if (this.enabled) this.cache.set(token, { expires: now + OPTIONS_TTL_MS, value });
    return value;
  }

  clear(token: string): void {
    this.cache.delete(token);
  }
}
