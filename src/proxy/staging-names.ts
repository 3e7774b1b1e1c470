/**
 * Names of staged files (upload-staging.ts): the stored name for a client's filename, unique names per task dir, and
 * the temporary name a file is written under until it is complete.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { systemErrorCode } from '../core/errors';

/** Longest file name most filesystems accept, in bytes. */
const MAX_NAME_BYTES = 255;

/**
 * A file being written is named `.partial-<16 hex digits>` and gets its stored name only once it is complete, so a
 * crash can never leave a cut file under an image's name. No stored name starts like this (see sanitizeFilename).
 */
const PARTIAL_PREFIX = '.partial-';
const PARTIAL_NAME = /^\.partial-[0-9a-f]{16}$/;

/** Errors of link(2) that mean "no hard links here" (some network and FUSE filesystems). */
const NO_HARD_LINKS: ReadonlySet<string> = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK']);

/** A fresh temporary name for a file being staged. */
export function partialName(): string {
  return `${PARTIAL_PREFIX}${randomBytes(8).toString('hex')}`;
}

/** A file still being written (or cut short by a crash): never an image of the task. */
export function isPartialName(name: string): boolean {
  return PARTIAL_NAME.test(name);
}

/**
 * The stored name for a client-supplied filename: basename on both `/` and `\` (so no separator is left), control
 * characters removed, never empty/`.`/`..`, `body.json` (any case) renamed `_body.json` so it cannot shadow the
 * task's own `body.json`, a name that looks like a file being written gets `_` in front too, and at most 255 UTF-8
 * bytes (keeping the extension).
 */
export function sanitizeFilename(raw: string | undefined): string {
  // C0, DEL and C1 controls: NUL truncates paths in C code and the others corrupt logs and terminals.
  let name = (raw ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, '');
  name = name.slice(Math.max(name.lastIndexOf('/'), name.lastIndexOf('\\')) + 1);
  if (name === '.' || name === '..' || name === '') return 'file';
  // The commit step drops every file whose lower-cased name is body.json (SPEC §4.7): rename it rather than lose it.
  if (name.toLowerCase() === 'body.json' || name.startsWith(PARTIAL_PREFIX)) name = `_${name}`;
  return capNameBytes(name, MAX_NAME_BYTES);
}

/**
 * The n-th unique variant of `name`, as the original did it: `a.jpg` → `a_.jpg` → `a__.jpg`, and a name without
 * an extension gets `_` appended. The stem is shortened when needed so the result stays within 255 bytes.
 */
export function uniqueVariant(name: string, n: number): string {
  if (n === 0) return name;
  const ext = path.extname(name);
  const stem = name.slice(0, name.length - ext.length);
  const budget = MAX_NAME_BYTES - Buffer.byteLength(ext) - n;
  return truncateUtf8(stem, Math.max(0, budget)) + '_'.repeat(n) + ext;
}

function capNameBytes(name: string, max: number): string {
  if (Buffer.byteLength(name) <= max) return name;
  const ext = path.extname(name);
  const extBytes = Buffer.byteLength(ext);
  // An absurdly long "extension" is not worth keeping; cut the whole name instead.
  if (extBytes > max / 2) return truncateUtf8(name, max);
  return truncateUtf8(name.slice(0, name.length - ext.length), max - extBytes) + ext;
}

/** Longest prefix of `s` within `maxBytes` UTF-8 bytes, never splitting a character. */
function truncateUtf8(s: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of s) {
    const b = Buffer.byteLength(ch);
    if (bytes + b > maxBytes) break;
    out += ch;
    bytes += b;
  }
  return out;
}

/**
 * Hands out unique names for one directory. Reservation is synchronous, so concurrent requests in this process
 * can never pick the same name (the original's check-then-create race). Seeded lazily with the directory listing.
 * Create one per task directory and share it between that task's uploads.
 */
export class NameReserver {
  private readonly taken = new Set<string>();
  private seeded = false;

  constructor(private readonly dir: string | null) {}

  reserve(wanted: string): string {
    this.seed();
    for (let n = 0; ; n++) {
      const candidate = uniqueVariant(wanted, n);
      if (!this.taken.has(candidate)) {
        this.taken.add(candidate);
        return candidate;
      }
    }
  }

  release(name: string): void {
    this.taken.delete(name);
  }

  private seed(): void {
    if (this.seeded) return;
    this.seeded = true;
    if (this.dir === null) return;
    try {
      for (const entry of fs.readdirSync(this.dir)) this.taken.add(entry);
    } catch {
      // A missing or unreadable dir: opening the file reports the real error.
    }
  }
}

/**
 * Renames `from` to `to` unless `to` exists, which fails with EEXIST: a hard link, then the old name removed (a
 * crash in between leaves the complete file under both names; the temporary one is swept at the next start). Where
 * hard links are not supported: a check, then a rename (names are reserved in this process, so nobody races it).
 */
export async function renameNoReplace(from: string, to: string): Promise<void> {
  try {
    await fs.promises.link(from, to);
  } catch (err) {
    if (!NO_HARD_LINKS.has(systemErrorCode(err) ?? '')) throw err;
    const taken = await fs.promises.lstat(to).then(
      () => true,
      () => false,
    );
    if (taken) throw Object.assign(new Error(`EEXIST: file already exists, rename -> '${to}'`), { code: 'EEXIST', syscall: 'rename' });
    await fs.promises.rename(from, to);
    return;
  }
  await fs.promises.unlink(from).catch(() => undefined);
}
