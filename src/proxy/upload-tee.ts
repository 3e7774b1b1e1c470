import type * as http from 'node:http';
import { Readable } from 'node:stream';
import { ClusterError, type Clock, type TimerHandle } from '../core';
import type { RequestFlow } from './request-flow';

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

/** How long a node more than the lag bound behind may hold the client's upload before its copy is dropped. */
export const DEFAULT_TEE_STALL_MS = 10_000;
/**
 * Bytes held for a node that holds the client (see TeePacing): enough to keep a node on loopback busy, and small
 * enough that the chunks die young (V8 promotes buffers that survive two scavenges, and then needs full collections).
 */
export const DEFAULT_TEE_HOLD_BYTES = 1024 * 1024;

/** Pacing the client at the node's speed: `flow` is shared with the staging, the clock times a stall. */
export interface TeePacing {
  flow: RequestFlow;
  clock: Clock;
  /** A node that holds the client for this long (without taking half of `holdBytes`) loses its copy. */
  stallMs: number;
  /** Bytes held for the node before it holds the client (instead of `maxLagBytes`). */
  holdBytes: number;
}

/**
 * Starts copying `req` into a stream for the node. Call it in the same tick as the staging's reader, before any data
 * flowed, so both copies see every byte. Without `pacing`, the copy never pauses `req`: it ends with an error when
 * the node is more than `maxLagBytes` behind (nothing more is held for it), or when the client goes away. With
 * `pacing`, a node more than `holdBytes` behind holds the client (the request is paused, as a plain reverse proxy
 * would be) until it has taken half of that, and only a node that does not get there within `stallMs` loses its
 * copy: a node a little slower than ClusterODM's disk then still gets the client's bytes as they are, instead of the
 * whole task again at commit.
 */
export function teeRequest(req: http.IncomingMessage, maxLagBytes = DEFAULT_TEE_LAG_BYTES, pacing?: TeePacing): TeeBody {
  // Fed by push only; what the node has not taken yet is its readable buffer, bounded below.
  const bound = pacing?.holdBytes ?? maxLagBytes;
  const stream = new Readable({ read: () => resume(), highWaterMark: Math.max(1, Math.floor(bound / 2)) });
  let lagged = false;
  /** With pacing: the chunk that did not fit while the node holds the client. */
  let waiting: Buffer | null = null;
  let stall: TimerHandle | null = null;
  let ended = false;
  let asked = false;
  const behind = (): ClusterError =>
    new ClusterError(
      'NODE_REQUEST_FAILED',
      pacing ? `the node did not catch up with the client within ${pacing.stallMs} ms` : `the node fell more than ${maxLagBytes} bytes behind the client`,
    );
  const unhold = (): void => {
    if (stall !== null) pacing?.clock.clearTimeout(stall);
    stall = null;
    pacing?.flow.release('node');
  };
  const resume = (): void => {
    // Called as the stream's read(): the node has taken all but less than half the bound, so the chunk goes now
    // (read() is not called again until something is pushed).
    if (waiting === null || stream.destroyed) {
      asked = waiting === null;
      return;
    }
    asked = false;
    const chunk = waiting;
    waiting = null;
    stream.push(chunk);
    if (ended) stream.push(null);
    unhold();
  };
  // Errors reach the upload request through its pipeline; this keeps a late one from being unhandled.
  stream.on('error', () => undefined);
  const onData = (chunk: Buffer): void => {
    if (stream.destroyed) return;
    // `asked`: read() found nothing to take and is not called again until a push, whatever the bound says.
    if (stream.readableLength + chunk.length <= bound || (pacing && asked)) {
      asked = false;
      stream.push(chunk);
    } else if (pacing && waiting === null) {
      waiting = chunk;
      pacing.flow.hold('node');
      stall = pacing.clock.setTimeout(() => {
        lagged = true;
        stream.destroy(behind());
      }, pacing.stallMs);
    } else {
      lagged = true;
      stream.destroy(behind());
    }
  };
  const onEnd = (): void => {
    if (stream.destroyed) return;
    // A request paused in its last chunk's 'data' still ends: the waiting chunk goes first.
    if (waiting !== null) ended = true;
    else stream.push(null);
  };
  const onClose = (): void => {
    if (!req.complete) stream.destroy(new Error('the client went away during the upload'));
  };
  req.on('data', onData);
  req.once('end', onEnd);
  req.once('close', onClose);
  stream.once('close', () => {
    waiting = null;
    unhold();
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
