import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import type * as http from 'node:http';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import fc from 'fast-check';
import { MultipartScanner, multipartBoundary, parsePartHeaders, type PartInfo } from '../../src/proxy/multipart-scan';
import { stageRawMultipart } from '../../src/proxy/raw-staging';
import { stageMultipart, type StagingLimits, type StagingResult } from '../../src/proxy/upload-staging';
import { tempDir } from '../helpers/tmp';

const SEED = Number(process.env['FUZZ_SEED'] ?? Date.now() % 1_000_000);

interface Part {
  field: string;
  filename: string | undefined;
  data: Buffer;
}

interface Seen {
  info: PartInfo;
  data: Buffer;
  ended: boolean;
}

/** The scanner's view of a body cut into the given chunks. */
function scan(boundary: string, chunks: Buffer[]): { parts: Seen[]; complete: boolean; error: string | null } {
  const parts: Seen[] = [];
  let current: { info: PartInfo; data: Buffer[]; ended: boolean } | null = null;
  const all: { info: PartInfo; data: Buffer[]; ended: boolean }[] = [];
  const scanner = new MultipartScanner(boundary, {
    start: (info) => {
      assert.equal(current, null, 'a part starts while another is open');
      current = { info, data: [], ended: false };
      all.push(current);
    },
    data: (b) => {
      assert.ok(current, 'data outside a part');
      assert.ok(b.length > 0, 'empty data');
      current.data.push(Buffer.from(b));
    },
    end: () => {
      assert.ok(current, 'end outside a part');
      current.ended = true;
      current = null;
    },
  });
  for (const c of chunks) scanner.push(c);
  const error = scanner.finish();
  for (const p of all) parts.push({ info: p.info, data: Buffer.concat(p.data), ended: p.ended });
  return { parts, complete: scanner.complete, error: error ? error.message : null };
}

function encode(boundary: string, parts: Part[], opts: { preamble?: string; epilogue?: string } = {}): Buffer {
  const out: Buffer[] = [Buffer.from(opts.preamble ?? '', 'latin1')];
  for (const p of parts) {
    const fn = p.filename === undefined ? '' : `; filename="${p.filename}"`;
    out.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${p.field}"${fn}\r\n\r\n`, 'utf8'), p.data, Buffer.from('\r\n'));
  }
  out.push(Buffer.from(`--${boundary}--\r\n${opts.epilogue ?? ''}`, 'latin1'));
  return Buffer.concat(out);
}

function cutAt(body: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    chunks.push(body.subarray(last, p));
    last = p;
  }
  chunks.push(body.subarray(last));
  return chunks.filter((c) => c.length > 0);
}

const boundaryArb = fc.stringMatching(/^[A-Za-z0-9'()+_,.\/:=?-]{1,40}$/);
/** File data salted with near-delimiters: CRLF, dashes and the boundary itself, cut short or not preceded by CRLF. */
function dataArb(boundary: string): fc.Arbitrary<Buffer> {
  const near = [
    '\r\n',
    '\r',
    '\n',
    '--',
    `--${boundary}`,
    `\r\n-${boundary}`,
    `\r\n--${boundary.slice(0, -1)}`,
    `\n--${boundary}`,
    `\r--${boundary}`,
    `\r\n--${boundary.slice(0, -1)}X`,
    `\r\r\n--${boundary.slice(0, Math.max(0, boundary.length - 1))}`,
  ];
  return fc
    .array(fc.oneof(fc.constantFrom(...near), fc.string({ maxLength: 20 }), fc.uint8Array({ maxLength: 50 }).map((b) => Buffer.from(b).toString('latin1'))), {
      maxLength: 12,
    })
    .map((pieces) => Buffer.from(pieces.join(''), 'latin1'))
    .filter((b) => !b.includes(`\r\n--${boundary}`));
}

const partsArb = boundaryArb.chain((boundary) =>
  fc.record({
    boundary: fc.constant(boundary),
    parts: fc.array(
      fc.record({
        field: fc.constantFrom('images', 'name', 'x'),
        filename: fc.option(fc.constantFrom('a.jpg', 'b c.JPG', '../x.jpg', 'é.jpg'), { nil: undefined }),
        data: dataArb(boundary),
      }),
      { maxLength: 5 },
    ),
    preamble: fc.constantFrom('', 'preamble\r\n', `--${boundary}x\r\n`),
    cuts: fc.array(fc.nat(100_000), { maxLength: 12 }),
  }),
);

function expectParts(seen: Seen[], parts: Part[]): void {
  assert.equal(seen.length, parts.length);
  seen.forEach((s, i) => {
    const p = parts[i] as Part;
    assert.equal(s.info.field, p.field);
    assert.equal(s.info.filename, p.filename);
    assert.equal(s.info.file, p.filename !== undefined);
    assert.ok(s.ended);
    assert.ok(s.data.equals(p.data), `part ${i}: ${JSON.stringify(s.data.toString('latin1'))} != ${JSON.stringify(p.data.toString('latin1'))}`);
  });
}

test('scan: random parts with near-boundaries in their data, random chunking', () => {
  fc.assert(
    fc.property(partsArb, ({ boundary, parts, preamble, cuts }) => {
      const body = encode(boundary, parts, { preamble, epilogue: `\r\n--${boundary}\r\nignored` });
      const r = scan(boundary, cutAt(body, cuts));
      assert.equal(r.error, null);
      assert.ok(r.complete);
      expectParts(r.parts, parts);
    }),
    { seed: SEED, numRuns: 400 },
  );
});

test('scan: a body split in two at every offset, and fed one byte at a time', () => {
  const boundary = '----WebKitFormBoundary7MA4YWxkTrZu0gW';
  const parts: Part[] = [
    { field: 'images', filename: 'a.jpg', data: Buffer.from(`x\r\n--${boundary.slice(0, 10)}\r\n\r\n--${boundary.slice(0, -1)}`, 'latin1') },
    { field: 'name', filename: undefined, data: Buffer.from('value') },
    { field: 'images', filename: 'empty.jpg', data: Buffer.alloc(0) },
    { field: 'images', filename: 'b.jpg', data: Buffer.from('\r\n\r\r\n-') },
  ];
  const body = encode(boundary, parts);
  for (let at = 0; at <= body.length; at++) {
    const r = scan(boundary, [body.subarray(0, at), body.subarray(at)].filter((c) => c.length > 0));
    assert.equal(r.error, null, `split at ${at}`);
    expectParts(r.parts, parts);
  }
  for (let at = 0; at <= body.length; at++) {
    for (const step of [1, 3]) {
      const chunks: Buffer[] = [body.subarray(0, at)];
      for (let i = at; i < body.length; i += step) chunks.push(body.subarray(i, i + step));
      const r = scan(boundary, chunks.filter((c) => c.length > 0));
      assert.equal(r.error, null);
      expectParts(r.parts, parts);
    }
  }
});

test('scan: a body cut anywhere is refused with the NodeODM text wherever it is cut', () => {
  const boundary = 'XyZ';
  const body = encode(boundary, [{ field: 'images', filename: 'a.jpg', data: Buffer.from('0123456789') }]);
  for (let at = 0; at < body.length - 2; at++) {
    const r = scan(boundary, [body.subarray(0, at)]);
    assert.equal(r.error, 'Unexpected end of multipart data', `cut at ${at}`);
  }
});

test('part headers: busboy rules for names, filename*, folding, malformed lines', () => {
  const h = (s: string): ReturnType<typeof parsePartHeaders> => parsePartHeaders(Buffer.from(s, 'latin1'));
  assert.deepEqual(h('Content-Disposition: form-data; name="images"; filename="a.jpg"'), { field: 'images', filename: 'a.jpg', file: true });
  assert.deepEqual(h(`content-disposition: form-data; name="images"; filename="x"; filename*=UTF-8''%C3%A9.jpg`), {
    field: 'images',
    filename: 'é.jpg',
    file: true,
  });
  assert.deepEqual(h('Content-Disposition: form-data; name="images"; filename="\xc3\xa9.jpg"'), { field: 'images', filename: 'é.jpg', file: true });
  assert.deepEqual(h('Content-Disposition: form-data; name="images"; filename=""'), { field: 'images', filename: undefined, file: false });
  assert.deepEqual(h('Content-Disposition: form-data; name="images"\r\nContent-Type: application/octet-stream'), { field: 'images', filename: undefined, file: true });
  assert.deepEqual(h('Content-Disposition: form-data;\r\n name="folded"'), { field: 'folded', filename: undefined, file: false });
  assert.equal(h('Content-Disposition: attachment; name="images"'), 'skip');
  assert.equal(h('X-Other: 1'), 'skip');
  assert.equal(h(''), null);
  assert.equal(h('no colon'), null);
  assert.equal(h('Bad Name: x'), null);
  assert.equal(h('X: a\nb'), null);
});

test('multipartBoundary: only multipart/form-data with a boundary', () => {
  assert.equal(multipartBoundary('multipart/form-data; boundary=abc'), 'abc');
  assert.equal(multipartBoundary('Multipart/Form-Data; boundary="a b"'), 'a b');
  assert.equal(multipartBoundary('multipart/form-data'), null);
  assert.equal(multipartBoundary('application/x-www-form-urlencoded'), null);
  assert.equal(multipartBoundary(undefined), null);
});

// ---------------------------------------------------------------------------------------------------------------
// The raw staging against busboy's: the same files, names and errors for the same bodies.

function fakeRequest(type: string, chunks: Buffer[]): http.IncomingMessage {
  const req = Readable.from(chunks, { objectMode: false }) as unknown as http.IncomingMessage;
  (req as { headers: http.IncomingHttpHeaders }).headers = { 'content-type': type };
  return req;
}

type Outcome = { error: string } | { files: { name: string; originalName: string; bytes: number; data: string }[]; left: string[] };

async function outcome(dir: string, run: Promise<StagingResult>): Promise<Outcome> {
  try {
    const r = await run;
    return {
      files: r.files.map((f) => ({ ...f, data: fs.readFileSync(path.join(dir, f.name)).toString('latin1') })),
      left: fs.readdirSync(dir).sort(),
    };
  } catch (e) {
    assert.deepEqual(fs.readdirSync(dir), [], 'a failed upload leaves nothing');
    return { error: (e as Error).message };
  }
}

const hostilePartArb = fc.record({
  field: fc.oneof(fc.constantFrom('images', 'images', 'name', 'other', ''), fc.string({ maxLength: 6 })),
  filename: fc.option(fc.oneof(fc.constantFrom('a.jpg', 'a.jpg', '../../x.jpg', '.', '..', 'body.json', '', 'a/b.jpg', 'c:\\d.jpg', '.partial-0123456789abcdef'), fc.string({ maxLength: 12 })), {
    nil: undefined,
  }),
  data: fc.oneof(fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1'))),
});

test('raw staging = busboy staging: same files, names, bytes and errors for hostile bodies', async (t) => {
  const limits: Partial<StagingLimits> = { maxFiles: 4, maxFileBytes: 200, maxTotalBytes: 500, maxFields: 2, maxFieldBytes: 30 };
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(hostilePartArb, { maxLength: 6 }),
      fc.nat(60),
      fc.array(fc.nat(5000), { maxLength: 6 }),
      fc.constantFrom('', 'garbage-after-boundary'),
      async (parts, cut, cuts, twist) => {
        const boundary = 'b0undary';
        const pieces: Buffer[] = [];
        for (const p of parts) {
          const disp = `form-data; name="${p.field.replace(/["\r\n]/g, '')}"${p.filename !== undefined ? `; filename="${p.filename.replace(/["\r\n]/g, '')}"` : ''}`;
          pieces.push(Buffer.from(`--${boundary}${twist && p.field === 'other' ? 'zz' : ''}\r\nContent-Disposition: ${disp}\r\n\r\n`, 'latin1'));
          pieces.push(Buffer.from(p.data, 'latin1'), Buffer.from('\r\n'));
        }
        pieces.push(Buffer.from(`--${boundary}--\r\n`));
        let body = Buffer.concat(pieces);
        if (cut % 3 === 0) body = body.subarray(0, Math.max(0, body.length - cut));
        const chunks = cutAt(body, cuts);
        const type = `multipart/form-data; boundary=${boundary}`;
        const d1 = tempDir(t, 'busboy-');
        const d2 = tempDir(t, 'raw-');
        n++;
        const a = await outcome(d1, stageMultipart(fakeRequest(type, chunks), { dir: d1, acceptFiles: true, limits, maxImages: 3, existingFiles: 0 }));
        const b = await outcome(d2, stageRawMultipart(fakeRequest(type, chunks), boundary, d2, { limits, maxImages: 3, existingFiles: 0 }));
        assert.deepEqual(b, a, `body ${JSON.stringify(body.toString('latin1'))}`);
      },
    ),
    { seed: SEED, numRuns: 300 },
  );
  assert.ok(n > 0);
});
