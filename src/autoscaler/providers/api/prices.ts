import type { Clock } from '../../../core';
import { isRecord } from '../../../core';
import type { AsrConfig } from '../../asr-config';
import type { MachineApi, MachinePrice } from '../../machine-api';

/** A size list answer is kept this long (prices change rarely; the admin page and every create ask). */
export const PRICE_CACHE_MS = 60 * 60 * 1000;

type PriceTable = ReadonlyMap<string, number>;

/**
 * `prices` in the ASR file: `{"<size>": <price per hour>}` for every region, or `{"<region>": {"<size>": …}}` per
 * region (both may be mixed; a region's own entry wins). The source of prices on AWS, whose EC2 API has none; on
 * the other clouds it overrides the size list. `priceCurrency` names its currency (default USD). Throws the
 * operator's message on a bad shape.
 */
export function parsePrices(c: AsrConfig): { table: PriceTable; currency: string } {
  const raw = c.get('prices');
  const table = new Map<string, number>();
  const bad = (where: string): never => {
    throw new Error(`Invalid config key prices${where}: must be a price per hour (a number >= 0) or an object of them by size`);
  };
  const price = (v: unknown, where: string): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : bad(where));
  if (raw !== undefined && raw !== null) {
    if (!isRecord(raw)) bad('');
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      if (isRecord(v)) for (const [size, p] of Object.entries(v)) table.set(`${size}@${k}`, price(p, `.${k}.${size}`));
      else table.set(`${k}@`, price(v, `.${k}`));
    }
  }
  return { table, currency: c.string('priceCurrency', 'USD') || 'USD' };
}

/** Hourly prices of sizes: the file's `prices` first, then the cloud's size list, cached per size and region. */
export class PriceBook {
  private readonly cache = new Map<string, { price: MachinePrice | null; at: number }>();

  constructor(
    private readonly api: MachineApi,
    private readonly configured: { table: PriceTable; currency: string },
    private readonly clock: Clock,
  ) {}

  /** null when neither says (the caller decides whether that matters: it does with maxHourlySpend). */
  async price(size: string, region: string): Promise<MachinePrice | null> {
    const own = this.configured.table.get(`${size}@${region}`) ?? this.configured.table.get(`${size}@`);
    if (own !== undefined) return { hourly: own, currency: this.configured.currency };
    const key = `${size}@${region}`;
    const hit = this.cache.get(key);
    if (hit && this.clock.now() - hit.at < PRICE_CACHE_MS) return hit.price;
    const price = await this.api.hourlyPrice(size, region);
    this.cache.set(key, { price, at: this.clock.now() });
    return price;
  }
}
