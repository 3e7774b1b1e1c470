import { createHash, timingSafeEqual } from 'node:crypto';
/**
 * Secrets the autoscaler generates at run time (each machine's node token and webhook secret), masked in logs while
 * their machine exists. They are kept per machine and dropped with it, so the set holds the live machines' secrets
 * only (a flat set grew by two secrets per machine ever created, and was masked against every log line).
 */
export class RuntimeSecrets {
  private readonly byMachine = new Map<string, string[]>();

  add(machine: string, secret: string): void {
    const list = this.byMachine.get(machine);
    if (list) list.push(secret);
    else this.byMachine.set(machine, [secret]);
  }

  /** The machine is gone (destroyed, or its creation failed): its secrets are no longer needed. */
  drop(machine: string): void {
    this.byMachine.delete(machine);
  }

  values(): string[] {
    return [...this.byMachine.values()].flat();
  }
}

const ALNUM = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/** `clusterodm-<images>-<16 letters or digits>` from 16 random bytes. */
export function randomHostname(bytes: Buffer, images: number): string {
  let id = '';
  for (const b of bytes) id += ALNUM[b % ALNUM.length];
  return `clusterodm-${images}-${id}`;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** What nodes.json keeps of a machine's webhook secret. */
export function secretHash(secret: string): string {
  return sha256(secret).toString('hex');
}

/** Whether `secret` is the one whose hash is `stored` (constant time). */
export function secretMatches(stored: string | undefined, secret: string): boolean {
  if (!stored || !/^[0-9a-f]{64}$/.test(stored)) return false;
  return timingSafeEqual(sha256(secret), Buffer.from(stored, 'hex'));
}
