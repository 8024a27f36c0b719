// MXFP4 for the tests (independent of lib/): OCP e2m1 codes, two per byte with the even element
// in the low nibble, one e8m0 scale 2^(s - 127) per 32 values along the last axis.

export const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];
const BLOCK = 32;
const MAX_E2M1 = 6;

/** Nearest e2m1 code of v (already divided by the block scale); ties to the smaller magnitude. */
function nearestCode(v: number): number {
  let best = 0;
  for (let c = 0; c < 8; c++) if (Math.abs(Math.abs(v) - E2M1[c]) < Math.abs(Math.abs(v) - E2M1[best])) best = c;
  return best === 0 ? 0 : best | (v < 0 ? 8 : 0);
}

/** values [rows, cols] (cols a multiple of 32) -> blocks [rows, cols/32, 16] and scales [rows, cols/32]. */
export function encodeMxfp4(values: ArrayLike<number>, rows: number, cols: number): { blocks: Uint8Array; scales: Uint8Array } {
  const nb = cols / BLOCK;
  const blocks = new Uint8Array(rows * nb * (BLOCK / 2));
  const scales = new Uint8Array(rows * nb);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < nb; b++) {
      let max = 0;
      for (let k = 0; k < BLOCK; k++) max = Math.max(max, Math.abs(values[r * cols + b * BLOCK + k]));
      // Smallest power of two that brings the block's largest value within e2m1's range.
      const exp = max === 0 ? 0 : Math.ceil(Math.log2(max / MAX_E2M1));
      const s = Math.min(254, Math.max(0, exp + 127));
      scales[r * nb + b] = s;
      const scale = 2 ** (s - 127);
      for (let k = 0; k < BLOCK; k += 2) {
        const lo = nearestCode(values[r * cols + b * BLOCK + k] / scale);
        const hi = nearestCode(values[r * cols + b * BLOCK + k + 1] / scale);
        blocks[(r * nb + b) * (BLOCK / 2) + k / 2] = lo | (hi << 4);
      }
    }
  }
  return { blocks, scales };
}

/** The values blocks + scales stand for (exact in float64). */
export function decodeMxfp4(blocks: Uint8Array, scales: Uint8Array): Float64Array {
  const out = new Float64Array(scales.length * BLOCK);
  for (let b = 0; b < scales.length; b++) {
    const scale = scales[b] === 0xff ? NaN : 2 ** (scales[b] - 127);
    for (let k = 0; k < BLOCK; k++) {
      const byte = blocks[b * (BLOCK / 2) + (k >> 1)];
      out[b * BLOCK + k] = E2M1[k & 1 ? byte >> 4 : byte & 0xf] * scale;
    }
  }
  return out;
}
