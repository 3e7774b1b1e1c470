import type { Logger } from '../core';
import { errorMessage, normalizeHostname } from '../core';
import type { ClusterNode, HealthPoller, LoadHistory, NodeRegistry } from '../nodes';
import type { RouteTable } from '../routing';

/** Destroys the machine behind an autospawned node (the autoscaler implements it). */
export interface MachineDestroyer {
  destroyMachine(node: ClusterNode): Promise<void>;
}

export interface NodeOpsOptions {
  registry: NodeRegistry;
  poller: HealthPoller;
  routes: RouteTable;
  logger: Logger;
  machines?: MachineDestroyer | null;
  /** Load samples of removed nodes are dropped. */
  history?: LoadHistory | null;
  /** Kept-alive connections to removed nodes are closed. */
  connections?: { forget(node: ClusterNode): void } | null;
}

/** Node operations shared by the admin CLI and the admin web. */
export class NodeOps {
  private readonly o: NodeOpsOptions;

  constructor(opts: NodeOpsOptions) {
    this.o = opts;
  }

  get registry(): NodeRegistry {
    return this.o.registry;
  }

  /**
   * Adds a node (null if invalid or already there) and polls it right away without waiting. The hostname must be
   * a DNS name or an IP literal (the registry checks it again, with the same function).
   */
  async add(hostname: string, port: number | string, token = ''): Promise<ClusterNode | null> {
    if (normalizeHostname(hostname) === null) {
      this.o.logger.warn(`Refused to add node ${JSON.stringify(hostname.slice(0, 100))}: not a DNS name or an IP address`);
      return null;
    }
    const node = await this.o.registry.addUnique(hostname, port, token);
    if (node) {
      this.o.logger.info(`Added node ${node.name}`);
      void this.o.poller.refresh(node);
    }
    return node;
  }

  /** Removes a node: destroys its machine if autospawned, drops its routes, then the node itself. */
  async remove(node: ClusterNode): Promise<void> {
    if (node.isAutoSpawned() && this.o.machines) {
      await this.o.machines.destroyMachine(node);
    }
    const routes = await this.o.routes.removeByNode(node);
    await this.o.registry.remove(node);
    this.o.history?.forget(node);
    this.o.connections?.forget(node);
    this.o.logger.info(`Removed node ${node.name} (${routes} routes dropped)`);
  }

  async setLocked(node: ClusterNode, locked: boolean): Promise<void> {
    await this.o.registry.setLocked(node, locked);
    this.o.logger.info(`${locked ? 'Locked' : 'Unlocked'} node ${node.name}`);
  }

  async updateAll(): Promise<void> {
    await this.o.poller.refreshAll();
  }

  best(numImages: number): ClusterNode | null {
    return this.o.registry.selectBest(numImages);
  }

  /** Runs an operation, logging a failure; resolves to whether it worked. */
  async attempt(what: string, fn: () => Promise<unknown>): Promise<boolean> {
    try {
      await fn();
      return true;
    } catch (e: unknown) {
      this.o.logger.error(`${what} failed: ${errorMessage(e)}`);
      return false;
    }
  }
}
