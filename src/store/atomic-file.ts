import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

/** The part of fs/promises the store uses; injectable so tests can simulate full or read-only disks. */
export interface StoreFs {
  open: typeof fsp.open;
  rename: typeof fsp.rename;
  readFile: typeof fsp.readFile;
  unlink: typeof fsp.unlink;
  mkdir: typeof fsp.mkdir;
  copyFile: typeof fsp.copyFile;
}

export const realFs: StoreFs = {
  open: fsp.open,
  rename: fsp.rename,
  readFile: fsp.readFile,
  unlink: fsp.unlink,
  mkdir: fsp.mkdir,
  copyFile: fsp.copyFile,
};

let tmpCounter = 0;

/**
 * Writes `data` to `file` so that a crash at any moment leaves either the old or the new complete file:
 * write a temp file in the same directory, fsync it, rename it over the target, fsync the directory.
 * With `backup`, the previous version is first copied to `<file>.bak` (the "last good copy"). `data` may come in
 * pieces (an async iterable), so a large file is written without being built as one string first.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array | AsyncIterable<string>,
  opts: { fs?: StoreFs; backup?: boolean; mode?: number } = {},
): Promise<void> {
  const fs = opts.fs ?? realFs;
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${++tmpCounter}`);
  let handle: fsp.FileHandle | null = null;
  try {
    handle = await fs.open(tmp, 'w', opts.mode ?? 0o600);
    if (typeof data === 'string' || data instanceof Uint8Array) await handle.writeFile(data);
    else for await (const piece of data) await writeAll(handle, Buffer.from(piece, 'utf8'));
    await handle.sync();
    await handle.close();
    handle = null;
    if (opts.backup) {
      try {
        await fs.copyFile(file, `${file}.bak`);
      } catch (e: unknown) {
        if (!isNotFound(e)) throw e;
      }
    }
    await fs.rename(tmp, file);
  } catch (e: unknown) {
    if (handle) await handle.close().catch(() => undefined);
    await fs.unlink(tmp).catch(() => undefined);
    throw e;
  }
  await syncDir(dir, fs);
}

/** One write call may write less than asked (a full disk answers with an error only on the next call). */
async function writeAll(handle: fsp.FileHandle, buf: Buffer): Promise<void> {
  let off = 0;
  while (off < buf.length) {
    const { bytesWritten } = await handle.write(buf, off, buf.length - off);
    if (bytesWritten <= 0) throw new Error('write made no progress');
    off += bytesWritten;
  }
}

/** fsync of the directory makes the rename itself durable; not supported everywhere, so best effort. */
async function syncDir(dir: string, fs: StoreFs): Promise<void> {
  let h: fsp.FileHandle | null = null;
  try {
    h = await fs.open(dir, 'r');
    await h.sync();
  } catch {
    // Some platforms/filesystems refuse fsync on directories.
  } finally {
    if (h) await h.close().catch(() => undefined);
  }
}

export function isNotFound(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === 'ENOENT';
}
