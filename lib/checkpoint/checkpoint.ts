// openCheckpoint / loadMoeLayer: a Hugging Face model folder -> the MoE block of one layer.
import * as fs from './fsio';
import * as path from 'node:path';

import { MoeLayer, type MoeLayerOptions } from '../layer';
import type { Mxfp4Tensor } from '../quantize';
import type { Routing } from '../routing';
import { describe, object, oneOf, optionalSignal, positiveInteger, threadCount, type WeightArray } from '../validate';
import { MoeBlock } from './block';
import { checkLayerCount, readModelConfig, type CheckpointConfig, type Family, type ModelConfig } from './config';
import { CheckpointError } from './errors';
import { planLayer, type LayerPlan, type SharedPlan, type TensorGroup } from './families';
import {
  WEIGHT_DTYPES, packedLayerBytes, stagingBytes, stagingFormat, unsupportedReason,
  type LoadWeightDtype, type StagingFormat, type StoredFormat,
} from './formats';
import { availableMemory } from './memory';
import { TensorReader } from './read';
import { openTensorSet, type TensorLocation, type TensorSet } from './tensors';
import { abortError, internalError, typeError, rangeError } from '../errors';

export type { LoadWeightDtype } from './formats';

export interface LoadMoeLayerOptions {
  /**
   * What the packed expert weights are held as: 'mxfp4' | 'int8' | 'bf16' | 'f16' | 'f32', for
   * any checkpoint (rounded or quantized while packing where the checkpoint stores another
   * format). Default: 'mxfp4' for MXFP4 checkpoints (as stored), 'bf16' for BF16, 'f32' for F32
   * and F16 (lossless).
   */
  weightDtype?: LoadWeightDtype;
  /** Native threads of the layer; default: physical cores. */
  threads?: number;
  /**
   * Cancels the load: it rejects with an AbortError (code ERR_MOE_ABORTED) and frees everything
   * it allocated. Checked before every read of at most 16 MB and around each packing.
   */
  signal?: AbortSignal;
}

/** What `onProgress` of loadMoeLayers is told after each layer. */
export interface LoadProgress {
  /** The layer just loaded. */
  layer: number;
  /** Its position in the list being loaded (0-based), of `count`. */
  index: number;
  count: number;
  /** Bytes the loaded layers hold so far, of `bytesTotal` (as `estimate` counts them). */
  bytesDone: number;
  bytesTotal: number;
}

export interface EstimateOptions {
  /** MoE layers to count; default: all of `moeLayers`. */
  layers?: readonly number[];
  weightDtype?: LoadWeightDtype;
  /** Memory to compare with instead of what the system reports (MemAvailable, os.freemem()). */
  availableBytes?: number;
}

export interface LoadMoeLayersOptions extends LoadMoeLayerOptions, EstimateOptions {
  onProgress?: (progress: LoadProgress) => void;
}

/** What loading a set of layers will hold, from the headers only. */
export interface CheckpointEstimate {
  /** Per layer: the dtype it loads as and the bytes it will hold once packed (`block.bytes`). */
  layers: { layer: number; weightDtype: LoadWeightDtype; bytes: number }[];
  /** Sum of the layers' bytes. */
  bytes: number;
  /** Staging arrays of one layer, alive while it is packed (loadMoeLayers reuses them layer after layer). */
  stagingBytes: number;
  /** bytes + stagingBytes: the most a loadMoeLayers call adds while it runs. */
  peakBytes: number;
  /** Memory available now (or options.availableBytes), and where the figure comes from. */
  available: number;
  availableSource: string;
  /** peakBytes <= available. */
  fits: boolean;
}

/** What `inspect` shows about one MoE layer (from the headers only). */
export interface MoeLayerInfo {
  layer: number;
  tensors: TensorGroup[];
  /** How the checkpoint stores the expert weights: 'mxfp4' (U8 blocks + scales) or a float dtype. */
  weightFormat: StoredFormat;
  isW13Interleaved: boolean;
  /** W13 stored [E, H, 2I] (and W2 [E, I, H]) rather than out × in. */
  transposed: boolean;
  /** How the W13 layout was decided. */
  layoutReason: string;
  orientationReason: string;
  sharedExpert: { intermediateSize: number; gated: boolean } | null;
  /** The weightDtype used when none is given, and why. */
  defaultWeightDtype: LoadWeightDtype;
  defaultReason: string;
  /** Bytes of the layer's tensors in the files. */
  diskBytes: number;
  /** Bytes the loaded block holds (`block.bytes`: packed panels, f32 biases, routers) per weightDtype it can load as. */
  loadedBytes: Partial<Record<LoadWeightDtype, number>>;
  /** weightDtypes this layer cannot load as, and why (quantized formats need dimensions that are multiples of 32). */
  unsupported: Partial<Record<LoadWeightDtype, string>>;
}

/** MXFP4 blocks and scales as the checkpoint stores them, or values in the staging dtype. */
type Staged = WeightArray | Mxfp4Tensor;

/**
 * Staging arrays by role. loadMoeLayers keeps one pool for all its layers: they have the same
 * shapes, and the layer copies what it is given, so one set of arrays serves every layer.
 */
class StagingPool {
  readonly #arrays = new Map<string, ArrayBufferView>();

  take<T extends Float32Array | Uint16Array | Uint8Array>(role: string, ctor: { new (n: number): T }, length: number): T {
    const key = `${role}:${ctor.name}`;
    const cached = this.#arrays.get(key) as T | undefined;
    if (cached && cached.length === length) return cached;
    const array = new ctor(length);
    this.#arrays.set(key, array);
    return array;
  }

  /**
   * Drops the arrays. Where ArrayBuffer.prototype.transfer exists (Node >= 21) their memory is
   * freed at once (transfer(0) detaches them); on Node 20 at V8's next garbage collection.
   */
  release(): void {
    for (const a of this.#arrays.values()) (a.buffer as ArrayBuffer & { transfer?: (length: number) => ArrayBuffer }).transfer?.(0);
    this.#arrays.clear();
  }

  /** A staging array of values: f32, or 16-bit patterns (bf16 or f16). */
  values(role: string, stage: Exclude<StagingFormat, 'mxfp4'>, length: number): WeightArray {
    return stage === 'f32' ? this.take(role, Float32Array, length) : this.take(role, Uint16Array, length);
  }
}

/** A model folder whose config.json and safetensors headers have been read and checked. */
export class Checkpoint {
  readonly dir: string;
  readonly family: Family;
  /** How the family was recognised. */
  readonly familyReason: string;
  readonly config: CheckpointConfig;
  /** Indices of the layers that have an MoE block. */
  readonly moeLayers: readonly number[];
  /** The safetensors files read (absolute paths). */
  readonly files: readonly string[];
  /** Shards named by the index but absent from the folder: their tensors cannot be loaded. */
  readonly missingFiles: readonly string[];
  readonly #model: ModelConfig;
  readonly #tensors: TensorSet;
  readonly #configFile: string;

  /** Use `openCheckpoint(dir)`. */
  constructor(dir: string, model: ModelConfig, tensors: TensorSet) {
    this.dir = dir;
    this.family = model.family;
    this.familyReason = model.familyReason;
    this.config = model.config;
    this.moeLayers = Object.freeze([...model.moeLayers]);
    this.files = tensors.files.map((f) => f.path);
    this.missingFiles = tensors.missingFiles;
    this.#model = model;
    this.#tensors = tensors;
    this.#configFile = path.join(dir, 'config.json');
  }

  /** Tensors, layout and sizes of MoE layer n; throws CheckpointError if the checkpoint cannot give it. */
  layerInfo(layer: number): MoeLayerInfo {
    const plan = this.#plan(layer);
    const loadedBytes: Partial<Record<LoadWeightDtype, number>> = {};
    const unsupported: Partial<Record<LoadWeightDtype, string>> = {};
    for (const dtype of WEIGHT_DTYPES) {
      const reason = unsupportedReason(dtype, plan, this.config);
      if (reason) unsupported[dtype] = reason;
      else loadedBytes[dtype] = packedLayerBytes(plan, this.config, dtype);
    }
    return {
      layer,
      tensors: plan.groups,
      weightFormat: plan.weightFormat,
      isW13Interleaved: plan.interleaved,
      transposed: plan.transposed,
      layoutReason: plan.layoutReason,
      orientationReason: plan.orientationReason,
      sharedExpert: plan.shared && { intermediateSize: plan.shared.intermediateSize, gated: plan.shared.gateWeight !== null },
      defaultWeightDtype: plan.defaultWeightDtype,
      defaultReason: plan.defaultReason,
      diskBytes: plan.groups.reduce((a, g) => a + g.bytes, 0),
      loadedBytes,
      unsupported,
    };
  }

  /**
   * Reads the tensors of MoE layer n (positioned reads of those tensors only) and packs them into
   * a MoeBlock with its router. On any error nothing stays allocated.
   */
  async loadMoeLayer(layer: number, options: LoadMoeLayerOptions = {}): Promise<MoeBlock> {
    const o = object(options, 'options');
    const plan = this.#plan(layer);
    const dtype = this.#dtype(o.weightDtype, plan);
    const threads = o.threads === undefined ? undefined : threadCount(o.threads, 'threads');
    const reader = new TensorReader(optionalSignal(o.signal, 'signal'));
    reader.throwIfAborted();
    const pool = new StagingPool();
    try {
      return await this.#load(reader, plan, dtype, threads, pool);
    } finally {
      pool.release();
      await reader.close();
    }
  }

  /**
   * What loading `options.layers` (default: every MoE layer) as `options.weightDtype` will hold,
   * from the headers only, and whether it fits in the memory available now.
   */
  estimate(options: EstimateOptions = {}): CheckpointEstimate {
    return this.#estimate(object(options, 'options')).estimate;
  }

  /**
   * Loads several MoE layers (default: all, in order) with the options of loadMoeLayer, one after
   * another, reusing one set of staging arrays. Checks first (estimate) that they fit in the
   * memory available and throws a CheckpointError before reading anything if they do not.
   * `onProgress` is called after each layer. On any error (onProgress's too) the blocks already
   * built are disposed.
   */
  async loadMoeLayers(options: LoadMoeLayersOptions = {}): Promise<MoeBlock[]> {
    const o = object(options, 'options');
    const threads = o.threads === undefined ? undefined : threadCount(o.threads, 'threads');
    if (o.onProgress !== undefined && typeof o.onProgress !== 'function') {
      throw typeError(`onProgress: expected a function, got ${describe(o.onProgress)}`);
    }
    const onProgress = o.onProgress as LoadMoeLayersOptions['onProgress'];
    const signal = optionalSignal(o.signal, 'signal');
    const { estimate, plans } = this.#estimate(o);
    if (!estimate.fits) throw new CheckpointError({ file: this.dir, code: 'ERR_MOE_OUT_OF_MEMORY' }, this.#tooLarge(estimate, plans, o.weightDtype as LoadWeightDtype | undefined));
    const pool = new StagingPool();
    const reader = new TensorReader(signal);
    const blocks: MoeBlock[] = [];
    try {
      reader.throwIfAborted();
      let done = 0;
      for (let index = 0; index < plans.length; index++) {
        const { layer, weightDtype, bytes } = estimate.layers[index];
        blocks.push(await this.#load(reader, plans[index], weightDtype, threads, pool));
        done += bytes;
        onProgress?.({ layer, index, count: plans.length, bytesDone: done, bytesTotal: estimate.bytes });
      }
      return blocks;
    } catch (err) {
      for (const b of blocks) b.dispose();
      throw err;
    } finally {
      pool.release();
      await reader.close();
    }
  }

  #estimate(o: Record<string, unknown>): { estimate: CheckpointEstimate; plans: LayerPlan[] } {
    const layers = this.#layerList(o.layers);
    const requested = o.weightDtype === undefined ? undefined : oneOf(o.weightDtype, 'weightDtype', WEIGHT_DTYPES);
    let available: { bytes: number; source: string };
    if (o.availableBytes === undefined) available = availableMemory();
    else if (typeof o.availableBytes !== 'number') throw typeError(`availableBytes: expected a number of bytes, got ${describe(o.availableBytes)}`);
    else if (!(o.availableBytes >= 0) || !Number.isFinite(o.availableBytes)) throw rangeError(`availableBytes: expected a non-negative number of bytes, got ${o.availableBytes}`);
    else available = { bytes: o.availableBytes, source: 'options.availableBytes' };
    const plans = layers.map((n) => this.#plan(n));
    const entries = plans.map((plan) => {
      const weightDtype = this.#dtype(requested, plan);
      return { layer: plan.layer, weightDtype, bytes: packedLayerBytes(plan, this.config, weightDtype), staging: stagingBytes(plan, this.config, weightDtype) };
    });
    const bytes = entries.reduce((a, e) => a + e.bytes, 0);
    const staging = entries.reduce((a, e) => Math.max(a, e.staging), 0);
    return {
      plans,
      estimate: {
        layers: entries.map(({ layer, weightDtype, bytes: b }) => ({ layer, weightDtype, bytes: b })),
        bytes, stagingBytes: staging, peakBytes: bytes + staging,
        available: available.bytes, availableSource: available.source, fits: bytes + staging <= available.bytes,
      },
    };
  }

  /** The message of a load that does not fit, with the weightDtypes that would. */
  #tooLarge(e: CheckpointEstimate, plans: LayerPlan[], requested: LoadWeightDtype | undefined): string {
    const dtypes = [...new Set(e.layers.map((l) => l.weightDtype))];
    const gb = (n: number) => n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`;
    const alternatives = WEIGHT_DTYPES.filter((d) => d !== requested && !(dtypes.length === 1 && dtypes[0] === d))
      .filter((d) => plans.every((p) => !unsupportedReason(d, p, this.config)))
      .map((d) => {
        const peak = plans.reduce((a, p) => a + packedLayerBytes(p, this.config, d), 0) +
          plans.reduce((a, p) => Math.max(a, stagingBytes(p, this.config, d)), 0);
        return { d, peak };
      })
      .filter((x) => x.peak <= e.available);
    const layers = formatLayers(e.layers.map((l) => l.layer).sort((a, b) => a - b));
    return `loading MoE layers ${layers} (${e.layers.length}) as ${dtypes.join('/')} needs ${gb(e.peakBytes)} ` +
      `(${gb(e.bytes)} packed + ${gb(e.stagingBytes)} of staging arrays while a layer is packed), ` +
      `but ${gb(e.available)} is available (${e.availableSource}); nothing was loaded. ` +
      (alternatives.length
        ? `It fits as ${alternatives.map((x) => `weightDtype '${x.d}' (${gb(x.peak)})`).join(', ')}, or load fewer layers (options.layers)`
        : 'Load fewer layers (options.layers)');
  }

  #layerList(value: unknown): number[] {
    if (value === undefined) return [...this.moeLayers];
    if (!Array.isArray(value)) throw typeError(`layers: expected an array of MoE layer indices, got ${describe(value)}`);
    const seen = new Set<number>();
    value.forEach((n, i) => {
      if (typeof n !== 'number') throw typeError(`layers[${i}]: expected a layer index, got ${describe(n)}`);
      if (seen.has(n)) throw rangeError(`layers[${i}]: layer ${n} is listed twice`);
      seen.add(n);
    });
    return [...value] as number[];
  }

  /** The weightDtype of a load: validated, and checked against the layer's dimensions. */
  #dtype(value: unknown, plan: LayerPlan): LoadWeightDtype {
    if (value === undefined) return plan.defaultWeightDtype;
    const dtype = oneOf(value, 'weightDtype', WEIGHT_DTYPES);
    const reason = unsupportedReason(dtype, plan, this.config);
    if (reason) throw rangeError(`weightDtype: ${reason} (layer ${plan.layer})`);
    return dtype;
  }

  #plan(layer: number): LayerPlan {
    const L = this.config.numLayers;
    if (typeof layer !== 'number') throw typeError(`layer: expected a layer index, got ${describe(layer)}`);
    if (!Number.isSafeInteger(layer) || layer < 0 || layer >= L) {
      throw rangeError(`layer: expected an integer in [0, ${L}) (num_hidden_layers ${L}), got ${layer}`);
    }
    if (!this.moeLayers.includes(layer)) {
      throw rangeError(`layer: ${this.#model.denseReason(layer)}; MoE layers: ${formatLayers(this.moeLayers)}`);
    }
    return planLayer(this.family, this.config, this.#tensors, this.#configFile, layer);
  }

  async #load(reader: TensorReader, plan: LayerPlan, dtype: LoadWeightDtype, threads: number | undefined, pool: StagingPool): Promise<MoeBlock> {
    let experts: MoeLayer | null = null;
    let shared: { layer: MoeLayer; gate: WeightArray | null } | null = null;
    try {
      experts = await this.#loadExperts(reader, plan, dtype, threads, pool);
      reader.throwIfAborted();
      shared = plan.shared && await this.#loadShared(reader, plan.shared, dtype, threads, pool);
      reader.throwIfAborted();
      return new MoeBlock({
        experts,
        sharedExperts: shared?.layer,
        sharedExpertGate: shared?.gate ?? undefined,
        family: this.family,
        layer: plan.layer,
      });
    } catch (err) {
      experts?.dispose();
      shared?.layer.dispose();
      throw err;
    }
  }

  /** Biases: in the weight dtype for bf16 and f32 layers (as before), else f32 (exact from any stored dtype). */
  async #bias(reader: TensorReader, loc: TensorLocation | null, dtype: LoadWeightDtype): Promise<WeightArray | undefined> {
    if (!loc) return undefined;
    return reader.array(loc, dtype === 'bf16' ? Uint16Array : Float32Array);
  }

  // The routed experts, router included. Staging arrays come from `pool` (live as long as it does).
  async #loadExperts(reader: TensorReader, plan: LayerPlan, dtype: LoadWeightDtype, threads: number | undefined, pool: StagingPool): Promise<MoeLayer> {
    const c = this.config;
    const { hiddenSize: H, intermediateSize: I, numExperts: E } = c;
    const src = plan.experts;
    const stage = stagingFormat(plan.weightFormat, dtype);
    let w13: Staged, w2: Staged;
    if (stage === 'mxfp4') {
      if (src.kind !== 'mxfp4') throw internalError('mxfp4 staging of a float checkpoint');
      // The checkpoint's own bytes: blocks [E, 2I, H/32, 16] and scales [E, 2I, H/32], W13 rows
      // interleaved as stored (the packer resolves the layout).
      const take = (role: string, loc: TensorLocation) => pool.take(role, Uint8Array, loc.entry.end - loc.entry.begin);
      w13 = { blocks: take('w13.blocks', src.w13Blocks), scales: take('w13.scales', src.w13Scales) };
      w2 = { blocks: take('w2.blocks', src.w2Blocks), scales: take('w2.scales', src.w2Scales) };
      await Promise.all([
        reader.raw(src.w13Blocks, w13.blocks), reader.raw(src.w13Scales, w13.scales),
        reader.raw(src.w2Blocks, w2.blocks), reader.raw(src.w2Scales, w2.scales),
      ]);
    } else {
      const a13 = pool.values('w13', stage, E * 2 * I * H);
      const a2 = pool.values('w2', stage, E * H * I);
      const read = (loc: TensorLocation, dest: WeightArray, at = 0) => readValues(reader, stage, loc, dest, at);
      if (src.kind === 'mxfp4') {
        await reader.mxfp4(src.w13Blocks, src.w13Scales, a13);
        await reader.mxfp4(src.w2Blocks, src.w2Scales, a2);
      } else if (src.kind === 'fused') {
        await read(src.w13, a13);
        await read(src.w2, a2);
      } else {
        for (let e = 0; e < E; e++) {
          await read(src.gate[e], a13, e * 2 * I * H);
          await read(src.up[e], a13, (e * 2 + 1) * I * H);
          await read(src.down[e], a2, e * H * I);
        }
      }
      w13 = a13;
      w2 = a2;
    }
    let routing: Routing = c.routing;
    if (routing.mode === 'sigmoid-grouped' && plan.correctionBias) {
      const bias = finite(plan.correctionBias, await reader.array(plan.correctionBias, Float32Array)) as Float32Array;
      routing = { ...routing, correctionBias: bias };
    }
    // The weights may be pre-quantized { blocks, scales } (mxfp4); the layer takes them as they are.
    const options: MoeLayerOptions = {
      numExperts: E, hiddenSize: H, intermediateSize: I, topK: c.topK, activation: c.activation,
      isW13Interleaved: plan.interleaved, transposed: plan.transposed, weightDtype: dtype, w13, w2,
      w13Bias: await this.#bias(reader, plan.w13Bias, dtype),
      w2Bias: await this.#bias(reader, plan.w2Bias, dtype),
      swigluAlpha: c.swigluAlpha, swigluLimit: c.swigluLimit, routing, threads,
      routerWeight: finite(plan.routerWeight, await reader.router(plan.routerWeight)),
      routerBias: plan.routerBias ? finite(plan.routerBias, await reader.array(plan.routerBias, Float32Array)) : undefined,
    };
    return MoeLayer.create(options);
  }

  async #loadShared(reader: TensorReader, s: SharedPlan, dtype: LoadWeightDtype, threads: number | undefined, pool: StagingPool) {
    const H = this.config.hiddenSize, Is = s.intermediateSize;
    const stage = stagingFormat(s.format, dtype);
    if (stage === 'mxfp4') throw internalError('mxfp4 staging of a float shared expert');
    const w13 = pool.values('shared.w13', stage, 2 * Is * H);
    const w2 = pool.values('shared.w2', stage, H * Is);
    await readValues(reader, stage, s.gate, w13, 0);
    await readValues(reader, stage, s.up, w13, Is * H);
    await readValues(reader, stage, s.down, w2, 0);
    const gate: WeightArray | null = s.gateWeight && finite(s.gateWeight, await reader.router(s.gateWeight));
    const layer = await MoeLayer.create({
      numExperts: 1, hiddenSize: H, intermediateSize: Is, topK: 1, activation: this.config.activation,
      isW13Interleaved: false, weightDtype: dtype, w13, w2, threads,
    });
    return { layer, gate };
  }
}

/**
 * The routing tensors (router weight and bias, correction bias, shared expert gate) decide which
 * experts run: a NaN or an infinity there is refused when the layer is loaded, naming the tensor,
 * rather than met by every forward. f32 values, or bf16 bit patterns.
 */
function finite(loc: TensorLocation, values: WeightArray): WeightArray {
  const bad = values instanceof Uint16Array
    ? values.findIndex((b) => (b & 0x7f80) === 0x7f80)
    : values.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new CheckpointError({ file: loc.file.path, tensor: loc.entry.name, code: 'ERR_MOE_CHECKPOINT_TENSOR' },
      `element ${bad} is not a finite number: routing needs finite values`);
  }
  return values;
}

/** A float tensor into a staging array: f16 bits as stored, or converted to f32 / bf16. */
async function readValues(reader: TensorReader, stage: StagingFormat, loc: TensorLocation, dest: WeightArray, at: number): Promise<void> {
  if (stage === 'f16') await reader.f16Bits(loc, dest as Uint16Array, at);
  else await reader.floats(loc, dest, at);
}

/** "0-23" or "1, 3, 5-9": a compact list of layer indices. */
export function formatLayers(layers: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < layers.length; i++) {
    let j = i;
    while (j + 1 < layers.length && layers[j + 1] === layers[j] + 1) j++;
    parts.push(j > i ? `${layers[i]}-${layers[j]}` : `${layers[i]}`);
    i = j;
  }
  return parts.length ? parts.join(', ') : 'none';
}

/** Options of openCheckpoint. */
export interface OpenCheckpointOptions {
  /**
   * Cancels the open: checked before each file is read (config.json, the index, every header);
   * then it rejects with an AbortError (code ERR_MOE_ABORTED, the signal's reason as `cause`).
   * Files already opened are closed.
   */
  signal?: AbortSignal;
}

/** Reads config.json and the safetensors headers of a Hugging Face model folder (no weights). */
export async function openCheckpoint(dir: string, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  if (typeof dir !== 'string') throw typeError(`dir: expected a folder path, got ${describe(dir)}`);
  const signal = optionalSignal(object(options, 'options').signal, 'options.signal');
  const checkAborted = () => {
    if (signal?.aborted) throw abortError('openCheckpoint', signal.reason);
  };
  checkAborted();
  const abs = path.resolve(dir);
  const stat = await fs.stat(abs).catch(() => null);
  if (!stat?.isDirectory()) {
    throw new CheckpointError({ file: abs, code: 'ERR_MOE_CHECKPOINT_FILE' }, 'not a folder (expected a Hugging Face model folder with config.json and .safetensors files)');
  }
  checkAborted();
  const model = await readModelConfig(abs);
  const tensors = await openTensorSet(abs, checkAborted);
  checkAborted();
  checkLayerCount(model, tensors.layerIndices(), path.join(abs, 'config.json'));
  return new Checkpoint(abs, model, tensors);
}

/** openCheckpoint(dir) then loadMoeLayer(layer, options), in one call. */
export async function loadMoeLayer(dir: string, layer: number, options?: LoadMoeLayerOptions): Promise<MoeBlock> {
  const signal = options === undefined || options === null || typeof options !== 'object' ? undefined : (options as { signal?: AbortSignal }).signal;
  return (await openCheckpoint(dir, signal === undefined ? {} : { signal })).loadMoeLayer(layer, options);
}
