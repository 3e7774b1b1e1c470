import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Clock, Logger } from './core';
import { parseNodesFile, type NodeRegistry } from './nodes';
import { FileRouteStore, parseTasksFile, serializeTasks, type RouteTable, type TaskTable } from './routing';
import { JsonStateFile, type StateBackend } from './store';

/**
 * Writes the state, wherever it lives (data folder or shared), to `dir` as the data folder holds it
 * (nodes.json, routes.json, tasks.json), without starting any listener: an operator leaves Redis with it.
 */
export async function exportState(
  app: { state: StateBackend; registry: NodeRegistry; routes: RouteTable; tasks: TaskTable },
  deps: { clock: Clock; logger: Logger; dataDir: string },
  dir: string,
): Promise<void> {
  const { clock, logger } = deps;
  await app.state.open();
  try {
    await app.registry.load();
    await app.routes.load(app.registry);
    // A shared table is read in the background: all of it, before anything is written.
    app.routes.readInBackground();
    await app.routes.loaded();
    await app.tasks.load();
    await fsp.mkdir(dir, { recursive: true });
    const nodes = new JsonStateFile({ file: path.join(dir, 'nodes.json'), parse: parseNodesFile, logger, clock });
    await nodes.save(() => JSON.stringify(app.registry.list().map((n) => n.toJSON())));
    const routes = new FileRouteStore({ file: path.join(dir, 'routes.json'), clock, logger });
    await routes.flush(() => app.routes.entriesIterator());
    const tasks = new JsonStateFile({ file: path.join(dir, 'tasks.json'), parse: parseTasksFile, logger, clock });
    // Which instance staged a task means nothing in a data folder.
    await tasks.save(() => serializeTasks(app.tasks.entries().map(({ stagedBy: _s, ...e }) => e)));
    logger.info(`Exported ${app.registry.list().length} nodes, ${app.routes.size()} routes and ${app.tasks.size()} tasks to ${dir}`);
  } finally {
    // Stops the stores' timers; what they write back is what they read.
    await app.routes.flush().catch(() => undefined);
    await app.tasks.flush().catch(() => undefined);
    await app.state.close();
  }
}
