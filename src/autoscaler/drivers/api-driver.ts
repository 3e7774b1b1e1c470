import type { Clock, Logger } from '../../core';
import { abortableSleep, ClusterError, errorMessage } from '../../core';
import type { DockerMachineRecord } from '../../nodes';
import { loadOrCreateInstallId } from '../install-id';
import { INSTALL_TAG_KEY, isNoCapacity, MachineApiError, waitForAddress, type MachinePrice } from '../machine-api';
import type { ApiProvider } from '../providers/api/config';
import { MACHINE_NAME } from '../reconcile';
import { renderUserData } from './cloud-init';
import type { CreateContext, CreatedMachine, MachineDriver } from './driver';

/** A create refused because it would go over maxHourlySpend: "no capacity", so the task queues. */
export class OverSpend extends ClusterError {
  constructor(message: string) {
    super('NO_CAPACITY', message);
    this.name = 'OverSpend';
  }
}

export interface ApiDriverDeps {
  provider: ApiProvider;
  /** Where `install-id` lives (`data/`). */
  dataDir: string;
  clock: Clock;
  logger: Logger;
  mask(text: string): string;
  /** Pause between two polls of the machine (address) and of its NodeODM (ready). */
  pollMs?: number;
}

/**
 * The `api` driver: machines made through the cloud's HTTP API, NodeODM started by cloud-init user data (which holds
 * the secrets: it is never logged, and nothing goes on a command line). A machine is ready when its NodeODM answers
 * /info with its token within `bootTimeout`; one that misses it is destroyed and the attempt counts as failed.
 * Every machine carries the install id, and only machines carrying it are ever listed or destroyed.
 */
export class ApiDriver implements MachineDriver {
  readonly kind = 'api';
  private installId: string | null = null;
  private readonly pollMs: number;

  constructor(private readonly d: ApiDriverDeps) {
    this.pollMs = d.pollMs ?? 2000;
  }

  get servicePort(): number {
    return this.d.provider.cloudInit.servicePort;
  }

  async initialize(): Promise<void> {
    this.installId = await loadOrCreateInstallId(this.d.dataDir);
    this.d.logger.info(`Autoscaler: install id ${this.installId} (tag ${INSTALL_TAG_KEY})`);
  }

  private id(): string {
    if (this.installId === null) throw new ClusterError('MACHINE_API_FAILED', 'The api driver was not initialized (no install id)');
    return this.installId;
  }

  async create(ctx: CreateContext): Promise<CreatedMachine> {
    const { provider, clock, logger, mask } = this.d;
    const { name, signal, step } = ctx;
    const installId = this.id();
    const retries = provider.createRetries();
    const userData = renderUserData({ ...provider.cloudInit, nodeToken: ctx.nodeToken, webhookUrl: ctx.webhookUrl });
    let lastNoCapacity = false;
    for (let attempt = 1; attempt <= retries; attempt++) {
      if (signal.aborted) throw new Error('Aborted');
      step(`Trying to create machine... (${attempt})`);
      let machineId: string | null = null;
      let where = '';
      try {
        const spec = await provider.machineSpec({ images: ctx.images, attempt, name, installId, userData });
        where = `${spec.size} in ${spec.region}`;
        const price = await this.claimPrice(ctx, spec.size, spec.region);
        const deadline = clock.now() + provider.bootTimeoutMs();
        const m = await provider.api.create(spec);
        machineId = m.id;
        step(`Machine ${m.id} (${where}) created, waiting for its address`);
        const addressed = await waitForAddress(provider.api, m.id, { clock, timeoutMs: Math.max(0, deadline - clock.now()), intervalMs: this.pollMs, signal });
        step(`Waiting for NodeODM on ${addressed.ip} to start`);
        await this.waitReady(ctx, addressed.ip, deadline, provider.bootTimeoutMs());
        return { ip: addressed.ip, machineId: m.id, size: spec.size, region: spec.region, price };
      } catch (e: unknown) {
        // Over maxHourlySpend: no other region changes that now; the task queues until a machine goes.
        if (e instanceof OverSpend) {
          logger.warn(`Cannot create machine ${name}: ${e.message}`);
          throw e;
        }
        lastNoCapacity = isNoCapacity(e);
        if (lastNoCapacity) {
          logger.warn(`Cannot create machine ${name}: no capacity at ${provider.name}${where ? ` for ${where}` : ''}: ${mask(errorMessage(e))}`);
        } else {
          logger.warn(`Cannot create machine ${name}: ${mask(errorMessage(e))}`);
        }
        if (machineId !== null) await this.discard(name, { ip: '', machineId });
        if (signal.aborted) throw new Error('Aborted');
        if (attempt < retries) await abortableSleep(clock, provider.failureSleepMs(attempt), signal);
      }
    }
    const message = `Cannot create machine (attempted ${retries} times)`;
    throw new ClusterError(lastNoCapacity ? 'NO_CAPACITY' : 'MACHINE_API_FAILED', lastNoCapacity ? `${message}: no capacity` : message);
  }

  /**
   * The machine's hourly price, counted against maxHourlySpend. With a maxHourlySpend, a size without a known price
   * fails the attempt (set `prices`); without one, an unknown price is only not shown.
   */
  private async claimPrice(ctx: CreateContext, size: string, region: string): Promise<MachinePrice | null> {
    const { provider, logger, mask } = this.d;
    const max = provider.maxHourlySpend();
    let price: MachinePrice | null = null;
    try {
      price = await provider.prices.price(size, region);
    } catch (e: unknown) {
      if (max >= 0) throw e;
      logger.warn(`Autoscaler: no price for ${size} in ${region}: ${mask(errorMessage(e))}`);
    }
    if (max >= 0 && !price) {
      throw new MachineApiError({
        provider: provider.name,
        failure: 'invalid',
        message: `no hourly price known for ${size} in ${region}, and maxHourlySpend needs one (add it to "prices")`,
      });
    }
    if (!ctx.claimSpend(price?.hourly ?? 0)) {
      throw new OverSpend(`a ${size} machine in ${region} (${price?.hourly ?? 0} ${price?.currency ?? ''}/h) would take the hourly spend over maxHourlySpend ${max}: no capacity`);
    }
    return price;
  }

  /** Polls NodeODM's /info (with the machine's token) until it answers, or the boot deadline passes. */
  private async waitReady(ctx: CreateContext, ip: string, deadline: number, timeoutMs: number): Promise<void> {
    const { clock } = this.d;
    for (;;) {
      if (ctx.signal.aborted) throw new Error('Aborted');
      if (await ctx.probe(ip)) return;
      if (clock.now() >= deadline) {
        throw new MachineApiError({
          provider: this.d.provider.name,
          failure: 'unknown',
          message: `NodeODM on ${ctx.name} did not answer within the boot deadline (bootTimeout ${Math.round(timeoutMs / 1000)} s)`,
        });
      }
      await abortableSleep(clock, Math.min(this.pollMs, Math.max(1, deadline - clock.now())), ctx.signal);
    }
  }

  async discard(name: string, machine: CreatedMachine): Promise<void> {
    if (!machine.machineId) return;
    await this.d.provider.api.destroy(machine.machineId).catch((e: unknown) => {
      this.d.logger.warn(`Could not destroy machine ${name} (${machine.machineId}): ${this.d.mask(errorMessage(e))}; the reconciliation will retry`);
    });
  }

  async destroy(record: DockerMachineRecord): Promise<void> {
    const { api } = this.d.provider;
    if (record.machineId) return api.destroy(record.machineId);
    // A record without the cloud's id (written by the docker-machine driver): found by name among our machines.
    for (const m of await api.listByInstall(this.id())) if (m.name === record.name) await api.destroy(m.id);
  }

  async reconcile(known: (name: string, machineId: string | null) => boolean, creating: (name: string) => boolean): Promise<number> {
    const { provider, logger, mask } = this.d;
    const installId = this.id();
    let removed = 0;
    for (const m of await provider.api.listByInstall(installId)) {
      // listByInstall filters by the tag; the check is repeated so no other machine can ever be destroyed here.
      if (m.installId !== installId || !MACHINE_NAME.test(m.name)) continue;
      // Judged when its turn comes: a creation that ends meanwhile moves from `creating` to the registry.
      if (creating(m.name) || known(m.name, m.id)) continue;
      logger.warn(`Autoscaler: ${provider.name} machine ${m.name} (${m.id}) is not in nodes.json, destroying it`);
      await provider.api.destroy(m.id).then(
        () => removed++,
        (e: unknown) => logger.error(`Autoscaler: cannot delete ${m.name}: ${mask(errorMessage(e))}`),
      );
    }
    return removed;
  }

  async viewCommand(images: number): Promise<string> {
    const spec = await this.d.provider.machineSpec({ images, attempt: 1, name: 'debug-machine', installId: this.installId ?? '<install id>', userData: '' });
    const { userData: _secret, ...shown } = spec;
    return `${this.d.provider.name} create ${JSON.stringify(shown)} (user data: cloud-init, not shown)`;
  }

  stop(): void {
    this.d.provider.api.close?.();
  }
}
