// The published types, checked by the compiler: test/types/*.mts (the ESM entry) and *.cts (the
// CommonJS entry) under strict, exactOptionalPropertyTypes and skipLibCheck false. Each
// `// @ts-expect-error` line there is a mistake the types must reject; one they accept is
// TS2578 ("Unused '@ts-expect-error' directive"), so a type that got looser fails here.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { ROOT, buildPackage, tsc } from './tsc';

const TYPES = path.join(ROOT, 'test', 'types');

beforeAll(buildPackage, 120_000);

describe('type tests', () => {
  test('test/types compiles, every @ts-expect-error line is an error', () => {
    const r = tsc(['-p', path.join(TYPES, 'tsconfig.json')]);
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  test('the type tests cover both entry points and expect errors', () => {
    const files = fs.readdirSync(TYPES);
    expect(files.filter((f) => f.endsWith('.mts')).length).toBeGreaterThan(0);
    expect(files.filter((f) => f.endsWith('.cts')).length).toBeGreaterThan(0);
    const expected = files.filter((f) => /\.[mc]ts$/.test(f))
      .map((f) => fs.readFileSync(path.join(TYPES, f), 'utf8').match(/@ts-expect-error/g)?.length ?? 0);
    expect(expected.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(20);
  });

  // The harness itself: an expected error that does not happen fails the compile.
  test('an @ts-expect-error over correct code fails the check (TS2578)', () => {
    // Inside the package, as test/types is, so that 'moe-cpu' resolves to this package.
    const file = path.join(TYPES, `.harness-${process.pid}.mts`);
    fs.writeFileSync(file, "import { cpuInfo, type KernelSet } from 'moe-cpu';\n" +
      '// @ts-expect-error\nconst k: KernelSet = cpuInfo().kernel;\nexport { k };\n');
    try {
      const r = tsc(['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', file]);
      expect(r.output).toMatch(/TS2578/);
      expect(r.status).not.toBe(0);
    } finally {
      fs.rmSync(file);
    }
  });
});
