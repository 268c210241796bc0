import { describe, expect, it } from 'vitest'
import { ConfigError, DEFAULTS, loadConfig } from '../src/config/index.js'
import { storeWatermarks } from '../src/config/sections/limits.js'

// store-high-water / store-low-water (limits section): the store's backlog over which publishers
// are held and HTTP producers get 429.

const MiB = 1024 * 1024

describe('store-high-water and store-low-water', () => {
  it('default to 64 MiB and half of it', () => {
    const c = loadConfig({ env: {} })
    expect(c).toMatchObject({ storeHighWater: 64 * MiB, storeLowWater: null })
    expect(storeWatermarks(c)).toEqual({ high: 64 * MiB, low: 32 * MiB })
    expect(storeWatermarks(DEFAULTS)).toEqual({ high: 64 * MiB, low: 32 * MiB })
  })

  it('take sizes with units, from flags, the environment and the file, and the low mark defaults to half of the high one', () => {
    expect(storeWatermarks(loadConfig({ env: {}, flags: { 'store-high-water': '16MiB', 'store-low-water': '4MiB' } }))).toEqual({
      high: 16 * MiB,
      low: 4 * MiB
    })
    expect(storeWatermarks(loadConfig({ env: { CULEX_STORE_HIGH_WATER: '10MB' } }))).toEqual({ high: 10_000_000, low: 5_000_000 })
    expect(storeWatermarks(loadConfig({ env: { CULEX_STORE_LOW_WATER: '0' } }))).toEqual({ high: 64 * MiB, low: 0 })
  })

  it('are off with store-high-water 0', () => {
    const c = loadConfig({ env: {}, flags: { 'store-high-water': '0' } })
    expect(c.storeHighWater).toBe(0)
    expect(storeWatermarks(c).high).toBe(0)
  })

  it.each([
    [{ 'store-high-water': '8MiB', 'store-low-water': '8MiB' }, /store-low-water \(8388608\) must be below store-high-water \(8388608\)/],
    [{ 'store-high-water': '8MiB', 'store-low-water': '9MiB' }, /store-low-water \(9437184\) must be below store-high-water \(8388608\)/],
    [{ 'store-low-water': '64MiB' }, /store-low-water \(67108864\) must be below store-high-water \(67108864\)/],
    [{ 'store-high-water': '0', 'store-low-water': '1MiB' }, /store-low-water \(1048576\) is set but store-high-water is 0/],
    [{ 'store-high-water': '10KiB' }, /store-high-water \(flag --store-high-water\): "10KiB"; expected .*at least 64KiB, or 0 for no limit/],
    [{ 'store-high-water': 'lots' }, /store-high-water.*"lots"/],
    [{ 'store-low-water': '-1' }, /store-low-water \(flag --store-low-water\): "-1"/]
  ])('refuses %j with a message naming the key', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, flags })).toThrow(message)
  })
})
