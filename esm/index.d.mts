// Types of the ESM entry (esm/index.mjs): the same names as the CommonJS build, declared as an
// ES module so that `import` resolves to ESM types (a .d.ts here would be read as CommonJS).
export * from '../dist/index.js';
import * as moeCpu from '../dist/index.js';
export default moeCpu;
