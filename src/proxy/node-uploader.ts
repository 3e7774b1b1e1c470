/**
 * Sends a staged task to a NodeODM node: init (with `set-uuid`) → parallel uploads → commit
 * (SPEC §5, "Forwarding to a node").
 *
 * Differences from the original (SPEC §12 items 9, 10):
 * - abort destroys every in-flight request and rejects every pending promise with 'Aborted';
 *   nothing is retried after an abort;
 * - when init finds the uuid already taken (a copy left by an earlier attempt), the copy is
 *   removed with POST /task/remove before init is tried again, instead of failing or mixing
 *   old files with new ones.
 *
 * Bodies stream from disk with backpressure through node:http (one keep-alive agent per node),
 * so memory stays flat whatever the task size.
 */
import { setMaxListeners } from 'node:events';
import * as http from 'node:http';
import * as https from 'node:https';
import { pipeline, Readable, Transform, type TransformCallback } from 'node:stream';
import { abortableSleep, ClusterError, errorMessage, type Clock, type Logger, type TimerHandle } from '../core';
import type { NodeEndpoint } from '../nodeodm';
import { buildMultipart, type MultipartBody, type MultipartPart } from './multipart-writer';
import type { TeeBody } from './upload-tee';

export interface TaskParams {
  name: string;
  /** [{name, value}], sent as JSON. */
  options: unknown[];
  dateCreated: number;
  skipPostProcessing: boolean;
  webhook: string | null;
  outputs: string | null;
}

export interface UploadProgress {
  filesSent: number;
  filesTotal: number;
  /** Multipart body bytes (file bytes plus part headers) handed to the sockets. */
  bytesSent: number;
  bytesTotal: number;
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

export type UploadNode = NodeEndpoint & { name: string };
export type UploadFile = { path: string; name: string };

const PARALLEL_UPLOADS = 20;
const CHUNK_RETRIES = 5;
const RETRY_SLEEP_MS = 2000;
const REQUEST_TIMEOUT_MS = 1600 * 1000;
/** Removal is best-effort: a node that does not answer within this is left alone. */
const REMOVE_TIMEOUT_MS = 60 * 1000;
/** Init attempts when the uuid is taken: NodeODM deletes a stale tmp dir only after answering. */
const INIT_ATTEMPTS = 3;
/** NodeODM answers are tiny JSON objects; anything bigger is not a NodeODM answer. */
const MAX_ANSWER_BYTES = 1024 * 1024;

type Answer = Record<string, unknown>;

/** One upload request's worth of files, with its body ready to stream (again, on retry). */
interface Chunk {
  files: readonly UploadFile[];
  body: MultipartBody;
}

export class NodeUploader {
  private readonly agents = new Map<string, http.Agent>();

  constructor(private readonly deps: NodeUploaderDeps) {}

  /** init + all uploads + commit; resolves when the node has committed the task. */
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
      await this.init(node, uuid, params, signal);
      await this.uploadAll(node, uuid, files, signal, opts.onProgress);
      await this.commitOrCleanUp(node, uuid, signal);
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

  /** POST /task/new/init with set-uuid; a copy of the task left on the node is removed first. */
  async init(node: UploadNode, uuid: string, params: TaskParams, signal: AbortSignal): Promise<void> {
    this.deps.logger.info(`Initializing task ${uuid} on ${node.name}`);
    const body = await buildMultipart(initParts(params));
    const send = (): Promise<Answer> =>
      this.post(node, '/task/new/init', body, signal, this.requestTimeoutMs, { 'set-uuid': uuid });
    let answer = await send();
    for (let attempt = 1; attempt < INIT_ATTEMPTS && uuidTaken(answer); attempt++) {
      this.deps.logger.warn(
        `${node.name} already holds a copy of task ${uuid} (${String(answer['error'])}), removing it before init`,
      );
      if (attempt > 1) await sleepOrThrow(this.deps.clock, this.retrySleepMs, signal);
      await this.removePartial(node, uuid, signal);
      answer = await send();
    }
    expectNoError(answer);
    if (answer['uuid'] !== uuid) {
      throw nodeError(`set-uuid did not match, ${String(answer['uuid'])} !== ${uuid}`);
    }
  }

  /** One POST /task/new/upload/<uuid> carrying all `files`, retried like the original. */
  async upload(
    node: UploadNode,
    uuid: string,
    files: readonly UploadFile[],
    signal: AbortSignal,
    onProgress?: (p: UploadProgress) => void,
  ): Promise<void> {
    const chunk = await prepareChunk(files);
    const meter = new ProgressMeter(files.length, chunk.body.contentLength, this.deps.logger, onProgress);
    this.deps.logger.info(`Uploading ${files.length} files to ${node.name} for ${uuid}`);
    await this.sendChunk(node, uuid, chunk, signal, meter.lane());
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
    const path = `/task/new/upload/${encodeURIComponent(uuid)}`;
    const answer = await this.post(node, path, multipart, signal, this.requestTimeoutMs);
    expectNoError(answer);
    if (answer['success'] !== true) throw nodeError(`${node.name} did not confirm the upload`);
  }

  /** POST /task/new/commit/<uuid>. */
  async commit(node: UploadNode, uuid: string, signal: AbortSignal): Promise<void> {
    this.deps.logger.info(`Committing task ${uuid} on ${node.name}`);
    const answer = await this.post(node, `/task/new/commit/${encodeURIComponent(uuid)}`, null, signal, this.requestTimeoutMs);
    expectNoError(answer);
    if (answer['uuid'] !== undefined && answer['uuid'] !== uuid) {
      throw nodeError(`commit answered for task ${String(answer['uuid'])}, expected ${uuid}`);
    }
  }

  /** Best-effort POST /task/remove {uuid}: failures are logged, only an abort rejects. */
  async removePartial(node: UploadNode, uuid: string, signal: AbortSignal): Promise<void> {
    this.deps.logger.info(`Removing task ${uuid} from ${node.name}`);
    try {
      const json = Buffer.from(JSON.stringify({ uuid }));
      const answer = await this.post(node, '/task/remove', json, signal, Math.min(this.requestTimeoutMs, REMOVE_TIMEOUT_MS));
      if (answer['success'] !== true) {
        this.deps.logger.warn(`${node.name} did not remove task ${uuid}: ${String(answer['error'] ?? 'no success flag')}`);
      }
    } catch (e: unknown) {
      if (signal.aborted) throw abortedError();
      this.deps.logger.warn(`Could not remove task ${uuid} from ${node.name}: ${errorMessage(e)}`);
    }
  }

  /** Closes the keep-alive connections of the agents this instance created. */
  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  // ----- steps -----

  /** Up to `parallel` requests of ceil(n/parallel) files each; the first final failure cancels the rest. */
  private async uploadAll(
    node: UploadNode,
    uuid: string,
    files: readonly UploadFile[],
    signal: AbortSignal,
    onProgress?: (p: UploadProgress) => void,
  ): Promise<void> {
    const chunks = await Promise.all(splitEvenly(files, this.deps.parallel ?? PARALLEL_UPLOADS).map(prepareChunk));
    const bytesTotal = chunks.reduce((sum, c) => sum + c.body.contentLength, 0);
    const meter = new ProgressMeter(files.length, bytesTotal, this.deps.logger, onProgress);
    this.deps.logger.info(`Uploading ${files.length} files to ${node.name} for ${uuid} (${chunks.length} requests, ${bytesTotal} bytes)`);
    await runAllOrCancel(
      chunks.map((chunk) => (s: AbortSignal) => this.sendChunk(node, uuid, chunk, s, meter.lane())),
      signal,
    );
  }

  /** Commit, and if its outcome is unknown or failed, remove what the node may have committed. */
  private async commitOrCleanUp(node: UploadNode, uuid: string, signal: AbortSignal): Promise<void> {
    try {
      await this.commit(node, uuid, signal);
    } catch (e: unknown) {
      // A lost commit answer can leave the task running on a node we are about to give up on.
      if (!signal.aborted) await this.removePartial(node, uuid, signal);
      throw e;
    }
  }

  private async sendChunk(node: UploadNode, uuid: string, chunk: Chunk, signal: AbortSignal, lane: ProgressLane): Promise<void> {
    const retries = this.deps.chunkRetries ?? CHUNK_RETRIES;
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
        this.deps.logger.warn(`File upload to ${node.name} failed, retrying... (${attempt + 1}) [task ${uuid}: ${errorMessage(e)}]`);
        await sleepOrThrow(this.deps.clock, this.retrySleepMs, signal);
      }
    }
  }

  private async postUpload(node: UploadNode, uuid: string, chunk: Chunk, signal: AbortSignal, lane: ProgressLane): Promise<void> {
    const meter = new BodyMeter(this.deps.clock, this.deps.maxSendBytesPerSec ?? 0, (n) => lane.bytes(n));
    const path = `/task/new/upload/${encodeURIComponent(uuid)}`;
    const answer = await this.post(node, path, chunk.body, signal, this.requestTimeoutMs, {}, meter);
    expectNoError(answer);
    if (answer['success'] !== true) throw nodeError(`${node.name} did not confirm the upload of ${chunk.files.length} files`);
  }

  // ----- HTTP -----

  private post(
    node: UploadNode,
    path: string,
    body: MultipartBody | Buffer | null,
    signal: AbortSignal,
    timeoutMs: number,
    extraHeaders: http.OutgoingHttpHeaders = {},
    meter?: Transform,
  ): Promise<Answer> {
    const headers: http.OutgoingHttpHeaders = { ...extraHeaders, ...bodyHeaders(body) };
    const source = body === null ? Readable.from([]) : Buffer.isBuffer(body) ? Readable.from([body]) : body.stream();
    const request = { url: this.urlFor(node, path), agent: this.agentOf(node), headers, timeoutMs, signal };
    const what = `POST ${path} to ${node.name}`;
    return exchange(request, meter ? [source, meter] : [source]).then(
      ({ status, text }) => parseAnswer(what, status, text),
      (e: unknown) => {
        throw e instanceof ClusterError ? e : nodeError(`${what} failed: ${errorMessage(e)}`, e);
      },
    );
  }

  private urlFor(node: NodeEndpoint, path: string): URL {
    const url = new URL(path, node.baseUrl);
    if (node.token) url.searchParams.set('token', node.token);
    return url;
  }

  private agentOf(node: NodeEndpoint): http.Agent {
    if (this.deps.agentFor) return this.deps.agentFor(node);
    let agent = this.agents.get(node.baseUrl);
    if (agent === undefined) {
      const secure = new URL(node.baseUrl).protocol === 'https:';
      agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
      this.agents.set(node.baseUrl, agent);
    }
    return agent;
  }

  private get requestTimeoutMs(): number {
    return this.deps.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  }

  private get retrySleepMs(): number {
    return this.deps.retrySleepMs ?? RETRY_SLEEP_MS;
  }
}

// ----- request parts -----

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

function bodyHeaders(body: MultipartBody | Buffer | null): http.OutgoingHttpHeaders {
  if (body === null) return { 'content-length': 0 };
  if (Buffer.isBuffer(body)) return { 'content-type': 'application/json', 'content-length': body.length };
  return { 'content-type': body.contentType, 'content-length': body.contentLength };
}

// ----- answers -----

/** NodeODM's success rule: HTTP 200 and a JSON object (the `error` field is checked by the step). */
function parseAnswer(what: string, status: number, text: string): Answer {
  if (status !== 200) throw nodeError(`${what} answered HTTP ${status}, expected 200`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw nodeError(`${what} answered with invalid JSON`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw nodeError(`${what} answered with a non-object`);
  return json as Answer;
}

/** The node's own error text is passed through verbatim, like the original. */
function expectNoError(answer: Answer): void {
  const error = answer['error'];
  if (error !== undefined) throw nodeError(typeof error === 'string' ? error : JSON.stringify(error));
}

/**
 * The uuid is in use: "Invalid set-uuid" for a committed task, "Directory exists" for an init
 * whose uploads never got committed (NodeODM deletes that directory right after answering).
 */
function uuidTaken(answer: Answer): boolean {
  const error = answer['error'];
  return typeof error === 'string' && (error.startsWith('Invalid set-uuid') || error.startsWith('Directory exists'));
}

function nodeError(message: string, cause?: unknown): ClusterError {
  return new ClusterError('NODE_REQUEST_FAILED', message, cause === undefined ? undefined : { cause });
}

function abortedError(): ClusterError {
  return new ClusterError('ABORTED', 'Aborted');
}

// ----- concurrency and time -----

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
async function sleepOrThrow(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  await abortableSleep(clock, ms, signal);
  if (signal.aborted) throw abortedError();
}

// ----- progress -----

interface ProgressLane {
  bytes(n: number): void;
  /** A retry starts over: forget the bytes of the failed attempt. */
  restart(): void;
  done(files: number): void;
}

/** Sums the progress of parallel requests into one UploadProgress stream. */
class ProgressMeter {
  private filesSent = 0;
  private bytesSent = 0;

  constructor(
    private readonly filesTotal: number,
    private readonly bytesTotal: number,
    private readonly logger: Logger,
    private readonly onProgress?: (p: UploadProgress) => void,
  ) {}

  lane(): ProgressLane {
    let sent = 0;
    return {
      bytes: (n) => {
        sent += n;
        this.add(0, n);
      },
      restart: () => {
        if (sent > 0) this.add(0, -sent);
        sent = 0;
      },
      done: (files) => this.add(files, 0),
    };
  }

  private add(files: number, bytes: number): void {
    this.filesSent += files;
    this.bytesSent += bytes;
    if (!this.onProgress) return;
    try {
      this.onProgress({ filesSent: this.filesSent, filesTotal: this.filesTotal, bytesSent: this.bytesSent, bytesTotal: this.bytesTotal });
    } catch (e: unknown) {
      // A broken progress listener must not break (or crash) the upload.
      this.logger.warn(`Upload progress listener failed: ${errorMessage(e)}`);
    }
  }
}

/**
 * Counts body bytes for progress and, given a rate, paces them with the injected clock
 * (--upload-max-speed). Slices of ~100 ms keep the pace smooth; each slice leaves no earlier
 * than the rate allows, so the cap holds over any window starting at the first byte.
 */
class BodyMeter extends Transform {
  private sent = 0;
  private startedAt: number | undefined;
  private timer: TimerHandle | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly bytesPerSec: number,
    private readonly onBytes: (n: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.bytesPerSec <= 0) {
      this.forward(chunk);
      done();
      return;
    }
    this.startedAt ??= this.clock.now();
    this.paceFrom(chunk, 0, done);
  }

  override _destroy(error: Error | null, done: (error: Error | null) => void): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    done(error);
  }

  private paceFrom(chunk: Buffer, offset: number, done: TransformCallback): void {
    if (offset >= chunk.length) return done();
    const slice = chunk.subarray(offset, offset + Math.max(1, Math.floor(this.bytesPerSec / 10)));
    const due = (this.startedAt ?? 0) + ((this.sent + slice.length) * 1000) / this.bytesPerSec;
    const send = (): void => {
      this.timer = undefined;
      this.forward(slice);
      this.paceFrom(chunk, offset + slice.length, done);
    };
    const wait = due - this.clock.now();
    if (wait <= 0) send();
    else this.timer = this.clock.setTimeout(send, wait);
  }

  private forward(slice: Buffer): void {
    this.sent += slice.length;
    this.onBytes(slice.length);
    this.push(slice);
  }
}

// ----- one HTTP exchange -----

interface ExchangeRequest {
  url: URL;
  agent: http.Agent;
  headers: http.OutgoingHttpHeaders;
  timeoutMs: number;
  signal: AbortSignal;
}

/**
 * One POST whose body streams with backpressure. Settles exactly once: with the answer, on an
 * error, on the idle timeout, or with 'Aborted' as soon as the signal fires; in every failure
 * case the request and the body streams are destroyed so no file stays open.
 */
function exchange(req: ExchangeRequest, body: [Readable, ...Transform[]]): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const destroyBody = (): void => body.forEach((s) => s.destroy());
    if (req.signal.aborted) {
      destroyBody();
      return reject(abortedError());
    }
    const send = req.url.protocol === 'https:' ? https.request : http.request;
    const request = send(req.url, { method: 'POST', agent: req.agent, headers: req.headers });
    let settled = false;
    let answered = false;
    const finish = (): boolean => {
      if (settled) return false;
      settled = true;
      req.signal.removeEventListener('abort', onAbort);
      return true;
    };
    const fail = (e: unknown): void => {
      if (!finish()) return;
      request.destroy();
      destroyBody();
      reject(e);
    };
    const onAbort = (): void => fail(abortedError());
    req.signal.addEventListener('abort', onAbort, { once: true });
    request.setTimeout(req.timeoutMs, () => fail(new Error(`no data moved for ${req.timeoutMs / 1000} s`)));
    request.on('error', fail);
    request.on('response', (res) => {
      answered = true;
      readText(res).then((text) => {
        if (!finish()) return;
        // An early answer (the node refused the body) leaves the rest unsent: drop that socket.
        if (!request.writableFinished) request.destroy();
        resolve({ status: res.statusCode ?? 0, text });
      }, fail);
    });
    // Once the node has answered, a broken body pipe is expected and the answer decides.
    pipeline([...body, request], (e) => {
      if (e && !answered) fail(e);
    });
  });
}

async function readText(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > MAX_ANSWER_BYTES) {
      res.destroy();
      throw new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`);
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks).toString('utf8');
}
