import type { Clock, Logger } from '../core';
import { abortableSleep, ClusterError, errorMessage } from '../core';
import { ClusterNode, type HealthPoller, type NodeRegistry } from '../nodes';
import type { CreatedMachine, MachineDriver } from './drivers/driver';
import type { MachinePlaces } from './machine-places';
import type { AsrSettings } from './provider';
import { randomHostname, secretHash, type RuntimeSecrets } from './secrets';
import type { MachineProgress, MachineRequest, Reservation } from './types';

const ONLINE_ROUNDS = 5;

export interface MachineBuilderDeps {
  driver: MachineDriver;
  provider: AsrSettings;
  registry: NodeRegistry;
  poller: HealthPoller;
  places: MachinePlaces;
  clock: Clock;
  logger: Logger;
  random: (bytes: number) => Buffer;
  /** Node tokens and webhook secrets made here, per machine (masked wherever text is shown). */
  secrets: RuntimeSecrets;
  mask(text: string): string;
}

/**
 * Makes one machine for one task (SPEC §8.3): names it, gives it its secrets, asks the driver for it within the
 * hourly spend, waits until its NodeODM answers and registers it as an autospawned node. What is being made is
 * listed in `creating` (the reconciliation spares those, the admin page shows their steps).
 */
export class MachineBuilder {
  readonly creating = new Map<string, MachineProgress>();

  constructor(private readonly d: MachineBuilderDeps) {}

  generateHostname(images: number): string {
    return randomHostname(this.d.random(16), images);
  }

  /**
   * A new secret of a machine, masked until the machine is gone. Hex: a base64url token starts with '-' once in 64,
   * and NodeODM's argument parser (minimist) takes `--token -…` for options, so that machine never got online.
   */
  private token(machine: string): string {
    const t = this.d.random(24).toString('hex');
    this.d.secrets.add(machine, t);
    return t;
  }

  /**
   * Creates, sets up and registers the machine. On any failure, or when `signal` aborts, the machine is destroyed
   * before this rejects (the error masked, as its callers no longer know the machine's secrets).
   */
  async build(r: Reservation, req: MachineRequest, signal: AbortSignal): Promise<ClusterNode> {
    const { provider, logger, clock, poller, driver } = this.d;
    const name = this.generateHostname(r.images);
    const progress: MachineProgress = { name, uuid: req.uuid, step: 'Creating machine', since: clock.now() };
    this.creating.set(name, progress);
    // The leader's reconciliation spares a machine another instance is making: named before it exists.
    await this.d.places.name(r, name);
    const step = (message: string): void => {
      progress.step = message;
      progress.since = clock.now();
      logger.info(`Autoscaler: ${name} (task ${req.uuid}): ${message}`);
      req.onStep?.(message);
    };
    let machine: CreatedMachine | null = null;
    try {
      if (!provider.canHandle(r.images)) throw new Error(`Cannot handle ${r.images} images.`);
      const nodeToken = this.token(name);
      const secret = this.token(name);
      const webhook = new URL(req.commitUrl);
      webhook.searchParams.set('secret', secret);
      const port = driver.servicePort;
      // One probe node per address, so an unreachable NodeODM is logged once, not at every poll.
      const probes = new Map<string, ClusterNode>();
      const probe = (ip: string): Promise<boolean> => {
        let n = probes.get(ip);
        if (!n) probes.set(ip, (n = new ClusterNode({ hostname: ip, port, token: nodeToken })));
        return poller.refresh(n);
      };
      machine = await driver.create({
        name,
        images: r.images,
        nodeToken,
        webhookUrl: webhook.toString(),
        step,
        signal,
        probe,
        claimSpend: (hourly) => this.claimSpend(progress, hourly),
      });
      if (signal.aborted) throw new Error('Aborted');
      const node = new ClusterNode({
        hostname: machine.ip,
        port,
        token: nodeToken,
        dockerMachine: {
          name,
          created: clock.now(),
          maxRuntime: provider.maxRuntime(),
          maxUploadTime: provider.maxUploadTime(),
          secretHash: secretHash(secret),
          ...(machine.machineId ? { machineId: machine.machineId } : {}),
          ...(machine.size ? { size: machine.size } : {}),
          ...(machine.region ? { region: machine.region } : {}),
          ...(machine.price ? { hourlyPrice: machine.price.hourly, currency: machine.price.currency } : {}),
        },
      });
      await this.waitOnline(node, step, signal);
      if (signal.aborted) throw new Error('Aborted');
      await this.d.registry.add(node);
      step(`Machine ready at ${node.name}`);
      return node;
    } catch (e: unknown) {
      if (machine) await driver.discard(name, machine);
      const message = errorMessage(e);
      const masked = this.d.mask(message);
      this.d.secrets.drop(name);
      if (masked === message) throw e;
      throw e instanceof ClusterError ? new ClusterError(e.code, masked) : new Error(masked);
    } finally {
      this.creating.delete(name);
    }
  }

  /** What the machines running and being created cost per hour (prices as recorded at their creation). */
  hourlySpend(except: string | null = null): number {
    const names = new Set<string>();
    let total = 0;
    for (const n of this.d.registry.list()) {
      const dm = n.record.dockerMachine;
      if (!dm || dm.name === except) continue;
      names.add(dm.name);
      total += dm.hourlyPrice ?? 0;
    }
    // A machine moves from `creating` to the registry: counted once.
    for (const c of this.creating.values()) if (c.name !== except && !names.has(c.name)) total += c.hourlyPrice ?? 0;
    return total;
  }

  /** CreateContext.claimSpend: maxHourlySpend is checked and the price counted in one synchronous step. */
  private claimSpend(progress: MachineProgress, hourly: number): boolean {
    const max = this.d.provider.maxHourlySpend?.() ?? -1;
    if (max >= 0 && this.hourlySpend(progress.name) + hourly > max + 1e-9) return false;
    progress.hourlyPrice = hourly;
    return true;
  }

  private async waitOnline(node: ClusterNode, step: (m: string) => void, signal: AbortSignal): Promise<void> {
    // As the original: 5 rounds, round i sleeping i seconds.
    for (let i = 1; i <= ONLINE_ROUNDS; i++) {
      if (signal.aborted) throw new Error('Aborted');
      if (await this.d.poller.refresh(node)) return;
      step(`Waiting for ${node.name} to get online... (${i})`);
      await abortableSleep(this.d.clock, 1000 * i, signal);
    }
    if (await this.d.poller.refresh(node)) return;
    throw new Error('No nodes available (spawned a new node, but the node did not get online).');
  }
}
