import type * as http from 'node:http';
import { PassThrough, type Readable } from 'node:stream';

/**
 * The client's upload request as a second copy for the node: its multipart body is piped, byte for byte, both into
 * the staging parser (the copy on disk stays the source of truth) and into an upload request to the node, so the
 * node gets the images while the client sends them, without ClusterODM reading them back from disk or re-encoding
 * them (see StreamForwarder.tee). Backpressure is shared: the client is read as fast as the slower of the disk and
 * the node takes it, so memory stays flat.
 */
export interface TeeBody {
  /** The copy for the node (single use). */
  readonly stream: Readable;
  readonly contentType: string;
  readonly contentLength: number;
}

/** Only a multipart body of announced length: requests to nodes are never chunked (see multipart-writer.ts). */
export function teeable(headers: http.IncomingHttpHeaders): boolean {
  const type = headers['content-type'];
  const length = headers['content-length'];
  return (
    headers['transfer-encoding'] === undefined &&
    typeof type === 'string' &&
    /^multipart\/form-data;/i.test(type.trim()) &&
    typeof length === 'string' &&
    /^\d{1,15}$/.test(length)
  );
}

/**
 * Starts copying `req` into a stream for the node. Call it in the same tick as the staging parser's pipe, before
 * any data flowed, so both copies see every byte. A client that goes away ends the copy with an error.
 */
export function teeRequest(req: http.IncomingMessage): TeeBody {
  const stream = new PassThrough();
  // Errors reach the upload request through its pipeline; this keeps a late one from being unhandled.
  stream.on('error', () => undefined);
  req.once('close', () => {
    if (!req.complete) stream.destroy(new Error('the client went away during the upload'));
  });
  req.pipe(stream);
  return { stream, contentType: req.headers['content-type'] ?? '', contentLength: Number(req.headers['content-length']) };
}

/**
 * A staged name is the node's name too only if the client's filename is already what both sides store: plain
 * printable ASCII (the node's multipart parser may decode other bytes differently), no path, not renamed.
 */
export function sameNameOnNode(stagedName: string, originalName: string): boolean {
  return stagedName === originalName && /^[\x20-\x7e]+$/.test(stagedName) && !/[/\\]/.test(stagedName);
}
