import type { Logger } from '../core';
import { errorMessage } from '../core';
import type { MachineSlots } from '../store';
import type { Reservation } from './types';

/**
 * The autoscaler's places under its machine limit: machines being made count with the running ones. With one
 * instance, counted here and taken synchronously; with several (--redis), each reservation is also confirmed in the
 * shared state, atomically with every other instance's places and machines (a Lua script), so the cluster as a
 * whole never makes more machines than the limit.
 */
export class MachinePlaces {
  private pendingCount = 0;
  private readonly d: { limit: () => number; running: () => number; slots: MachineSlots | null; logger: Logger };

  constructor(deps: { limit: () => number; running: () => number; slots: MachineSlots | null; logger: Logger }) {
    this.d = deps;
  }

  get pending(): number {
    return this.pendingCount;
  }

  get shared(): boolean {
    return this.d.slots !== null;
  }

  /** A place if this instance's count stays under the limit (-1: none); null otherwise. */
  reserve(images: number): Reservation | null {
    const limit = this.d.limit();
    if (limit !== -1 && this.pendingCount + this.d.running() >= limit) return null;
    this.pendingCount++;
    return { images, released: false };
  }

  release(r: Reservation): void {
    if (r.released) return;
    r.released = true;
    this.pendingCount--;
    const slot = r.slot;
    if (slot && this.d.slots) {
      this.d.slots.give(slot).catch((e: unknown) => this.d.logger.warn(`Autoscaler: cannot give back machine place ${slot}: ${errorMessage(e)}`));
    }
  }

  /**
   * Several instances: takes the reservation's place in the shared state. The reservation, or null (released) when
   * the cluster is at its limit or the shared state cannot be reached. With one instance the reservation as it is.
   */
  async confirm(r: Reservation): Promise<Reservation | null> {
    const slots = this.d.slots;
    if (r.released) return null;
    // Confirmed already (a queued task's place is confirmed when its machine is made).
    if (!slots || r.slot) return r;
    try {
      const id = await slots.take(this.d.limit());
      if (id !== null && !r.released) {
        r.slot = id;
        return r;
      }
      if (id !== null) await slots.give(id);
    } catch (e: unknown) {
      this.d.logger.warn(`Autoscaler: cannot take a machine place in the shared state: ${errorMessage(e)}`);
    }
    this.release(r);
    return null;
  }

  /** Names the machine of a confirmed place, so the leader's reconciliation spares it while it is being made. */
  async name(r: Reservation, machine: string): Promise<void> {
    if (!r.slot || !this.d.slots) return;
    await this.d.slots.name(r.slot, machine).catch((e: unknown) => this.d.logger.warn(`Autoscaler: cannot record machine ${machine}: ${errorMessage(e)}`));
  }
}
