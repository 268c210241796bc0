import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig } from '../../src/config/index.js'
import { tempDataDir } from '../helpers/gateway-process.js'

// The common part of a bridge's config (the `bridges` list): every refusal names the path of the
// bad value. The kinds' own `target:` / `source:` keys are tested beside each kind.

const hook = { url: 'http://127.0.0.1:9/in' }

function load(doc: Record<string, unknown>): ReturnType<typeof loadConfig> {
  const file = join(tempDataDir('bridge-config'), 'culex.yaml')
  writeFileSync(file, stringify({ streams: { orders: { partitions: 3 }, audit: null }, ...doc }))
  return loadConfig({ env: {}, flags: { config: file } })
}

const out = (extra: Record<string, unknown>): Record<string, unknown> => ({
  name: 'b',
  kind: 'webhook',
  direction: 'out',
  streams: ['orders'],
  target: hook,
  ...extra
})

describe('bridges config', () => {
  it('fills the defaults of an outbound bridge', () => {
    const [b] = load({ bridges: [out({})] }).bridges
    expect(b).toMatchObject({
      name: 'b',
      kind: 'webhook',
      direction: 'out',
      streams: ['orders'],
      startAt: 'earliest',
      batchSize: 100,
      deadLetter: null,
      retry: { backoff: { initialMs: 200, maxMs: 30_000, multiplier: 2, jitter: 0.2 }, maxAttempts: 0 }
    })
  })

  it('takes retry, batch-size, start-at and dead-letter', () => {
    const [b] = load({
      bridges: [
        out({
          'retry': { 'initial': '1s', 'max': '2m', 'multiplier': 3, 'jitter': 0, 'max-attempts': 5 },
          'batch-size': 500,
          'start-at': 'latest',
          'dead-letter': 'orders-dead',
          'streams': 'orders'
        })
      ]
    }).bridges
    expect(b).toMatchObject({
      startAt: 'latest',
      batchSize: 500,
      deadLetter: 'orders-dead',
      streams: ['orders'],
      retry: { backoff: { initialMs: 1000, maxMs: 120_000, multiplier: 3, jitter: 0 }, maxAttempts: 5 }
    })
  })

  it.each([
    [{ bridges: {} }, /invalid value for bridges in .*expected a list of bridges/],
    [{ bridges: [out({ name: 'a b' })] }, /bridges\[0\]\.name.*"a b"/],
    [{ bridges: [out({ kind: 'kafka' })] }, /bridges\[0\]\.kind.*"kafka".*there is no Kafka bridge/],
    [{ bridges: [out({ direction: 'both' })] }, /bridges\[0\]\.direction.*'out' \(log -> target\) or 'in'/],
    [{ bridges: [out({ streams: ['nope'] })] }, /bridges\[0\]\.streams\[0\].*"nope".*streams defined under streams \(orders, audit\)/],
    [{ bridges: [out({ streams: [] })] }, /bridges\[0\]\.streams.*\[\]/],
    [{ bridges: [out({ 'batch-size': 0 })] }, /bridges\[0\]\.batch-size.*an integer from 1 to 10000/],
    [{ bridges: [out({ 'start-at': 'middle' })] }, /bridges\[0\]\.start-at.*'earliest' or 'latest'/],
    [{ bridges: [out({ retry: { initial: 'soon' } })] }, /bridges\[0\]\.retry\.initial.*"soon"/],
    [{ bridges: [out({ retry: { initial: '10s', max: '1s' } })] }, /bridges\[0\]\.retry\.max.*>= initial/],
    [{ bridges: [out({ retry: { jitter: 2 } })] }, /bridges\[0\]\.retry\.jitter.*from 0 to 1/],
    [{ bridges: [out({ retry: { 'max-attempts': -1 } })] }, /bridges\[0\]\.retry\.max-attempts/],
    [{ bridges: [out({ retry: { backof: 1 } })] }, /unknown key "backof" in bridges\[0\]\.retry/],
    [{ bridges: [out({ 'dead-letter': 'orders' })] }, /bridges\[0\]\.dead-letter.*a stream the bridge does not carry/],
    [{ bridges: [out({ target: undefined })] }, /bridges\[0\]\.target.*the webhook target/],
    [{ bridges: [out({ source: {} })] }, /unknown key "source" in bridges\[0\]/],
    [{ bridges: [{ name: 'w', kind: 'webhook', direction: 'in', source: {} }] }, /bridges\[0\]\.direction.*a webhook bridge has no inbound direction/],
    [{ bridges: [out({}), out({})] }, /bridges\[1\]\.name.*a name no other bridge has/],
    [{ bridges: [out({ typo: 1 })] }, /unknown key "typo" in bridges\[0\]/]
  ])('refuses %j naming the bad value', (doc, message) => {
    expect(() => load(doc)).toThrow(ConfigError)
    expect(() => load(doc)).toThrow(message)
  })
})
