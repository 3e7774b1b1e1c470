import type { CommandSpec } from './context';
import { INVALID, lines } from './format';
import { NODE_COMMANDS } from './node-commands';
import { ASR_COMMANDS, ROUTE_COMMANDS, TASK_COMMANDS } from './task-commands';

/** The command word that repeats the previous line. */
export const REPEAT = '!!';

const SESSION_COMMANDS: readonly CommandSpec[] = [
  {
    name: REPEAT,
    args: '',
    description: 'Repeat last command',
    minArgs: 0,
    access: 'admin',
    run: (ctx, args) => (args.length === 0 ? ctx.repeatPrevious() : INVALID),
  },
  { name: 'HELP', args: '', minArgs: 0, access: 'admin', run: () => helpText() },
  {
    name: 'QUIT',
    args: '',
    minArgs: 0,
    access: 'any',
    run: (ctx) => {
      ctx.endSession();
      return lines('Bye!');
    },
  },
  {
    name: 'LOGIN',
    args: '<password>',
    minArgs: 0,
    access: 'guest',
    // The rest of the line is the password, so passwords with spaces work (the original took the first word).
    run: async (ctx, words) => ((await ctx.login(words.join(' '))) ? lines('OK', 'HELP for help') : ''),
  },
];

/** Every command, in HELP order. */
export const COMMANDS: readonly CommandSpec[] = [
  ...NODE_COMMANDS,
  ...ROUTE_COMMANDS,
  ...TASK_COMMANDS,
  ...ASR_COMMANDS,
  ...SESSION_COMMANDS,
];

const BY_NAME = new Map(COMMANDS.map((c) => [c.name, c]));

/** `<syntax> - <description>` for every listed command, each line ending with CRLF. */
export function helpText(): string {
  const listed = COMMANDS.filter((c) => c.description !== undefined);
  return lines(...listed.map((c) => `${syntax(c)} - ${c.description ?? ''}`));
}

function syntax(c: CommandSpec): string {
  return c.args === '' ? c.name : `${c.name} ${c.args}`;
}

/** A line split as the original does: on single spaces, each part trimmed (double spaces give empty arguments). */
export interface ParsedLine {
  /** Upper-cased command word. */
  readonly command: string;
  /** The words after the command word, case kept. */
  readonly rest: readonly string[];
}

export function parseLine(line: string): ParsedLine {
  const [first = '', ...rest] = line.split(' ').map((p) => p.trim());
  return { command: first.toUpperCase(), rest };
}

export interface ResolvedCommand {
  readonly spec: CommandSpec;
  readonly args: readonly string[];
}

/** Finds `CMD SUB` (sub-command upper-cased, as the original), else the single word `CMD`; null if neither exists. */
export function resolveCommand(parsed: ParsedLine): ResolvedCommand | null {
  const [sub, ...subArgs] = parsed.rest;
  const withSub = sub === undefined ? undefined : BY_NAME.get(`${parsed.command} ${sub.toUpperCase()}`);
  if (withSub) return { spec: withSub, args: subArgs };
  const single = BY_NAME.get(parsed.command);
  return single ? { spec: single, args: parsed.rest } : null;
}
