/** What a NodeODM node's `{"error": "<text>"}` answers mean to the uploader (node-uploader.ts). */
import { nodeError, type Answer } from './node-http';

/**
 * Why a node refused a request, in the cases the uploader acts on:
 * - `uuid-in-use`: init's `set-uuid` names a task the node knows (committed, or being created by /task/new);
 * - `upload-removed`: an older NodeODM found an uncommitted upload under that uuid at init and removed it;
 * - `no-upload`: the node holds no uncommitted upload under the uuid (upload and commit answer this);
 * - `upload-without-files`: an upload request without files, to an uncommitted upload the node holds;
 * - `other`: anything else (the node's text is passed on as it is).
 */
export type NodeRefusal = 'uuid-in-use' | 'upload-removed' | 'no-upload' | 'upload-without-files' | 'other';

/**
 * The only place where a node's error texts are read: NodeODM answers `{"error": "<text>"}` with no code, so the
 * texts of its own source are matched here (taskNew.js: assignUUID, handleInit, getUUID, handleUpload), once. null:
 * the answer is no refusal.
 */
export function refusalOf(answer: Answer): NodeRefusal | null {
  const error = answer['error'];
  if (error === undefined) return null;
  if (typeof error !== 'string') return 'other';
  if (error.startsWith('Invalid set-uuid')) return 'uuid-in-use';
  if (error.startsWith('Directory exists')) return 'upload-removed';
  if (error.startsWith('Invalid uuid (not found)')) return 'no-upload';
  if (error.startsWith('Need at least 1 file')) return 'upload-without-files';
  return 'other';
}

/** The node's own error text is passed through verbatim, like the original. */
export function expectNoError(answer: Answer): void {
  const error = answer['error'];
  if (error !== undefined) throw nodeError(typeof error === 'string' ? error : JSON.stringify(error));
}

/** /task/<uuid>/info of a task the node holds (committed): its own uuid, no error. */
export function isTaskInfo(answer: Answer, uuid: string): boolean {
  return answer['error'] === undefined && answer['uuid'] === uuid;
}
