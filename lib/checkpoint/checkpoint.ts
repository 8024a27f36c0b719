// openCheckpoint / loadMoeLayer: a Hugging Face model folder -> the MoE block of one layer.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';

import { MoeLayer, type MoeLayerOptions, type WeightDtype } from '../layer';
import type { Routing } from '../routing';
import { describe, object, oneOf, positiveInteger, type WeightArray } from '../validate';
import { MoeBlock } from './block';
import { readModelConfig, type CheckpointConfig, type Family, type ModelConfig } from './config';
import { CheckpointError } from './errors';
import { loadedBytes, planLayer, type LayerPlan, type SharedPlan, type TensorGroup } from './families';
import { TensorReader } from './read';
import { openTensorSet, type TensorSet } from './tensors';

export interface LoadMoeLayerOptions {
  /** Dtype of the packed expert weights; default: 'bf16' for BF16 and MXFP4 checkpoints, else 'f32' (lossless). */
  weightDtype?: WeightDtype;
  /** Native threads of the layer; default: physical cores. */
  threads?: number;
}

/** What `inspect` shows about one MoE layer (from the headers only). */
export interface MoeLayerInfo {
  layer: number;
  tensors: TensorGroup[];
  /** 'mxfp4' (decoded at load), or the float dtype of the expert weights. */
  weightFormat: 'mxfp4' | 'bf16' | 'f16' | 'f32';
  isW13Interleaved: boolean;
  /** W13 stored [E, H, 2I] (and W2 [E, I, H]) rather than out × in. */
  transposed: boolean;
  /** How the W13 layout was decided. */
  layoutReason: string;
  orientationReason: string;
  sharedExpert: { intermediateSize: number; gated: boolean } | null;
  defaultWeightDtype: WeightDtype;
  /** Bytes of the layer's tensors in the files. */
  diskBytes: number;
  /** Bytes of the loaded block's weights per weight dtype (`bytes` adds any padding of the packed layout). */
  loadedBytes: Record<WeightDtype, number>;
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
      diskBytes: plan.groups.reduce((a, g) => a + g.bytes, 0),
      loadedBytes: { f32: loadedBytes(plan, this.config, 'f32'), bf16: loadedBytes(plan, this.config, 'bf16') },
    };
  }

  /**
   * Reads the tensors of MoE layer n (positioned reads of those tensors only) and packs them into
   * a MoeBlock with its router. On any error nothing stays allocated.
   */
  async loadMoeLayer(layer: number, options: LoadMoeLayerOptions = {}): Promise<MoeBlock> {
    const o = object(options, 'options');
    const plan = this.#plan(layer);
    const dtype = o.weightDtype === undefined ? plan.defaultWeightDtype : oneOf(o.weightDtype, 'weightDtype', ['f32', 'bf16'] as const);
    const threads = o.threads === undefined ? undefined : positiveInteger(o.threads, 'threads');
    const reader = new TensorReader();
    let experts: MoeLayer | null = null;
    let shared: { layer: MoeLayer; gate: WeightArray | null } | null = null;
    try {
      experts = await this.#loadExperts(reader, plan, dtype, threads);
      shared = plan.shared && await this.#loadShared(reader, plan.shared, dtype, threads);
      return new MoeBlock({
        experts,
        sharedExperts: shared?.layer,
        sharedExpertGate: shared?.gate ?? undefined,
        family: this.family,
        layer,
      });
    } catch (err) {
      experts?.dispose();
      shared?.layer.dispose();
      throw err;
    } finally {
      await reader.close();
    }
  }

  #plan(layer: number): LayerPlan {
    const L = this.config.numLayers;
    if (typeof layer !== 'number') throw new TypeError(`layer: expected a layer index, got ${describe(layer)}`);
    if (!Number.isSafeInteger(layer) || layer < 0 || layer >= L) {
      throw new RangeError(`layer: expected an integer in [0, ${L}) (num_hidden_layers ${L}), got ${layer}`);
    }
    if (!this.moeLayers.includes(layer)) {
      throw new RangeError(`layer: ${this.#model.denseReason(layer)}; MoE layers: ${formatLayers(this.moeLayers)}`);
    }
    return planLayer(this.family, this.config, this.#tensors, this.#configFile, layer);
  }

  // The routed experts, router included. Staging arrays live only inside this call.
  async #loadExperts(reader: TensorReader, plan: LayerPlan, dtype: WeightDtype, threads: number | undefined): Promise<MoeLayer> {
    const c = this.config;
    const { hiddenSize: H, intermediateSize: I, numExperts: E } = c;
    const ctor = dtype === 'bf16' ? Uint16Array : Float32Array;
    const w13 = new ctor(E * 2 * I * H);
    const w2 = new ctor(E * H * I);
    const src = plan.experts;
    if (src.kind === 'mxfp4') {
      await reader.mxfp4(src.w13Blocks, src.w13Scales, w13);
      await reader.mxfp4(src.w2Blocks, src.w2Scales, w2);
    } else if (src.kind === 'fused') {
      await reader.floats(src.w13, w13);
      await reader.floats(src.w2, w2);
    } else {
      for (let e = 0; e < E; e++) {
        await reader.floats(src.gate[e], w13, e * 2 * I * H);
        await reader.floats(src.up[e], w13, (e * 2 + 1) * I * H);
        await reader.floats(src.down[e], w2, e * H * I);
      }
    }
    let routing: Routing = c.routing;
    if (routing.mode === 'sigmoid-grouped' && plan.correctionBias) {
      routing = { ...routing, correctionBias: await reader.array(plan.correctionBias, Float32Array) as Float32Array };
    }
    const options: MoeLayerOptions = {
      numExperts: E, hiddenSize: H, intermediateSize: I, topK: c.topK, activation: c.activation,
      isW13Interleaved: plan.interleaved, transposed: plan.transposed, weightDtype: dtype, w13, w2,
      w13Bias: plan.w13Bias ? await reader.array(plan.w13Bias, ctor) : undefined,
      w2Bias: plan.w2Bias ? await reader.array(plan.w2Bias, ctor) : undefined,
      swigluAlpha: c.swigluAlpha, swigluLimit: c.swigluLimit, routing, threads,
      routerWeight: await reader.router(plan.routerWeight),
      routerBias: plan.routerBias ? await reader.array(plan.routerBias, Float32Array) : undefined,
    };
    return new MoeLayer(options);
  }

  async #loadShared(reader: TensorReader, s: SharedPlan, dtype: WeightDtype, threads: number | undefined) {
    const H = this.config.hiddenSize, Is = s.intermediateSize;
    const ctor = dtype === 'bf16' ? Uint16Array : Float32Array;
    const w13 = new ctor(2 * Is * H);
    const w2 = new ctor(H * Is);
    await reader.floats(s.gate, w13, 0);
    await reader.floats(s.up, w13, Is * H);
    await reader.floats(s.down, w2);
    const gate: WeightArray | null = s.gateWeight && await reader.router(s.gateWeight);
    const layer = new MoeLayer({
      numExperts: 1, hiddenSize: H, intermediateSize: Is, topK: 1, activation: this.config.activation,
      isW13Interleaved: false, weightDtype: dtype, w13, w2, threads,
    });
    return { layer, gate };
  }
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

/** Reads config.json and the safetensors headers of a Hugging Face model folder (no weights). */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  if (typeof dir !== 'string') throw new TypeError(`dir: expected a folder path, got ${describe(dir)}`);
  const abs = path.resolve(dir);
  const stat = await fs.stat(abs).catch(() => null);
  if (!stat?.isDirectory()) throw new CheckpointError({ file: abs }, 'not a folder (expected a Hugging Face model folder with config.json and .safetensors files)');
  const model = await readModelConfig(abs);
  const tensors = await openTensorSet(abs);
  return new Checkpoint(abs, model, tensors);
}

/** openCheckpoint(dir) then loadMoeLayer(layer, options), in one call. */
export async function loadMoeLayer(dir: string, layer: number, options?: LoadMoeLayerOptions): Promise<MoeBlock> {
  return (await openCheckpoint(dir)).loadMoeLayer(layer, options);
}
