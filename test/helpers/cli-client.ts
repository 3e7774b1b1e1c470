import * as net from 'node:net';
import type { TestContext } from 'node:test';
import { waitUntil } from './wait';

/** A raw TCP client for the admin CLI: sends lines, reads until the next prompt, keeps the whole transcript. */
export class CliClient {
  readonly socket: net.Socket;
  private buf = '';
  private consumed = 0;
  closed = false;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => (this.buf += d.toString('utf8')));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => (this.closed = true));
  }

  static async connect(t: TestContext, port: number): Promise<CliClient> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const c = new CliClient(socket);
    t.after(() => socket.destroy());
    return c;
  }

  /** Everything received so far. */
  get transcript(): string {
    return this.buf;
  }

  /** Waits for the next prompt (`#> ` or `$> ` at the end of the data) and returns what came before it. */
  async untilPrompt(timeoutMs = 10000): Promise<string> {
    await waitUntil(() => /[#$]> $/.test(this.buf.slice(this.consumed)) || this.closed, {
      timeoutMs,
      message: `no prompt; got ${JSON.stringify(this.buf.slice(this.consumed))}`,
    });
    const chunk = this.buf.slice(this.consumed);
    this.consumed = this.buf.length;
    return chunk;
  }

  /** Sends one command line and returns the answer (without the trailing prompt). */
  async send(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    const out = await this.untilPrompt();
    return out.replace(/[#$]> $/, '');
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    await waitUntil(() => this.closed, { timeoutMs, message: 'socket was not closed' });
  }
}
