/**
 * Who holds a client's upload request paused. Two readers share the body of a streamed upload: the staging (which
 * waits for the disk) and the copy for the node (which waits, for a bounded time, for a node that is a little behind;
 * see upload-tee.ts). The request reads on only when neither holds it, so one reader's resume never overrides the
 * other's pause.
 */
import type { Readable } from 'node:stream';

export type FlowHolder = 'disk' | 'node';

export class RequestFlow {
  private readonly holds = new Set<FlowHolder>();
  private open = false;

  constructor(private readonly req: Readable) {}

  hold(who: FlowHolder): void {
    if (this.open) return;
    this.holds.add(who);
    this.req.pause();
  }

  release(who: FlowHolder): void {
    if (!this.holds.delete(who) || this.holds.size > 0) return;
    this.req.resume();
  }

  held(who: FlowHolder): boolean {
    return this.holds.has(who);
  }

  /** From now on the body is only drained (the upload failed): nobody holds it any more. */
  drain(): void {
    this.open = true;
    this.holds.clear();
    this.req.resume();
  }
}
