// Packed-layer files: layer.save(path) and MoeLayer.open(path).
//
// A layer opened from its file is the very layer that was saved: the same forward, bit for bit,
// for every weight format, both W13 layouts, with and without biases and router, every routing
// mode. A file is checked before any of it is used: another file version, architecture or panel
// layout is refused as incompatible; truncated or damaged files are refused (a damaged byte the
// checksums cannot see — padding between sections — changes nothing); never a crash, never a
// different answer. Writes are atomic (temporary file, then rename), also when several run at once.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { LayerFileError, MoeLayer, toBf16, type MoeLayerOptions, type Routing, type WeightDtype } from '../lib/index';
import { bitsEqual, expectRejects, mulberry32, randF32 } from './helpers';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-layer-file-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;
const newPath = (label: string) => path.join(dir, `${label}-${fileCount++}.moe`);

const E = 8, H = 64, I = 96, K = 2;
const rng = mulberry32(0xf11e);

function options(dtype: WeightDtype, extra: Partial<MoeLayerOptions> = {}): MoeLayerOptions {
  const w13 = randF32(rng, E * 2 * I * H, -0.3, 0.3), w2 = randF32(rng, E * H * I, -0.2, 0.2);
  const asBf16 = dtype === 'bf16';
  return {
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
    weightDtype: dtype, w13: asBf16 ? toBf16(w13) : w13, w2: asBf16 ? toBf16(w2) : w2, ...extra,
  } as MoeLayerOptions;
}

function biases(dtype: WeightDtype): Pick<MoeLayerOptions, 'w13Bias' | 'w2Bias'> {
  const b13 = randF32(rng, E * 2 * I, -0.5, 0.5), b2 = randF32(rng, E * H, -0.5, 0.5);
  return dtype === 'bf16' ? { w13Bias: toBf16(b13), w2Bias: toBf16(b2) } : { w13Bias: b13, w2Bias: b2 };
}

function routeFor(T: number) {
  const ids = new Int32Array(T * K), weights = new Float32Array(T * K);
  for (let t = 0; t < T; t++) {
    const a = Math.floor(rng() * E), b = (a + 1 + Math.floor(rng() * (E - 1))) % E;
    ids.set([a, b], t * K);
    weights.set([rng(), rng()], t * K);
  }
  return { ids, weights };
}

/** Saved and opened, the layer computes exactly what the original does (decode and prefill, given routes and its router). */
async function expectSameLayer(original: MoeLayer, opened: MoeLayer): Promise<void> {
  for (const key of ['numExperts', 'hiddenSize', 'intermediateSize', 'topK', 'activation', 'isW13Interleaved', 'weightDtype', 'hasRouter'] as const) {
    expect(opened[key], key).toEqual(original[key]);
  }
  // The routing rule as the layer applies it (defaults filled in).
  const rule = (r: Routing) => (r.mode === 'sigmoid-grouped' ? { ...r, routedScalingFactor: r.routedScalingFactor ?? 1 } : r);
  expect(rule(opened.routing)).toEqual(rule(original.routing));
  expect(opened.bytes).toBe(original.bytes);
  expect(opened.kernels).toEqual(original.kernels);
  expect(opened.mapped).toBe(process.platform !== 'win32');
  expect(original.mapped).toBe(false);
  for (const T of [1, 3, 64]) {
    const hidden = randF32(rng, T * H);
    const route = routeFor(T);
    expect(bitsEqual(await opened.forward(hidden, route), await original.forward(hidden, route)), `T=${T}`).toBe(true);
    expect(bitsEqual(opened.forwardSync(hidden, route), original.forwardSync(hidden, route)), `T=${T} sync`).toBe(true);
    if (original.hasRouter) {
      expect(bitsEqual(await opened.forward(hidden), await original.forward(hidden)), `T=${T} routed by the layer`).toBe(true);
    }
  }
}

async function roundTrip(o: MoeLayerOptions, label: string): Promise<{ original: MoeLayer; opened: MoeLayer; file: string }> {
  const original = new MoeLayer(o);
  const file = newPath(label);
  await original.save(file);
  const opened = await MoeLayer.open(file);
  return { original, opened, file };
}

describe('round trip: the opened layer is the saved one', () => {
  const DTYPES: WeightDtype[] = ['f32', 'bf16', 'f16', 'mxfp4', 'int8'];
  test.each(DTYPES.flatMap((d) => [false, true].map((interleaved) => ({ d, interleaved }))))(
    '$d weights, interleaved $interleaved, with biases', async ({ d, interleaved }) => {
      const { original, opened } = await roundTrip(options(d, { isW13Interleaved: interleaved, activation: 'swigluoai', ...biases(d) }), d);
      await expectSameLayer(original, opened);
      original.dispose();
      opened.dispose();
    });

  const ROUTINGS: Routing[] = [
    { mode: 'topk-softmax' },
    { mode: 'softmax-topk', renormalize: true },
    { mode: 'sigmoid-grouped', numGroups: 4, topkGroups: 2, renormalize: true, routedScalingFactor: 2.5, correctionBias: randF32(rng, E, -0.1, 0.1) },
    { mode: 'sigmoid-grouped', numGroups: 2, topkGroups: 1, renormalize: false },
  ];
  test.each(ROUTINGS.map((routing) => ({ routing, mode: routing.mode })))('router and routing $mode', async ({ routing }) => {
    for (const routerWeight of [randF32(rng, E * H), toBf16(randF32(rng, E * H))]) {
      const { original, opened } = await roundTrip(options('bf16', { routing, routerWeight, routerBias: randF32(rng, E, -0.2, 0.2) }), 'router');
      await expectSameLayer(original, opened);
      original.dispose();
      opened.dispose();
    }
  });

  test('swigluoai parameters and gelu are kept', async () => {
    for (const extra of [{ activation: 'swigluoai', swigluAlpha: 1.5, swigluLimit: 3 }, { activation: 'gelu' }] as const) {
      const { original, opened } = await roundTrip(options('f32', extra), 'act');
      await expectSameLayer(original, opened);
      original.dispose();
      opened.dispose();
    }
  });

  test('a mapped layer outlives its file being removed or replaced, and dispose() unmaps it', async () => {
    const { original, opened, file } = await roundTrip(options('mxfp4'), 'unlink');
    const other = new MoeLayer(options('mxfp4'));
    await other.save(file); // renamed over the mapped file: the mapping keeps the old one
    const hidden = randF32(rng, 2 * H), route = routeFor(2);
    expect(bitsEqual(await opened.forward(hidden, route), await original.forward(hidden, route))).toBe(true);
    fs.rmSync(file);
    expect(bitsEqual(await opened.forward(hidden, route), await original.forward(hidden, route))).toBe(true);
    opened.dispose();
    expect(opened.bytes).toBe(0);
    await expectRejects(() => opened.forward(hidden, route), Error, ['disposed']);
    original.dispose();
    other.dispose();
  });
});

// ---------------------------------------------------------------------------------------------
// Refusals

const reference = new MoeLayer(options('int8', { ...biases('int8'), routerWeight: randF32(rng, E * H) }));
const referenceFile = newPath('reference');
const hiddenProbe = randF32(rng, 3 * H), routeProbe = routeFor(3);
let referenceOut: Float32Array;

async function expectFileError(file: string, code: string, message: RegExp, verify = true): Promise<void> {
  const err = await MoeLayer.open(file, { verify }).then((l) => {
    l.dispose();
    return null;
  }, (e: unknown) => e);
  expect(err, `${path.basename(file)}: expected ${code}`).toBeInstanceOf(LayerFileError);
  expect((err as LayerFileError).code).toBe(code);
  expect((err as LayerFileError).path).toBe(file);
  expect((err as Error).message).toMatch(message);
}

function patched(label: string, edit: (bytes: Buffer) => void): string {
  const bytes = fs.readFileSync(referenceFile);
  edit(bytes);
  const file = newPath(label);
  fs.writeFileSync(file, bytes);
  return file;
}

describe('files that are not this layer are refused, before any of them is used', () => {
  test('setup: the reference file', async () => {
    await reference.save(referenceFile);
    referenceOut = await reference.forward(hiddenProbe, routeProbe);
    const opened = await MoeLayer.open(referenceFile);
    expect(bitsEqual(await opened.forward(hiddenProbe, routeProbe), referenceOut)).toBe(true);
    opened.dispose();
  });

  test('another file version, architecture, byte order or panel layout: ERR_MOE_LAYER_FILE_INCOMPATIBLE', async () => {
    await expectFileError(patched('version', (b) => b.writeUInt32LE(2, 8)), 'ERR_MOE_LAYER_FILE_INCOMPATIBLE', /file version 2, this moe-cpu reads version 1/);
    const otherArch = process.arch === 'arm64' ? 1 : 2;
    await expectFileError(patched('arch', (b) => b.writeUInt32LE(otherArch, 20)), 'ERR_MOE_LAYER_FILE_INCOMPATIBLE',
      new RegExp(`written on ${otherArch === 2 ? 'arm64' : 'x64'}, this is ${process.arch}`));
    await expectFileError(patched('order', (b) => b.writeUInt32LE(0x04030201, 24)), 'ERR_MOE_LAYER_FILE_INCOMPATIBLE', /byte order/);
    await expectFileError(patched('layout', (b) => b.writeUInt32LE(2, 16)), 'ERR_MOE_LAYER_FILE_INCOMPATIBLE', /panel layout 0 version 2/);
    await expectFileError(patched('layout-kind', (b) => b.writeUInt32LE(1, 12)), 'ERR_MOE_LAYER_FILE_INCOMPATIBLE', /panel layout 1/);
  });

  test('not a packed-layer file: ERR_MOE_LAYER_FILE; missing or unreadable: ERR_MOE_LAYER_FILE_IO', async () => {
    await expectFileError(patched('magic', (b) => b.write('GGUF', 0)), 'ERR_MOE_LAYER_FILE', /not a packed-layer file/);
    const text = newPath('text');
    fs.writeFileSync(text, '{"not": "a layer"}\n'.repeat(500));
    await expectFileError(text, 'ERR_MOE_LAYER_FILE', /not a packed-layer file/);
    await expectFileError(dir, 'ERR_MOE_LAYER_FILE', /not a regular file/);
    await expectFileError(path.join(dir, 'missing.moe'), 'ERR_MOE_LAYER_FILE_IO', /No such file/);
  });

  test('truncated anywhere: ERR_MOE_LAYER_FILE', async () => {
    const size = fs.statSync(referenceFile).size;
    const cuts = [0, 1, 8, 100, 4095, 4096, 4097, 8192, size >> 1, size - 4097, size - 1];
    for (const cut of cuts) {
      const file = newPath(`cut-${cut}`);
      fs.writeFileSync(file, fs.readFileSync(referenceFile).subarray(0, cut));
      await expectFileError(file, 'ERR_MOE_LAYER_FILE', /truncated|shorter than its header|not a packed-layer file/);
    }
  });

  test('the header checked: a damaged field or section table is refused even without verify', async () => {
    // E, then a section's offset, then a section's size.
    await expectFileError(patched('experts', (b) => b.writeBigUInt64LE(9n, 48)), 'ERR_MOE_LAYER_FILE', /corrupt header/, false);
    await expectFileError(patched('offset', (b) => b.writeBigUInt64LE(b.readBigUInt64LE(128 + 24) + 4096n, 128 + 24)), 'ERR_MOE_LAYER_FILE', /corrupt header/, false);
    await expectFileError(patched('size', (b) => b.writeBigUInt64LE(1n, 128 + 32)), 'ERR_MOE_LAYER_FILE', /corrupt header/, false);
  });

  test('fuzz: 400 single-byte corruptions are refused, or (padding) change nothing', async () => {
    const size = fs.statSync(referenceFile).size;
    const fuzz = mulberry32(0xbadf11e);
    let refused = 0, harmless = 0;
    for (let i = 0; i < 400; i++) {
      // Half in the header, half anywhere.
      const at = i % 2 === 0 ? Math.floor(fuzz() * 4096) : Math.floor(fuzz() * size);
      const xor = 1 + Math.floor(fuzz() * 255);
      const file = patched('fuzz', (b) => {
        b[at] ^= xor;
      });
      try {
        const opened = await MoeLayer.open(file);
        // Only bytes no checksum covers (alignment padding) may pass, and they must change nothing.
        expect(bitsEqual(await opened.forward(hiddenProbe, routeProbe), referenceOut), `byte ${at} ^ ${xor} was accepted and changed the output`).toBe(true);
        opened.dispose();
        harmless++;
      } catch (err) {
        expect(err, `byte ${at}`).toBeInstanceOf(LayerFileError);
        expect(['ERR_MOE_LAYER_FILE', 'ERR_MOE_LAYER_FILE_INCOMPATIBLE']).toContain((err as LayerFileError).code);
        refused++;
      }
      fs.rmSync(file);
    }
    console.log(`layer-file fuzz: ${refused} refused, ${harmless} harmless (padding) of 400`);
    expect(refused).toBeGreaterThan(300);
  });

  test('damaged weights: refused with verify (the default); without, the header checks alone pass', async () => {
    const sectionOffset = Number(fs.readFileSync(referenceFile).readBigUInt64LE(128 + 24)); // "w13"
    const file = patched('weights', (b) => {
      b[sectionOffset + 100] ^= 0x10;
    });
    await expectFileError(file, 'ERR_MOE_LAYER_FILE', /section 'w13' is corrupt/);
    const unverified = await MoeLayer.open(file, { verify: false });
    expect(unverified.numExperts).toBe(E);
    unverified.dispose();
  });
});

describe('arguments and writes', () => {
  test('bad arguments: TypeError / RangeError naming the argument, nothing written', async () => {
    const layer = new MoeLayer(options('f32'));
    for (const bad of [undefined, 7, '', {}, 'a\0b']) {
      await expectRejects(() => layer.save(bad as string), TypeError, ['path: expected a file path']);
      await expectRejects(() => MoeLayer.open(bad as string), TypeError, ['path: expected a file path']);
    }
    await expectRejects(() => MoeLayer.open(referenceFile, { threads: 0 }), RangeError, ['options.threads']);
    await expectRejects(() => MoeLayer.open(referenceFile, { verify: 'yes' as unknown as boolean }), TypeError, ['options.verify']);
    await expectRejects(() => MoeLayer.open(referenceFile, 5 as unknown as object), TypeError, ['options']);
    layer.dispose();
    await expectRejects(() => layer.save(newPath('disposed')), Error, ['disposed']);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('disposed'))).toEqual([]);
  });

  test('a save that cannot be written: ERR_MOE_LAYER_FILE_IO, no file and no temporary file left', async () => {
    const layer = new MoeLayer(options('f32'));
    const nowhere = path.join(dir, 'no-such-dir', 'x.moe');
    const err = await layer.save(nowhere).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(LayerFileError);
    expect((err as LayerFileError).code).toBe('ERR_MOE_LAYER_FILE_IO');
    const readonlyDir = fs.mkdtempSync(path.join(dir, 'ro-'));
    fs.chmodSync(readonlyDir, 0o500);
    if (process.getuid?.() !== 0) {
      // (root may write anywhere: the check is meaningful for other users only)
      await expectRejects(() => layer.save(path.join(readonlyDir, 'x.moe')), LayerFileError as unknown as ErrorConstructor, ['create']);
    }
    expect(fs.readdirSync(readonlyDir)).toEqual([]);
    layer.dispose();
  });

  test('concurrent saves to one path leave one whole layer; temporary files never remain', async () => {
    const layers = Array.from({ length: 4 }, () => new MoeLayer(options('bf16')));
    const file = newPath('race');
    await Promise.all(layers.map((l) => l.save(file)));
    const opened = await MoeLayer.open(file);
    const hidden = randF32(rng, 2 * H), route = routeFor(2);
    const out = await opened.forward(hidden, route);
    const matches = await Promise.all(layers.map(async (l) => bitsEqual(await l.forward(hidden, route), out)));
    expect(matches.filter(Boolean)).toHaveLength(1);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
    opened.dispose();
    layers.forEach((l) => l.dispose());
  });
});
