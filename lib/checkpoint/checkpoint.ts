// openCheckpoint / loadMoeLayer: a Hugging Face model folder -> the MoE block of one layer.
import * as fs from './fsio';
import * as path from 'node:path';

import { MoeLayer, expertSubset, type MoeLayerOptions, type PerExpertMxfp4Tensor } from '../layer';
import type { Routing } from '../routing';
import { describe, object, oneOf, optionalBoolean, optionalSignal, positiveInteger, threadCount, type WeightArray } from '../validate';
import { MoeBlock } from './block';
import { checkLayerCount, readModelConfig, type CheckpointConfig, type Family, type ModelConfig } from './config';
import { CheckpointError } from './errors';
import { MXFP4_BLOCK, planLayer, type LayerPlan, type SharedPlan, type TensorGroup } from './families';
import {
  WEIGHT_DTYPES, packedLayerBytes, stagingBytes, stagingFormat, unsupportedReason,
  type LoadWeightDtype, type StagingFormat, type StoredFormat,
} from './formats';
import { availableMemory } from './memory';
import { PackedCache } from './cache';
import { TensorReader } from './read';
import { openTensorSet, type TensorLocation, type TensorSet } from './tensors';
import { abortError, internalError, typeError, rangeError } from '../errors';

export type { LoadWeightDtype } from './formats';

/** Options of `loadMoeLayer` (the function and the method). */
export interface LoadMoeLayerOptions {
  /**
   * What the packed expert weights are held as: 'mxfp4' | 'int8' | 'bf16' | 'f16' | 'f32', for
   * any checkpoint (rounded or quantized while packing where the checkpoint stores another
   * format).
   * @default 'mxfp4' for MXFP4 checkpoints (as stored), 'bf16' for BF16, 'f32' for F32 and F16 (lossless)
   */
  weightDtype?: LoadWeightDtype | undefined;
  /**
   * Native threads of the layer, 1 to 1024.
   * @default cpuInfo().threads (the physical cores available to the process)
   */
  threads?: number | undefined;
  /**
   * Cancels the load: it rejects with an AbortError (code ERR_MOE_ABORTED) and frees everything
   * it allocated. Checked before every read of at most 16 MB and around each packing.
   * @default undefined (not cancellable)
   */
  signal?: AbortSignal | undefined;
  /**
   * Load a subset of the routed experts (a model split by experts over processes or hosts):
   * their ids in [0, numExperts), increasing, or `{ first, count }`. Only their tensors are
   * read; the block's forward returns the partial output of the routes to them (see
   * `MoeLayerOptions.experts`), so the caller sums the partial outputs of the other parts.
   * The router is the whole model's.
   * @default all experts
   */
  experts?: readonly number[] | { first: number; count: number } | undefined;
  /**
   * Load the block's shared expert (where the family has one). In a model split by experts,
   * load it in one part only (false elsewhere), or its output is added once per part.
   * @default true
   */
  sharedExperts?: boolean | undefined;
}

/** What `onProgress` of loadMoeLayers is told after each layer. */
export interface LoadProgress {
  /** The layer just loaded. */
  layer: number;
  /** Its position in the list being loaded (0-based), of `count`. */
  index: number;
  /** Layers in the list being loaded. */
  count: number;
  /** Bytes the loaded layers hold so far, of `bytesTotal` (as `estimate` counts them). */
  bytesDone: number;
  /** Bytes all the layers will hold (`estimate().bytes`). */
  bytesTotal: number;
}

/**
 * Options of `ckpt.estimate`; `loadMoeLayers` takes them too. (`experts` and `sharedExperts`:
 * the part of each layer to count, as loadMoeLayer takes them.)
 */
export interface EstimateOptions extends Pick<LoadMoeLayerOptions, 'experts' | 'sharedExperts'> {
  /**
   * MoE layers to count (or load), each one of `moeLayers`, no repeats; loaded in this order.
   * @default ckpt.moeLayers (all of them)
   */
  layers?: readonly number[] | undefined;
  /**
   * As `LoadMoeLayerOptions.weightDtype`.
   * @default each layer's `defaultWeightDtype` (see `layerInfo`)
   */
  weightDtype?: LoadWeightDtype | undefined;
  /**
   * Memory to compare with instead of what the system reports, in bytes (meant for tests; the
   * environment variable MOE_CPU_AVAILABLE_MEMORY does the same).
   * @default MemAvailable of /proc/meminfo on Linux, os.freemem() elsewhere
   */
  availableBytes?: number | undefined;
}

/** Options of `ckpt.loadMoeLayers`. */
export interface LoadMoeLayersOptions extends LoadMoeLayerOptions, EstimateOptions {
  /**
   * Called after each layer is loaded; an exception it throws fails the load (the blocks built are disposed).
   * @default undefined (no progress reports)
   */
  onProgress?: ((progress: LoadProgress) => void) | undefined;
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

/**
 * Expert weights staged per expert (one array per expert, never one [E, ...] array: a tensor of
 * DeepSeek-V3's size is past the 2^32 elements of a Node 20 typed array, and E smaller
 * allocations are easier on the allocator than one of many GB): MXFP4 blocks and scales as the
 * checkpoint stores them, or values in the staging dtype.
 */
type Staged = Float32Array[] | Uint16Array[] | PerExpertMxfp4Tensor;

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

/** The part of each layer a load holds: the routed experts `ids` (null: all, `experts` of them) and the shared expert or not. */
interface LoadPart {
  ids: Uint32Array | null;
  experts: number;
  shared: boolean;
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
  readonly #cache: PackedCache | null;

  /** Use `openCheckpoint(dir)`. */
  constructor(dir: string, model: ModelConfig, tensors: TensorSet, cache: PackedCache | null = null) {
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
    this.#cache = cache;
  }

  /** The packed-layer cache folder (`openCheckpoint`'s `packedCache`), or null. */
  get packedCache(): string | null {
    return this.#cache?.dir ?? null;
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
    const part = this.#part(o);
    const reader = new TensorReader(optionalSignal(o.signal, 'signal'));
    reader.throwIfAborted();
    const pool = new StagingPool();
    try {
      return await this.#load(reader, plan, dtype, threads, pool, part);
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
    const part = this.#part(o);
    const { estimate, plans } = this.#estimate(o);
    if (!estimate.fits) throw new CheckpointError({ file: this.dir, code: 'ERR_MOE_OUT_OF_MEMORY' }, this.#tooLarge(estimate, plans, o.weightDtype as LoadWeightDtype | undefined, part));
    const pool = new StagingPool();
    const reader = new TensorReader(signal);
    const blocks: MoeBlock[] = [];
    try {
      reader.throwIfAborted();
      let done = 0;
      for (let index = 0; index < plans.length; index++) {
        const { layer, weightDtype, bytes } = estimate.layers[index];
        blocks.push(await this.#load(reader, plans[index], weightDtype, threads, pool, part));
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

  /** The part of each layer a load holds: the experts (`experts`), and the shared expert (`sharedExperts`). */
  #part(o: Record<string, unknown>): LoadPart {
    const ids = o.experts === undefined ? null : expertSubset(o.experts, this.config.numExperts);
    return { ids, experts: ids ? ids.length : this.config.numExperts, shared: optionalBoolean(o.sharedExperts, 'sharedExperts', true) };
  }

  #estimate(o: Record<string, unknown>): { estimate: CheckpointEstimate; plans: LayerPlan[] } {
    const part = this.#part(o);
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
      return { layer: plan.layer, weightDtype, bytes: packedLayerBytes(plan, this.config, weightDtype, part), staging: stagingBytes(plan, this.config, weightDtype, part) };
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
  #tooLarge(e: CheckpointEstimate, plans: LayerPlan[], requested: LoadWeightDtype | undefined, part: LoadPart): string {
    const dtypes = [...new Set(e.layers.map((l) => l.weightDtype))];
    const gb = (n: number) => n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} kB` : `${n} B`;
    const alternatives = WEIGHT_DTYPES.filter((d) => d !== requested && !(dtypes.length === 1 && dtypes[0] === d))
      .filter((d) => plans.every((p) => !unsupportedReason(d, p, this.config)))
      .map((d) => {
        const peak = plans.reduce((a, p) => a + packedLayerBytes(p, this.config, d, part), 0) +
          plans.reduce((a, p) => Math.max(a, stagingBytes(p, this.config, d, part)), 0);
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

  async #load(reader: TensorReader, plan: LayerPlan, dtype: LoadWeightDtype, threads: number | undefined, pool: StagingPool,
    part: LoadPart): Promise<MoeBlock> {
    let experts: MoeLayer | null = null;
    let shared: { layer: MoeLayer; gate: WeightArray | null } | null = null;
    const key = this.#cache?.key(plan.layer, dtype, part.ids ? { experts: [...part.ids], shared: part.shared } : part.shared ? undefined : { shared: false });
    try {
      const cached = key === undefined ? null : await this.#cache!.open(key, threads);
      if (cached) {
        experts = cached.experts;
        shared = cached.shared && { layer: cached.shared, gate: cached.gate };
      } else {
        experts = await this.#loadExperts(reader, plan, dtype, threads, pool, part.ids);
        reader.throwIfAborted();
        shared = plan.shared && part.shared ? await this.#loadShared(reader, plan.shared, dtype, threads, pool) : null;
        reader.throwIfAborted();
        if (key !== undefined) {
          // Saved, then mapped back: this process too holds the page-cache copy every other one shares.
          await this.#cache!.store(key, { experts, shared: shared?.layer ?? null, gate: shared?.gate ?? null });
          const mapped = await this.#cache!.open(key, threads, true);
          if (mapped) {
            experts.dispose();
            shared?.layer.dispose();
            experts = mapped.experts;
            shared = mapped.shared && { layer: mapped.shared, gate: mapped.gate };
          }
        }
      }
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
  /** Biases [E, n] (of the experts `ids` only, when given): in the weight dtype for bf16 and f32 layers, else f32. */
  async #bias(reader: TensorReader, loc: TensorLocation | null, dtype: LoadWeightDtype, ids: Uint32Array | null): Promise<WeightArray | undefined> {
    if (!loc) return undefined;
    const all = await reader.array(loc, dtype === 'bf16' ? Uint16Array : Float32Array);
    if (!ids) return all;
    const n = all.length / this.config.numExperts;
    const out = all instanceof Uint16Array ? new Uint16Array(ids.length * n) : new Float32Array(ids.length * n);
    ids.forEach((e, i) => out.set(all.subarray(e * n, (e + 1) * n), i * n));
    return out;
  }

  // The routed experts, router included. Staging arrays come from `pool` (live as long as it does).
  // `ids`: the experts to load (a subset), or null for all. Only their tensors are read.
  async #loadExperts(reader: TensorReader, plan: LayerPlan, dtype: LoadWeightDtype, threads: number | undefined, pool: StagingPool,
    ids: Uint32Array | null): Promise<MoeLayer> {
    const c = this.config;
    const { hiddenSize: H, intermediateSize: I, numExperts: E } = c;
    const held = ids ?? Uint32Array.from({ length: E }, (_, e) => e);
    const S = held.length;
    const src = plan.experts;
    const stage = stagingFormat(plan.weightFormat, dtype);
    let w13: Staged, w2: Staged;
    const perExpert13 = 2 * I * H, perExpert2 = H * I;
    if (stage === 'mxfp4') {
      if (src.kind !== 'mxfp4') throw internalError('mxfp4 staging of a float checkpoint');
      // The checkpoint's own bytes: expert e's blocks [2I, H/32, 16] and scales [2I, H/32] of the
      // stored [E, ...] tensors, W13 rows as stored (the packer resolves the layout).
      const slices = (role: string, loc: TensorLocation) => {
        const n = (loc.entry.end - loc.entry.begin) / E;
        return Array.from({ length: S }, (_, i) => pool.take(`${role}.${i}`, Uint8Array, n));
      };
      const m13 = { blocks: slices('w13.blocks', src.w13Blocks), scales: slices('w13.scales', src.w13Scales) };
      const m2 = { blocks: slices('w2.blocks', src.w2Blocks), scales: slices('w2.scales', src.w2Scales) };
      for (let i = 0; i < S; i++) {
        const at = (a: Uint8Array[]) => held[i] * a[i].length;
        await Promise.all([
          reader.raw(src.w13Blocks, m13.blocks[i], at(m13.blocks)), reader.raw(src.w13Scales, m13.scales[i], at(m13.scales)),
          reader.raw(src.w2Blocks, m2.blocks[i], at(m2.blocks)), reader.raw(src.w2Scales, m2.scales[i], at(m2.scales)),
        ]);
      }
      w13 = m13;
      w2 = m2;
    } else {
      const a13 = Array.from({ length: S }, (_, i) => pool.values(`w13.${i}`, stage, perExpert13));
      const a2 = Array.from({ length: S }, (_, i) => pool.values(`w2.${i}`, stage, perExpert2));
      for (let i = 0; i < S; i++) {
        const e = held[i];
        if (src.kind === 'mxfp4') {
          await reader.mxfp4(src.w13Blocks, src.w13Scales, a13[i], e * perExpert13 / MXFP4_BLOCK, perExpert13 / MXFP4_BLOCK);
          await reader.mxfp4(src.w2Blocks, src.w2Scales, a2[i], e * perExpert2 / MXFP4_BLOCK, perExpert2 / MXFP4_BLOCK);
        } else if (src.kind === 'fused') {
          // Expert e's slice of the stored [E, 2I, H] / [E, H, I] (or transposed) tensors.
          await readValues(reader, stage, src.w13, a13[i], 0, e * perExpert13, perExpert13);
          await readValues(reader, stage, src.w2, a2[i], 0, e * perExpert2, perExpert2);
        } else {
          await readValues(reader, stage, src.gate[e], a13[i], 0);
          await readValues(reader, stage, src.up[e], a13[i], I * H);
          await readValues(reader, stage, src.down[e], a2[i], 0);
        }
      }
      w13 = a13 as Float32Array[] | Uint16Array[];
      w2 = a2 as Float32Array[] | Uint16Array[];
    }
    let routing: Routing = c.routing;
    if (routing.mode === 'sigmoid-grouped' && plan.correctionBias) {
      const bias = finite(plan.correctionBias, await reader.array(plan.correctionBias, Float32Array)) as Float32Array;
      routing = { ...routing, correctionBias: bias };
    }
    // The weights may be pre-quantized { blocks, scales } (mxfp4); the layer takes them as they are.
    // The cast: stagingFormat picked arrays that `dtype` takes, a pairing the compiler cannot follow.
    const options = {
      numExperts: E, ...(ids ? { experts: [...ids] } : {}), hiddenSize: H, intermediateSize: I, topK: c.topK, activation: c.activation,
      isW13Interleaved: plan.interleaved, transposed: plan.transposed, weightDtype: dtype, w13, w2,
      w13Bias: await this.#bias(reader, plan.w13Bias, dtype, ids),
      w2Bias: await this.#bias(reader, plan.w2Bias, dtype, ids),
      swigluAlpha: c.swigluAlpha, swigluLimit: c.swigluLimit, routing, threads,
      routerWeight: finite(plan.routerWeight, await reader.router(plan.routerWeight)),
      routerBias: plan.routerBias ? finite(plan.routerBias, await reader.array(plan.routerBias, Float32Array)) : undefined,
    } as MoeLayerOptions;
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
    // The cast: the staging arrays are of a type `dtype` takes (stagingFormat), as for the routed experts.
    const layer = await MoeLayer.create({
      numExperts: 1, hiddenSize: H, intermediateSize: Is, topK: 1, activation: this.config.activation,
      isW13Interleaved: false, weightDtype: dtype, w13, w2, threads,
    } as MoeLayerOptions);
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
async function readValues(reader: TensorReader, stage: StagingFormat, loc: TensorLocation, dest: WeightArray, at: number,
  first?: number, count?: number): Promise<void> {
  if (stage === 'f16') await reader.f16Bits(loc, dest as Uint16Array, at, first, count);
  else await reader.floats(loc, dest, at, first, count);
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
   * @default undefined (not cancellable)
   */
  signal?: AbortSignal | undefined;
  /**
   * A folder for packed layers: loadMoeLayer(s) packs a layer once, saves it there as
   * packed-layer files, and maps it afterwards — in this process and every other one that
   * opens the checkpoint with the same folder (one copy per host, in the page cache). Entries
   * are keyed by config.json, the tensor files' names, sizes and modification times, the layer,
   * the weightDtype and moe-cpu's version; written atomically, safe when several processes fill
   * the folder at once. Created if missing.
   * @default no cache: every load packs
   */
  packedCache?: string | undefined;
}

/** Reads config.json and the safetensors headers of a Hugging Face model folder (no weights). */
export async function openCheckpoint(dir: string, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  if (typeof dir !== 'string') throw typeError(`dir: expected a folder path, got ${describe(dir)}`);
  const o = object(options, 'options');
  const signal = optionalSignal(o.signal, 'options.signal');
  if (o.packedCache !== undefined && (typeof o.packedCache !== 'string' || o.packedCache === '')) {
    throw typeError(`options.packedCache: expected a folder path, got ${describe(o.packedCache)}`);
  }
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
  const cache = o.packedCache === undefined ? null : await PackedCache.of(o.packedCache as string, path.join(abs, 'config.json'), tensors.files);
  return new Checkpoint(abs, model, tensors, cache);
}

/** openCheckpoint(dir) then loadMoeLayer(layer, options), in one call. */
export async function loadMoeLayer(dir: string, layer: number, options?: LoadMoeLayerOptions): Promise<MoeBlock> {
  const signal = options === undefined || options === null || typeof options !== 'object' ? undefined : (options as { signal?: AbortSignal }).signal;
  return (await openCheckpoint(dir, signal === undefined ? {} : { signal })).loadMoeLayer(layer, options);
}
