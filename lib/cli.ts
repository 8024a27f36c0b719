#!/usr/bin/env node
// moe-cpu command line: one subcommand per file in lib/commands/.
import { bench, BENCH_USAGE } from './commands/bench';
import { inspect, INSPECT_USAGE } from './commands/inspect';
import { run, RUN_USAGE } from './commands/run';

const COMMANDS: Record<string, { usage: string; run: (args: string[]) => Promise<void> }> = {
  bench: { usage: BENCH_USAGE, run: bench },
  inspect: { usage: INSPECT_USAGE, run: inspect },
  run: { usage: RUN_USAGE, run },
};

const USAGE = `usage:\n${Object.values(COMMANDS).map((c) => `  ${c.usage}`).join('\n')}`;

async function main(argv: string[]): Promise<void> {
  const [name, ...args] = argv;
  const command = name === undefined ? undefined : COMMANDS[name];
  if (!command || args.includes('--help') || args.includes('-h')) {
    console.log(USAGE);
    process.exitCode = command || name === '--help' || name === '-h' ? 0 : 2;
    return;
  }
  await command.run(args);
}

main(process.argv.slice(2)).catch((err: Error) => {
  console.error(`moe-cpu: ${err.message}`);
  process.exitCode = 1;
});
