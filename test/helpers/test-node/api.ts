/** The test node's public types and default knobs. (split from test-node.ts) */
import * as http from 'node:http';


// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** Knobs of a test node. All of them can be changed at runtime except `host`, `port` and `tls`. */
export interface TestNodeOptions {
  /** Interface to listen on. */
  host: string;
  /** Port to listen on; 0 picks a free one (read it back from `node.port`). */
  port: number;
  /** When non-empty, every API route requires `?token=<token>`. */
  token: string;
  /** Maximum number of images per task, or null for no limit. */
  maxImages: number | null;
  /** Maximum number of tasks RUNNING at once; the others wait QUEUED. */
  maxParallelTasks: number;
  /** How long a task stays RUNNING before it completes (or fails). */
  processingMs: number;
  /** When true, tasks end FAILED (30) instead of COMPLETED (40). */
  failTasks: boolean;
  /** Size in bytes of the generated all.zip. */
  assetSize: number;
  /** Delay before answering each upload request (/task/new/upload/<uuid> and /task/new). */
  uploadDelayMs: number;
  /**
   * Number of upcoming upload requests (/task/new/upload/<uuid> and /task/new) whose socket is
   * destroyed once their first body bytes arrive; decremented per drop.
   */
  dropUploads: number;
  /**
   * Number of upcoming upload requests (/task/new/upload/<uuid>) that stop reading their socket once their first
   * body bytes arrive; decremented per stalled request. A socket that is not read does not see its peer go away
   * either, so a stalled request stays stalled until close() (as a hung NodeODM would).
   */
  stallUploads: number;
  /** Delay before answering /info, to simulate a slow node. */
  infoDelayMs: number;
  /** Delay before answering /task/new/commit/<uuid>, after the task is committed (a late or lost commit answer). */
  commitDelayMs: number;
  /** When true, every connection and request is destroyed immediately. */
  offline: boolean;
  /** API version reported by /info. */
  version: string;
  /** NodeODM's `--webhook`: posted the task info when any task ends ('' = none), besides each task's own. */
  webhook: string;
  /** NodeODM's `--s3_*`: a completed task's all.zip is uploaded to `<bucket>/<uuid>/all.zip` before the webhooks. */
  s3: TestNodeS3 | null;
  /** HTTPS instead of HTTP, with this key and certificate (PEM); null = plain HTTP. */
  tls: { key: Buffer | string; cert: Buffer | string } | null;
  /** Keep each request's body in `requests[i].body` (read alongside the route's own reading of it). */
  recordBodies: boolean;
  /** Lines every task prints right after its first one (text an admin reads back with TASK OUTPUT). */
  outputLines: readonly string[];
  /**
   * NodeODM's assureUniqueFilename: an uploaded file whose name is taken in the task's upload dir is stored as
   * `a_.jpg` (`a__.jpg`, …; a name without an extension gets `_` appended). false: the file is overwritten.
   */
  uniqueUploadNames: boolean;
  /**
   * NodeODM 2.x: an init whose `set-uuid` names an uncommitted upload keeps that upload's dir and files ("Dir already
   * exists"). false: as older NodeODM, the init answers "Directory exists" and removes the dir.
   */
  initKeepsUpload: boolean;
  /** multer: a file cut by a dropped upload connection stays in the upload dir (partial). false: it is removed. */
  keepPartialUploads: boolean;
  /** Number of upcoming commits that are carried out but whose answer is lost (the connection is destroyed). */
  dropCommitAnswers: number;
  /**
   * Files the next commit silently loses: that many of the upload's files (the last by name) are removed just before
   * the commit counts them, as a node that answered an upload but did not keep all of it; reset to 0 once used.
   */
  loseFilesAtCommit: number;
  /**
   * A request stalled by `stallUploads` reads on when a commit of its task arrives, and the commit counts the files
   * only once that request has ended (a node that was slow, not hung: it sees late that its peer went away, and then
   * removes what that request stored, as multer does). false: a stalled request stays stalled until close().
   */
  releaseStalledAtCommit: boolean;
}

export interface TestNodeS3 {
  endpoint: string;
  bucket: string;
  accessKey: string;
  secretKey: string;
  acl: string;
}

/** NodeODM task status codes. */
export const TaskStatus = {
  QUEUED: 10,
  RUNNING: 20,
  FAILED: 30,
  COMPLETED: 40,
  CANCELED: 50,
} as const;
export type TaskStatusCode = (typeof TaskStatus)[keyof typeof TaskStatus];

/** One processing option of a task, as NodeODM reports it. */
export interface TaskOption {
  name: string;
  value: unknown;
}

/** What the test can see of a committed task. */
export interface TestNodeTask {
  uuid: string;
  status: TaskStatusCode;
  imagesCount: number;
  name: string;
  options: TaskOption[];
  webhook: string | null;
  progress: number;
}

/** A file stored for a task, with its size. */
export interface TestNodeFile {
  name: string;
  bytes: number;
}

/** One request as the node received it. */
export interface RecordedRequest {
  method: string;
  /** Raw request target: path plus query string. */
  path: string;
  headers: http.IncomingHttpHeaders;
  /** With `recordBodies`: the body bytes received so far (all of them once `complete`). */
  body?: Buffer;
  /** With `recordBodies`: the whole body arrived (false while it streams, and for a body cut off). */
  complete?: boolean;
  /** With `tls`: the server name the client sent in its TLS hello (SNI), or false without one. */
  servername?: string | false;
}

export interface TestNode {
  /** Base URL, e.g. http://127.0.0.1:34567 */
  readonly url: string;
  readonly port: number;
  /** Mutable knobs; changes apply to the next request / scheduling decision. */
  readonly options: TestNodeOptions;
  /** Every request received, in arrival order (connections refused while offline carry none). */
  readonly requests: RecordedRequest[];
  /** Temp directory holding the uploaded files; removed by close(). */
  readonly dataDir: string;
  /** Committed tasks, in creation order. */
  tasks(): TestNodeTask[];
  /** Names of the files stored for a task (initialised or committed), sorted; [] if unknown. */
  taskFiles(uuid: string): string[];
  /** Size in bytes of one stored file; throws if it does not exist. */
  taskFileSize(uuid: string, name: string): number;
  /** The files stored for a task (initialised or committed) with their sizes, sorted by name; [] if unknown. */
  taskImages(uuid: string): TestNodeFile[];
  /** Changes several knobs at once and re-evaluates the task queue. */
  configure(patch: Partial<TestNodeOptions>): void;
  /** Takes the node offline (destroying open connections) or back online. */
  setOffline(offline: boolean): void;
  /** Closes the server and sockets, stops timers and webhooks, removes the temp dir. Idempotent. */
  close(): Promise<void>;
}

export const DEFAULT_TEST_NODE_OPTIONS: Readonly<TestNodeOptions> = Object.freeze({
  host: '127.0.0.1',
  port: 0,
  token: '',
  maxImages: null,
  maxParallelTasks: 1,
  processingMs: 100,
  failTasks: false,
  assetSize: 1024 * 1024,
  uploadDelayMs: 0,
  dropUploads: 0,
  stallUploads: 0,
  infoDelayMs: 0,
  commitDelayMs: 0,
  offline: false,
  version: '2.2.4',
  webhook: '',
  s3: null,
  tls: null,
  recordBodies: false,
  outputLines: [],
  uniqueUploadNames: true,
  initKeepsUpload: true,
  keepPartialUploads: false,
  dropCommitAnswers: 0,
  loseFilesAtCommit: 0,
  releaseStalledAtCommit: false,
});

