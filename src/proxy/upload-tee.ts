import type * as http from 'node:http';
import { Readable } from 'node:stream';
import { ClusterError } from '../core';

/**
 * The client's upload request as a second copy for the node: its multipart body goes, byte for byte, both into
 * the staging parser (the copy on disk stays the source of truth) and into an upload request to the node, so the
 * node gets the images while the client sends them, without ClusterODM reading them back from disk or re-encoding
 * them (see StreamForwarder.tee). The client is read as fast as the disk takes it, never at the node's pace: a node
 * that falls more than a bound behind loses the copy (the caller then sends the files from disk), so a slow or
 * stalled node neither holds the client up nor makes ClusterODM buffer the body in memory.
 */
export interface TeeBody {
  /** The copy for the node (single use). */
  readonly stream: Readable;
  readonly contentType: string;
  readonly contentLength: number;
  /**
   * True once the copy was dropped because the node fell too far behind. A node that stopped reading never sees
   * the connection end, so it may keep the file it was receiving, cut short, under its real name: its upload
   * cannot be caught up, only sent again from nothing.
   */
  readonly lagged: () => boolean;
}

/** How far (bytes held in memory) the node may fall behind the client before its copy is dropped. */
export const DEFAULT_TEE_LAG_BYTES = 4 * 1024 * 1024;

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
 * any data flowed, so both copies see every byte. The copy never pauses `req`: it ends with an error when the node
 * is more than `maxLagBytes` behind (nothing more is held for it), or when the client goes away.
 */
export function teeRequest(req: http.IncomingMessage, maxLagBytes = DEFAULT_TEE_LAG_BYTES): TeeBody {
  // Fed by push only; what the node has not taken yet is its readable buffer, bounded below.
  const stream = new Readable({ read: () => undefined });
  let lagged = false;
  // Errors reach the upload request through its pipeline; this keeps a late one from being unhandled.
  stream.on('error', () => undefined);
  const onData = (chunk: Buffer): void => {
    if (stream.destroyed) return;
    if (stream.readableLength + chunk.length > maxLagBytes) {
      lagged = true;
      stream.destroy(new ClusterError('NODE_REQUEST_FAILED', `the node fell more than ${maxLagBytes} bytes behind the client`));
    } else {
      stream.push(chunk);
    }
  };
  const onEnd = (): void => {
    if (!stream.destroyed) stream.push(null);
  };
  const onClose = (): void => {
    if (!req.complete) stream.destroy(new Error('the client went away during the upload'));
  };
  req.on('data', onData);
  req.once('end', onEnd);
  req.once('close', onClose);
  stream.once('close', () => {
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('close', onClose);
  });
  return {
    stream,
    contentType: req.headers['content-type'] ?? '',
    contentLength: Number(req.headers['content-length']),
    lagged: () => lagged,
  };
}

/**
 * A staged name is the node's name too only if the client's filename is already what both sides store: plain
 * printable ASCII (the node's multipart parser may decode other bytes differently), no path, not renamed.
 */
export function sameNameOnNode(stagedName: string, originalName: string): boolean {
  return stagedName === originalName && /^[\x20-\x7e]+$/.test(stagedName) && !/[/\\]/.test(stagedName);
}
