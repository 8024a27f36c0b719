import { describe, expect, test } from 'vitest';
import { fromBf16, toBf16 } from '../lib/index';
import { mulberry32, randF32 } from './helpers';
import { f32BitsToBf16, refFromBf16, refToBf16 } from './reference';

function f32FromBits(bits: number[]): Float32Array {
  return new Float32Array(new Uint32Array(bits).buffer);
}

function isBf16NaN(b: number): boolean {
  return (b & 0x7f80) === 0x7f80 && (b & 0x007f) !== 0;
}

describe('toBf16', () => {
  test('rounds to nearest, ties to even', () => {
    const cases: [number, number][] = [
      [0x3f800000, 0x3f80], // 1.0 exact
      [0x3f808000, 0x3f80], // halfway, even below
      [0x3f818000, 0x3f82], // halfway, even above
      [0x3f808001, 0x3f81], // just above halfway
      [0x3f807fff, 0x3f80], // just below halfway
      [0xbf808000, 0xbf80], // negative halfway, even below
      [0xbf818000, 0xbf82], // negative halfway, even above
      [0x00008000, 0x0000], // subnormal tie to even (zero)
      [0x00018000, 0x0002], // subnormal tie to even (up)
      [0x80000000, 0x8000], // -0
      [0x7f7fffff, 0x7f80], // FLT_MAX rounds to +Inf
      [0xff7fffff, 0xff80], // -FLT_MAX rounds to -Inf
      [0x7f7f0000, 0x7f7f], // largest finite bf16 stays
    ];
    const out = toBf16(f32FromBits(cases.map((c) => c[0])));
    expect(out).toBeInstanceOf(Uint16Array);
    expect(Array.from(out)).toEqual(cases.map((c) => c[1]));
  });

  test('Inf stays Inf, NaN stays NaN (also NaNs whose payload is only in the low 16 bits)', () => {
    const input = f32FromBits([0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7f80ffff]);
    const out = toBf16(input);
    expect(out[0]).toBe(0x7f80);
    expect(out[1]).toBe(0xff80);
    for (let i = 2; i < input.length; i++) expect(isBf16NaN(out[i]), `index ${i}: 0x${out[i].toString(16)}`).toBe(true);
    expect(Number.isNaN(fromBf16(out)[6])).toBe(true);
  });

  test.each([1, 3, 17, 33, 4097])('matches the reference bitwise, %i random values', (n) => {
    const rng = mulberry32(n);
    const x = randF32(rng, n, -1e3, 1e3);
    // Mix in values with interesting low bits: exact ties and near ties.
    const bits = new Uint32Array(x.buffer);
    for (let i = 0; i < n; i += 3) bits[i] = (bits[i] & 0xffff0000) | 0x8000;
    const out = toBf16(x);
    expect(out.length).toBe(n);
    expect(Array.from(out)).toEqual(Array.from(refToBf16(x)));
    expect(Array.from(out)).toEqual(Array.from(bits, f32BitsToBf16));
  });

  test('does not modify its input', () => {
    const x = randF32(mulberry32(5), 33);
    const copy = x.slice();
    toBf16(x);
    expect(x).toEqual(copy);
  });
});

describe('fromBf16', () => {
  test('is exact (bits << 16) for every bf16 pattern', () => {
    const all = new Uint16Array(65536);
    for (let i = 0; i < all.length; i++) all[i] = i;
    const out = fromBf16(all);
    expect(out).toBeInstanceOf(Float32Array);
    const outBits = new Uint32Array(out.buffer, out.byteOffset, out.length);
    for (let i = 0; i < all.length; i++) {
      if (isBf16NaN(i)) {
        expect(Number.isNaN(out[i]), `0x${i.toString(16)}`).toBe(true);
      } else if (outBits[i] !== i << 16 >>> 0) {
        throw new Error(`fromBf16(0x${i.toString(16)}) = 0x${outBits[i].toString(16)}`);
      }
    }
    expect(out[0x7f80]).toBe(Infinity);
    expect(out[0xff80]).toBe(-Infinity);
  });

  test('toBf16(fromBf16(b)) is the identity for every non-NaN pattern', () => {
    const all = new Uint16Array(65536);
    for (let i = 0; i < all.length; i++) all[i] = i;
    const back = toBf16(fromBf16(all));
    for (let i = 0; i < all.length; i++) {
      if (isBf16NaN(i)) expect(isBf16NaN(back[i])).toBe(true);
      else if (back[i] !== i) throw new Error(`0x${i.toString(16)} -> 0x${back[i].toString(16)}`);
    }
  });

  test.each([1, 3, 17, 33, 4097])('matches the reference, %i values', (n) => {
    const b = refToBf16(randF32(mulberry32(100 + n), n, -50, 50));
    expect(fromBf16(b)).toEqual(refFromBf16(b));
  });
});
