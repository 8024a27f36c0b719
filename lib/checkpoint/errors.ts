// The error of a checkpoint that cannot be read as it is: its message, `file` and `tensor` say
// where (bad arguments are TypeError / RangeError, as everywhere in the facade).
export class CheckpointError extends Error {
  /** The file at fault (absolute path), when there is one. */
  readonly file: string | undefined;
  /** The tensor at fault, when there is one. */
  readonly tensor: string | undefined;

  constructor(where: { file?: string; tensor?: string }, message: string, options?: ErrorOptions) {
    const prefix = [where.file, where.tensor].filter((s) => s !== undefined).join(': ');
    super(prefix ? `${prefix}: ${message}` : message, options);
    this.name = 'CheckpointError';
    this.file = where.file;
    this.tensor = where.tensor;
  }
}
