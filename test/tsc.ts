// Runs the TypeScript compiler for the type tests and the examples, against the package as
// users get it: 'moe-cpu' resolves through package.json "exports" to dist/ and esm/.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');

export interface TscResult {
  status: number | null;
  /** tsc's diagnostics, one per line (`file(line,col): error TSxxxx: …`). */
  output: string;
}

export function tsc(args: string[]): TscResult {
  const r = spawnSync(process.execPath, [TSC, '--pretty', 'false', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, output: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** The lib/ sources whose dist/ output (.js and .d.ts) is missing or older than the source. */
function staleSources(): string[] {
  const lib = path.join(ROOT, 'lib'), dist = path.join(ROOT, 'dist');
  return (fs.readdirSync(lib, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts')).filter((f) => {
    const source = fs.statSync(path.join(lib, f)).mtimeMs;
    return ['.js', '.d.ts'].some((ext) => {
      const out = path.join(dist, f.replace(/\.ts$/, ext));
      return !fs.existsSync(out) || fs.statSync(out).mtimeMs < source;
    });
  });
}

/**
 * Compiles lib/ into dist/ (what `npm run prepare` does) unless dist/ is newer than every
 * source, so that the declarations checked are those of the sources under test, never a stale build.
 */
export function buildPackage(): void {
  if (staleSources().length === 0) return;
  const r = tsc(['-p', 'tsconfig.json']);
  if (r.status !== 0) throw new Error(`tsc -p tsconfig.json failed:\n${r.output}`);
}
