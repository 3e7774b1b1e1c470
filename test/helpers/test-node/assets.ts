/** The generated all.zip body: pseudo-random, reproducible from its size. (split from test-node.ts) */
import * as os from 'node:os';
import { createHash } from 'node:crypto';


// ---------------------------------------------------------------------------------------------
// Generated all.zip body
// ---------------------------------------------------------------------------------------------

export const ASSET_CHUNK_BYTES = 64 * 1024; // a multiple of 4, so chunking never changes the byte stream

/**
 * Deterministic pseudo-random bytes (xorshift32), yielded in chunks so that large assets are
 * never held in memory at once. An asset of size N is a prefix of any larger one.
 */
export function* assetChunks(size: number): Generator<Buffer> {
  let state = 0x2545f491;
  // Whole words go through a Uint32Array view (one store each instead of writeUInt32LE's four byte stores), so the
  // generator no longer caps download benchmarks (bench row b); the view is only used where it matches LE order.
  const littleEndian = os.endianness() === 'LE';
  for (let offset = 0; offset < size; offset += ASSET_CHUNK_BYTES) {
    const chunk = Buffer.allocUnsafe(Math.min(ASSET_CHUNK_BYTES, size - offset));
    const whole = littleEndian ? chunk.length >>> 2 : 0;
    // allocUnsafe slices a shared pool: its offset is not always a multiple of 4, then the words go one by one.
    const words = whole > 0 && chunk.byteOffset % 4 === 0 ? new Uint32Array(chunk.buffer, chunk.byteOffset, whole) : null;
    let i = 0;
    if (words) {
      for (let w = 0; w < words.length; w++) {
        state ^= state << 13;
        state ^= state >>> 17;
        state ^= state << 5;
        state >>>= 0;
        words[w] = state;
      }
      i = words.length * 4;
    }
    for (; i < chunk.length; i += 4) {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      state >>>= 0;
      writeWord(chunk, i, state);
    }
    yield chunk;
  }
}

export function writeWord(chunk: Buffer, at: number, word: number): void {
  if (at + 4 <= chunk.length) {
    chunk.writeUInt32LE(word, at);
    return;
  }
  for (let j = 0; at + j < chunk.length; j++) chunk[at + j] = (word >>> (8 * j)) & 0xff;
}

/** SHA-256 (hex) of the all.zip body a node with `assetSize = size` serves; for integrity checks. */
export function assetSha256(size: number): string {
  const hash = createHash('sha256');
  for (const chunk of assetChunks(size)) hash.update(chunk);
  return hash.digest('hex');
}

