// Coalescing of concurrent forward calls on one layer: one call with 8 tokens costs far less
// than 8 calls with 1 (the expert weights stream once for all of them), so a service that gets
// one token per request can batch them without changing its code.
import { abortError, rangeError, typeError } from './errors';
import type { ForwardOptions, MoeLayer, Route } from './layer';
import { activationArray, describe, object, optionalSignal, positiveInteger, type WeightArray } from './validate';

export interface BatcherOptions {
  /**
   * Tokens one native call takes at most, a positive integer; a larger call runs on its own.
   * @default 64
   */
  maxTokens?: number | undefined;
  /**
   * How long the first call of a batch waits for others, in ms, a non-negative number; 0: until
   * the current turn of the event loop ends, so calls made together go together.
   * @default 0
   */
  maxDelayMs?: number | undefined;
}

type Kind = 'router' | 'logits' | 'ids';

interface Pending {
  hidden: WeightArray;
  tokens: number;
  route: Route | undefined;
  signal: AbortSignal | undefined;
  resolve: (out: WeightArray) => void;
  reject: (err: unknown) => void;
}

/**
 * `forward` of one MoeLayer, with the calls made close together run as one native call of up to
 * `maxTokens` tokens; each caller gets its own rows. Calls go together when they have the same
 * activation dtype and the same kind of route (the layer's router, logits, or ids and weights).
 * Results equal separate calls bit for bit while the batch stays in the same kernel regime
 * (fewer than `layer.kernels.prefillMinTokensPerExpert` tokens per selected expert on average);
 * a batch that crosses into the prefill regime is within the precision contract instead.
 */
export class ForwardBatcher {
  readonly layer: MoeLayer;
  readonly maxTokens: number;
  readonly maxDelayMs: number;
  #queue: Pending[] = [];
  #key = '';
  #tokens = 0;
  #timer: ReturnType<typeof setTimeout> | ReturnType<typeof setImmediate> | null = null;

  constructor(layer: MoeLayer, options: BatcherOptions = {}) {
    const o = object(options, 'options');
    this.layer = layer;
    this.maxTokens = o.maxTokens === undefined ? 64 : positiveInteger(o.maxTokens, 'options.maxTokens');
    if (o.maxDelayMs !== undefined && (typeof o.maxDelayMs !== 'number' || !(o.maxDelayMs >= 0) || !Number.isFinite(o.maxDelayMs))) {
      throw (typeof o.maxDelayMs === 'number' ? rangeError : typeError)(
        `options.maxDelayMs: expected a non-negative number of milliseconds, got ${describe(o.maxDelayMs)}`);
    }
    this.maxDelayMs = (o.maxDelayMs as number | undefined) ?? 0;
  }

  /** As `layer.forward`; may wait up to `maxDelayMs` for company. */
  forward<T extends WeightArray>(hiddenArg: T, route?: Route, options?: ForwardOptions): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const hidden = activationArray(hiddenArg, 'hidden');
      const H = this.layer.hiddenSize;
      if (hidden.length % H !== 0) {
        throw rangeError(`hidden: expected a length that is a multiple of hiddenSize (${H}), got ${hidden.length}`);
      }
      const signal = options === undefined ? undefined : optionalSignal(object(options, 'options').signal, 'options.signal');
      if (signal?.aborted) throw abortError('forward', signal.reason);
      const tokens = hidden.length / H;
      const kind = routeKind(route, tokens, this.layer);
      if (kind === null || tokens >= this.maxTokens) {
        // Not batchable (a route of the wrong shape, reported by the layer itself) or big enough alone.
        this.layer.forward(hidden, route, options).then(resolve as never, reject);
        return;
      }
      const key = `${hidden instanceof Uint16Array ? 'bf16' : 'f32'}:${kind}`;
      // A copy: the caller may reuse its arrays as soon as forward returns, as with layer.forward.
      const call: Pending = { hidden: hidden.slice(), tokens, route: copyRoute(route), signal, resolve: resolve as never, reject };
      if (this.#queue.length && (key !== this.#key || this.#tokens + tokens > this.maxTokens)) this.flush();
      this.#key = key;
      this.#queue.push(call);
      this.#tokens += tokens;
      if (this.#tokens >= this.maxTokens) this.flush();
      else if (!this.#timer) {
        this.#timer = this.maxDelayMs > 0 ? setTimeout(() => this.flush(), this.maxDelayMs) : setImmediate(() => this.flush());
      }
    });
  }

  /** Runs the calls waiting now as one native call. */
  flush(): void {
    if (this.#timer) {
      clearTimeout(this.#timer as ReturnType<typeof setTimeout>);
      clearImmediate(this.#timer as ReturnType<typeof setImmediate>);
      this.#timer = null;
    }
    const calls = this.#queue;
    this.#queue = [];
    this.#tokens = 0;
    if (calls.length) this.#run(calls);
  }

  #run(all: Pending[]): void {
    const calls = all.filter((c) => {
      if (!c.signal?.aborted) return true;
      c.reject(abortError('forward', c.signal.reason));
      return false;
    });
    if (!calls.length) return;
    if (calls.length === 1) {
      const [c] = calls;
      this.layer.forward(c.hidden, c.route).then(c.resolve, c.reject);
      return;
    }
    const H = this.layer.hiddenSize;
    const total = calls.reduce((n, c) => n + c.tokens, 0);
    const hidden = new (calls[0].hidden.constructor as new (n: number) => WeightArray)(total * H);
    let at = 0;
    for (const c of calls) {
      hidden.set(c.hidden as never, at * H);
      at += c.tokens;
    }
    this.layer.forward(hidden, joinRoutes(calls, total, this.layer)).then((out) => {
      let row = 0;
      for (const c of calls) {
        c.resolve(out.slice(row * H, (row + c.tokens) * H));
        row += c.tokens;
      }
    }, (err) => {
      // One bad call must not fail the others: each is retried alone to get its own outcome.
      for (const c of calls) this.layer.forward(c.hidden, c.route).then(c.resolve, c.reject);
      void err;
    });
  }
}

/** The kind of a well-formed route of `tokens` tokens, or null (the layer will say what is wrong). */
function routeKind(route: Route | undefined, tokens: number, layer: MoeLayer): Kind | null {
  if (route === undefined) return layer.hasRouter ? 'router' : null;
  if (typeof route !== 'object' || route === null) return null;
  const r = route as Record<string, unknown>;
  if (r.logits !== undefined) {
    return r.logits instanceof Float32Array && r.logits.length === tokens * layer.numExperts ? 'logits' : null;
  }
  const n = tokens * layer.topK;
  return r.ids instanceof Int32Array && r.ids.length === n && r.weights instanceof Float32Array && r.weights.length === n ? 'ids' : null;
}

function copyRoute(route: Route | undefined): Route | undefined {
  if (route === undefined) return undefined;
  const r = route as Record<string, unknown>;
  if (r.logits !== undefined) return { logits: (r.logits as Float32Array).slice() };
  return { ids: (r.ids as Int32Array).slice(), weights: (r.weights as Float32Array).slice() };
}

function joinRoutes(calls: Pending[], total: number, layer: MoeLayer): Route | undefined {
  const first = calls[0].route as Record<string, unknown> | undefined;
  if (first === undefined) return undefined;
  const join = <A extends Float32Array | Int32Array>(get: (c: Pending) => A, width: number): A => {
    const out = new (get(calls[0]).constructor as new (n: number) => A)(total * width);
    let row = 0;
    for (const c of calls) {
      const part = get(c);
      out.set(part as never, row * width);
      row += c.tokens;
    }
    return out;
  };
  if (first.logits !== undefined) return { logits: join((c) => (c.route as { logits: Float32Array }).logits, layer.numExperts) };
  return {
    ids: join((c) => (c.route as { ids: Int32Array }).ids, layer.topK),
    weights: join((c) => (c.route as { weights: Float32Array }).weights, layer.topK),
  };
}
