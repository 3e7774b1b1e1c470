/**
 * One request to a NodeODM node on behalf of the uploader (node-uploader.ts): bodies stream with backpressure
 * through node:http (one keep-alive agent per node), every failure settles exactly once and destroys the request
 * and the body streams, and the answer must be NodeODM's "HTTP 200 + a JSON object".
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { pipeline, Readable, type Transform } from 'node:stream';
import { ClusterError, errorMessage } from '../core';
import type { NodeEndpoint } from '../nodeodm';
import type { MultipartBody } from './multipart-writer';

export type UploadNode = NodeEndpoint & { name: string };

/** A NodeODM answer: a JSON object (its `error` field is checked by the caller, see node-answers.ts). */
export type Answer = Record<string, unknown>;

/** NodeODM answers are tiny JSON objects; anything bigger is not a NodeODM answer. */
const MAX_ANSWER_BYTES = 1024 * 1024;

export function nodeError(message: string, cause?: unknown): ClusterError {
  return new ClusterError('NODE_REQUEST_FAILED', message, cause === undefined ? undefined : { cause });
}

export function abortedError(): ClusterError {
  return new ClusterError('ABORTED', 'Aborted');
}

export interface NodeCall {
  method: 'GET' | 'POST';
  path: string;
  body?: MultipartBody | Buffer | null;
  signal: AbortSignal;
  timeoutMs: number;
  headers?: http.OutgoingHttpHeaders;
  /** Sees (and may pace) the body bytes on their way to the socket. */
  meter?: Transform;
}

export class NodeHttp {
  private readonly agents = new Map<string, http.Agent>();

  constructor(private readonly agentFor?: (node: NodeEndpoint) => http.Agent) {}

  /** Sends `call` to `node`; resolves with its JSON answer, rejects with a ClusterError (NODE_REQUEST_FAILED, ABORTED). */
  call(node: UploadNode, call: NodeCall): Promise<Answer> {
    const body = call.body ?? null;
    const headers: http.OutgoingHttpHeaders = { ...bodyHeaders(body), ...(call.headers ?? {}) };
    const source = body === null ? Readable.from([]) : Buffer.isBuffer(body) ? Readable.from([body]) : body.stream();
    const request: ExchangeRequest = {
      method: call.method,
      url: this.urlFor(node, call.path),
      agent: this.agentOf(node),
      headers,
      timeoutMs: call.timeoutMs,
      signal: call.signal,
    };
    const what = `${call.method} ${call.path} to ${node.name}`;
    return exchange(request, call.meter ? [source, call.meter] : [source]).then(
      ({ status, text }) => parseAnswer(what, status, text),
      (e: unknown) => {
        throw e instanceof ClusterError ? e : nodeError(`${what} failed: ${errorMessage(e)}`, e);
      },
    );
  }

  /** Closes the keep-alive connections of the agents this instance created. */
  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  private urlFor(node: NodeEndpoint, path: string): URL {
    const url = new URL(path, node.baseUrl);
    if (node.token) url.searchParams.set('token', node.token);
    return url;
  }

  private agentOf(node: NodeEndpoint): http.Agent {
    if (this.agentFor) return this.agentFor(node);
    let agent = this.agents.get(node.baseUrl);
    if (agent === undefined) {
      const secure = new URL(node.baseUrl).protocol === 'https:';
      agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
      this.agents.set(node.baseUrl, agent);
    }
    return agent;
  }
}

function bodyHeaders(body: MultipartBody | Buffer | null): http.OutgoingHttpHeaders {
  if (body === null) return { 'content-length': 0 };
  if (Buffer.isBuffer(body)) return { 'content-type': 'application/json', 'content-length': body.length };
  return { 'content-type': body.contentType, 'content-length': body.contentLength };
}

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

interface ExchangeRequest {
  method: 'GET' | 'POST';
  url: URL;
  agent: http.Agent;
  headers: http.OutgoingHttpHeaders;
  timeoutMs: number;
  signal: AbortSignal;
}

/**
 * One request whose body streams with backpressure. Settles exactly once: with the answer, on an
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
    const request = send(req.url, { method: req.method, agent: req.agent, headers: req.headers });
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
