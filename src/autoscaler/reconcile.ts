import type { Logger } from '../core';
import { errorMessage } from '../core';
import type { NodeRegistry } from '../nodes';
import type { DockerMachine } from './docker-machine';
import type { AsrProvider } from './provider';

/** Names of the machines we create: clusterodm-<images>-<random>. */
export const MACHINE_NAME = /^clusterodm-\d+-[A-Za-z0-9]+$/;

export interface ReconcileDeps {
  machines: DockerMachine;
  provider: AsrProvider;
  registry: NodeRegistry;
  logger: Logger;
  mask(text: string): string;
  /** Machines being created right now (not registered yet, and not orphans). */
  creating(name: string): boolean;
}

/**
 * Destroys machines that are ours but that nodes.json does not know (a crash between creation and registration,
 * a failed removal): at docker-machine, names of our pattern; at the provider, machines carrying our tag.
 * Resolves to how many were destroyed.
 */
export async function reconcileMachines(d: ReconcileDeps): Promise<number> {
  const { machines, provider, registry, logger, mask } = d;
  // Asked when each name is judged, not before the lists are read: a machine whose creation ends meanwhile leaves
  // `creating` for the registry (a set taken first had it in neither, and the machine was destroyed).
  const known = (name: string): boolean => registry.list().some((n) => n.record.dockerMachine?.name === name);
  const orphan = (name: string): boolean => MACHINE_NAME.test(name) && !d.creating(name) && !known(name);
  let removed = 0;
  const local = await machines.list().catch((e: unknown) => {
    logger.warn(`Autoscaler: cannot list docker-machine machines: ${mask(errorMessage(e))}`);
    return [] as string[];
  });
  for (const name of local.filter(orphan)) {
    logger.warn(`Autoscaler: machine ${name} is not in nodes.json, destroying it`);
    await machines.rm(name, true).then(
      () => removed++,
      (e: unknown) => logger.error(`Autoscaler: cannot remove ${name}: ${mask(errorMessage(e))}`),
    );
  }
  const tagged = await provider.listTaggedMachines();
  for (const m of tagged.filter((x) => orphan(x.name))) {
    logger.warn(`Autoscaler: ${provider.name} machine ${m.name} (${m.id}) is not in nodes.json, destroying it`);
    await provider.deleteMachine(m.id).then(
      () => removed++,
      (e: unknown) => logger.error(`Autoscaler: cannot delete ${m.name}: ${mask(errorMessage(e))}`),
    );
  }
  return removed;
}
