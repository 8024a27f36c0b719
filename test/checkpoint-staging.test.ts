// The loader stages expert weights one array per expert, whatever the checkpoint stores: fused
// [E, ...] tensors (gpt-oss BF16), one tensor per expert and projection (Mixtral, Qwen3-MoE,
// DeepSeek-V3), MXFP4 blocks and scales (kept as they are, or decoded). No staging array holds
// more than one expert, so a layer past the 2^32 elements of a Node 20 typed array loads, and no
// many-GB contiguous copy is made. That the values land where they belong is checked by the
// forwards of checkpoint-load and checkpoint-quantized; here, with those same loads, that the
// layer is handed per-expert arrays of one expert each, and the forward still matches.
import { afterAll, afterEach, describe, expect, test, vi } from 'vitest';
import { MoeLayer, openCheckpoint, type MoeLayerOptions } from '../lib/index';
import { BF16_TOL, expectClose, valuesOf } from './helpers';
import { makeCheckpoint, randomHidden, referenceForward, removeDir, type FloatDtype, type Kind, type Synthetic } from './checkpoint/synthetic';

const made: Synthetic[] = [];
afterAll(() => made.forEach((s) => removeDir(s.dir)));
afterEach(() => {
  vi.restoreAllMocks();
});

function lengthOf(a: unknown): number {
  return (a as ArrayBufferView).byteLength;
}

/** Expert weights as the routed experts' layer was given them: E arrays of one expert each. */
function expectPerExpert(w: MoeLayerOptions['w13'], E: number, bytesPerExpert: number, label: string): void {
  if (Array.isArray(w)) {
    expect(w, label).toHaveLength(E);
    for (const a of w) expect(lengthOf(a), label).toBe(bytesPerExpert);
    expect(new Set(w.map((a) => a.buffer)).size, `${label}: a buffer of its own per expert`).toBe(E);
    return;
  }
  const fields = w as unknown as Record<string, unknown>;
  expect(Object.keys(fields).sort(), label).toEqual(['blocks', 'scales']);
  const blocks = fields.blocks as Uint8Array[], scales = fields.scales as Uint8Array[];
  expect(blocks, label).toHaveLength(E);
  expect(scales, label).toHaveLength(E);
  for (const b of blocks) expect(b.byteLength, label).toBe(bytesPerExpert * 16 / 17);
  for (const s of scales) expect(s.byteLength, label).toBe(bytesPerExpert / 17);
}

const CASES: { kind: Kind; file?: FloatDtype; load: 'bf16' | 'f32' | 'f16' | 'mxfp4'; stored: string }[] = [
  { kind: 'gpt-oss-bf16', load: 'bf16', stored: 'fused [E, 2I, H] BF16' },
  { kind: 'gpt-oss-bf16', load: 'f32', stored: 'fused [E, 2I, H] BF16' },
  { kind: 'gpt-oss-mxfp4', load: 'mxfp4', stored: 'MXFP4 blocks and scales, kept' },
  { kind: 'gpt-oss-mxfp4', load: 'bf16', stored: 'MXFP4 blocks and scales, decoded' },
  { kind: 'mixtral', load: 'bf16', stored: 'per-expert tensors BF16' },
  { kind: 'qwen3-moe', file: 'F16', load: 'f16', stored: 'per-expert tensors F16, kept as f16' },
  { kind: 'deepseek-v3', file: 'F32', load: 'bf16', stored: 'per-expert tensors F32, converted' },
];

describe('expert weights are staged one array per expert', () => {
  test.each(CASES)('$kind ($stored) loaded as $load', async ({ kind, file, load }) => {
    const s = makeCheckpoint(kind, { dtype: file ?? 'BF16' });
    made.push(s);
    const { E, H, I } = s.dims;
    // Checked when the layer is created: the loader frees (detaches, where Node can) its staging
    // arrays once the layer is packed.
    const bytesPerValue = { bf16: 2, f16: 2, f32: 4, mxfp4: 17 / 32 }[load];
    const original = MoeLayer.create.bind(MoeLayer);
    let routedSeen = 0;
    vi.spyOn(MoeLayer, 'create').mockImplementation((o) => {
      if (o.numExperts === E) {
        expectPerExpert(o.w13, E, 2 * I * H * bytesPerValue, 'w13');
        expectPerExpert(o.w2, E, H * I * bytesPerValue, 'w2');
        routedSeen++;
      }
      return original(o);
    });
    const ckpt = await openCheckpoint(s.dir);
    const n = s.moeLayers[0];
    const block = await ckpt.loadMoeLayer(n, { weightDtype: load });
    try {
      expect(routedSeen, 'the routed experts went through MoeLayer.create').toBe(1);

      const { hidden, values } = randomHidden(5, 3, H, false);
      expectClose(valuesOf(await block.forward(hidden)), referenceForward(s, n, values, false), BF16_TOL, kind);
    } finally {
      block.dispose();
    }
  });
});
