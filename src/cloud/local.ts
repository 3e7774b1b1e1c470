import { tokensEqual } from './token';
import type { ApprovalResult, AuthInfo, CloudProvider, ValidationResult } from './types';

export interface LocalOptions {
  /** The cluster's --token; "" lets everyone in. */
  token: string;
}

/** The default provider: one shared token (or none), no quotas, no billing. */
export class LocalCloudProvider implements CloudProvider {
  readonly name = 'LocalCloudProvider';
  private readonly token: string;

  constructor(opts: LocalOptions) {
    this.token = opts.token;
  }

  validate(token: string): Promise<ValidationResult> {
    const valid = this.token === '' || tokensEqual(this.token, token);
    return Promise.resolve({ valid, limits: null });
  }

  approveNewTask(_token: string, _imagesCount: number): Promise<ApprovalResult> {
    return Promise.resolve({ approved: true, error: '' });
  }

  taskFinished(_token: string, _taskInfo: unknown): Promise<void> {
    return Promise.resolve();
  }

  clearCache(_token: string): void {
    // Nothing is cached.
  }

  authInfo(): AuthInfo {
    return { message: 'Authentication not available on this node', loginUrl: null, registerUrl: null };
  }
}
