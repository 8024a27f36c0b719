// A quick streaming read-bandwidth probe from JavaScript, for `moe-cpu bench`: a buffer far
// larger than the last-level cache is summed with 128-bit WebAssembly SIMD loads by `threads`
// worker threads at once, taking it 1 MiB at a time from a shared counter (as the library's
// pool hands out tasks, so a thread slowed by another process does not stretch the pass),
// several passes, and the fastest pass counts (other processes can only slow a pass down).
//
// It reads memory in ordinary 4 KiB pages. moe-cpu keeps its packed weights in 2 MiB huge
// pages, which stream faster (the hardware prefetchers stop at page boundaries): the native
// benchmark (build/moe_bench) measures that limit too, with huge pages and AVX-512 loads.
import { Worker } from 'node:worker_threads';

// 8x a 32 MiB L3, so every pass streams from DRAM (its memory is counted in the bench's needs).
export const BANDWIDTH_PROBE_BYTES = 256 << 20;
const WASM_PAGE = 1 << 16;
// Bytes a worker takes at a time (a multiple of the 64 bytes one loop iteration reads).
const TASK_BYTES = 1 << 20;
const PASSES = 7;

// The two WebAssembly constructors used here. TypeScript declares WebAssembly in its DOM
// library, which this Node-only package does not load.
interface WasmApi {
  Memory: new (descriptor: { initial: number; maximum: number; shared: boolean }) => { buffer: SharedArrayBuffer };
  Module: new (bytes: Uint8Array) => object;
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

function leb128(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
}

const section = (id: number, body: number[]) => [id, ...leb128(body.length), ...body];
const name = (s: string) => [s.length, ...Buffer.from(s, 'latin1')];

/**
 * (module (import "env" "mem" (memory shared pages pages))
 *   (func (export "sum") (param $p i32) (param $end i32) (result f32)
 *     four v128 accumulators += f32x4 loads at p, p+16, p+32, p+48; p += 64 while p < end;
 *     return lane 0 of their sum))
 */
function readSumModule(pages: number): Uint8Array {
  const I32 = 0x7f, F32 = 0x7d, V128 = 0x7b;
  const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
  const F32X4_ADD = [0xfd, 0xe4, 0x01];
  // acc = acc + v128.load(p + offset), memarg alignment 2^4
  const accumulate = (acc: number, offset: number) =>
    [LOCAL_GET, acc, LOCAL_GET, 0, 0xfd, 0x00, 4, ...leb128(offset), ...F32X4_ADD, LOCAL_SET, acc];
  const body = [
    1, 4, V128, // locals 2..5: the accumulators
    0x03, 0x40, // loop
    ...accumulate(2, 0), ...accumulate(3, 16), ...accumulate(4, 32), ...accumulate(5, 48),
    LOCAL_GET, 0, 0x41, ...[0xc0, 0x00], 0x6a, LOCAL_TEE, 0, // p = p + 64 (i32.const 64 is signed LEB 0xc0 0x00)
    LOCAL_GET, 1, 0x49, 0x0d, 0, // br_if (p < end) to the loop
    0x0b,
    LOCAL_GET, 2, LOCAL_GET, 3, ...F32X4_ADD, LOCAL_GET, 4, ...F32X4_ADD, LOCAL_GET, 5, ...F32X4_ADD,
    0xfd, 0x1f, 0, // f32x4.extract_lane 0
    0x0b,
  ];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 2, I32, I32, 1, F32]),
    ...section(2, [1, ...name('env'), ...name('mem'), 0x02, 0x03, ...leb128(pages), ...leb128(pages)]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name('sum'), 0x00, 0]),
    ...section(10, [1, ...leb128(body.length), ...body]),
  ]);
}

// control[0]: pass number (-1: stop), control[1]: workers done with the current pass,
// control[2]: the next task of the current pass.
const WORKER = `
const { workerData, parentPort } = require('node:worker_threads');
const { module, memory, control, tasks, taskBytes } = workerData;
const c = new Int32Array(control);
const { sum } = new WebAssembly.Instance(module, { env: { mem: memory } }).exports;
parentPort.postMessage('ready');
for (let seen = 0;;) {
  Atomics.wait(c, 0, seen);
  seen = Atomics.load(c, 0);
  if (seen < 0) break;
  for (let i = Atomics.add(c, 2, 1); i < tasks; i = Atomics.add(c, 2, 1)) sum(i * taskBytes, (i + 1) * taskBytes);
  Atomics.add(c, 1, 1);
  Atomics.notify(c, 1);
}`;

/** GB/s read by `threads` threads together. */
export async function measureReadBandwidth(threads: number): Promise<number> {
  const pages = BANDWIDTH_PROBE_BYTES / WASM_PAGE;
  const memory = new wasm.Memory({ initial: pages, maximum: pages, shared: true });
  // Written first: pages never written would all map to the zero page and read from cache.
  new Float32Array(memory.buffer).fill(1);
  const module = new wasm.Module(readSumModule(pages));
  const control = new Int32Array(new SharedArrayBuffer(12));
  const tasks = BANDWIDTH_PROBE_BYTES / TASK_BYTES;
  const workers: Worker[] = [];
  try {
    await Promise.all(Array.from({ length: threads }, () => new Promise<void>((resolve, reject) => {
      const worker = new Worker(WORKER, {
        eval: true,
        workerData: { module, memory, control: control.buffer, tasks, taskBytes: TASK_BYTES },
      });
      workers.push(worker);
      worker.once('message', () => resolve());
      worker.once('error', reject);
    })));
    let fastest = Infinity;
    for (let pass = 1; pass <= PASSES; pass++) {
      Atomics.store(control, 1, 0);
      Atomics.store(control, 2, 0);
      const t0 = performance.now();
      Atomics.store(control, 0, pass);
      Atomics.notify(control, 0);
      for (let done = 0; (done = Atomics.load(control, 1)) < threads;) Atomics.wait(control, 1, done);
      fastest = Math.min(fastest, performance.now() - t0);
    }
    return BANDWIDTH_PROBE_BYTES / fastest / 1e6;
  } finally {
    Atomics.store(control, 0, -1);
    Atomics.notify(control, 0);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
