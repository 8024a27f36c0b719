// The API reference against the declarations users get (dist/index.d.ts, read with the
// TypeScript compiler): docs/api.md names every export and every option, and every optional
// option says its default in JSDoc (`@default`, shown by editors) and accepts `undefined`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import ts from 'typescript';
import { beforeAll, describe, expect, test } from 'vitest';
import { ROOT, buildPackage } from './tsc';

let checker: ts.TypeChecker;
let exported: ts.Symbol[] = [];
const api = fs.readFileSync(path.join(ROOT, 'docs', 'api.md'), 'utf8');

beforeAll(() => {
  buildPackage();
  const program = ts.createProgram([path.join(ROOT, 'dist', 'index.d.ts')], { strict: true, types: [] });
  checker = program.getTypeChecker();
  const source = program.getSourceFile(path.join(ROOT, 'dist', 'index.d.ts'))!;
  exported = checker.getExportsOfModule(checker.getSymbolAtLocation(source)!);
}, 120_000);

/** The exported interfaces that are options (what a caller passes), with all their properties. */
function optionTypes(): { name: string; properties: ts.Symbol[] }[] {
  return exported.filter((s) => /(Options|OptionsOf|Routing|Shape)$/.test(s.name) && s.name !== 'Routing').map((s) => {
    const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s;
    const type = checker.getDeclaredTypeOfSymbol(target);
    // MoeLayerOptionsOf<D> is generic: its properties as declared are those of every D.
    return { name: s.name, properties: checker.getPropertiesOfType(type) };
  });
}

describe('docs/api.md and the JSDoc', () => {
  test('the declarations export what the reference describes', () => {
    expect(exported.length).toBeGreaterThan(50);
    expect(optionTypes().map((t) => t.name)).toEqual(expect.arrayContaining(
      ['MoeLayerBaseOptions', 'MoeLayerOptionsOf', 'ForwardOptions', 'BatcherOptions', 'LoadMoeLayerOptions', 'SigmoidGroupedRouting']));
  });

  test('docs/api.md names every export', () => {
    const missing = exported.map((s) => s.name).filter((name) => !api.includes(`\`${name}`));
    expect(missing).toEqual([]);
  });

  test('docs/api.md names every option of every options type', () => {
    const missing = optionTypes().flatMap((t) => t.properties.map((p) => p.name)
      .filter((name) => !new RegExp(`\`${name}\\??\`|\`${name}[?:]`).test(api)).map((name) => `${t.name}.${name}`));
    expect(missing).toEqual([]);
  });

  test('every optional option has a @default in its JSDoc', () => {
    const optional = optionTypes().flatMap((t) => t.properties.filter((p) => p.flags & ts.SymbolFlags.Optional).map((p) => ({ t, p })));
    expect(optional.length).toBeGreaterThan(30);
    const missing = optional.filter(({ p }) => !p.getJsDocTags(checker).some((tag) => tag.name === 'default'))
      .map(({ t, p }) => `${t.name}.${p.name}`);
    expect(missing).toEqual([]);
  });
});
