import type * as http from 'node:http';
import { S3NotFound, type S3Store } from '../autoscaler';
import type { Logger } from '../core';
import { errorMessage } from '../core';
import { sendJson } from './respond';

export interface S3DownloadsOptions {
  /** Base URL of the results: `--downloads-from-s3` (path kept), or the autoscaler's bucket URL. */
  base: string;
  /** Set when the results are private (an ACL other than public-read): ClusterODM streams them itself. */
  store: S3Store | null;
  logger: Logger;
}

/** The S3 key of a download action's asset, or null if it is not a safe relative path (SPEC §12 item 29). */
export function s3AssetPath(action: string): string | null {
  if (!action.startsWith('download/')) return null;
  let asset = action.slice('download/'.length);
  // As the original: the orthophoto's short name.
  if (asset === 'orthophoto.tif') asset = 'odm_orthophoto/odm_orthophoto.tif';
  const parts: string[] = [];
  for (const raw of asset.split('/')) {
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (seg === '' || seg === '.' || seg === '..' || /[\\/\0]/.test(seg)) return null;
    parts.push(seg);
  }
  return parts.length > 0 ? parts.join('/') : null;
}

/** Normalises `--downloads-from-s3`: a URL whose path is kept as a prefix (the original dropped it). */
export function downloadsBase(flag: string): string {
  const u = new URL(flag);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

/**
 * Downloads of tasks whose results are in S3 (they ran on an autoscaled node): a 301 to the object, as the original,
 * or, for private results, the object streamed through (the original buffered it whole).
 */
export class S3Downloads {
  constructor(private readonly o: S3DownloadsOptions) {}

  async serve(req: http.IncomingMessage, res: http.ServerResponse, uuid: string, asset: string): Promise<void> {
    req.resume();
    const key = `${uuid}/${asset}`;
    if (!this.o.store) {
      const location = `${this.o.base}/${key.split('/').map(encodeURIComponent).join('/')}`;
      res.writeHead(301, { Location: location, 'Content-Length': 0 });
      res.end();
      return;
    }
    const ac = new AbortController();
    res.once('close', () => ac.abort());
    let obj;
    try {
      obj = await this.o.store.open(key, ac.signal);
    } catch (e: unknown) {
      if (e instanceof S3NotFound) return sendJson(res, { error: 'Asset not found' }, 404);
      this.o.logger.error(`Cannot fetch ${key} from S3: ${errorMessage(e)}`);
      if (!res.headersSent) {
        res.writeHead(500, { 'Content-Type': 'text/plain' });
        res.end('Internal server error');
      }
      return;
    }
    const headers: http.OutgoingHttpHeaders = { 'Content-Type': obj.contentType ?? 'application/octet-stream' };
    if (obj.contentLength !== undefined) headers['Content-Length'] = obj.contentLength;
    res.writeHead(200, headers);
    obj.body.on('error', (e: Error) => {
      this.o.logger.warn(`S3 download of ${key} failed: ${e.message}`);
      res.destroy();
    });
    obj.body.pipe(res);
  }
}
