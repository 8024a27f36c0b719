// The error of a checkpoint that cannot be read as it is: its message, `file` and `tensor` say
// where and its `code` what kind of fault (bad arguments are TypeError / RangeError, as
// everywhere in the facade).
import type { MoeErrorCode } from '../errors';

/** The checkpoint codes, and ERR_MOE_OUT_OF_MEMORY for a load refused before it starts because it cannot fit. */
export type CheckpointErrorCode = Extract<MoeErrorCode, `ERR_MOE_CHECKPOINT_${string}` | 'ERR_MOE_OUT_OF_MEMORY'>;

export class CheckpointError extends Error {
  /** The file at fault (absolute path), when there is one. */
  readonly file: string | undefined;
  /** The tensor at fault, when there is one. */
  readonly tensor: string | undefined;
  /**
   * What is wrong: ERR_MOE_CHECKPOINT_FILE (missing, unreadable, not a regular file,
   * truncated, changed), _HEADER (a safetensors header or index that lies), _CONFIG
   * (config.json), _TENSOR (a tensor missing or of the wrong shape or dtype), _UNSUPPORTED
   * (a family, dtype or feature moe-cpu does not load); ERR_MOE_OUT_OF_MEMORY: loadMoeLayers
   * refused before reading anything because the layers would not fit in the memory available.
   */
  readonly code: CheckpointErrorCode;

  constructor(where: { file?: string | undefined; tensor?: string | undefined; code?: CheckpointErrorCode | undefined }, message: string,
    options?: ErrorOptions) {
    const prefix = [where.file, where.tensor].filter((s) => s !== undefined).join(': ');
    super(prefix ? `${prefix}: ${message}` : message, options);
    this.name = 'CheckpointError';
    this.file = where.file;
    this.tensor = where.tensor;
    this.code = where.code ?? 'ERR_MOE_CHECKPOINT_HEADER';
  }
}
