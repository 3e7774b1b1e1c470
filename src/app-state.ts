import * as os from 'node:os';
import * as path from 'node:path';
import type { Clock, Logger } from './core';
import { NodeRegistry, parseNodesFile } from './nodes';
import { FileRouteStore, RouteTable, SharedRouteStore, SharedTaskStore, TaskTable } from './routing';
import { createStateBackend, type StateBackend } from './store';

/** The daemon's durable state: where it lives (data/ or Redis), the node list, the routes and the task table. */
export interface AppState {
  state: StateBackend;
  registry: NodeRegistry;
  routes: RouteTable;
  tasks: TaskTable;
}

/** Builds the state objects; nothing is read until start() loads them. Only src/store knows the backend. */
export function buildAppState(opts: { redis?: string | undefined; dataDir: string; clock: Clock; logger: Logger }): AppState {
  const { dataDir, clock, logger } = opts;
  const state = createStateBackend({ redis: opts.redis, dataDir, clock, logger });
  const registry = new NodeRegistry({
    store: state.doc({ name: 'nodes', parse: parseNodesFile, count: (list) => list.length }),
    clock,
    logger,
  });
  const routesFile = (): FileRouteStore => new FileRouteStore({ file: path.join(dataDir, 'routes.json'), clock, logger });
  const sharedRoutes = state.sharedTable('routes');
  const routes = new RouteTable({
    store: sharedRoutes ? new SharedRouteStore({ table: sharedRoutes, clock, logger, importFrom: routesFile() }) : routesFile(),
    clock,
    logger,
  });
  const sharedTasks = state.sharedTable('tasks');
  // Stable across restarts and distinct per instance (each has its own data and tmp folders): what marks the
  // tasks whose staged files this instance holds.
  const instance = `${os.hostname()}:${path.resolve(dataDir)}`;
  const tasks = new TaskTable({
    file: path.join(dataDir, 'tasks.json'),
    clock,
    logger,
    ...(sharedTasks
      ? {
          instance,
          store: (codec, file) =>
            new SharedTaskStore({ table: sharedTasks, codec, logger, importFrom: file, importName: path.join(dataDir, 'tasks.json'), instance }),
        }
      : {}),
  });
  return { state, registry, routes, tasks };
}
