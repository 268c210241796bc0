import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // the default ports are held during the run: no test may depend on them (test/setup/default-ports.ts)
    globalSetup: ['test/setup/default-ports.ts'],
    exclude: ['test/node/**', 'node_modules/**', 'dist/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Gateways run as child processes on free ports; two files at a time fit 2 cores.
    maxWorkers: 2,
    minWorkers: 1
  }
})
