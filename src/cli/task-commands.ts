import type { ClusterNode } from '../nodes';
import { routeToPublicJSON } from '../routing';
import type { CommandContext, CommandSpec } from './context';
import { INVALID, json, lines, parseCount, parseOffset, textLines } from './format';

/** The optional `[node number]` argument: undefined when absent, null when given but not a node. */
function optionalNode(ctx: CommandContext, n: string | undefined): ClusterNode | null | undefined {
  return n === undefined ? undefined : ctx.deps.nodeOps.registry.nth(n);
}

async function routeInfo(ctx: CommandContext, args: readonly string[]): Promise<string> {
  await ctx.deps.routes.fetch(args[0] ?? '');
  const route = ctx.deps.routes.lookup(args[0] ?? '');
  return route ? json(routeToPublicJSON(route)) : INVALID;
}

async function routeList(ctx: CommandContext, args: readonly string[]): Promise<string> {
  const node = optionalNode(ctx, args[0]);
  if (node === null) return INVALID;
  await ctx.deps.routes.loaded();
  const entries = ctx.deps.routes.entries(node).map(([uuid, r]) => [uuid, routeToPublicJSON(r)] as const);
  return json(Object.fromEntries(entries));
}

async function taskList(ctx: CommandContext, args: readonly string[]): Promise<string> {
  const node = optionalNode(ctx, args[0]);
  if (node === null) return INVALID;
  return json(await ctx.deps.taskOps.list(node));
}

/** TaskOps answers null when the task has no route. */
function orInvalid(result: unknown): string {
  return result === null ? INVALID : json(result);
}

async function taskOutput(ctx: CommandContext, args: readonly string[]): Promise<string> {
  const line = args[1] === undefined ? 0 : parseOffset(args[1]);
  if (line === null) return INVALID;
  const result = await ctx.deps.taskOps.output(args[0] ?? '', line);
  if (result === null) return INVALID;
  return Array.isArray(result) ? textLines(result) : json(result);
}

async function asrViewCommand(ctx: CommandContext, args: readonly string[]): Promise<string> {
  const images = parseCount(args[0] ?? '');
  if (!ctx.deps.asr || images === null || images < 1) return INVALID;
  return lines(await ctx.deps.asr.viewCommand(images));
}

export const ROUTE_COMMANDS: readonly CommandSpec[] = [
  {
    name: 'ROUTE INFO',
    args: '<taskId>',
    description: 'Find route information for task',
    minArgs: 1,
    access: 'admin',
    run: routeInfo,
  },
  { name: 'ROUTE LIST', args: '[node number]', description: 'List routes', minArgs: 0, access: 'admin', run: routeList },
];

export const TASK_COMMANDS: readonly CommandSpec[] = [
  { name: 'TASK LIST', args: '[node number]', description: 'List tasks', minArgs: 0, access: 'admin', run: taskList },
  {
    name: 'TASK INFO',
    args: '<taskId>',
    description: 'View task info',
    minArgs: 1,
    access: 'admin',
    run: async (ctx, args) => orInvalid(await ctx.deps.taskOps.info(args[0] ?? '')),
  },
  {
    name: 'TASK OUTPUT',
    // HELP says [lines] (as the original) but it is the starting line offset, negative counting from the end.
    args: '<taskId> [lines]',
    description: 'View task output',
    minArgs: 1,
    access: 'admin',
    run: taskOutput,
  },
  {
    name: 'TASK CANCEL',
    args: '<taskId>',
    description: 'Cancel task',
    minArgs: 1,
    access: 'admin',
    run: async (ctx, args) => orInvalid(await ctx.deps.taskOps.cancel(args[0] ?? '')),
  },
  {
    name: 'TASK REMOVE',
    args: '<taskId>',
    description: 'Remove task',
    minArgs: 1,
    access: 'admin',
    run: async (ctx, args) => orInvalid(await ctx.deps.taskOps.remove(args[0] ?? '')),
  },
];

export const ASR_COMMANDS: readonly CommandSpec[] = [
  {
    name: 'ASR VIEWCMD',
    args: '<number of images>',
    description: 'View command used to create a machine',
    minArgs: 1,
    access: 'admin',
    run: asrViewCommand,
  },
];
