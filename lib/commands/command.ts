// What a subcommand of the CLI is: its help text, its options, and a function that returns the
// object `--json` prints. Commands write their text report through `print`, which --json mode
// drops, so stdout holds either the text or the object and nothing else; progress goes to stderr.
import type { OptionSpec, ParsedArgs } from './args';

export interface CommandOutput {
  readonly json: boolean;
  /** A line of the text report on stdout; nothing in --json mode. */
  print(line?: string): void;
}

export interface CommandResult {
  /** What `--json` prints: a plain object, the same fields on every run. */
  report: Record<string, unknown>;
  /** The command ran but found a failure (a layer that cannot load, a failed --verify): exit code 1. */
  failed: boolean;
}

export interface Command {
  /** One line for the list of commands. */
  summary: string;
  /** The command's help text: synopsis and what each option does. */
  usage: string;
  options: OptionSpec;
  /** `args` as given, for commands that re-run themselves in a child process. */
  run(parsed: ParsedArgs, out: CommandOutput, args: readonly string[]): Promise<CommandResult>;
}
