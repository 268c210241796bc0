import { describe, expect, it } from 'vitest'
import { ConfigError, DEFAULTS, loadConfig } from '../../src/config/index.js'

describe('sys-interval', () => {
  it("defaults to 10 s (mosquitto's sys_interval) and takes a duration or 0 (off)", () => {
    expect(DEFAULTS.sysIntervalMs).toBe(10_000)
    expect(loadConfig({ env: {}, flags: { 'sys-interval': '1s' } }).sysIntervalMs).toBe(1000)
    expect(loadConfig({ env: { CULEX_SYS_INTERVAL: '1m' }, flags: {} }).sysIntervalMs).toBe(60_000)
    for (const off of ['0', 0]) expect(loadConfig({ env: {}, flags: { 'sys-interval': off } }).sysIntervalMs).toBe(0)
  })

  it.each([['soon'], ['500ms'], ['-1s'], ['999']])('refuses %j with a message naming the key', (raw) => {
    const flags = { 'sys-interval': raw }
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, flags })).toThrow(new RegExp(`sys-interval \\(flag --sys-interval\\): "${raw}"; expected 0 \\(off\\), or .*at least 1s`))
  })
})
