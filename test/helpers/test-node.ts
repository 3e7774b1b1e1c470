/**
 * A NodeODM-compatible test node: the peer of every integration test.
 *
 * It speaks the NodeODM 2.2.4 HTTP API (see /work/shared/api/nodeodm-swagger.json) closely enough
 * for ClusterODM to treat it as a real node: same routes, same JSON shapes, same error texts
 * (taken from NodeODM's source and the recorded transcripts), Express-style 404 pages and CORS
 * headers. Processing is simulated with timers, uploads are streamed to a per-node temp dir, and
 * `all.zip` is a generated pseudo-random body. Knobs in `node.options` inject the faults the
 * proxy must survive (slow /info, dropped uploads, offline node, failing tasks, ...).
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TestNodeOptions, TestNodeS3, TaskStatus, TaskStatusCode, TaskOption, TestNodeTask, TestNodeFile, RecordedRequest, TestNode, DEFAULT_TEST_NODE_OPTIONS } from './test-node/api';
import { assetChunks } from './test-node/assets';
import { OptionsFixture, loadOptionsFixture, Fields, fieldString, errorMessage, UUID_RE, COMMON_HEADERS, sendJson, sendBody, sendNotFound, drain, isMultipart, readUrlencodedOrJson } from './test-node/http-util';
import { MultipartResult, receiveMultipart, stallAfterFirstChunk, parseTaskOptions } from './test-node/multipart';

export { TestNodeOptions, TestNodeS3, TaskStatus, TaskStatusCode, TaskOption, TestNodeTask, TestNodeFile, RecordedRequest, TestNode, DEFAULT_TEST_NODE_OPTIONS } from './test-node/api';
export { assetChunks, assetSha256 } from './test-node/assets';

/** Starts a test node listening on `opts.host:opts.port` (127.0.0.1:0 by default). */
export async function startTestNode(opts: Partial<TestNodeOptions> = {}): Promise<TestNode> {
  const fixture = await loadOptionsFixture();
  const dataDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'nodeodm-test-node-'));
  const node = new TestNodeServer({ ...DEFAULT_TEST_NODE_OPTIONS, ...opts }, fixture, dataDir);
  try {
    await node.listen();
  } catch (err) {
    await node.close();
    throw err;
  }
  return node;
}

// ---------------------------------------------------------------------------------------------
// Web UI (served like express.static('public'), without token)
// ---------------------------------------------------------------------------------------------

const STATIC_FILES: ReadonlyMap<string, { type: string; body: string }> = new Map([
  [
    '/',
    {
      type: 'text/html; charset=UTF-8',
      body:
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>NodeODM - Web UI</title>\n' +
        '<link rel="stylesheet" href="/css/main.css">\n</head>\n<body>\n<h1>NodeODM test node</h1>\n' +
        '<div id="app"></div>\n<script src="/js/main.js"></script>\n</body>\n</html>\n',
    },
  ],
  ['/css/main.css', { type: 'text/css; charset=UTF-8', body: 'body { font-family: sans-serif; margin: 2em; }\n' }],
  ['/js/main.js', { type: 'application/javascript; charset=UTF-8', body: "document.getElementById('app').textContent = 'Test node';\n" }],
  // More of what NodeODM's public/ holds: vendored scripts, Bootstrap's fonts, the favicon.
  ['/js/vendor/knockout-3.4.0.js', { type: 'application/javascript; charset=UTF-8', body: '/* knockout (test node) */\n' }],
  ['/fonts/glyphicons-halflings-regular.woff', { type: 'font/woff', body: 'wOFF (test node)' }],
  ['/favicon.ico', { type: 'image/x-icon', body: 'ico (test node)' }],
]);

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

/** What /task/new/init and /task/new accept besides images. */
interface TaskFields {
  name: string;
  options: TaskOption[];
  webhook: string | null;
  skipPostProcessing: boolean;
  dateCreated: number;
}

interface NodeTask extends TaskFields {
  uuid: string;
  dir: string;
  status: TaskStatusCode;
  imagesCount: number;
  output: string[];
  progress: number;
  /** Start of the current run, 0 when not running. */
  startedAt: number;
  /** -1 until a run ends (and after cancel/restart), then the run's duration. */
  processingTime: number;
  timer: NodeJS.Timeout | undefined;
}

/** A task between /task/new/init and /task/new/commit. */
interface PendingTask {
  uuid: string;
  dir: string;
  fields: TaskFields;
}

// Simulated processing: a start line, three stage lines, then the end (at processingMs).
const PROCESSING_STAGES: readonly { line: string; progress: number }[] = [
  { line: 'Running dataset stage (test node)', progress: 25 },
  { line: 'Running opensfm stage (test node)', progress: 50 },
  { line: 'Running odm_orthophoto stage (test node)', progress: 75 },
];

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

interface Ctx {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  query: URLSearchParams;
  params: string[];
}

type Handler = (ctx: Ctx) => Promise<void> | void;

interface Route {
  method: 'GET' | 'POST';
  pattern: RegExp;
  /** Routes without authCheck in NodeODM (and those that check it themselves after parsing the body). */
  public: boolean;
  handler: Handler;
}

/** Express's default path matching: case-insensitive, optional trailing slash, `:param` = one segment. */
function routePattern(template: string): RegExp {
  const body = template
    .split('/')
    .map((part) => (part.startsWith(':') ? '([^/]+?)' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${body}/?$`, 'i');
}

function decodeParam(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

function param(ctx: Ctx, index: number): string {
  return ctx.params[index] ?? '';
}

class TestNodeServer implements TestNode {
  readonly options: TestNodeOptions;
  readonly requests: RecordedRequest[] = [];
  readonly dataDir: string;

  private readonly fixture: OptionsFixture;
  private readonly server: http.Server | https.Server;
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly webhookAborts = new Set<AbortController>();
  private readonly taskMap = new Map<string, NodeTask>();
  private readonly pendingMap = new Map<string, PendingTask>();
  /** Upload requests held by `stallUploads`, by task uuid (see `releaseStalledAtCommit`). */
  private readonly stalled = new Map<string, Array<{ release: () => void; ended: Promise<void> }>>();
  /** uuids of /task/new requests still uploading, so a concurrent set-uuid cannot reuse them. */
  private readonly reserved = new Set<string>();
  private readonly routes: Route[];
  private closing: Promise<void> | undefined;
  private boundPort = 0;

  constructor(options: TestNodeOptions, fixture: OptionsFixture, dataDir: string) {
    this.options = options;
    this.fixture = fixture;
    this.dataDir = dataDir;
    this.routes = this.buildRoutes();
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.onRequest(req, res);
    this.server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler) : http.createServer(handler);
    this.server.on('connection', (socket) => this.onConnection(socket));
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
    return `${this.options.tls ? 'https' : 'http'}://${host}:${this.boundPort}`;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        const address = this.server.address();
        this.boundPort = typeof address === 'object' && address !== null ? address.port : this.options.port;
        resolve();
      });
    });
  }

  // ----- test-facing API -----

  tasks(): TestNodeTask[] {
    return [...this.taskMap.values()].map((task) => ({
      uuid: task.uuid,
      status: task.status,
      imagesCount: task.imagesCount,
      name: task.name,
      options: task.options.map((opt) => ({ ...opt })),
      webhook: task.webhook,
      progress: task.progress,
    }));
  }

  taskFiles(uuid: string): string[] {
    const dir = this.dirOf(uuid);
    if (dir === undefined || !fs.existsSync(dir)) return [];
    return fs.readdirSync(dir).sort();
  }

  taskFileSize(uuid: string, name: string): number {
    const dir = this.dirOf(uuid);
    if (dir === undefined) throw new Error(`No task ${uuid} on this node`);
    return fs.statSync(path.join(dir, path.basename(name))).size;
  }

  taskImages(uuid: string): TestNodeFile[] {
    return this.taskFiles(uuid).map((name) => ({ name, bytes: this.taskFileSize(uuid, name) }));
  }

  configure(patch: Partial<TestNodeOptions>): void {
    Object.assign(this.options, patch);
    if (this.options.offline) this.destroySockets();
    this.pump();
  }

  setOffline(offline: boolean): void {
    this.configure({ offline });
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    for (const task of this.taskMap.values()) this.stopTimer(task);
    for (const abort of this.webhookAborts) abort.abort();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.destroySockets();
    await closed;
    await fsp.rm(this.dataDir, { recursive: true, force: true });
  }

  private dirOf(uuid: string): string | undefined {
    return this.taskMap.get(uuid)?.dir ?? this.pendingMap.get(uuid)?.dir;
  }

  private destroySockets(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /** A timer that close() can cancel, so a closed node never keeps the process alive. */
  private later(ms: number, fn: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, Math.max(0, ms));
    this.timers.add(timer);
    return timer;
  }

  private delay(ms: number): Promise<void> {
    if (ms <= 0) return Promise.resolve();
    return new Promise((resolve) => this.later(ms, resolve));
  }

  // ----- connection handling and routing -----

  private onConnection(socket: Socket): void {
    if (this.options.offline) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
  }

  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const record: RecordedRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers };
    this.requests.push(record);
    if (this.options.tls) record.servername = (req.socket as TLSSocket).servername ?? false;
    if (this.options.recordBodies) this.recordBody(req, record);
    if (this.options.offline) {
      req.socket.destroy();
      return;
    }
    // Knobs may have been raised directly through `options`; re-check the queue on every request.
    this.pump();
    this.dispatch(req, res).catch((err: unknown) => {
      // Express's error handler in NodeODM: {error: err.message} with status 200.
      drain(req);
      sendJson(res, { error: errorMessage(err) });
    });
  }

  /**
   * Watches what the HTTP parser pushes into the request, without reading it: the route's own reading (or not
   * reading) of the body stays exactly as it is without the knob.
   */
  private recordBody(req: http.IncomingMessage, record: RecordedRequest): void {
    const chunks: Buffer[] = [];
    record.body = Buffer.alloc(0);
    record.complete = false;
    const push = req.push.bind(req);
    req.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
      if (chunk === null) record.complete = true;
      else if (Buffer.isBuffer(chunk)) {
        chunks.push(chunk);
        record.body = Buffer.concat(chunks);
      }
      return push(chunk, encoding);
    };
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const target = req.url ?? '/';
    const queryAt = target.indexOf('?');
    // Route on the raw path: URL parsing would resolve `..` segments that Express leaves alone.
    const rawPath = queryAt === -1 ? target : target.slice(0, queryAt);
    const query = new URLSearchParams(queryAt === -1 ? '' : target.slice(queryAt + 1));
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') return this.sendPreflight(req, res);
    if ((method === 'GET' || method === 'HEAD') && this.serveStatic(rawPath, res)) return;
    const match = this.matchRoute(method, rawPath);
    if (match === undefined) {
      drain(req);
      return sendNotFound(req, res, rawPath);
    }
    const ctx: Ctx = { req, res, query, params: match.params };
    if (!match.route.public && !this.checkToken(ctx)) return;
    await match.route.handler(ctx);
  }

  private matchRoute(method: string, rawPath: string): { route: Route; params: string[] } | undefined {
    const routeMethod = method === 'HEAD' ? 'GET' : method; // Express answers HEAD with GET routes
    for (const route of this.routes) {
      if (route.method !== routeMethod) continue;
      const found = route.pattern.exec(rawPath);
      if (found) return { route, params: found.slice(1).map((p) => decodeParam(p ?? '')) };
    }
    return undefined;
  }

  /** NodeODM's SimpleTokenAuth middleware; answers and returns false when the token is wrong. */
  private checkToken(ctx: Ctx): boolean {
    const expected = this.options.token;
    const given = ctx.query.getAll('token');
    if (expected === '' || (given.length === 1 && given[0] === expected)) return true;
    drain(ctx.req);
    sendJson(ctx.res, { error: 'Invalid authentication token: token does not match.' });
    return false;
  }

  /** The `cors` middleware's preflight answer. */
  private sendPreflight(req: http.IncomingMessage, res: http.ServerResponse): void {
    drain(req);
    const headers: http.OutgoingHttpHeaders = {
      ...COMMON_HEADERS,
      'Access-Control-Allow-Methods': 'GET,HEAD,PUT,PATCH,POST,DELETE',
      'Content-Length': 0,
    };
    const requested = req.headers['access-control-request-headers'];
    if (requested !== undefined) {
      headers['Access-Control-Allow-Headers'] = requested;
      headers['Vary'] = 'Access-Control-Request-Headers';
    }
    res.writeHead(204, headers);
    res.end();
  }

  private serveStatic(rawPath: string, res: http.ServerResponse): boolean {
    const file = STATIC_FILES.get(rawPath === '/index.html' ? '/' : rawPath);
    if (file === undefined) return false;
    sendBody(res, 200, file.type, Buffer.from(file.body));
    return true;
  }

  private buildRoutes(): Route[] {
    const route = (method: Route['method'], template: string, handler: Handler, isPublic = false): Route => ({
      method,
      pattern: routePattern(template),
      public: isPublic,
      handler,
    });
    return [
      route('GET', '/info', (ctx) => this.handleInfo(ctx)),
      route('GET', '/options', (ctx) => this.handleOptions(ctx)),
      route('GET', '/auth/info', (ctx) => this.handleAuthInfo(ctx), true),
      route('POST', '/auth/login', (ctx) => this.handleAuthUnavailable(ctx), true),
      route('POST', '/auth/register', (ctx) => this.handleAuthUnavailable(ctx), true),
      route('POST', '/task/new/init', (ctx) => this.handleInit(ctx)),
      route('POST', '/task/new/upload/:uuid', (ctx) => this.handleUpload(ctx)),
      route('POST', '/task/new/commit/:uuid', (ctx) => this.handleCommit(ctx)),
      route('POST', '/task/new', (ctx) => this.handleTaskNew(ctx)),
      route('GET', '/task/list', (ctx) => this.handleList(ctx)),
      route('GET', '/task/:uuid/info', (ctx) => this.handleTaskInfo(ctx)),
      route('GET', '/task/:uuid/output', (ctx) => this.handleTaskOutput(ctx)),
      route('GET', '/task/:uuid/download/:asset', (ctx) => this.handleDownload(ctx)),
      // NodeODM parses the body before its authCheck on these three, so they check it themselves.
      route('POST', '/task/cancel', (ctx) => this.handleCommand(ctx, 'cancel'), true),
      route('POST', '/task/remove', (ctx) => this.handleCommand(ctx, 'remove'), true),
      route('POST', '/task/restart', (ctx) => this.handleCommand(ctx, 'restart'), true),
    ];
  }

  // ----- server routes -----

  private async handleInfo(ctx: Ctx): Promise<void> {
    await this.delay(this.options.infoDelayMs);
    sendJson(ctx.res, {
      version: this.options.version,
      taskQueueCount: this.queueCount(),
      totalMemory: os.totalmem(),
      availableMemory: os.freemem(),
      cpuCores: os.cpus().length,
      maxImages: this.options.maxImages,
      maxParallelTasks: this.options.maxParallelTasks,
      engineVersion: '?',
      engine: 'odm',
    });
  }

  private handleOptions(ctx: Ctx): void {
    sendBody(ctx.res, 200, 'application/json; charset=utf-8', this.fixture.raw);
  }

  private handleAuthInfo(ctx: Ctx): void {
    sendJson(ctx.res, { message: 'Authentication not available on this node', loginUrl: null, registerUrl: null });
  }

  private handleAuthUnavailable(ctx: Ctx): void {
    drain(ctx.req);
    sendJson(ctx.res, { error: 'Not available' });
  }

  // ----- task creation -----

  /** NodeODM's assignUUID: a valid, unused `set-uuid` header, or a fresh v4 uuid. */
  private assignUuid(ctx: Ctx): string | undefined {
    const header = ctx.req.headers['set-uuid'];
    if (header === undefined) return randomUUID();
    const wanted = Array.isArray(header) ? header.join(', ') : header;
    if (UUID_RE.test(wanted) && !this.uuidInUse(wanted)) return wanted;
    drain(ctx.req);
    sendJson(ctx.res, { error: `Invalid set-uuid: ${wanted}` });
    return undefined;
  }

  /** As NodeODM: only committed tasks (and inits in flight) make a set-uuid invalid; an uncommitted one is handled at mkdir. */
  private uuidInUse(uuid: string): boolean {
    return this.taskMap.has(uuid) || this.reserved.has(uuid);
  }

  private taskFields(fields: Fields): TaskFields {
    const name = fieldString(fields, 'name');
    const skip = fields['skipPostProcessing'];
    const dateCreated = Number.parseInt(String(fields['dateCreated']), 10);
    const webhook = fieldString(fields, 'webhook');
    return {
      name: name !== undefined && name !== '' ? name : `Task of ${new Date().toISOString()}`,
      options: fields['options'] ? parseTaskOptions(fields['options'], this.fixture.names) : [],
      webhook: webhook !== undefined && webhook !== '' ? webhook : null,
      skipPostProcessing: skip === true || skip === 'true',
      dateCreated: Number.isNaN(dateCreated) ? Date.now() : dateCreated,
    };
  }

  /** /task/new/init takes multipart (fields only), urlencoded, JSON or no body at all. */
  private async readInitFields(req: http.IncomingMessage): Promise<Fields> {
    if (isMultipart(req)) return (await receiveMultipart(req, null)).fields;
    return readUrlencodedOrJson(req);
  }

  private async handleInit(ctx: Ctx): Promise<void> {
    const uuid = this.assignUuid(ctx);
    if (uuid === undefined) return;
    this.reserved.add(uuid);
    try {
      const fields = await this.initFields(ctx, uuid);
      const dir = path.join(this.dataDir, uuid);
      const stale = this.pendingMap.get(uuid);
      if (stale && this.options.initKeepsUpload) {
        // NodeODM 2.x: "Dir already exists" is fine; the uncommitted upload's files stay, body.json is rewritten.
        stale.fields = fields;
        sendJson(ctx.res, { uuid });
        return;
      }
      if (stale) {
        // Older NodeODM: the mkdir fails on the leftover of an uncommitted init; its error path then deletes that
        // folder, so the next init with the same uuid succeeds.
        this.pendingMap.delete(uuid);
        await fsp.rm(stale.dir, { recursive: true, force: true });
        sendJson(ctx.res, { error: 'Directory exists' });
        return;
      }
      await fsp.mkdir(dir);
      this.pendingMap.set(uuid, { uuid, dir, fields });
      sendJson(ctx.res, { uuid });
    } finally {
      this.reserved.delete(uuid);
    }
  }

  /** The init's fields; on a refusal (options that are not JSON), NodeODM's die() removes the uuid's upload dir. */
  private async initFields(ctx: Ctx, uuid: string): Promise<TaskFields> {
    try {
      return this.taskFields(await this.readInitFields(ctx.req));
    } catch (err) {
      const pending = this.pendingMap.get(uuid);
      if (pending) {
        this.pendingMap.delete(uuid);
        await fsp.rm(pending.dir, { recursive: true, force: true });
      }
      throw err;
    }
  }

  private isUploadDropped(ctx: Ctx): boolean {
    if (this.options.dropUploads <= 0) return false;
    this.options.dropUploads -= 1;
    // Let the first body bytes arrive so the drop happens mid-request, then cut the connection.
    const cut = (): void => {
      ctx.req.socket.destroy();
    };
    ctx.req.once('data', cut);
    ctx.req.once('end', cut);
    return true;
  }

  /** Receives images for an upload route; non-multipart bodies carry no files (multer skips them). */
  private async receiveImages(req: http.IncomingMessage, dir: string, stallOf: string | null = null): Promise<MultipartResult> {
    if (!isMultipart(req)) {
      drain(req);
      return { fields: {}, files: [] };
    }
    if (stallOf === null) return receiveMultipart(req, dir, this.options, null);
    const { gate, release } = stallAfterFirstChunk();
    const received = receiveMultipart(req, dir, this.options, gate);
    const list = this.stalled.get(stallOf) ?? [];
    list.push({ release, ended: received.then(() => undefined, () => undefined) });
    this.stalled.set(stallOf, list);
    return received;
  }

  private isUploadStalled(): boolean {
    if (this.options.stallUploads <= 0) return false;
    this.options.stallUploads -= 1;
    return true;
  }

  private async handleUpload(ctx: Ctx): Promise<void> {
    if (this.isUploadDropped(ctx)) return;
    const pending = this.pendingMap.get(param(ctx, 0));
    if (pending === undefined) {
      drain(ctx.req);
      sendJson(ctx.res, { error: 'Invalid uuid (not found)' });
      return;
    }
    let answer: unknown;
    try {
      const { files } = await this.receiveImages(ctx.req, pending.dir, this.isUploadStalled() ? pending.uuid : null);
      answer = files.length > 0 ? { success: true } : { error: 'Need at least 1 file.' };
    } catch (err) {
      answer = { error: errorMessage(err) };
    }
    await this.delay(this.options.uploadDelayMs);
    sendJson(ctx.res, answer);
  }

  private async handleCommit(ctx: Ctx): Promise<void> {
    drain(ctx.req);
    const pending = this.pendingMap.get(param(ctx, 0));
    if (pending === undefined) {
      sendJson(ctx.res, { error: 'Invalid uuid (not found)' });
      return;
    }
    this.pendingMap.delete(pending.uuid);
    await this.releaseStalled(pending.uuid);
    await this.loseFiles(pending.dir);
    const files = await fsp.readdir(pending.dir);
    const error = files.length === 0 ? 'Need at least 1 file.' : this.maxImagesError(files.length);
    if (error !== undefined) return this.die(ctx, pending.dir, error);
    this.addTask(pending.uuid, pending.dir, pending.fields, files.length);
    await this.delay(this.options.commitDelayMs);
    if (this.options.dropCommitAnswers > 0) {
      // Committed, but the client never hears it.
      this.options.dropCommitAnswers -= 1;
      ctx.req.socket.destroy();
      return;
    }
    sendJson(ctx.res, { uuid: pending.uuid });
  }

  /** The `releaseStalledAtCommit` knob. */
  private async releaseStalled(uuid: string): Promise<void> {
    const list = this.stalled.get(uuid);
    if (!this.options.releaseStalledAtCommit || !list) return;
    this.stalled.delete(uuid);
    for (const r of list) r.release();
    await Promise.all(list.map((r) => r.ended));
  }

  /** The `loseFilesAtCommit` knob. */
  private async loseFiles(dir: string): Promise<void> {
    const n = this.options.loseFilesAtCommit;
    if (n <= 0) return;
    this.options.loseFilesAtCommit = 0;
    const names = (await fsp.readdir(dir)).sort();
    for (const name of names.slice(Math.max(0, names.length - n))) await fsp.rm(path.join(dir, name), { force: true });
  }

  private maxImagesError(count: number): string | undefined {
    const max = this.options.maxImages;
    if (max === null || max <= 0 || count <= max) return undefined;
    return `${count} images uploaded, but this node can only process up to ${max}.`;
  }

  /** NodeODM's die(): answer the error and remove what was uploaded for the task. */
  private async die(ctx: Ctx, dir: string, error: string): Promise<void> {
    sendJson(ctx.res, { error });
    await fsp.rm(dir, { recursive: true, force: true });
  }

  private async handleTaskNew(ctx: Ctx): Promise<void> {
    if (this.isUploadDropped(ctx)) return;
    const uuid = this.assignUuid(ctx);
    if (uuid === undefined) return;
    this.reserved.add(uuid);
    const dir = path.join(this.dataDir, uuid);
    try {
      await fsp.mkdir(dir);
      const outcome = await this.receiveNewTask(ctx, dir);
      await this.delay(this.options.uploadDelayMs);
      if (typeof outcome === 'string') return await this.die(ctx, dir, outcome);
      this.addTask(uuid, dir, outcome.fields, outcome.count);
      sendJson(ctx.res, { uuid });
    } finally {
      this.reserved.delete(uuid);
    }
  }

  /** Upload + checks of /task/new: the task's fields and image count, or the error to answer. */
  private async receiveNewTask(ctx: Ctx, dir: string): Promise<{ fields: TaskFields; count: number } | string> {
    try {
      const { fields, files } = await this.receiveImages(ctx.req, dir);
      if (files.length === 0) {
        return fieldString(fields, 'zipurl') ? 'zipurl is not supported by the test node' : 'Need at least 1 file or a zip file url.';
      }
      const count = (await fsp.readdir(dir)).length;
      return this.maxImagesError(count) ?? { fields: this.taskFields(fields), count };
    } catch (err) {
      return errorMessage(err);
    }
  }

  private addTask(uuid: string, dir: string, fields: TaskFields, imagesCount: number): void {
    this.taskMap.set(uuid, {
      ...fields,
      uuid,
      dir,
      imagesCount,
      status: TaskStatus.QUEUED,
      output: [],
      progress: 0,
      startedAt: 0,
      processingTime: -1,
      timer: undefined,
    });
    this.pump();
  }

  // ----- task queries -----

  private handleList(ctx: Ctx): void {
    sendJson(ctx.res, [...this.taskMap.keys()].map((uuid) => ({ uuid })));
  }

  /** NodeODM's getTaskFromUuid: the task, or an answered `<uuid> not found`. */
  private findTask(ctx: Ctx): NodeTask | undefined {
    const uuid = param(ctx, 0);
    const task = this.taskMap.get(uuid);
    if (task === undefined) sendJson(ctx.res, { error: `${uuid} not found` });
    return task;
  }

  private taskInfo(task: NodeTask): Record<string, unknown> {
    return {
      uuid: task.uuid,
      name: task.name,
      dateCreated: task.dateCreated,
      processingTime: task.status === TaskStatus.RUNNING ? Date.now() - task.startedAt : task.processingTime,
      status: { code: task.status },
      options: task.options,
      imagesCount: task.imagesCount,
      progress: task.progress,
    };
  }

  /** Array.prototype.slice does the same ToNumber/ToInteger conversion NodeODM relies on. */
  private outputFrom(task: NodeTask, line: string | null): string[] {
    return task.output.slice(line === null ? 0 : Number(line));
  }

  private handleTaskInfo(ctx: Ctx): void {
    const task = this.findTask(ctx);
    if (task === undefined) return;
    const info = this.taskInfo(task);
    if (ctx.query.has('with_output')) info['output'] = this.outputFrom(task, ctx.query.get('with_output'));
    sendJson(ctx.res, info);
  }

  private handleTaskOutput(ctx: Ctx): void {
    const task = this.findTask(ctx);
    if (task === undefined) return;
    sendJson(ctx.res, this.outputFrom(task, ctx.query.get('line')));
  }

  private async handleDownload(ctx: Ctx): Promise<void> {
    const task = this.findTask(ctx);
    if (task === undefined) return;
    if (param(ctx, 1) !== 'all.zip') return sendJson(ctx.res, { error: 'Invalid asset' });
    if (task.status !== TaskStatus.COMPLETED) return sendJson(ctx.res, { error: 'Asset not ready' });
    const size = this.options.assetSize;
    ctx.res.writeHead(200, {
      ...COMMON_HEADERS,
      'Content-Disposition': 'attachment; filename=all.zip',
      'Content-Type': 'application/zip',
      'Content-Length': size,
    });
    if (ctx.req.method === 'HEAD') {
      ctx.res.end();
      return;
    }
    // A client that goes away mid-download is normal; the pipeline just stops.
    await pipeline(Readable.from(assetChunks(size), { objectMode: false }), ctx.res).catch(() => undefined);
  }

  // ----- cancel / remove / restart -----

  private async handleCommand(ctx: Ctx, command: 'cancel' | 'remove' | 'restart'): Promise<void> {
    // NodeODM only parses urlencoded and JSON bodies here: a multipart body carries no uuid.
    const body = await readUrlencodedOrJson(ctx.req);
    if (!this.checkToken(ctx)) return;
    const uuid = fieldString(body, 'uuid');
    if (!uuid) return sendJson(ctx.res, { error: 'uuid param missing.' });
    let options: TaskOption[] | undefined;
    if (command === 'restart' && body['options']) options = parseTaskOptions(body['options'], this.fixture.names);
    const task = this.taskMap.get(uuid);
    if (task === undefined) return sendJson(ctx.res, { success: false, error: `${uuid} not found` });
    const error = await this.runCommand(task, command, options);
    sendJson(ctx.res, error === undefined ? { success: true } : { success: false, error });
  }

  private async runCommand(task: NodeTask, command: 'cancel' | 'remove' | 'restart', options?: TaskOption[]): Promise<string | undefined> {
    if (command === 'cancel') this.cancelTask(task);
    else if (command === 'remove') await this.removeTask(task);
    else return this.restartTask(task, options);
    return undefined;
  }

  private cancelTask(task: NodeTask): void {
    if (task.status === TaskStatus.CANCELED) return; // NodeODM: nothing to be done, still a success
    this.stopTimer(task);
    task.status = TaskStatus.CANCELED;
    task.processingTime = -1;
    this.pump();
  }

  private async removeTask(task: NodeTask): Promise<void> {
    this.cancelTask(task);
    this.taskMap.delete(task.uuid);
    await fsp.rm(task.dir, { recursive: true, force: true });
    this.pump();
  }

  private restartTask(task: NodeTask, options?: TaskOption[]): string | undefined {
    const restartable: readonly number[] = [TaskStatus.CANCELED, TaskStatus.FAILED, TaskStatus.COMPLETED];
    if (!restartable.includes(task.status)) return 'Task cannot be restarted';
    task.status = TaskStatus.QUEUED;
    task.dateCreated = Date.now();
    task.output = [];
    task.progress = 0;
    task.processingTime = -1;
    if (options !== undefined) task.options = options;
    this.pump();
    return undefined;
  }

  // ----- processing simulation -----

  private queueCount(): number {
    let count = 0;
    for (const task of this.taskMap.values()) {
      if (task.status === TaskStatus.QUEUED || task.status === TaskStatus.RUNNING) count++;
    }
    return count;
  }

  private runningCount(): number {
    let count = 0;
    for (const task of this.taskMap.values()) if (task.status === TaskStatus.RUNNING) count++;
    return count;
  }

  /** Starts QUEUED tasks, oldest first, while fewer than maxParallelTasks are RUNNING. */
  private pump(): void {
    if (this.closing !== undefined) return;
    for (const task of this.taskMap.values()) {
      if (this.runningCount() >= this.options.maxParallelTasks) return;
      if (task.status === TaskStatus.QUEUED) this.startTask(task);
    }
  }

  private startTask(task: NodeTask): void {
    task.status = TaskStatus.RUNNING;
    task.startedAt = Date.now();
    task.output.push(`Test NodeODM node: processing ${task.imagesCount} images`, ...this.options.outputLines);
    this.scheduleStage(task, 0);
  }

  /** Stage i runs at (i+1)/4 of processingMs; after the last stage the task ends. */
  private scheduleStage(task: NodeTask, index: number): void {
    const step = this.options.processingMs / (PROCESSING_STAGES.length + 1);
    task.timer = this.later(step, () => {
      task.timer = undefined;
      const stage = PROCESSING_STAGES[index];
      if (stage === undefined) return this.finishTask(task);
      task.output.push(stage.line);
      task.progress = stage.progress;
      this.scheduleStage(task, index + 1);
    });
  }

  private stopTimer(task: NodeTask): void {
    if (task.timer === undefined) return;
    clearTimeout(task.timer);
    this.timers.delete(task.timer);
    task.timer = undefined;
  }

  private finishTask(task: NodeTask): void {
    const s3 = this.options.s3;
    // As NodeODM: with S3 configured, the results are uploaded before the task counts as COMPLETED.
    const upload = !this.options.failTasks && s3 ? this.uploadToS3(task, s3) : Promise.resolve();
    void upload.then(() => {
      if (task.status !== TaskStatus.RUNNING) return; // canceled or removed meanwhile
      task.processingTime = Date.now() - task.startedAt;
      task.progress = 100;
      if (this.options.failTasks) {
        task.output.push('Test fail');
        task.status = TaskStatus.FAILED;
      } else {
        task.output.push('Compressing all.zip\n'); // NodeODM's exact last line, newline included
        task.status = TaskStatus.COMPLETED;
      }
      this.callWebhook(task, task.webhook);
      this.callWebhook(task, this.options.webhook || null);
      this.pump();
    });
  }

  /** As NodeODM with `--s3_*`: the results go to the bucket, under the task's uuid. */
  private async uploadToS3(task: NodeTask, s3: TestNodeS3): Promise<void> {
    const { S3Client, PutObjectCommand } = await import('@aws-sdk/client-s3');
    type Acl = NonNullable<ConstructorParameters<typeof PutObjectCommand>[0]['ACL']>;
    const endpoint = /^[a-z]+:\/\//i.test(s3.endpoint) ? s3.endpoint : `https://${s3.endpoint}`;
    const client = new S3Client({
      region: 'us-east-1',
      endpoint,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
    });
    try {
      const body = Buffer.concat([...assetChunks(this.options.assetSize)]);
      await client.send(
        new PutObjectCommand({ Bucket: s3.bucket, Key: `${task.uuid}/all.zip`, Body: body, ContentType: 'application/zip', ACL: (s3.acl || 'public-read') as Acl }),
      );
      task.output.push('Uploaded all.zip to S3');
    } catch (e: unknown) {
      task.output.push(`S3 upload failed: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      client.destroy();
    }
  }

  /** POSTs the final task info to a webhook; failures are ignored (the test sees none). */
  private callWebhook(task: NodeTask, url: string | null): void {
    if (url === null || this.closing !== undefined) return;
    const abort = new AbortController();
    this.webhookAborts.add(abort);
    fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(this.taskInfo(task)),
      signal: abort.signal,
    })
      .then((res) => res.arrayBuffer())
      .catch(() => undefined)
      .finally(() => this.webhookAborts.delete(abort));
  }
}
