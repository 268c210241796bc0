import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, DEFAULTS, loadConfig } from '../src/config/index.js'
import { tempDataDir } from './helpers/gateway-process.js'

describe('dedup', () => {
  it('defaults to a 2 minute window (as NATS JetStream) and 100000 ids', () => {
    expect(DEFAULTS).toMatchObject({ dedupWindowMs: 120_000, dedupMaxKeys: 100_000 })
  })

  it('takes the window as a duration or off, and the bound, from the file, the environment and flags', () => {
    const file = join(tempDataDir('config'), 'culex.yaml')
    writeFileSync(file, 'dedup-window: 10m\ndedup-max-keys: 5000\n')
    expect(loadConfig({ env: {}, flags: { config: file } })).toMatchObject({ dedupWindowMs: 600_000, dedupMaxKeys: 5000 })
    expect(loadConfig({ env: { CULEX_DEDUP_WINDOW: '30s' }, flags: { 'dedup-max-keys': '1' } })).toMatchObject({ dedupWindowMs: 30_000, dedupMaxKeys: 1 })
    for (const off of ['off', '0', 0]) expect(loadConfig({ env: {}, flags: { 'dedup-window': off } }).dedupWindowMs).toBe(0)
    expect(loadConfig({ env: {}, flags: { 'dedup-window': '7d' } }).dedupWindowMs).toBe(7 * 86_400_000)
  })

  it.each([
    [{ 'dedup-window': 'soon' }, /dedup-window \(flag --dedup-window\): "soon"; expected .*duration.*at most 7d; or off \(0\)/],
    [{ 'dedup-window': '8d' }, /dedup-window.*"8d"/],
    [{ 'dedup-window': '-1s' }, /dedup-window.*"-1s"/],
    [{ 'dedup-max-keys': '0' }, /dedup-max-keys \(flag --dedup-max-keys\): "0"; expected an integer from 1 to 10000000/],
    [{ 'dedup-max-keys': '10000001' }, /dedup-max-keys.*"10000001"/],
    [{ 'dedup-max-keys': 'lots' }, /dedup-max-keys.*"lots"/]
  ])('refuses %j with a message naming the key', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, flags })).toThrow(message)
  })
})
