import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { ClusterError, errorMessage } from '../core';
import { isNotFound, realFs, writeFileAtomic, type StoreFs } from '../store';

/** The file in the data directory that holds this install's id. */
export const INSTALL_ID_FILE = 'install-id';

/**
 * 16 lowercase letters and digits: fits a DigitalOcean tag, a Hetzner label value, a Scaleway tag and an AWS tag
 * value as it is, and is case-proof (DigitalOcean tags are case-insensitive).
 */
const INSTALL_ID = /^[a-z0-9]{16}$/;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export function isInstallId(s: string): boolean {
  return INSTALL_ID.test(s);
}

export function generateInstallId(random: (bytes: number) => Buffer = randomBytes): string {
  let id = '';
  // 252 = 7 × 36: bytes above it are dropped so every character is equally likely.
  while (id.length < 16) {
    for (const b of random(32)) {
      if (b < 252 && id.length < 16) id += ALPHABET[b % 36];
    }
  }
  return id;
}

export interface InstallIdOptions {
  fs?: StoreFs;
  random?: (bytes: number) => Buffer;
}

/**
 * This install's id: read from `<dataDir>/install-id`, or generated once and written there atomically. Every
 * machine the api driver creates carries it as a tag, and only machines with it are listed, reconciled or destroyed,
 * so two installs on one cloud account never touch each other's machines.
 *
 * A file that exists but does not hold an id is an error (STATE_CORRUPT), not a reason to make a new one: a new id
 * would orphan every machine tagged with the old one.
 */
export async function loadOrCreateInstallId(dataDir: string, opts: InstallIdOptions = {}): Promise<string> {
  const fs = opts.fs ?? realFs;
  const file = path.join(dataDir, INSTALL_ID_FILE);
  const existing = await readId(fs, file);
  if (existing !== null) return existing;
  const id = generateInstallId(opts.random);
  try {
    await writeFileAtomic(file, `${id}\n`, { fs, mode: 0o600 });
  } catch (e: unknown) {
    throw new ClusterError('STATE_WRITE_FAILED', `Cannot write ${file}: ${errorMessage(e)}`, { cause: e });
  }
  return id;
}

async function readId(fs: StoreFs, file: string): Promise<string | null> {
  let text: string;
  try {
    text = String(await fs.readFile(file, 'utf8'));
  } catch (e: unknown) {
    if (isNotFound(e)) return null;
    throw new ClusterError('STATE_CORRUPT', `Cannot read ${file}: ${errorMessage(e)}`, { cause: e });
  }
  const id = text.trim();
  if (!isInstallId(id)) {
    throw new ClusterError(
      'STATE_CORRUPT',
      `${file} does not hold an install id (16 lowercase letters and digits); restore it from a backup, or delete it ` +
        'only after destroying the machines tagged with the old id',
    );
  }
  return id;
}
