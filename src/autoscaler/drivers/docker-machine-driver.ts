import type { Clock, Logger } from '../../core';
import { abortableSleep, errorMessage } from '../../core';
import type { DockerMachineRecord, NodeRegistry } from '../../nodes';
import type { DockerMachine } from '../docker-machine';
import type { AsrProvider } from '../provider';
import { reconcileMachines } from '../reconcile';
import type { CreateContext, CreatedMachine, MachineDriver } from './driver';

export interface DockerMachineDriverDeps {
  provider: AsrProvider;
  machines: DockerMachine;
  registry: NodeRegistry;
  clock: Clock;
  logger: Logger;
  mask(text: string): string;
}

/** Today's path: `docker-machine create` with the provider's driver flags, then NodeODM set up over ssh. */
export class DockerMachineDriver implements MachineDriver {
  readonly kind = 'docker-machine';

  constructor(private readonly d: DockerMachineDriverDeps) {}

  get servicePort(): number {
    return this.d.provider.servicePort;
  }

  initialize(): Promise<void> {
    return this.d.machines.checkInstalled();
  }

  async create(ctx: CreateContext): Promise<CreatedMachine> {
    const { provider, machines, logger, clock } = this.d;
    const { name, signal, step } = ctx;
    const checkAbort = (): void => {
      if (signal.aborted) throw new Error('Aborted');
    };
    let created = false;
    try {
      const retries = provider.createRetries();
      for (let attempt = 1; attempt <= retries && !created; attempt++) {
        checkAbort();
        step(`Trying to create machine... (${attempt})`);
        try {
          await machines.create(name, ['--driver', provider.driver, ...(await provider.createArgs(ctx.images, attempt))]);
          created = true;
        } catch (e: unknown) {
          logger.warn(`Cannot create machine ${name}: ${this.d.mask(errorMessage(e))}`);
          await machines.rm(name, true).catch(() => undefined);
          if (attempt < retries) await abortableSleep(clock, provider.failureSleepMs(attempt), signal);
        }
      }
      if (!created) throw new Error(`Cannot create machine (attempted ${retries} times)`);
      checkAbort();
      await provider.setupMachine(
        {
          ssh: (cmd) => {
            checkAbort();
            return machines.ssh(name, cmd);
          },
          step,
        },
        { nodeToken: ctx.nodeToken, webhookUrl: ctx.webhookUrl },
      );
      checkAbort();
      return { ip: await machines.getIP(name) };
    } catch (e: unknown) {
      if (created) await this.discard(name);
      throw e;
    }
  }

  async discard(name: string): Promise<void> {
    await this.d.machines.rm(name, true).catch(() => {
      this.d.logger.warn(`Could not remove docker-machine ${name}, it's likely that the machine was not created, but double-check!`);
    });
  }

  async destroy(record: DockerMachineRecord): Promise<void> {
    const { machines, provider } = this.d;
    try {
      await machines.rm(record.name, true);
    } catch (e: unknown) {
      // docker-machine may have lost it: ask the provider directly.
      const known = (await provider.listTaggedMachines()).filter((m) => m.name === record.name);
      if (known.length === 0) throw e;
      for (const m of known) await provider.deleteMachine(m.id);
    }
  }

  reconcile(_known: (name: string, machineId: string | null) => boolean, creating: (name: string) => boolean): Promise<number> {
    const { machines, provider, registry, logger, mask } = this.d;
    return reconcileMachines({ machines, provider, registry, logger, mask, creating });
  }

  async viewCommand(images: number): Promise<string> {
    const { provider } = this.d;
    const args = ['--driver', provider.driver, ...(await provider.createArgs(images, 1))];
    return ['docker-machine', 'create', ...args, 'debug-machine'].join(' ');
  }

  stop(): void {
    this.d.machines.killAll();
  }
}
