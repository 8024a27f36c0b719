// The cases `npm run bench:peers` runs by default: a preset (lib/presets.ts), a thread count
// ('all' = the physical cores) and the token counts. Every implementation of
// implementations.js runs every case. Command-line flags replace this list (see peers.js).
'use strict';

const TOKENS = [1, 4, 16, 64, 256, 512];

module.exports = [
  // The key comparison: one core, decode (T=1) and prefill (T=64).
  { preset: 'gpt-oss-20b', threads: 1, tokens: TOKENS },
  { preset: 'gpt-oss-20b', threads: 'all', tokens: TOKENS },
];
