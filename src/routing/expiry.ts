import type { Clock, Logger, Service, TimerHandle } from '../core';
import { errorMessage } from '../core';
import type { RouteTable } from './route-table';
import type { TaskTable } from './task-table';

/** The hourly sweep of idle routes (5 days) and task-table entries (2 days), as the original's. */
export class ExpiryService implements Service {
  readonly name = 'expiry';
  private timer: TimerHandle | null = null;

  constructor(
    private readonly o: { routes: RouteTable; tasks: TaskTable; clock: Clock; logger: Logger; intervalMs?: number },
  ) {}

  async start(): Promise<void> {
    this.timer = this.o.clock.setInterval(() => void this.sweep(), this.o.intervalMs ?? 60 * 60 * 1000);
  }

  async stop(): Promise<void> {
    if (this.timer) this.o.clock.clearInterval(this.timer);
    this.timer = null;
  }

  async sweep(): Promise<void> {
    try {
      await this.o.routes.expire();
      await this.o.tasks.expire();
    } catch (e: unknown) {
      this.o.logger.error(`Cannot expire routes or tasks: ${errorMessage(e)}`);
    }
  }
}
