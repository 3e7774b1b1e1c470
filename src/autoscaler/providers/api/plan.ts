import { isObject, type AsrConfig } from '../../asr-config';

/** One `imageSizeMapping` entry: the smallest size whose `maxImages` fits a task is used. */
export interface SizeEntry {
  maxImages: number;
  slug: string;
  /** AWS: spot maximum price for this size. */
  spotPrice?: string;
  /** AWS: root disk in GB. */
  storage?: number;
}

/** Reads and sorts `imageSizeMapping` (ascending `maxImages`, as the original sorted it). Throws the operator's message. */
export function parseSizeMapping(config: AsrConfig): SizeEntry[] {
  const raw = config.get('imageSizeMapping');
  if (!Array.isArray(raw)) throw new Error('Invalid config key imageSizeMapping: must be an array');
  return raw
    .map((m: unknown, i): SizeEntry => {
      if (!isObject(m) || typeof m['maxImages'] !== 'number' || typeof m['slug'] !== 'string' || m['slug'] === '') {
        throw new Error(`Invalid config key imageSizeMapping[${i}]: needs a number maxImages and a slug`);
      }
      const e: SizeEntry = { maxImages: m['maxImages'], slug: m['slug'] };
      const spot = m['spotPrice'];
      if (typeof spot === 'number' || (typeof spot === 'string' && spot !== '')) e.spotPrice = String(spot);
      const storage = m['storage'];
      if (storage !== undefined) {
        if (typeof storage !== 'number' || !Number.isInteger(storage) || storage <= 0) {
          throw new Error(`Invalid config key imageSizeMapping[${i}].storage: must be a whole number of GB`);
        }
        e.storage = storage;
      }
      return e;
    })
    .sort((a, b) => a.maxImages - b.maxImages);
}

/** Where and how big the machine of a given attempt is. */
export interface MachinePlan {
  region: string;
  size: string;
  storageGb?: number;
  spotPrice?: string;
}

/**
 * Size by image count and region by attempt, as the original: the first mapping entry with `maxImages >= images`
 * (and at least `minImages`, when set), the region list rotated per creation attempt.
 */
export class MachinePlanner {
  private readonly sizes: SizeEntry[];
  private readonly regions: string[];
  private readonly minImages: number;

  constructor(config: AsrConfig, regionKey: string) {
    this.sizes = parseSizeMapping(config);
    this.regions = config.stringArray(regionKey);
    if (this.regions.length === 0) throw new Error(`You need to create a configuration file and set ${regionKey}.`);
    this.minImages = config.number('minImages', -1);
  }

  regionList(): readonly string[] {
    return this.regions;
  }

  private entry(images: number): SizeEntry | null {
    return this.sizes.find((m) => m.maxImages >= images) ?? null;
  }

  canHandle(images: number): boolean {
    return this.entry(images) !== null && (this.minImages === -1 || images >= this.minImages);
  }

  /** `attempt` is 1-based. Throws `Cannot handle N images.` when no size fits. */
  plan(images: number, attempt: number): MachinePlan {
    const e = this.entry(images);
    if (!e || !this.canHandle(images)) throw new Error(`Cannot handle ${images} images.`);
    const region = this.regions[(Math.max(1, attempt) - 1) % this.regions.length] ?? this.regions[0] ?? '';
    return {
      region,
      size: e.slug,
      ...(e.storage !== undefined ? { storageGb: e.storage } : {}),
      ...(e.spotPrice !== undefined ? { spotPrice: e.spotPrice } : {}),
    };
  }
}
