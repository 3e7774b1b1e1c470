import type { Clock, Logger } from '../core';
import type { NodeOps, TaskOps } from '../ops';
import type { RouteTable } from '../routing';

/** What the admin CLI needs from the autoscaler (`ASR VIEWCMD`). */
export interface AsrCli {
  /**
   * The command that would create a machine for a task of `images` images, on one line without a line ending
   * (the CLI appends CRLF and otherwise prints it as is). It should mask cloud secrets. It may throw (the CLI
   * then answers FAIL).
   */
  viewCommand(images: number): string | Promise<string>;
}

/** The services the commands operate on. */
export interface CliDeps {
  readonly nodeOps: NodeOps;
  readonly taskOps: TaskOps;
  readonly routes: RouteTable;
  readonly asr: AsrCli | null;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** What a command handler sees of its session. */
export interface CommandContext {
  readonly deps: CliDeps;
  /** `<address>:<port>` of the client, for logs. */
  readonly remote: string;
  /** Checks the admin password. On failure it logs, waits (throttling) and ends the session; resolves false. */
  login(password: string): Promise<boolean>;
  /** Ends the session once the handler's reply is written (no prompt follows). */
  endSession(): void;
  /** Runs the previous input line again and returns its reply. */
  repeatPrevious(): Promise<string>;
}

/** Who may run a command: before login only (LOGIN), always (QUIT), or once logged in (everything else). */
export type Access = 'guest' | 'any' | 'admin';

/** A reply: the exact text to write (lines ending with CRLF); the session adds the prompt. */
export type CommandHandler = (ctx: CommandContext, args: readonly string[]) => string | Promise<string>;

/** One entry of the command table; the table drives both dispatch and HELP. */
export interface CommandSpec {
  /** Command word, and sub-command if any: `NODE ADD`, `HELP`, `!!`. */
  readonly name: string;
  /** Argument syntax shown in HELP, e.g. `<hostname> <port> [token]`. */
  readonly args: string;
  /** HELP description; commands without one (HELP, QUIT, LOGIN) are not listed, as in the original. */
  readonly description?: string;
  /** Fewer arguments than this answers INVALID. */
  readonly minArgs: number;
  readonly access: Access;
  readonly run: CommandHandler;
}
