// Command-line arguments: a strict parser and the value checks the commands share. A mistake
// in the command line itself (unknown command or option, a missing or malformed value) is a
// UsageError, which the CLI reports with exit code 2; everything else that fails (a folder
// that is not a checkpoint, a layer it lacks, memory) exits with 1.
import { ERR_INVALID_ARGUMENT } from '../errors';

/** A command line that cannot be right whatever the files say: exit code 2. */
export class UsageError extends RangeError {
  readonly code = ERR_INVALID_ARGUMENT;
}

export type OptionType = 'string' | 'boolean';
export type OptionSpec = Record<string, OptionType>;

/** Options every command takes. */
export const COMMON_OPTIONS: OptionSpec = { help: 'boolean', version: 'boolean', json: 'boolean' };
const SHORT: Record<string, string> = { '-h': 'help', '-v': 'version', '-V': 'version' };

export interface ParsedArgs {
  /** Option values by name; a boolean option given is true, a string option its last value. */
  values: Record<string, string | true | undefined>;
  positionals: string[];
}

/**
 * `--name value`, `--name=value`, boolean `--name`, `-h`/`-v`/`-V`, and `--` before positionals
 * that start with a dash. A string option takes the next argument unless that is another
 * `--option`, so `--layer -1` reaches the value check and is reported as a bad value.
 */
export function parseArgs(command: string, args: readonly string[], options: OptionSpec): ParsedArgs {
  const spec: OptionSpec = { ...COMMON_OPTIONS, ...options };
  const values: ParsedArgs['values'] = {};
  const positionals: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (SHORT[arg] !== undefined) {
      values[SHORT[arg]] = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.startsWith('--') ? arg.slice(2, eq < 0 ? undefined : eq) : '';
    const type = name === '' ? undefined : spec[name];
    if (type === undefined) {
      throw new UsageError(`unknown option '${eq < 0 ? arg : arg.slice(0, eq)}'${command ? ` for ${command}` : ''}`);
    }
    if (type === 'boolean') {
      if (eq >= 0) throw new UsageError(`--${name}: takes no value, got ${JSON.stringify(arg.slice(eq + 1))}`);
      values[name] = true;
    } else if (eq >= 0) {
      values[name] = arg.slice(eq + 1);
    } else if (i + 1 < args.length && !args[i + 1].startsWith('--')) {
      values[name] = args[++i];
    } else {
      throw new UsageError(`--${name}: expected a value`);
    }
  }
  return { values, positionals };
}

/** The value of a string option (undefined when not given). */
export function stringOption(parsed: ParsedArgs, name: string): string | undefined {
  const v = parsed.values[name];
  return v === true ? undefined : v;
}

const DIGITS = /^[0-9]+$/;

function integer(flag: string, value: string, min: number): number {
  const n = DIGITS.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new UsageError(`--${flag}: expected a ${min === 0 ? 'non-negative' : 'positive'} integer, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** A decimal integer ≥ 1 (no sign, exponent, hex or spaces). */
export function positiveInteger(flag: string, value: string): number {
  return integer(flag, value, 1);
}

/** A decimal integer ≥ 0. */
export function nonNegativeInteger(flag: string, value: string): number {
  return integer(flag, value, 0);
}

/** Comma-separated positive integers, e.g. `--tokens 1,4,64`. */
export function positiveIntegerList(flag: string, value: string): number[] {
  const parts = value.split(',');
  if (parts.some((p) => !DIGITS.test(p) || !(Number(p) >= 1) || !Number.isSafeInteger(Number(p)))) {
    throw new UsageError(`--${flag}: expected comma-separated positive integers, got ${JSON.stringify(value)}`);
  }
  return parts.map(Number);
}

/** One of `choices`. */
export function oneOf<T extends string>(flag: string, value: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(value)) {
    throw new UsageError(`--${flag}: expected one of ${choices.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

/** Comma-separated values of `choices`, at least one, each once. */
export function listOf<T extends string>(flag: string, value: string, choices: readonly T[]): T[] {
  const parts = value.split(',');
  if (parts.some((p) => !(choices as readonly string[]).includes(p)) || new Set(parts).size !== parts.length) {
    throw new UsageError(`--${flag}: expected one or more of ${choices.join(', ')} (comma-separated, each once), got ${JSON.stringify(value)}`);
  }
  return parts as T[];
}
