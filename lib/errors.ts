// Every error moe-cpu throws carries a stable `code` (the table is in docs/errors.md):
// bad arguments are TypeError (wrong type, missing) or RangeError (wrong value, length,
// range) with code ERR_MOE_INVALID_ARGUMENT; the rest have their own codes.

export const ERR_INVALID_ARGUMENT = 'ERR_MOE_INVALID_ARGUMENT';
export const ERR_DISPOSED = 'ERR_MOE_DISPOSED';
export const ERR_OUT_OF_MEMORY = 'ERR_MOE_OUT_OF_MEMORY';
export const ERR_NO_BINARY = 'ERR_MOE_NO_BINARY';
export const ERR_INTERNAL = 'ERR_MOE_INTERNAL';
export const ERR_ABORTED = 'ERR_MOE_ABORTED';

export type MoeErrorCode =
  | typeof ERR_INVALID_ARGUMENT | typeof ERR_DISPOSED | typeof ERR_OUT_OF_MEMORY | typeof ERR_NO_BINARY
  | typeof ERR_INTERNAL | typeof ERR_ABORTED
  | 'ERR_MOE_CHECKPOINT_FILE' | 'ERR_MOE_CHECKPOINT_HEADER' | 'ERR_MOE_CHECKPOINT_CONFIG'
  | 'ERR_MOE_CHECKPOINT_TENSOR' | 'ERR_MOE_CHECKPOINT_UNSUPPORTED'
  | LayerFileErrorCode;

/**
 * A packed-layer file (`layer.save`, `MoeLayer.open`) that is not one, is truncated or corrupt
 * (`ERR_MOE_LAYER_FILE`), was written for another file version, architecture or panel layout
 * (`ERR_MOE_LAYER_FILE_INCOMPATIBLE`: pack and save the layer again), or cannot be read or
 * written (`ERR_MOE_LAYER_FILE_IO`: the message has the OS error).
 */
export type LayerFileErrorCode = 'ERR_MOE_LAYER_FILE' | 'ERR_MOE_LAYER_FILE_INCOMPATIBLE' | 'ERR_MOE_LAYER_FILE_IO';

export class LayerFileError extends Error {
  readonly code: LayerFileErrorCode;
  /** The file. */
  readonly path: string;

  constructor(code: LayerFileErrorCode, path: string, message: string) {
    super(message);
    this.name = 'LayerFileError';
    this.code = code;
    this.path = path;
  }
}

/** An error of moe-cpu: its `code` is one of the documented ones. */
export type CodedError<E extends Error = Error> = E & { code: MoeErrorCode };

function withCode<E extends Error>(error: E, code: MoeErrorCode): CodedError<E> {
  Object.defineProperty(error, 'code', { value: code, enumerable: true, writable: true, configurable: true });
  return error as CodedError<E>;
}

/** A wrong type or a missing argument; the message starts with the argument's name. */
export function typeError(message: string, options?: ErrorOptions): CodedError<TypeError> {
  return withCode(new TypeError(message, options), ERR_INVALID_ARGUMENT);
}

/** A wrong value, length or range; the message starts with the argument's name. */
export function rangeError(message: string, options?: ErrorOptions): CodedError<RangeError> {
  return withCode(new RangeError(message, options), ERR_INVALID_ARGUMENT);
}

/** A layer or block used after dispose(). */
export function disposedError(what: string): CodedError<Error> {
  return withCode(new Error(`${what}: this ${what === 'MoeBlock' ? 'block' : 'layer'} was disposed; create a new one`), ERR_DISPOSED);
}

/** A bug of moe-cpu, never the caller's fault. */
export function internalError(message: string): CodedError<Error> {
  return withCode(new Error(`moe-cpu internal error: ${message}`), ERR_INTERNAL);
}

export function codedError<E extends Error>(error: E, code: MoeErrorCode): CodedError<E> {
  return withCode(error, code);
}

/** An operation cancelled through its AbortSignal: name 'AbortError', the signal's reason as cause. */
export function abortError(what: string, reason: unknown): CodedError<Error> {
  const error = new Error(`${what}: aborted`, { cause: reason });
  error.name = 'AbortError';
  return withCode(error, ERR_ABORTED);
}
