import { spawnSync } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, DEFAULTS, loadConfig } from '../src/config.js'
import { CLI, tempDataDir } from './helpers/gateway-process.js'

describe('loadConfig', () => {
  it('defaults to localhost, the standard ports, ./data and fsync', () => {
    const c = loadConfig({ env: {} })
    expect(c).toEqual(DEFAULTS)
    expect(c).toMatchObject({ host: '127.0.0.1', mqttPort: 1883, wsPort: 8083, wsPath: '/mqtt', dataDir: './data', durability: 'fsync' })
  })

  it('layers file < environment < flags', () => {
    const dir = tempDataDir('config')
    const file = join(dir, 'culex.yaml')
    writeFileSync(file, 'mqtt-port: 1000\nws-port: 2000\ndurability: none\nlog-level: debug\n')
    const c = loadConfig({
      env: { CULEX_CONFIG: file, CULEX_WS_PORT: '3000', CULEX_MQTT_PORT: '3001' },
      flags: { 'mqtt-port': '4000' }
    })
    expect(c).toMatchObject({ mqttPort: 4000, wsPort: 3000, durability: 'none', logLevel: 'debug' })
  })

  it('reads JSON config files and "off" listeners', () => {
    const dir = tempDataDir('config')
    const file = join(dir, 'culex.json')
    writeFileSync(file, JSON.stringify({ 'ws-port': 'off', 'data-dir': '/var/lib/culex' }))
    expect(loadConfig({ env: {}, flags: { config: file } })).toMatchObject({ wsPort: null, dataDir: '/var/lib/culex' })
  })

  it.each([
    [{ flags: { 'mqtt-port': 'abc' } }, /mqtt-port \(flag --mqtt-port\): "abc"; expected a port 0-65535/],
    [{ env: { CULEX_MQTT_PORT: '70000' } }, /mqtt-port \(environment variable CULEX_MQTT_PORT\): "70000"/],
    [{ flags: { durability: 'sometimes' } }, /durability.*"sometimes"; expected "fsync" or "none"/],
    [{ flags: { 'log-level': 'loud' } }, /log-level.*expected fatal, error, warn, info, debug, trace, silent/],
    [{ flags: { 'ws-path': 'mqtt' } }, /ws-path.*starting with \//],
    [{ flags: { 'tls-cert': '/x.pem' } }, /tls-cert and tls-key must be given together/],
    [{ flags: { 'mqtt-port': '1883', 'ws-port': '1883' } }, /ws-port and mqtt-port are both 1883/],
    [{ flags: { host: '0.0.0.0' } }, /host 0\.0\.0\.0 is not loopback.*allow-anonymous/],
    [{ flags: { 'max-connections': '0' } }, /max-connections.*positive integer/]
  ])('refuses %j with a message naming the key', (sources, message) => {
    expect(() => loadConfig({ env: {}, ...sources })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, ...sources })).toThrow(message)
  })

  it('refuses unknown keys in a config file (typos are not ignored)', () => {
    const file = join(tempDataDir('config'), 'culex.yaml')
    writeFileSync(file, 'mqtt_port: 1884\n')
    expect(() => loadConfig({ env: {}, flags: { config: file } })).toThrow(/unknown key "mqtt_port"/)
  })

  it('accepts a non-loopback host when anonymous access is explicitly allowed', () => {
    expect(loadConfig({ env: {}, flags: { host: '0.0.0.0', 'allow-anonymous': 'true' } })).toMatchObject({ host: '0.0.0.0', allowAnonymous: true })
  })
})

describe('culex start with a bad value', () => {
  it('exits non-zero with a clear message and touches no data', () => {
    const dataDir = join(tempDataDir('badconfig'), 'data')
    const r = spawnSync(process.execPath, [CLI, 'start', '--data-dir', dataDir, '--mqtt-port', 'eighteen'], { encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/culex: invalid value for mqtt-port \(flag --mqtt-port\): "eighteen"/)
    expect(existsSync(dataDir)).toBe(false)
  })

  it('names the environment variable when that is where the bad value came from', () => {
    const dataDir = join(tempDataDir('badconfig'), 'data')
    const r = spawnSync(process.execPath, [CLI, 'start', '--data-dir', dataDir], {
      encoding: 'utf8',
      env: { ...process.env, CULEX_DURABILITY: 'maybe' }
    })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/environment variable CULEX_DURABILITY/)
    expect(existsSync(dataDir)).toBe(false)
  })
})
