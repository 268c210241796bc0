import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/node/**', 'node_modules/**', 'dist/**'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Gateways run as child processes on free ports; two files at a time fit 2 cores.
    maxWorkers: 2,
    minWorkers: 1
  }
})
