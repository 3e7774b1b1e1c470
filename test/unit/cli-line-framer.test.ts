import { test } from 'node:test';
import assert from 'node:assert/strict';
import { COMMANDS, helpText, parseLine, resolveCommand } from '../../src/cli/commands';
import { LineFramer, type FramedInput } from '../../src/cli/line-framer';
import { GOLDEN_HELP } from '../helpers/golden';

const line = (text: string): FramedInput => ({ kind: 'line', text });
const overflow: FramedInput = { kind: 'overflow' };

function frame(framer: LineFramer, ...chunks: Array<string | number[]>): FramedInput[] {
  return chunks.flatMap((c) => framer.push(typeof c === 'string' ? Buffer.from(c, 'utf8') : Buffer.from(c)));
}

test('framer: a line split across packets, and several lines in one packet', () => {
  const f = new LineFramer();
  assert.deepEqual(frame(f, 'NO', 'DE LI', 'ST'), []);
  assert.deepEqual(frame(f, '\r\n'), [line('NODE LIST')]);
  assert.deepEqual(frame(f, 'A\r\nB\nC\rD\r\n'), [line('A'), line('B'), line('C'), line('D')]);
});

test('framer: CR LF split between packets gives one line end, and CR alone ends a line at once', () => {
  const f = new LineFramer();
  assert.deepEqual(frame(f, 'QUIT\r'), [line('QUIT')]);
  assert.deepEqual(frame(f, '\nHELP\n'), [line('HELP')]);
  assert.deepEqual(frame(f, '\r\n', '\n'), [line(''), line('')], 'genuinely empty lines are reported');
});

test('framer: telnet CR NUL, and piped CR NUL CR LF, are one line end', () => {
  const f = new LineFramer();
  assert.deepEqual(frame(f, [0x41, 0x0d, 0x00, 0x42, 0x0d, 0x0a]), [line('A'), line('B')]);
  assert.deepEqual(frame(f, [0x43, 0x0d, 0x00, 0x0d, 0x0a, 0x44, 0x0d, 0x00]), [line('C'), line('D')]);
  assert.deepEqual(frame(f, [0x0d, 0x0a]), [], 'the CR LF after a CR NUL split into the next packet');
  assert.deepEqual(frame(f, [0x0d, 0x0a]), [line('')], 'a second blank line is a real one');
  assert.deepEqual(frame(f, [0x45, 0x00, 0x46, 0x0a]), [line('EF')], 'NUL is a telnet no-op');
});

test('framer: telnet IAC negotiation is stripped, IAC IAC is a data byte', () => {
  const f = new LineFramer();
  const iacDoEcho = [0xff, 0xfd, 0x01];
  const subTerminalType = [0xff, 0xfa, 0x18, 0x00, 0x78, 0x74, 0x65, 0x72, 0x6d, 0xff, 0xf0];
  const noOp = [0xff, 0xf1];
  assert.deepEqual(frame(f, iacDoEcho, 'NODE', subTerminalType, ' ', noOp, 'LIST', [0x0d, 0x0a]), [line('NODE LIST')]);
  // A sequence split across packets.
  assert.deepEqual(frame(f, [0xff], [0xfb], [0x03], 'HELP', [0xff, 0xfa, 0x1f], [0x00, 0x50, 0xff], [0xf0, 0x0a]), [
    line('HELP'),
  ]);
  assert.deepEqual(frame(f, [0x41, 0xff, 0xff, 0x0a]), [line('A\ufffd')]);
});

test('framer: a subnegotiation that never ends does not swallow input forever', () => {
  const f = new LineFramer();
  const out = frame(f, [0xff, 0xfa], 'x'.repeat(2000), 'HELP\n');
  assert.equal(out.length, 1);
  const first = out[0];
  assert.ok(first?.kind === 'line' && /^x+HELP$/.test(first.text));
  assert.deepEqual(frame(f, 'QUIT\n'), [line('QUIT')]);
});

test('framer: longer lines are dropped and reported once, then framing goes on', () => {
  const f = new LineFramer(8);
  assert.deepEqual(frame(f, '12345678\n'), [line('12345678')], 'exactly the limit is fine');
  assert.deepEqual(frame(f, '123456789'), []);
  assert.deepEqual(frame(f, 'x'.repeat(100_000)), []);
  assert.deepEqual(frame(f, '\r\nHELP\r\n'), [overflow, line('HELP')]);
});

test('framer: UTF-8 split across packets survives, invalid bytes never throw', () => {
  const f = new LineFramer();
  const e = Buffer.from('é', 'utf8');
  assert.deepEqual(frame(f, [0x61, e[0] ?? 0], [e[1] ?? 0, 0x0a]), [line('aé')]);
  const junk = Buffer.alloc(3000);
  for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919 + 13) % 256;
  assert.doesNotThrow(() => f.push(junk));
  assert.doesNotThrow(() => f.push(Buffer.alloc(0)));
});


test('HELP is generated from the command table, byte for byte as the original', () => {
  assert.equal(helpText(), GOLDEN_HELP);
  assert.equal(new Set(COMMANDS.map((c) => c.name)).size, COMMANDS.length, 'command names are unique');
});

test('parsing: split on single spaces, parts trimmed, command and sub-command upper-cased, args keep case', () => {
  assert.deepEqual(parseLine('node add Host 3000 ToKeN'), { command: 'NODE', rest: ['add', 'Host', '3000', 'ToKeN'] });
  assert.deepEqual(parseLine('NODE  ADD x'), { command: 'NODE', rest: ['', 'ADD', 'x'] });
  assert.deepEqual(parseLine(''), { command: '', rest: [] });
  const add = resolveCommand(parseLine('node add Host 3000 ToKeN'));
  assert.equal(add?.spec.name, 'NODE ADD');
  assert.deepEqual(add?.args, ['Host', '3000', 'ToKeN']);
  assert.equal(resolveCommand(parseLine('help me'))?.spec.name, 'HELP');
  assert.equal(resolveCommand(parseLine('NODE')), null);
  assert.equal(resolveCommand(parseLine('NODE  LIST')), null, 'a double space makes an empty sub-command');
  assert.equal(resolveCommand(parseLine('ROUTE FOO')), null);
  assert.equal(resolveCommand(parseLine('FOO BAR')), null);
});
