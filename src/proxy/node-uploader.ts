/**
 * Sends a staged task to a NodeODM node: init (with `set-uuid`) → parallel uploads → commit
 * (SPEC §5, "Forwarding to a node").
 *
 * Differences from the original (SPEC §12 items 9, 10):
 * - abort destroys every in-flight request and rejects every pending promise with 'Aborted';
 *   nothing is retried after an abort;
 * - a task sent again to a node starts there from nothing: NodeODM keeps an uncommitted upload at the next init
 *   (and stores a repeated name as `a_.jpg`), so an upload this process (or an earlier run) may have left is found
 *   with an upload request without files, and removed before the init (see clearUpload);
 * - a task the node reports as committed is never removed: if this process may have committed it (a lost commit
 *   answer), it is adopted; otherwise it is kept and the send fails (NODE_TASK_EXISTS).
 *
 * What was sent where is kept in a {@link NodeTaskLedger}; requests go through {@link NodeHttp} (one keep-alive
 * agent per node), files through {@link ChunkUploader}.
 */
import type * as http from 'node:http';
import { ClusterError, errorMessage, type Clock, type Logger } from '../core';
import type { NodeEndpoint } from '../nodeodm';
import { buildMultipart, type MultipartBody, type MultipartPart } from './multipart-writer';
import { expectNoError, isTaskInfo, refusalOf } from './node-answers';
import { abortedError, NodeHttp, nodeError, type UploadNode } from './node-http';
import { NodeTaskLedger } from './node-task-ledger';
import { ChunkUploader, sleepOrThrow, type UploadFile } from './upload-chunks';
import type { UploadProgress } from './upload-progress';
import type { TeeBody } from './upload-tee';

export type { UploadNode } from './node-http';
export type { UploadFile } from './upload-chunks';
export type { UploadProgress } from './upload-progress';

export interface TaskParams {
  name: string;
  /** [{name, value}], sent as JSON. */
  options: unknown[];
  dateCreated: number;
  skipPostProcessing: boolean;
  webhook: string | null;
  outputs: string | null;
}

export interface NodeUploaderDeps {
  clock: Clock;
  logger: Logger;
  agentFor?: (node: NodeEndpoint) => http.Agent;
  /** 0 = unlimited; --upload-max-speed, applied per connection like curl's MAX_SEND_SPEED. */
  maxSendBytesPerSec?: number;
  parallel?: number;
  chunkRetries?: number;
  retrySleepMs?: number;
  /** Idle socket timeout; the original aborted below 30 B/s for 1600 s (LOW_SPEED_TIME). */
  requestTimeoutMs?: number;
}

const PARALLEL_UPLOADS = 20;
const CHUNK_RETRIES = 5;
const RETRY_SLEEP_MS = 2000;
const REQUEST_TIMEOUT_MS = 1600 * 1000;
/** Clean-up and status requests are small: a node that does not answer within this is given up on. */
const SHORT_TIMEOUT_MS = 60 * 1000;
/** Init attempts while the uuid is busy on the node (an older NodeODM removes a stale upload only after answering). */
const INIT_ATTEMPTS = 3;
/** Removals of a leftover upload before a node that keeps one is given up on. */
const CLEAR_ATTEMPTS = 3;
/** Options that are not JSON: NodeODM refuses the init, and removes the upload dir of its set-uuid. */
const REFUSED_OPTIONS = 'not JSON: remove the uncommitted upload';

export class NodeUploader {
  private readonly http: NodeHttp;
  private readonly chunks: ChunkUploader;
  /** What this process sent to which node (see node-task-ledger.ts). */
  private readonly ledger = new NodeTaskLedger();

  constructor(private readonly deps: NodeUploaderDeps) {
    this.http = new NodeHttp(deps.agentFor);
    this.chunks = new ChunkUploader({
      http: this.http,
      clock: deps.clock,
      logger: deps.logger,
      maxSendBytesPerSec: deps.maxSendBytesPerSec ?? 0,
      parallel: deps.parallel ?? PARALLEL_UPLOADS,
      chunkRetries: deps.chunkRetries ?? CHUNK_RETRIES,
      retrySleepMs: this.retrySleepMs,
      requestTimeoutMs: this.requestTimeoutMs,
    });
  }

  /** init + all uploads + commit; resolves when the node holds the task committed (sent now, or adopted). */
  async sendTask(
    node: UploadNode,
    uuid: string,
    params: TaskParams,
    files: readonly UploadFile[],
    opts: { signal: AbortSignal; onProgress?: (p: UploadProgress) => void },
  ): Promise<void> {
    const { signal } = opts;
    if (files.length === 0) throw new ClusterError('INVALID_INPUT', 'Not enough images (0 files uploaded)');
    const started = this.deps.clock.now();
    try {
      const adopted = await this.ledger.exclusive(node, uuid, async () => {
        if ((await this.startTask(node, uuid, params, signal)) === 'committed') return true;
        await this.chunks.uploadAll(node, uuid, files, signal, opts.onProgress);
        await this.commitOrAdopt(node, uuid, signal);
        return false;
      });
      await this.checkCommitted(node, uuid, files, signal);
      if (adopted) return;
    } catch (e: unknown) {
      if (signal.aborted) {
        this.deps.logger.info(`Sending task ${uuid} to ${node.name} aborted`);
        throw abortedError();
      }
      throw e;
    }
    const seconds = ((this.deps.clock.now() - started) / 1000).toFixed(1);
    this.deps.logger.info(`Task ${uuid} sent to ${node.name}: ${files.length} files in ${seconds} s`);
  }

  /**
   * POST /task/new/init with set-uuid, on a node cleared of any upload of the task it may hold. 'committed': the
   * node holds the task committed, and this process may have committed it (it is adopted, nothing is to be sent).
   */
  init(node: UploadNode, uuid: string, params: TaskParams, signal: AbortSignal): Promise<'initialized' | 'committed'> {
    return this.ledger.exclusive(node, uuid, () => this.startTask(node, uuid, params, signal));
  }

  /** One POST /task/new/upload/<uuid> carrying all `files`, retried like the original. */
  upload(node: UploadNode, uuid: string, files: readonly UploadFile[], signal: AbortSignal, onProgress?: (p: UploadProgress) => void): Promise<void> {
    return this.chunks.uploadOne(node, uuid, files, signal, onProgress);
  }

  /** False with --upload-max-speed: a client's body copied as is to a node (upload-tee.ts) would not be paced. */
  get canSendRawBodies(): boolean {
    return (this.deps.maxSendBytesPerSec ?? 0) <= 0;
  }

  /**
   * One POST /task/new/upload/<uuid> whose multipart body is a stream given by the caller (a copy of the client's
   * upload, see upload-tee.ts); single use, so never retried: on failure the caller sends the files from disk.
   */
  async uploadBody(node: UploadNode, uuid: string, body: TeeBody, signal: AbortSignal): Promise<void> {
    const multipart: MultipartBody = { contentType: body.contentType, contentLength: body.contentLength, stream: () => body.stream };
    const answer = await this.http.call(node, { method: 'POST', path: uploadPath(uuid), body: multipart, signal, timeoutMs: this.requestTimeoutMs });
    expectNoError(answer);
    if (answer['success'] !== true) throw nodeError(`${node.name} did not confirm the upload`);
  }

  /** POST /task/new/commit/<uuid>. */
  commit(node: UploadNode, uuid: string, signal: AbortSignal): Promise<void> {
    return this.ledger.exclusive(node, uuid, () => this.sendCommit(node, uuid, signal));
  }

  /**
   * After a commit (or an adoption): the node must hold the task with exactly the files sent, every one of them once
   * (issue 13). A node that reports another image count lost or doubled part of an upload on its way, whatever the
   * cause: its copy is removed there and this rejects with NODE_TASK_INCOMPLETE, so that the caller sends the task
   * again, from nothing, from its staged files. NodeODM counts every uploaded file as an image, but extracts a zip
   * at commit: a task with a .zip file is not checked. A node that cannot be asked, or reports no count, is trusted.
   */
  async checkCommitted(node: UploadNode, uuid: string, files: readonly UploadFile[], signal: AbortSignal): Promise<void> {
    if (files.some((f) => /\.zip$/i.test(f.name))) return;
    let count: unknown;
    try {
      const info = await this.http.call(node, { method: 'GET', path: `/task/${encodeURIComponent(uuid)}/info`, signal, timeoutMs: this.shortTimeoutMs });
      if (!isTaskInfo(info, uuid)) return;
      count = info['imagesCount'];
    } catch (e: unknown) {
      if (signal.aborted) throw abortedError();
      this.deps.logger.warn(`Cannot check the image count of task ${uuid} on ${node.name}: ${errorMessage(e)}`);
      return;
    }
    if (typeof count !== 'number' || count === files.length) return;
    const what = `${node.name} committed task ${uuid} with ${count} images, ${files.length} were sent`;
    this.deps.logger.error(`${what}: removing it there to send it again`);
    const answer = await this.http.call(node, {
      method: 'POST',
      path: '/task/remove',
      body: Buffer.from(new URLSearchParams({ uuid }).toString()),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      signal,
      timeoutMs: this.shortTimeoutMs,
    });
    if (answer['success'] !== true) throw nodeError(`${what}, and it could not be removed there: ${JSON.stringify(answer).slice(0, 200)}`);
    throw new ClusterError('NODE_TASK_INCOMPLETE', what);
  }

  /**
   * Best effort: removes from the node an uncommitted upload of the task; a task the node holds committed is never
   * touched. Failures are logged, only an abort rejects.
   */
  async removePartial(node: UploadNode, uuid: string, signal: AbortSignal): Promise<void> {
    try {
      await this.ledger.exclusive(node, uuid, () => this.clearUpload(node, uuid, signal));
    } catch (e: unknown) {
      if (signal.aborted) throw abortedError();
      this.deps.logger.warn(`Could not remove the upload of task ${uuid} from ${node.name}: ${errorMessage(e)}`);
    }
  }

  /**
   * Tasks an earlier run may have sent to any node (they were uploading or being forwarded when it stopped): before
   * one is initialised on a node, whatever upload of it the node holds is removed; if the node holds it committed,
   * it is adopted.
   */
  sentByEarlierRun(uuids: Iterable<string>): void {
    this.ledger.fromEarlierRun(uuids);
  }

  /** Closes the keep-alive connections of the agents this instance created. */
  close(): void {
    this.http.close();
  }

  // ----- steps (each runs with the task's ledger lock on the node held) -----

  private async startTask(node: UploadNode, uuid: string, params: TaskParams, signal: AbortSignal): Promise<'initialized' | 'committed'> {
    if (this.ledger.get(node, uuid).upload) await this.clearUpload(node, uuid, signal);
    this.deps.logger.info(`Initializing task ${uuid} on ${node.name}`);
    const body = await buildMultipart(initParts(params));
    for (let attempt = 1; ; attempt++) {
      this.ledger.set(node, uuid, { upload: true });
      const answer = await this.http.call(node, {
        method: 'POST',
        path: '/task/new/init',
        body,
        signal,
        timeoutMs: this.requestTimeoutMs,
        headers: { 'set-uuid': uuid },
      });
      const refusal = refusalOf(answer);
      if (refusal === null) {
        if (answer['uuid'] !== uuid) throw nodeError(`set-uuid did not match, ${String(answer['uuid'])} !== ${uuid}`);
        return 'initialized';
      }
      if (refusal === 'uuid-in-use' && (await this.isCommitted(node, uuid, signal))) {
        if (!this.ledger.get(node, uuid).commitSent) {
          throw new ClusterError('NODE_TASK_EXISTS', `task ${uuid} is already committed on ${node.name}; it is kept there`);
        }
        this.deps.logger.warn(`Task ${uuid} is committed on ${node.name} by an earlier attempt: kept`);
        this.ledger.forget(uuid);
        return 'committed';
      }
      if ((refusal !== 'uuid-in-use' && refusal !== 'upload-removed') || attempt >= INIT_ATTEMPTS) expectNoError(answer);
      // "Directory exists": an older NodeODM removed an upload it held; "Invalid set-uuid" for a task that is not
      // committed: the node is creating a task under this uuid right now. Either way, init again in a moment.
      this.deps.logger.warn(`${node.name} refused to initialize task ${uuid} (${String(answer['error'])}), trying again`);
      if (refusal === 'uuid-in-use') await sleepOrThrow(this.deps.clock, this.retrySleepMs, signal);
    }
  }

  /** Commit; if that fails, a node that reports the task as committed anyway (a lost answer) keeps it, adopted. */
  private async commitOrAdopt(node: UploadNode, uuid: string, signal: AbortSignal): Promise<void> {
    try {
      await this.sendCommit(node, uuid, signal);
    } catch (e: unknown) {
      if (signal.aborted) throw e;
      const committed = await this.isCommitted(node, uuid, signal).catch(() => false);
      if (!committed) throw e;
      this.deps.logger.warn(`Task ${uuid} is committed on ${node.name} although its commit failed (${errorMessage(e)}): kept`);
      this.ledger.forget(uuid);
    }
  }

  private async sendCommit(node: UploadNode, uuid: string, signal: AbortSignal): Promise<void> {
    this.deps.logger.info(`Committing task ${uuid} on ${node.name}`);
    this.ledger.set(node, uuid, { commitSent: true });
    const answer = await this.http.call(node, { method: 'POST', path: commitPath(uuid), signal, timeoutMs: this.requestTimeoutMs });
    expectNoError(answer);
    if (answer['uuid'] !== undefined && answer['uuid'] !== uuid) {
      throw nodeError(`commit answered for task ${String(answer['uuid'])}, expected ${uuid}`);
    }
    this.ledger.forget(uuid);
  }

  /**
   * Makes sure the node holds no uncommitted upload of the task. NodeODM has no request that removes one, but an
   * init under the task's uuid with options that are not JSON is refused, and NodeODM then removes that uuid's
   * upload dir (taskNew.handleInit's die); a committed task is never touched (its uuid is refused before). An upload
   * request without files tells whether an upload is still there.
   */
  private async clearUpload(node: UploadNode, uuid: string, signal: AbortSignal): Promise<void> {
    for (let round = 1; ; round++) {
      const probe = await this.http.call(node, { method: 'POST', path: uploadPath(uuid), signal, timeoutMs: this.shortTimeoutMs });
      const found = refusalOf(probe);
      if (found === 'no-upload') {
        this.ledger.set(node, uuid, { upload: false });
        return;
      }
      if (found !== 'upload-without-files') expectNoError(probe);
      if (round > CLEAR_ATTEMPTS) throw nodeError(`${node.name} keeps an uncommitted upload of task ${uuid}`);
      if (round === 1) this.deps.logger.warn(`${node.name} holds an uncommitted upload of task ${uuid}: removing it`);
      // NodeODM removes the dir after answering: the next probe may still see it for a moment.
      if (round > 1) await sleepOrThrow(this.deps.clock, this.retrySleepMs, signal);
      const refused = await this.http.call(node, {
        method: 'POST',
        path: '/task/new/init',
        body: Buffer.from(JSON.stringify({ options: REFUSED_OPTIONS })),
        signal,
        timeoutMs: this.shortTimeoutMs,
        headers: { 'set-uuid': uuid },
      });
      if (refusalOf(refused) === null) throw nodeError(`${node.name} accepted an init it must refuse: cannot remove its upload of task ${uuid}`);
    }
  }

  /** Whether the node reports the task as committed (its /task/<uuid>/info answers); a request failure throws. */
  private async isCommitted(node: UploadNode, uuid: string, signal: AbortSignal): Promise<boolean> {
    const info = await this.http.call(node, { method: 'GET', path: `/task/${encodeURIComponent(uuid)}/info`, signal, timeoutMs: this.shortTimeoutMs });
    return isTaskInfo(info, uuid);
  }

  private get requestTimeoutMs(): number {
    return this.deps.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  private get shortTimeoutMs(): number {
    return Math.min(this.requestTimeoutMs, SHORT_TIMEOUT_MS);
  }

  private get retrySleepMs(): number {
    return this.deps.retrySleepMs ?? RETRY_SLEEP_MS;
  }
}

function uploadPath(uuid: string): string {
  return `/task/new/upload/${encodeURIComponent(uuid)}`;
}

function commitPath(uuid: string): string {
  return `/task/new/commit/${encodeURIComponent(uuid)}`;
}

function initParts(params: TaskParams): MultipartPart[] {
  const parts: MultipartPart[] = [
    { name: 'name', value: params.name },
    { name: 'options', value: JSON.stringify(params.options) },
    { name: 'dateCreated', value: String(params.dateCreated) },
  ];
  if (params.skipPostProcessing) parts.push({ name: 'skipPostProcessing', value: 'true' });
  if (params.webhook) parts.push({ name: 'webhook', value: params.webhook });
  if (params.outputs) parts.push({ name: 'outputs', value: params.outputs });
  return parts;
}
