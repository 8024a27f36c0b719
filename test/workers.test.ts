// worker_threads using the service-facing API together: several Workers and the main thread at
// once, each loading (aborted and with progress), packing with MoeLayer.create from
// SharedArrayBuffer-backed weights, forwarding SAB-backed hidden through MoeLayer and MoeBlock,
// cancelling a queued forward and batching. Every result must equal the main thread's, bit for
// bit (the same kernels and thread count), or within the f32 contract for the batcher.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, test } from 'vitest';
import { MoeLayer, loadMoeLayer, type MoeLayerOptions } from '../lib/index';
import { checkpointMaker } from './checkpoint/synthetic';
import { expectClose, mulberry32, randBf16, randF32 } from './helpers';

const ROOT = path.join(__dirname, '..');
const SCRIPT = path.join(__dirname, 'workers', 'service.cjs');
const WORKERS = 3;
const T = 4;
const { make } = checkpointMaker();

function shared<A extends Float32Array | Uint16Array>(a: A): SharedArrayBuffer {
  const sab = new SharedArrayBuffer(a.byteLength);
  new Uint8Array(sab).set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
  return sab;
}

function runWorker(workerData: unknown): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const w = new Worker(SCRIPT, { workerData });
    w.once('message', (m) => {
      resolve(m as Record<string, unknown>);
      void w.terminate();
    });
    w.once('error', reject);
  });
}

describe('worker_threads', () => {
  test(`${WORKERS} Workers and the main thread use loads, create, SAB inputs, signals, blocks and the batcher at once`, async () => {
    const ckpt = make('qwen2-moe'); // routed experts + shared expert with a sigmoid gate
    const layer = ckpt.moeLayers[0];
    const H = ckpt.dims.H;
    const hidden = randF32(mulberry32(7), T * H);
    const rng = mulberry32(8);
    const E = 6, I = 32, K = 2;
    const w13 = randBf16(rng, E * 2 * I * H), w2 = randBf16(rng, E * H * I), routerWeight = randF32(rng, E * H);
    const options = {
      numExperts: E, hiddenSize: H, intermediateSize: I, topK: K, activation: 'silu', isW13Interleaved: false, weightDtype: 'bf16',
    } as const;

    // What the main thread computes.
    const block = await loadMoeLayer(ckpt.dir, layer, { threads: 1 });
    const expectedBlock = block.forwardSync(hidden);
    const local = new MoeLayer({ ...options, w13, w2, routerWeight, threads: 1 } as MoeLayerOptions);
    const expectedCreated = local.forwardSync(hidden);

    const workerOptions = {
      ...options, w13: shared(w13), w2: shared(w2), routerWeight: shared(routerWeight),
      w13Experts: Array.from({ length: E }, (_, e) => shared(w13.subarray(e * 2 * I * H, (e + 1) * 2 * I * H))),
      w2Experts: Array.from({ length: E }, (_, e) => shared(w2.subarray(e * H * I, (e + 1) * H * I))),
    };
    const perExpert = true; // odd Workers pack from per-expert arrays
    const workers = Array.from({ length: WORKERS }, (_, i) => runWorker({
      pkg: ROOT, checkpoint: ckpt.dir, layer, hidden: shared(hidden), tokens: T, options: workerOptions, perExpert: perExpert && i % 2 === 1,
    }));
    // The main thread keeps forwarding meanwhile.
    const mainOuts = await Promise.all(Array.from({ length: 8 }, () => block.forward(hidden)));
    const results = await Promise.all(workers);

    for (const out of mainOuts) expect(Buffer.from(out.buffer).equals(Buffer.from(expectedBlock.buffer))).toBe(true);
    for (const [i, r] of results.entries()) {
      expect(r.error, `worker ${i}: ${JSON.stringify(r.error)} ${r.stack}`).toBeUndefined();
      expect(r.loadAbort).toMatchObject({ name: 'AbortError', code: 'ERR_MOE_ABORTED' });
      expect(r.progress).toEqual([layer]);
      expect(Float32Array.from(r.block as number[])).toEqual(expectedBlock);
      expect(Float32Array.from(r.created as number[])).toEqual(expectedCreated);
      expect(r.cancelled).toMatchObject({ name: 'AbortError', code: 'ERR_MOE_ABORTED' });
      expectClose(Float32Array.from(r.batched as number[]), expectedCreated, 1e-5, `worker ${i} batcher`);
      expect(r.disposed).toMatchObject({ code: 'ERR_MOE_DISPOSED' });
      expect(r.ticks as number).toBeGreaterThan(0);
    }
    block.dispose();
    local.dispose();
  }, 120_000);
});
