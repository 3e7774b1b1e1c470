/**
 * A task's files sent to a node (node-uploader.ts): up to `parallel` POST /task/new/upload/<uuid> requests of
 * ceil(n/parallel) files each, every one retried like the original; the first final failure cancels the others.
 * Bodies stream from disk, so memory stays flat whatever the task size.
 */
import { setMaxListeners } from 'node:events';
import { abortableSleep, errorMessage, type Clock, type Logger } from '../core';
import { buildMultipart, type MultipartBody } from './multipart-writer';
import { expectNoError } from './node-answers';
import { abortedError, nodeError, type NodeHttp, type UploadNode } from './node-http';
import { BodyMeter, ProgressMeter, type ProgressLane, type UploadProgress } from './upload-progress';

export type UploadFile = { path: string; name: string };

export interface ChunkUploaderDeps {
  http: NodeHttp;
  clock: Clock;
  logger: Logger;
  /** 0 = unlimited; applied per connection. */
  maxSendBytesPerSec: number;
  parallel: number;
  chunkRetries: number;
  retrySleepMs: number;
  requestTimeoutMs: number;
}

/** One upload request's worth of files, with its body ready to stream (again, on retry). */
interface Chunk {
  files: readonly UploadFile[];
  body: MultipartBody;
}

export class ChunkUploader {
  constructor(private readonly d: ChunkUploaderDeps) {}

  /** All `files`, in parallel requests; resolves when the node confirmed every one. */
  async uploadAll(
    node: UploadNode,
    uuid: string,
    files: readonly UploadFile[],
    signal: AbortSignal,
    onProgress?: (p: UploadProgress) => void,
  ): Promise<void> {
    const chunks = await Promise.all(splitEvenly(files, this.d.parallel).map(prepareChunk));
    const bytesTotal = chunks.reduce((sum, c) => sum + c.body.contentLength, 0);
    const meter = new ProgressMeter(files.length, bytesTotal, this.d.logger, onProgress);
    this.d.logger.info(`Uploading ${files.length} files to ${node.name} for ${uuid} (${chunks.length} requests, ${bytesTotal} bytes)`);
    await runAllOrCancel(
      chunks.map((chunk) => (s: AbortSignal) => this.sendChunk(node, uuid, chunk, s, meter.lane())),
      signal,
    );
  }

  /** All `files` in one request, retried like the original. */
  async uploadOne(
    node: UploadNode,
    uuid: string,
    files: readonly UploadFile[],
    signal: AbortSignal,
    onProgress?: (p: UploadProgress) => void,
  ): Promise<void> {
    const chunk = await prepareChunk(files);
    const meter = new ProgressMeter(files.length, chunk.body.contentLength, this.d.logger, onProgress);
    this.d.logger.info(`Uploading ${files.length} files to ${node.name} for ${uuid}`);
    await this.sendChunk(node, uuid, chunk, signal, meter.lane());
  }

  private async sendChunk(node: UploadNode, uuid: string, chunk: Chunk, signal: AbortSignal, lane: ProgressLane): Promise<void> {
    const retries = this.d.chunkRetries;
    for (let attempt = 0; ; attempt++) {
      try {
        lane.restart();
        await this.postUpload(node, uuid, chunk, signal, lane);
        lane.done(chunk.files.length);
        return;
      } catch (e: unknown) {
        if (signal.aborted) throw abortedError();
        if (attempt >= retries) {
          throw nodeError(`${errorMessage(e)}: maximum upload retries (${retries}) exceeded`, e);
        }
        this.d.logger.warn(`File upload to ${node.name} failed, retrying... (${attempt + 1}) [task ${uuid}: ${errorMessage(e)}]`);
        await sleepOrThrow(this.d.clock, this.d.retrySleepMs, signal);
      }
    }
  }

  private async postUpload(node: UploadNode, uuid: string, chunk: Chunk, signal: AbortSignal, lane: ProgressLane): Promise<void> {
    const meter = new BodyMeter(this.d.clock, this.d.maxSendBytesPerSec, (n) => lane.bytes(n));
    const path = `/task/new/upload/${encodeURIComponent(uuid)}`;
    const answer = await this.d.http.call(node, { method: 'POST', path, body: chunk.body, signal, timeoutMs: this.d.requestTimeoutMs, meter });
    expectNoError(answer);
    if (answer['success'] !== true) throw nodeError(`${node.name} did not confirm the upload of ${chunk.files.length} files`);
  }
}

async function prepareChunk(files: readonly UploadFile[]): Promise<Chunk> {
  const body = await buildMultipart(files.map((f) => ({ name: 'images', filePath: f.path, fileName: f.name })));
  return { files, body };
}

/** The original's split: chunks of ceil(n/parallel) files, so at most `parallel` requests. */
function splitEvenly<T>(items: readonly T[], parallel: number): T[][] {
  const size = Math.max(1, Math.ceil(items.length / Math.max(1, parallel)));
  const chunks: T[][] = [];
  for (let i = 0; i < items.length; i += size) chunks.push(items.slice(i, i + size));
  return chunks;
}

/** Runs jobs in parallel; the first failure cancels the others, and all have settled on return. */
async function runAllOrCancel(jobs: Array<(signal: AbortSignal) => Promise<void>>, outer: AbortSignal): Promise<void> {
  if (outer.aborted) throw abortedError();
  const inner = new AbortController();
  // Each job holds at most one listener (a request or a retry pause) at a time: 20 is expected, not a leak.
  setMaxListeners(jobs.length + 10, inner.signal);
  const forward = (): void => inner.abort();
  outer.addEventListener('abort', forward, { once: true });
  let failure: { error: unknown } | undefined;
  try {
    await Promise.all(
      jobs.map((job) =>
        job(inner.signal).catch((e: unknown) => {
          failure ??= { error: e };
          inner.abort();
        }),
      ),
    );
  } finally {
    outer.removeEventListener('abort', forward);
  }
  if (outer.aborted) throw abortedError();
  if (failure) throw failure.error;
}

/** Waits between retries; an abort ends the wait with the abort error. */
export async function sleepOrThrow(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  await abortableSleep(clock, ms, signal);
  if (signal.aborted) throw abortedError();
}
