import * as fsp from 'node:fs/promises';
import type { Limits } from '../nodeodm';
import type { TaskParams } from './node-uploader';
import { isPartialName } from './staging-names';

/** The init parameters of a task, as the original stores them in tmp/<uuid>/body.json. */
export interface BodyParams {
  options: string | null;
  taskName: string;
  skipPostProcessing: boolean;
  outputs: string | null;
  dateCreated: number | null;
  webhook: string;
}

/** A task whose files are all staged and that is ready to go to a node. */
export interface StagedTask {
  uuid: string;
  token: string | undefined;
  limits: Limits | null;
  params: BodyParams;
  dir: string;
  /** Names of the staged files (body.json excluded). */
  files: string[];
  /** `<public address>/?token=<user token>`, the sm-cluster value of split-merge tasks. */
  smClusterUrl: string;
  /** `<public address>/commit?token=<user token>`, the webhook of an autoscaled node ('' when unknown). */
  commitUrl: string;
}

/** The name of a task created without one, as the original. */
export function taskName(p: BodyParams, now: number): string {
  return p.taskName || `Task of ${new Date(now).toISOString()}`;
}

/** What a node's /task/new/init receives for a task. */
export function nodeTaskParams(p: BodyParams, options: unknown[], name: string | undefined, dateCreated: number): TaskParams {
  return {
    name: name || p.taskName,
    options,
    dateCreated,
    skipPostProcessing: p.skipPostProcessing,
    webhook: p.webhook || null,
    outputs: p.outputs,
  };
}

export async function removeDir(dir: string): Promise<void> {
  await fsp.rm(dir, { recursive: true, force: true }).catch(() => undefined);
}

/** Staged files of a task dir, without the body.json the intake keeps there and files still being written. */
export async function listStagedFiles(dir: string): Promise<string[]> {
  try {
    return (await fsp.readdir(dir)).filter((f) => f.toLowerCase() !== 'body.json' && !isPartialName(f)).sort();
  } catch {
    return [];
  }
}
