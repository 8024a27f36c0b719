// A layer handed to worker_threads without a copy: layer.share() in one thread, MoeLayer.adopt
// in another. The adopted layer is the same layer (the same forward, bit for bit, router and
// routing included); adopting copies no weights; each thread disposes its own reference, so a
// layer disposed in one thread keeps working in the other; a handle is adopted once.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, test } from 'vitest';
import { MoeLayer, toBf16 } from '../lib/index';
import { bitsEqual, mulberry32, randF32 } from './helpers';

const PKG = path.join(__dirname, '..', 'dist', 'index.js');
const SCRIPT = path.join(__dirname, 'workers', 'adopt.cjs');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-share-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

// 64 experts of 2 x 512 x 1024 + 1024 x 512 bf16: 201 MB packed, large next to a Worker's own memory.
const E = 64, H = 1024, I = 512, K = 4;
const rng = mulberry32(0x5ea7);

class Peer {
  readonly worker: Worker;
  readonly #queue: unknown[] = [];
  readonly #waiters: ((m: unknown) => void)[] = [];
  constructor(handle: unknown) {
    this.worker = new Worker(SCRIPT, { workerData: { pkg: PKG, handle } });
    this.worker.on('message', (m) => {
      const w = this.#waiters.shift();
      if (w) w(m); else this.#queue.push(m);
    });
  }
  next<T>(): Promise<T> {
    return this.#queue.length ? Promise.resolve(this.#queue.shift() as T) : new Promise((r) => this.#waiters.push(r as (m: unknown) => void));
  }
  async ask<T>(message: unknown): Promise<T> {
    this.worker.postMessage(message);
    return this.next<T>();
  }
}

function makeLayer(): MoeLayer {
  return new MoeLayer({
    numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false,
    weightDtype: 'bf16', w13: toBf16(randF32(rng, E * 2 * I * H, -0.1, 0.1)), w2: toBf16(randF32(rng, E * H * I, -0.1, 0.1)),
    routerWeight: randF32(rng, E * H), routerBias: randF32(rng, E, -0.1, 0.1), threads: 2,
    routing: { mode: 'sigmoid-grouped', numGroups: 8, topkGroups: 4, renormalize: true, routedScalingFactor: 2.5, correctionBias: randF32(rng, E, -0.1, 0.1) },
  });
}

describe('layers shared with worker_threads', () => {
  test('adopted without a copy, the same forward, and alive after the sharing thread disposes its own', async () => {
    const layer = makeLayer();
    const hidden = randF32(rng, 3 * H);
    const expected = await layer.forward(hidden);
    const peer = new Peer(layer.share());
    const hello = await peer.next<{ rssGrowth: number; bytes: number; mapped: boolean; hasRouter: boolean; routing: unknown; again: { name: string; code: string } }>();
    console.log(`layer-share: adopting a ${(hello.bytes / 1e6).toFixed(0)} MB layer grew the process's RSS by ${(hello.rssGrowth / 1e6).toFixed(1)} MB`);
    expect(hello.bytes).toBe(layer.bytes);
    expect(hello.rssGrowth).toBeLessThan(layer.bytes / 10);
    expect(hello.hasRouter).toBe(true);
    expect(hello.routing).toEqual(layer.routing);
    expect(hello.again).toMatchObject({ name: 'RangeError', code: 'ERR_MOE_INVALID_ARGUMENT' });

    const viaWorker = await peer.ask<{ out: Float32Array }>({ op: 'forward', hidden });
    expect(bitsEqual(viaWorker.out, expected)).toBe(true);
    // Disposed here: the worker's reference keeps the weights.
    layer.dispose();
    expect(layer.bytes).toBe(0);
    const afterDispose = await peer.ask<{ out: Float32Array }>({ op: 'forward', hidden });
    expect(bitsEqual(afterDispose.out, expected)).toBe(true);
    await peer.ask({ op: 'dispose' });
    await peer.worker.terminate();
  });

  test('a mapped layer (MoeLayer.open) is shared the same way', async () => {
    const own = makeLayer();
    const file = path.join(dir, 'shared.moe');
    await own.save(file);
    own.dispose();
    const mapped = await MoeLayer.open(file);
    const hidden = randF32(rng, 2 * H);
    const expected = await mapped.forward(hidden);
    const peer = new Peer(mapped.share());
    const hello = await peer.next<{ mapped: boolean; bytes: number }>();
    expect(hello.bytes).toBe(mapped.bytes);
    mapped.dispose();
    const out = await peer.ask<{ out: Float32Array }>({ op: 'forward', hidden });
    expect(bitsEqual(out.out, expected)).toBe(true);
    await peer.worker.terminate(); // a terminated Worker drops its reference
  });

  test('bad handles: TypeError / RangeError, nothing adopted', () => {
    for (const bad of [undefined, 1, {}, { kind: 'moe-cpu shared layer' }]) {
      expect(() => MoeLayer.adopt(bad as never)).toThrow(TypeError);
    }
    const layer = makeLayer();
    const handle = layer.share();
    const adopted = MoeLayer.adopt(handle);
    expect(() => MoeLayer.adopt(handle)).toThrow(RangeError);
    expect(() => MoeLayer.adopt({ ...handle, id: 2 ** 60 })).toThrow(RangeError);
    adopted.dispose();
    layer.dispose();
    expect(() => layer.share()).toThrow(/disposed/);
  });
});
