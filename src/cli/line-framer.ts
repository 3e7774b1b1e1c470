/**
 * Turns the raw bytes of a telnet/netcat connection into command lines. The original treated each TCP `data`
 * event as one command, so a line split across packets, or several lines in one packet, gave INVALID.
 */

/** One framed input: a complete line (without its terminator), or a line that was too long and was dropped. */
export type FramedInput = { readonly kind: 'line'; readonly text: string } | { readonly kind: 'overflow' };

export const DEFAULT_MAX_LINE_BYTES = 4096;

const NUL = 0x00;
const LF = 0x0a;
const CR = 0x0d;
const IAC = 0xff;
const SB = 0xfa;
const SE = 0xf0;
const WILL = 0xfb;
const DONT = 0xfe;
/** Real subnegotiations (terminal type, window size) are tiny; junk that opens one must not swallow input forever. */
const MAX_SUBNEGOTIATION_BYTES = 1024;

type TelnetState = 'data' | 'iac' | 'option' | 'sub' | 'sub-iac';

/**
 * Line framing with telnet awareness:
 * - lines end with CR LF, LF or CR (CR is acted on at once, so `QUIT\r` alone works; a following LF is swallowed);
 * - telnet IAC sequences (commands, WILL/WONT/DO/DONT + option, SB … IAC SE) are stripped, IAC IAC is a 0xFF byte;
 * - NUL is a telnet no-op and is dropped. `CR NUL` is telnet's bare CR: piping text holding `\r\n` into telnet sends
 *   `CR NUL CR LF`, so one blank line right after a `CR NUL` is not a separate (INVALID) command;
 * - a line longer than `maxLineBytes` is dropped and reported once, as `overflow`, when it ends;
 * - bytes are decoded as UTF-8 only when a line is complete (a character split across packets survives), and
 *   invalid UTF-8 becomes U+FFFD: no input can make `push` throw.
 */
export class LineFramer {
  private readonly buf: Buffer;
  private length = 0;
  private overflowed = false;
  private afterCR = false;
  private skipBlankLine = false;
  private telnet: TelnetState = 'data';
  private subBytes = 0;

  constructor(readonly maxLineBytes: number = DEFAULT_MAX_LINE_BYTES) {
    this.buf = Buffer.alloc(Math.max(1, Math.floor(maxLineBytes)));
  }

  /** Feeds received bytes; returns the inputs they complete, in order. */
  push(chunk: Uint8Array): FramedInput[] {
    const out: FramedInput[] = [];
    for (const byte of chunk) {
      const b = this.unwrapTelnet(byte);
      if (b !== null) this.take(b, out);
    }
    return out;
  }

  /** Returns the data byte carried by `byte`, or null when it belongs to a telnet command. */
  private unwrapTelnet(byte: number): number | null {
    switch (this.telnet) {
      case 'data':
        if (byte !== IAC) return byte;
        this.telnet = 'iac';
        return null;
      case 'iac':
        return this.afterIac(byte);
      case 'option':
        this.telnet = 'data';
        return null;
      case 'sub':
        if (byte === IAC) this.telnet = 'sub-iac';
        else if (++this.subBytes > MAX_SUBNEGOTIATION_BYTES) this.telnet = 'data';
        return null;
      case 'sub-iac':
        this.telnet = byte === SE ? 'data' : 'sub';
        return null;
    }
  }

  private afterIac(byte: number): number | null {
    if (byte === IAC) {
      this.telnet = 'data';
      return IAC;
    }
    if (byte === SB) {
      this.telnet = 'sub';
      this.subBytes = 0;
    } else if (byte >= WILL && byte <= DONT) {
      this.telnet = 'option';
    } else {
      this.telnet = 'data';
    }
    return null;
  }

  private take(b: number, out: FramedInput[]): void {
    if (b === CR) {
      this.endLine(out);
      this.afterCR = true;
      return;
    }
    if (b === LF) {
      if (this.afterCR) this.afterCR = false;
      else this.endLine(out);
      return;
    }
    if (b === NUL) {
      if (this.afterCR) {
        this.afterCR = false;
        this.skipBlankLine = true;
      }
      return;
    }
    this.afterCR = false;
    this.skipBlankLine = false;
    if (this.length < this.buf.length) this.buf[this.length++] = b;
    else this.overflowed = true;
  }

  private endLine(out: FramedInput[]): void {
    if (this.overflowed) out.push({ kind: 'overflow' });
    else if (this.length > 0 || !this.skipBlankLine) out.push({ kind: 'line', text: this.buf.toString('utf8', 0, this.length) });
    this.length = 0;
    this.overflowed = false;
    this.skipBlankLine = false;
  }
}
