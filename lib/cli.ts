#!/usr/bin/env node
// moe-cpu command line: one subcommand per file in lib/commands/. Exit codes: 0 done, 1 a
// failure (the command ran and something failed), 2 a usage error (the command line itself is
// wrong: it never ran). stdout carries the result only: the text report, or with --json one
// JSON object; progress, memory needs and errors go to stderr.
import * as fs from 'node:fs';
import * as path from 'node:path';

import { parseArgs, UsageError } from './commands/args';
import { benchCommand } from './commands/bench';
import type { Command, CommandOutput } from './commands/command';
import { inspectCommand } from './commands/inspect';
import { runCommand } from './commands/run';

const COMMANDS: Record<string, Command> = { bench: benchCommand, inspect: inspectCommand, run: runCommand };

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string };
  return pkg.version;
}

function globalUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return [
    `moe-cpu ${version()}: the Mixture-of-Experts layer of LLMs on the CPU`,
    '',
    'usage: moe-cpu <command> [options]',
    '       moe-cpu help <command>    the options of a command (also: moe-cpu <command> --help)',
    '       moe-cpu --version         the version (also -v, -V)',
    '',
    'commands:',
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'options of every command:',
    '  --json       one JSON object on stdout instead of the text report (progress stays on stderr)',
    '  --help, -h   the command\'s help',
    '',
    'exit codes: 0 done; 1 failed (a checkpoint that cannot be loaded, not enough memory, --verify',
    'out of tolerance); 2 usage error (unknown command or option, a missing or malformed value)',
  ].join('\n');
}

function commandUsage(name: string): string {
  return `usage: ${COMMANDS[name].usage}\n\noptions of every command: --json (one JSON object on stdout), --help (-h)`;
}

function findCommand(name: string): Command {
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) throw new UsageError(`unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
  return command;
}

/** What main decided: the exit code, and what to print where. */
async function main(argv: string[], json: boolean, out: CommandOutput): Promise<{ code: number; report?: Record<string, unknown> }> {
  // Options before the command name (`moe-cpu --json inspect dir`) belong to the command.
  const at = argv.findIndex((a) => !a.startsWith('-'));
  const name = at < 0 ? undefined : argv[at];
  const lead = at < 0 ? argv : argv.slice(0, at);
  const rest = at < 0 ? [] : [...argv.slice(at + 1), ...lead];

  if (name === undefined || name === 'help') {
    const parsed = parseArgs(name ?? '', name === undefined ? lead : rest, {});
    if (parsed.values.version) {
      out.print(version());
      return { code: 0, report: { name: 'moe-cpu', version: version() } };
    }
    if (parsed.positionals.length > 1) throw new UsageError(`help: expected one command name, got ${parsed.positionals.length}`);
    const topic = parsed.positionals[0];
    if (topic !== undefined) findCommand(topic);
    if (name === undefined && !parsed.values.help) {
      process.stderr.write(`${globalUsage()}\n`);
      throw new UsageError('no command given');
    }
    const usage = topic === undefined ? globalUsage() : commandUsage(topic);
    out.print(usage);
    return { code: 0, report: { command: topic ?? null, usage } };
  }

  const command = findCommand(name);
  const parsed = parseArgs(name, rest, command.options);
  if (parsed.values.help) {
    out.print(commandUsage(name));
    return { code: 0, report: { command: name, usage: commandUsage(name) } };
  }
  if (parsed.values.version) {
    out.print(version());
    return { code: 0, report: { name: 'moe-cpu', version: version() } };
  }
  const result = await command.run(parsed, out, rest);
  return { code: result.failed ? EXIT_FAILURE : 0, report: json ? { command: name, ...result.report } : undefined };
}

function errorReport(err: unknown, usage: boolean): Record<string, unknown> {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (e as { code?: unknown }).code;
  return { error: { usage, name: e.name, code: typeof code === 'string' ? code : null, message: e.message } };
}

const argv = process.argv.slice(2);
const dashDash = argv.indexOf('--');
const json = (dashDash < 0 ? argv : argv.slice(0, dashDash)).includes('--json');
const out: CommandOutput = { json, print: (line = '') => { if (!json) process.stdout.write(`${line}\n`); } };
const commandName = argv.find((a) => !a.startsWith('-'));
const prefix = `moe-cpu${commandName && Object.hasOwn(COMMANDS, commandName) ? ` ${commandName}` : ''}`;

main(argv, json, out).then(({ code, report }) => {
  if (json && report) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exitCode = code;
}, (err: unknown) => {
  const usage = err instanceof UsageError;
  process.stderr.write(`${prefix}: ${err instanceof Error ? err.message : String(err)}\n`);
  if (usage) process.stderr.write(`(${prefix === 'moe-cpu' ? 'moe-cpu --help' : `${prefix} --help`} for usage)\n`);
  if (json) process.stdout.write(`${JSON.stringify(errorReport(err, usage), null, 2)}\n`);
  process.exitCode = usage ? EXIT_USAGE : EXIT_FAILURE;
});
