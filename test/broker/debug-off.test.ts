import { createRequire } from 'node:module'
import { describe, expect, it } from 'vitest'
import { silenceDebugWhenOff } from '../../src/broker/debug-off.js'

const require = createRequire(import.meta.url)
const fromMqttPacket = createRequire(createRequire(require.resolve('aedes')).resolve('mqtt-packet'))

describe('debug output of the MQTT stack', () => {
  it('stays as it is when DEBUG is set (someone is debugging)', () => {
    expect(silenceDebugWhenOff({ DEBUG: 'mqtt-packet:*' })).toBe(false)
  })

  it('is a no-op logger that says it is disabled when DEBUG is unset', () => {
    expect(silenceDebugWhenOff({})).toBe(true)
    const createDebug = fromMqttPacket('debug') as ((ns: string) => { (...a: unknown[]): void; enabled: boolean; extend(ns: string): { enabled: boolean } }) & {
      CULEX_SILENT?: boolean
    }
    expect(createDebug.CULEX_SILENT).toBe(true)
    const log = createDebug('mqtt-packet:parser')
    expect(log.enabled).toBe(false)
    expect(log('parse: %s', 'x')).toBeUndefined()
    expect(log.extend('sub').enabled).toBe(false)
  })
})
