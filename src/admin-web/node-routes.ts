import { Router, type Request, type Response } from 'express';
import type { Clock, Logger } from '../core';
import { errorMessage, normalizeHostname } from '../core';
import { isValidPort, type ClusterNode, type LoadHistory, type NodeRegistry } from '../nodes';
import type { NodeOps } from '../ops';
import { bodyOf, field } from './http-util';

export interface NodeRoutesDeps {
  nodeOps: NodeOps;
  registry: NodeRegistry;
  history: LoadHistory;
  clock: Clock;
  logger: Logger;
}

/** One row of GET /r/node/list (the original's shape plus `number`; the token is masked). */
function nodeRow(node: ClusterNode, index: number, now: number): Record<string, unknown> {
  return {
    number: index + 1,
    name: node.name,
    isLocked: node.isLocked(),
    isAutoSpawned: node.isAutoSpawned(),
    isOnline: node.isOnline(now),
    getTaskQueueCount: node.getTaskQueueCount(),
    getMaxParallelTasks: node.getMaxParallelTasks(),
    getEngineInfo: node.getEngineInfo(),
    getVersion: node.getVersion(),
    nodeData: node.toPublicJSON(true),
  };
}

/** A port as a number ("3001" and 3001 are the same node; stored canonically), or null if invalid. */
function portOf(v: unknown): number | null {
  if ((typeof v !== 'number' && typeof v !== 'string') || !isValidPort(v)) return null;
  return Number(typeof v === 'string' ? v.trim() : v);
}

/**
 * The node a lock/unlock/delete body names: `{hostname, port}` (stable, what the page sends) and/or the
 * original's 1-based `{number}` (racy if the list changed). `undefined` when the body names no node at all
 * (the original's 403), null when it names an unknown node or two different ones.
 */
export function targetNode(registry: NodeRegistry, body: unknown): ClusterNode | null | undefined {
  const hostname = field(body, 'hostname');
  const port = field(body, 'port');
  const number = field(body, 'number');
  const byAddress = hostname !== undefined || port !== undefined;
  // The original tested `if (!number)`: 0, "" and null mean "no number".
  const byNumber = number !== undefined && number !== null && number !== 0 && number !== '' && number !== false;
  if (!byAddress && !byNumber) return undefined;
  const p = portOf(port);
  const a = byAddress ? (typeof hostname === 'string' && p !== null ? (registry.find(hostname, p) ?? null) : null) : undefined;
  const n = byNumber ? (typeof number === 'number' || typeof number === 'string' ? registry.nth(number) : null) : undefined;
  if (a === null || n === null) return null;
  if (a !== undefined && n !== undefined && a !== n) return null;
  return a ?? n ?? null;
}

/** Runs `action` on the node the body names; answers true/false, or 403 with no body when none is named. */
function withTarget(deps: NodeRoutesDeps, action: (node: ClusterNode) => Promise<boolean>) {
  return async (req: Request, res: Response): Promise<void> => {
    const node = targetNode(deps.registry, bodyOf(req));
    if (node === undefined) {
      res.status(403).end();
      return;
    }
    res.json(node === null ? false : await action(node));
  };
}

async function addNode(deps: NodeRoutesDeps, req: Request, res: Response): Promise<void> {
  const body = bodyOf(req);
  const hostname = field(body, 'hostname');
  const port = portOf(field(body, 'port'));
  const token = field(body, 'token') ?? '';
  if (typeof hostname === 'string' && normalizeHostname(hostname.trim()) === null) {
    // The registry refuses it too; say why.
    res.json({ error: 'Invalid hostname: a DNS name or an IP address only (no scheme, port or path)' });
    return;
  }
  if (typeof hostname !== 'string' || port === null || typeof token !== 'string') {
    res.json({ error: 'Invalid' });
    return;
  }
  try {
    const node = await deps.nodeOps.add(hostname.trim(), port, token);
    res.json(node ? { success: true } : { error: 'Invalid' });
  } catch (e: unknown) {
    // A failed nodes.json write: the registry rolled the add back; say why instead of a bare "Invalid".
    deps.logger.error(`Admin web cannot add node ${hostname}:${port}: ${errorMessage(e)}`);
    res.json({ error: errorMessage(e) });
  }
}

/** Load samples of every node over the last hour, keyed by host:port (fromEntries defines own keys only). */
function history(deps: NodeRoutesDeps, res: Response): void {
  const now = deps.clock.now();
  res.json(Object.fromEntries(deps.registry.list().map((n) => [n.name, deps.history.series(n, now)])));
}

export function nodeRoutes(deps: NodeRoutesDeps): Router {
  const { nodeOps } = deps;
  const router = Router();
  router.get('/node/list', (_req, res) => {
    const now = deps.clock.now();
    res.json(deps.registry.list().map((n, i) => nodeRow(n, i, now)));
  });
  router.get('/node/history', (_req, res) => history(deps, res));
  router.post('/node/add', (req, res) => addNode(deps, req, res));
  router.post(
    '/node/lock',
    withTarget(deps, (node) => nodeOps.attempt(`Locking ${node.name}`, () => nodeOps.setLocked(node, true))),
  );
  router.post(
    '/node/unlock',
    withTarget(deps, (node) => nodeOps.attempt(`Unlocking ${node.name}`, () => nodeOps.setLocked(node, false))),
  );
  router.delete(
    '/node',
    // NodeOps.remove also drops the node's routes and load history.
    withTarget(deps, (node) => nodeOps.attempt(`Removing ${node.name}`, () => nodeOps.remove(node))),
  );
  return router;
}
