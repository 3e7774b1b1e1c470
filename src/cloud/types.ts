/** The CloudProvider contract: who may use the cluster (validate) and how much (limits, approveNewTask). */

import type { Limits, OptionLimit } from '../nodeodm';

export type { Limits, OptionLimit };

/** `limits: null` means no limits apply (the local provider). */
export interface ValidationResult {
  valid: boolean;
  limits: Limits | null;
}

export interface ApprovalResult {
  approved: boolean;
  error: string;
}

/** Body of `/auth/info`. */
export interface AuthInfo {
  message: string;
  loginUrl: string | null;
  registerUrl: string | null;
}

export interface CloudProvider {
  /** Class-like name for the startup log line `Cloud: <name>`, e.g. LocalCloudProvider. */
  readonly name: string;
  validate(token: string): Promise<ValidationResult>;
  approveNewTask(token: string, imagesCount: number): Promise<ApprovalResult>;
  /** Records a finished task (billing). Resolves at once; any reporting happens in the background. */
  taskFinished(token: string, taskInfo: unknown): Promise<void>;
  /** Forgets what is cached for this token (`/cache/clear`). */
  clearCache(token: string): void;
  authInfo(): AuthInfo;
}

/** The names accepted by `--cloud-provider`; mirrors CLOUD_PROVIDERS in src/config. */
export const CLOUD_PROVIDER_NAMES = ['local', 'lightning', 'lightningDev'] as const;
export type CloudProviderKind = (typeof CLOUD_PROVIDER_NAMES)[number];
