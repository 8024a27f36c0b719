import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    // One native thread pool per process: run files one after another so timings and the
    // event-loop test are not distorted by another file's forward on the other core.
    fileParallelism: false,
  },
});
