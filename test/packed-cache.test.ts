// openCheckpoint(dir, { packedCache }): a layer is packed once, saved as packed-layer files and
// mapped afterwards; the cached block computes exactly what a block loaded without the cache
// does. Keys follow the checkpoint and the options; a damaged entry is packed again; processes
// filling one cache at once all succeed and leave one entry per layer and no temporary files.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import { MoeLayer, openCheckpoint, type MoeBlock } from '../lib/index';
import { bitsEqual } from './helpers';
import { checkpointMaker, randomHidden } from './checkpoint/synthetic';

const ROOT = path.join(__dirname, '..');
const { make } = checkpointMaker();
const caches: string[] = [];
function newCache(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moe-cpu-cache-'));
  caches.push(dir);
  return dir;
}
afterAll(() => caches.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
afterEach(() => {
  vi.restoreAllMocks();
});

const entries = (cache: string) => fs.readdirSync(cache).sort();

async function sameForward(a: MoeBlock, b: MoeBlock, H: number): Promise<boolean> {
  const { hidden } = randomHidden(11, 5, H, false);
  return bitsEqual(await a.forward(hidden), await b.forward(hidden));
}

describe('packed-layer cache', () => {
  // qwen2-moe: a shared expert with a sigmoid gate (BF16 in the checkpoint, kept as bf16).
  const FILES = {
    'gpt-oss-mxfp4': ['experts.moe'], mixtral: ['experts.moe'], 'deepseek-v3': ['experts.moe', 'shared.moe'],
    'qwen2-moe': ['experts.moe', 'gate.bf16', 'shared.moe'],
  };
  test.each(['gpt-oss-mxfp4', 'mixtral', 'deepseek-v3', 'qwen2-moe'] as const)('%s: packed once, mapped afterwards, the same forward', async (kind) => {
    const s = make(kind);
    const cache = newCache();
    const n = s.moeLayers[0];
    const plain = await (await openCheckpoint(s.dir)).loadMoeLayer(n);

    const first = await (await openCheckpoint(s.dir, { packedCache: cache })).loadMoeLayer(n);
    expect(entries(cache)).toHaveLength(1);
    const entry = path.join(cache, entries(cache)[0]);
    expect(fs.readdirSync(entry).sort()).toEqual(FILES[kind]);
    expect(first.experts.mapped).toBe(true);
    expect(first.sharedExperts?.mapped ?? true).toBe(true);
    expect(await sameForward(first, plain, s.dims.H)).toBe(true);

    // A second open of the checkpoint packs nothing: the layers are mapped from the cache.
    const create = vi.spyOn(MoeLayer, 'create');
    const second = await (await openCheckpoint(s.dir, { packedCache: cache })).loadMoeLayer(n);
    expect(create).not.toHaveBeenCalled();
    expect(second.experts.mapped).toBe(true);
    expect(second.bytes).toBe(plain.bytes);
    expect(await sameForward(second, plain, s.dims.H)).toBe(true);
    for (const b of [plain, first, second]) b.dispose();
  });

  test('keys follow the weightDtype, the layer and the checkpoint files', async () => {
    const s = make('mixtral');
    const cache = newCache();
    const ckpt = await openCheckpoint(s.dir, { packedCache: cache });
    for (const weightDtype of ['bf16', 'f32'] as const) (await ckpt.loadMoeLayer(0, { weightDtype })).dispose();
    (await ckpt.loadMoeLayer(1)).dispose();
    expect(entries(cache)).toHaveLength(3);
    (await ckpt.loadMoeLayer(1)).dispose();
    expect(entries(cache)).toHaveLength(3);
    // The checkpoint rewritten (another time stamp): a new key.
    const file = path.join(s.dir, 'model.safetensors');
    const t = new Date(Date.now() + 5000);
    fs.utimesSync(file, t, t);
    (await (await openCheckpoint(s.dir, { packedCache: cache })).loadMoeLayer(1)).dispose();
    expect(entries(cache)).toHaveLength(4);
  });

  test('an entry whose header is damaged is removed and packed again', async () => {
    const s = make('qwen3-moe');
    const cache = newCache();
    const plain = await (await openCheckpoint(s.dir)).loadMoeLayer(0);
    (await (await openCheckpoint(s.dir, { packedCache: cache })).loadMoeLayer(0)).dispose();
    const experts = path.join(cache, entries(cache)[0], 'experts.moe');
    fs.truncateSync(experts, fs.statSync(experts).size - 1);
    const create = vi.spyOn(MoeLayer, 'create');
    const again = await (await openCheckpoint(s.dir, { packedCache: cache })).loadMoeLayer(0);
    expect(create).toHaveBeenCalled();
    expect(again.experts.mapped).toBe(true);
    expect(await sameForward(again, plain, s.dims.H)).toBe(true);
    expect(fs.statSync(experts).size).toBeGreaterThan(0);
    plain.dispose();
    again.dispose();
  });

  test('4 processes filling one cache at once: all load, one entry per layer, no temporary files', async () => {
    const s = make('deepseek-v3');
    const cache = newCache();
    const script = `
      const moe = require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))});
      (async () => {
        const ckpt = await moe.openCheckpoint(${JSON.stringify(s.dir)}, { packedCache: ${JSON.stringify(cache)} });
        const blocks = await ckpt.loadMoeLayers({ threads: 1 });
        const hidden = new Float32Array(3 * ckpt.config.hiddenSize).map((_, i) => Math.sin(i));
        const outs = [];
        for (const b of blocks) outs.push(Buffer.from((await b.forward(hidden)).buffer).toString('base64'));
        process.stdout.write(JSON.stringify({ mapped: blocks.every((b) => b.experts.mapped), outs }));
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const run = () => new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      child.stdout.on('data', (d) => (out += d));
      child.stderr.on('data', (d) => (err += d));
      child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`exit ${code}: ${err}`))));
    });
    const results = (await Promise.all([run(), run(), run(), run()])).map((r) => JSON.parse(r) as { mapped: boolean; outs: string[] });
    for (const r of results) {
      expect(r.mapped).toBe(true);
      expect(r.outs).toEqual(results[0].outs);
    }
    expect(entries(cache)).toHaveLength(s.moeLayers.length);
    expect(entries(cache).filter((e) => e.includes('.tmp-'))).toEqual([]);
  }, 120_000);

  test('packedCache must be a folder path', async () => {
    const s = make('mixtral');
    for (const bad of [5, '', null, {}]) {
      const err = await openCheckpoint(s.dir, { packedCache: bad as string }).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(TypeError);
      expect((err as Error).message).toMatch(/^options.packedCache: expected a folder path/);
    }
  });
});
