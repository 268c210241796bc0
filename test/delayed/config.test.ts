import { describe, expect, it } from 'vitest'
import { ConfigError, DEFAULTS, describeKeys, loadConfig } from '../../src/config/index.js'

// The delayed section: delayed-enabled, delayed-max-delay, delayed-max-messages.

describe('the delayed config section', () => {
  it('is on by default, with a 7 day longest delay and 100,000 pending at most', () => {
    expect(DEFAULTS).toMatchObject({ delayedEnabled: true, delayedMaxDelayMs: 7 * 86_400_000, delayedMaxMessages: 100_000 })
    expect(describeKeys().map((k) => k.key)).toEqual(expect.arrayContaining(['delayed-enabled', 'delayed-max-delay', 'delayed-max-messages']))
  })

  it('takes durations with units, up to EMQX limit of 4294967 s, and 0 for no bound on pending entries', () => {
    const c = loadConfig({ env: { CULEX_DELAYED_MAX_DELAY: '12h' }, flags: { 'delayed-max-messages': '0', 'delayed-enabled': 'false' } })
    expect(c).toMatchObject({ delayedEnabled: false, delayedMaxDelayMs: 43_200_000, delayedMaxMessages: 0 })
    expect(loadConfig({ env: {}, flags: { 'delayed-max-delay': '4294967s' } }).delayedMaxDelayMs).toBe(4_294_967_000)
    expect(loadConfig({ env: {}, flags: { 'delayed-max-delay': '1s' } }).delayedMaxDelayMs).toBe(1000)
  })

  it.each([
    [{ 'delayed-max-delay': '4294968s' }, /delayed-max-delay \(flag --delayed-max-delay\): "4294968s"; expected .*from 1s to 4294967s/],
    [{ 'delayed-max-delay': '500ms' }, /delayed-max-delay .*from 1s/],
    [{ 'delayed-max-delay': 'soon' }, /delayed-max-delay .*"soon"/],
    [{ 'delayed-max-messages': '-1' }, /delayed-max-messages .*"-1"; expected an integer >= 0 \(0 = no limit\)/],
    [{ 'delayed-max-messages': 'lots' }, /delayed-max-messages/],
    [{ 'delayed-enabled': 'maybe' }, /delayed-enabled .*"maybe"; expected true or false/]
  ])('refuses %j with a message naming the key', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, flags })).toThrow(message)
  })
})
