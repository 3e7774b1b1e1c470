import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { errorMessage } from '../core';
import { REPEAT, parseLine, resolveCommand, type ResolvedCommand } from './commands';
import type { CliDeps, CommandContext } from './context';
import { FAIL, INVALID, PROMPT_ADMIN, PROMPT_GUEST, lines } from './format';
import { LineFramer, type FramedInput } from './line-framer';

export interface SessionOptions {
  readonly deps: CliDeps;
  /** "" = no password: the session starts logged in. */
  readonly password: string;
  readonly version: string;
  readonly loginDelayMs: number;
  readonly idleTimeoutMs: number;
  /** With a password: a connection not logged in this long after it opened is closed, whatever it sends. */
  readonly loginTimeoutMs: number;
  readonly maxLineBytes: number;
  /** Shared by every session: per address, until when further failed logins are not logged (one line per window). */
  readonly penalties?: Map<string, number>;
}

/** The penalty map never holds more addresses than this (an address flood cannot grow memory). */
const MAX_PENALIZED_ADDRESSES = 10_000;

/** With more inputs than this waiting, reading from the socket pauses until the session catches up. */
const MAX_QUEUED_INPUTS = 32;

/** Constant-time password check: both sides are hashed first, so their lengths leak nothing either. */
export function passwordMatches(given: string, expected: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * One admin connection: frames input into lines, runs them strictly one at a time (the original interleaved
 * the output of concurrent async commands), and writes each reply followed by a prompt.
 */
export class CliSession {
  readonly remote: string;
  private readonly socket: Socket;
  private readonly opts: SessionOptions;
  private readonly framer: LineFramer;
  private readonly queue: FramedInput[] = [];
  private readonly ctx: CommandContext;
  private loggedIn: boolean;
  private running = false;
  /** Set by a handler (QUIT, failed LOGIN) or a refused guest input: the reply is the last thing written. */
  private ending = false;
  private closed = false;
  private previous = '';

  constructor(socket: Socket, opts: SessionOptions) {
    this.socket = socket;
    this.opts = opts;
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.framer = new LineFramer(opts.maxLineBytes);
    this.loggedIn = opts.password === '';
    this.ctx = {
      deps: opts.deps,
      remote: this.remote,
      login: (password) => this.login(password),
      endSession: () => {
        this.ending = true;
      },
      repeatPrevious: () => this.execute(this.previous),
    };
    this.listen();
    if (!this.loggedIn) {
      // The idle timeout restarts on every byte, so a guest dribbling bytes could hold a connection forever.
      const clock = opts.deps.clock;
      const timer = clock.setTimeout(() => {
        if (this.loggedIn || this.closed) return;
        this.log().warn(`Admin CLI ${this.remote} did not log in within ${opts.loginTimeoutMs} ms, closing`);
        socket.destroy();
      }, opts.loginTimeoutMs);
      socket.once('close', () => clock.clearTimeout(timer));
    }
    this.log().debug(`Admin CLI connection from ${this.remote}`);
    void this.write(this.banner());
  }

  private log(): CliDeps['logger'] {
    return this.opts.deps.logger;
  }

  private listen(): void {
    const { socket } = this;
    socket.setNoDelay(true);
    socket.setTimeout(this.opts.idleTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('timeout', () => {
      this.log().debug(`Admin CLI ${this.remote} idle for ${this.opts.idleTimeoutMs} ms, closing`);
      socket.destroy();
    });
    socket.on('error', (e: Error) => this.log().debug(`Admin CLI ${this.remote}: ${errorMessage(e)}`));
    socket.on('close', () => {
      this.closed = true;
      this.queue.length = 0;
      this.log().debug(`Admin CLI ${this.remote} disconnected`);
    });
  }

  private banner(): string {
    const greeting = lines(
      `Welcome ${this.remote} ClusterODM:${this.opts.version}`,
      this.loggedIn ? 'HELP for help' : 'LOGIN <LOGIN> to log-in',
      'QUIT to quit',
    );
    return greeting + this.prompt();
  }

  private prompt(): string {
    return this.loggedIn ? PROMPT_ADMIN : PROMPT_GUEST;
  }

  private onData(chunk: Buffer): void {
    if (this.closed || this.ending) return;
    for (const input of this.framer.push(chunk)) this.queue.push(input);
    if (this.queue.length > MAX_QUEUED_INPUTS) this.socket.pause();
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      for (let input = this.queue.shift(); input && !this.closed; input = this.queue.shift()) await this.handle(input);
    } catch (e: unknown) {
      this.log().error(`Admin CLI ${this.remote}: ${errorMessage(e)}`);
      this.socket.destroy();
    } finally {
      this.running = false;
      if (!this.closed && !this.ending) this.socket.resume();
    }
  }

  private async handle(input: FramedInput): Promise<void> {
    const reply = input.kind === 'line' ? await this.execute(input.text) : this.overflow();
    if (this.ending) this.end(reply);
    else await this.write(reply + this.prompt());
  }

  /** A line too long to be a command: INVALID, or the end of the session when not logged in. */
  private overflow(): string {
    if (this.loggedIn) return INVALID;
    this.ending = true;
    return '';
  }

  /** Runs one input line and returns its reply (without the prompt). */
  private async execute(line: string): Promise<string> {
    const parsed = parseLine(line);
    if (parsed.command !== REPEAT) this.previous = line;
    const found = resolveCommand(parsed);
    const access = found?.spec.access;
    if (!this.loggedIn && access !== 'guest' && access !== 'any') {
      // As the original: before login, anything but LOGIN and QUIT silently closes the connection.
      this.ending = true;
      return '';
    }
    if (!found || (this.loggedIn && access === 'guest') || found.args.length < found.spec.minArgs) return INVALID;
    return this.run(found);
  }

  private async run({ spec, args }: ResolvedCommand): Promise<string> {
    // Only the command name is logged: arguments can hold secrets (LOGIN's password, NODE ADD's token).
    this.log().verbose(`Admin CLI ${this.remote}: ${spec.name}`);
    try {
      return await spec.run(this.ctx, args);
    } catch (e: unknown) {
      this.log().error(`Admin CLI ${this.remote}: ${spec.name} failed: ${errorMessage(e)}`);
      return FAIL;
    }
  }

  private async login(password: string): Promise<boolean> {
    // Every attempt is checked and the right password always works: refusing an address's logins after a failure
    // let anyone sharing the admin's address (NAT, a proxy) lock the admin out.
    if (passwordMatches(password, this.opts.password)) {
      this.loggedIn = true;
      this.log().info(`Admin CLI login from ${this.remote}`);
      return true;
    }
    const addr = this.socket.remoteAddress ?? '?';
    const now = this.opts.deps.clock.now();
    // A flood of failures from one address logs one line per delay window (hidden failures do not extend it).
    if ((this.opts.penalties?.get(addr) ?? 0) <= now) {
      this.log().warn(`Failed admin CLI login from ${this.remote}`);
      this.penalize(addr, now);
    }
    // Slows down guessing: this connection answers nothing more until the delay is over, then it is closed.
    await this.opts.deps.clock.sleep(this.opts.loginDelayMs);
    this.ending = true;
    return false;
  }

  private penalize(addr: string, now: number): void {
    const p = this.opts.penalties;
    if (!p) return;
    p.delete(addr);
    p.set(addr, now + this.opts.loginDelayMs);
    // Insertion order is expiry order (every penalty has the same length): prune from the front.
    for (const [a, until] of p) {
      if (until > now && p.size <= MAX_PENALIZED_ADDRESSES) break;
      p.delete(a);
    }
  }

  /** Writes, waiting while the client is not reading (so a flood of commands cannot fill memory with replies). */
  private write(text: string): Promise<void> {
    if (this.closed || text === '' || !this.socket.writable) return Promise.resolve();
    if (this.socket.write(text)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Writes the last reply, then closes the connection. */
  private end(reply: string): void {
    this.queue.length = 0;
    if (this.closed) return;
    if (reply === '' || !this.socket.writable) this.socket.destroy();
    else this.socket.end(reply, () => this.socket.destroy());
  }
}
