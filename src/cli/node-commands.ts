import { errorMessage } from '../core';
import type { ClusterNode } from '../nodes';
import type { CommandContext, CommandHandler, CommandSpec } from './context';
import { CRLF, FAIL, INVALID, OK, json, lines, nodeLine, parseCount } from './format';

function nth(ctx: CommandContext, n: string | undefined): ClusterNode | null {
  return n === undefined ? null : ctx.deps.nodeOps.registry.nth(n);
}

/** OK when `fn` resolves true, FAIL when it resolves false or throws (the error is logged as `<what> failed: …`). */
async function okOrFail(ctx: CommandContext, what: string, fn: () => Promise<boolean>): Promise<string> {
  try {
    return (await fn()) ? OK : FAIL;
  } catch (e: unknown) {
    ctx.deps.logger.error(`${what} failed: ${errorMessage(e)}`);
    return FAIL;
  }
}

/** NODE DEL/LOCK/UNLOCK: FAIL for a bad number, else the operation's outcome. */
function withNode(what: string, op: (ctx: CommandContext, node: ClusterNode) => Promise<void>): CommandHandler {
  return (ctx: CommandContext, args: readonly string[]): Promise<string> => {
    const node = nth(ctx, args[0]);
    if (!node) return Promise.resolve(FAIL);
    return okOrFail(ctx, what, async () => {
      await op(ctx, node);
      return true;
    });
  };
}

function listNodes(ctx: CommandContext): string {
  const now = ctx.deps.clock.now();
  const rows = ctx.deps.nodeOps.registry.list().map((node, i) => nodeLine(i + 1, node, now));
  return `${rows.map((r) => `${r}${CRLF}`).join('')}${CRLF}`;
}

function bestNode(ctx: CommandContext, args: readonly string[]): string {
  const images = parseCount(args[0] ?? '');
  if (images === null) return INVALID;
  const node = ctx.deps.nodeOps.best(images);
  return lines(node ? nodeLine(1, node, ctx.deps.clock.now()) : 'No best node available');
}

export const NODE_COMMANDS: readonly CommandSpec[] = [
  {
    name: 'NODE ADD',
    args: '<hostname> <port> [token]',
    description: 'Add new node',
    minArgs: 2,
    access: 'admin',
    // The port stays the string that was typed, as the original stores it in nodes.json.
    run: (ctx, [hostname = '', port = '', token = '']) =>
      okOrFail(ctx, 'Add node', async () => (await ctx.deps.nodeOps.add(hostname, port, token)) !== null),
  },
  {
    name: 'NODE DEL',
    args: '<node number>',
    description: 'Remove a node',
    minArgs: 1,
    access: 'admin',
    run: withNode('Remove and cleanup', (ctx, node) => ctx.deps.nodeOps.remove(node)),
  },
  {
    name: 'NODE INFO',
    args: '<node number>',
    description: 'View node info',
    minArgs: 1,
    access: 'admin',
    run: (ctx, args) => {
      const node = nth(ctx, args[0]);
      return node ? json(node.toPublicJSON(true)) : INVALID;
    },
  },
  { name: 'NODE LIST', args: '', description: 'List nodes', minArgs: 0, access: 'admin', run: listNodes },
  {
    name: 'NODE LOCK',
    args: '<node number>',
    description: 'Stop forwarding tasks to this node',
    minArgs: 1,
    access: 'admin',
    run: withNode('Lock node', (ctx, node) => ctx.deps.nodeOps.setLocked(node, true)),
  },
  {
    name: 'NODE UNLOCK',
    args: '<node number>',
    description: 'Resume forwarding tasks to this node',
    minArgs: 1,
    access: 'admin',
    run: withNode('Unlock node', (ctx, node) => ctx.deps.nodeOps.setLocked(node, false)),
  },
  {
    name: 'NODE UPDATE',
    args: '',
    description: 'Update all nodes info',
    minArgs: 0,
    access: 'admin',
    run: async (ctx) => {
      await ctx.deps.nodeOps.updateAll();
      return OK;
    },
  },
  {
    name: 'NODE BEST',
    args: '<number of images>',
    description: 'Show best node for the number of images',
    minArgs: 1,
    access: 'admin',
    run: bestNode,
  },
];
