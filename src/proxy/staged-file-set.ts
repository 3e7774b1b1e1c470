/**
 * What one staging call (upload-staging.ts with busboy, raw-staging.ts with the boundary scan) has staged and may
 * have to undo: the files in upload order, the names it reserved and created, the bytes counted against the limits.
 * Both calls check and name files by these same rules, with the same errors and texts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { errorMessage, systemErrorCode } from '../core/errors';
import type { StagingLimits } from './staging-limits';
import { NameReserver, renameNoReplace, sanitizeFilename } from './staging-names';
import { shortName, StagingError } from './staging-errors';
import type { StagedFile, StageOptions } from './upload-staging';

/** A sane `reserveName` succeeds at once; this only stops a broken one from looping forever on EEXIST. */
const MAX_NAME_ATTEMPTS = 1000;

export class StagedFileSet {
  /** Indexed by upload order; filled when each file is complete. */
  private readonly staged: (StagedFile | undefined)[] = [];
  /** Names of every file this call created (or may have), removed if the call fails (names, not paths: a call can create thousands). */
  private readonly created: string[] = [];
  private readonly reserved: string[] = [];
  private readonly reserve: (wanted: string) => string;
  private totalBytes = 0;

  constructor(
    private readonly dir: string | null,
    private readonly opts: Pick<StageOptions, 'reserveName' | 'releaseName' | 'maxImages' | 'existingFiles'>,
    private readonly limits: StagingLimits,
  ) {
    const fallback = new NameReserver(dir);
    this.reserve = opts.reserveName ?? ((wanted) => fallback.reserve(wanted));
  }

  /** Refuses one more file past the call's file limit or the task's image limit; null when it may come. */
  checkCount(): StagingError | null {
    const count = this.staged.length + 1;
    const maxImages = this.opts.maxImages;
    const overImages = maxImages !== null && maxImages !== undefined && (this.opts.existingFiles ?? 0) + count > maxImages;
    if (count > this.limits.maxFiles || overImages) return new StagingError('limit', 'Max images count exceeded.');
    return null;
  }

  /** Counts `chunkBytes` more of a file already `fileBytes` long, or refuses them past a limit. */
  admitBytes(fileBytes: number, chunkBytes: number): StagingError | null {
    if (fileBytes + chunkBytes > this.limits.maxFileBytes) return new StagingError('limit', 'File too large');
    if (this.totalBytes + chunkBytes > this.limits.maxTotalBytes) return new StagingError('limit', 'Upload too large');
    this.totalBytes += chunkBytes;
    return null;
  }

  /**
   * The next file's place in upload order and its name, reserved now, synchronously and in upload order, so two
   * parts named alike get a.jpg then a_.jpg. Throws a StagingError.
   */
  next(filename: Parameters<typeof sanitizeFilename>[0]): { slot: number; name: string } {
    const slot = this.staged.length;
    this.staged.push(undefined);
    try {
      return { slot, name: this.reserveChecked(sanitizeFilename(filename)) };
    } catch (err) {
      throw err instanceof StagingError ? err : new StagingError('io', errorMessage(err), { cause: err });
    }
  }

  /** A reserved name, refusing one from a custom `reserveName` that could escape the directory. */
  reserveChecked(wanted: string): string {
    const name = this.reserve(wanted);
    this.reserved.push(name);
    if (sanitizeFilename(name) !== name) {
      throw new StagingError('io', `Refusing unsafe file name from reserveName: ${shortName(name)}`);
    }
    return name;
  }

  /** A file (a temporary one too) this call made, removed should the call fail. */
  noteCreated(name: string): void {
    this.created.push(name);
  }

  /** Gives a complete file its reserved name, never replacing an existing file: on EEXIST, asks for another one. */
  async publish(temp: string, first: string): Promise<string> {
    const dir = this.dirOrThrow();
    let name = first;
    for (let attempt = 1; ; attempt++) {
      try {
        await renameNoReplace(path.join(dir, temp), path.join(dir, name));
        this.created.push(name);
        return name;
      } catch (err) {
        if (systemErrorCode(err) !== 'EEXIST' || attempt >= MAX_NAME_ATTEMPTS) throw err;
        name = this.reserveChecked(name);
      }
    }
  }

  place(slot: number, file: StagedFile): void {
    this.staged[slot] = file;
  }

  files(): StagedFile[] {
    return this.staged.filter((f): f is StagedFile => f !== undefined);
  }

  dirOrThrow(): string {
    if (this.dir === null) throw new StagingError('io', 'No upload directory');
    return this.dir;
  }

  /** Undoes the call: every file it created is removed and every name it reserved given back. */
  async removeCreated(): Promise<void> {
    const dir = this.dir;
    if (dir !== null) {
      await Promise.all(this.created.map((name) => fs.promises.rm(path.join(dir, name), { force: true }).catch(() => undefined)));
    }
    for (const name of this.reserved) this.opts.releaseName?.(name);
  }
}
