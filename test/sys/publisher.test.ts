import { describe, expect, it } from 'vitest'
import type { BrokerStatsSnapshot } from '../../src/broker/stats.js'
import type { GroupSummary } from '../../src/log/groups/types.js'
import { SysPublisher } from '../../src/sys/publisher.js'

// The $SYS publisher alone, with a fake clock and sources: mosquitto's load averages, publishing
// only what changed, and clearing the topics of a group that went away.

function snapshot(received: number): BrokerStatsSnapshot {
  return {
    startedAt: 0,
    clients: { connected: 1, byListener: { mqtt: 1, mqtts: 0, ws: 0, wss: 0 }, maximum: 1, disconnected: 0, accepted: 1 },
    sessions: 0,
    subscriptions: 0,
    retained: 0,
    packets: { received, sent: 0 },
    publish: { received: [received, 0, 0], sent: [0, 0, 0], dropped: 0 },
    bytes: { received: 0, sent: 0 },
    dropped: {}
  }
}

function setup(): { sys: SysPublisher; published: Array<[string, string]>; state: { now: number; received: number; groups: GroupSummary[] } } {
  const state = { now: 0, received: 0, groups: [] as GroupSummary[] }
  const published: Array<[string, string]> = []
  const sys = new SysPublisher(
    { broker: { snapshot: () => Promise.resolve(snapshot(state.received)) }, groups: { list: () => Promise.resolve(state.groups) } },
    {
      intervalMs: 10_000,
      now: () => state.now,
      version: 'culex version test',
      publish: (topic, payload) => {
        published.push([topic, payload.toString()])
        return Promise.resolve()
      },
      onError: (err) => {
        throw err
      }
    }
  )
  return { sys, published, state }
}

const last = (published: Array<[string, string]>, topic: string): string | undefined => published.filter(([t]) => t === topic).at(-1)?.[1]

describe('SysPublisher', () => {
  it("keeps mosquitto's load averages: a steady rate per minute is approached, faster over 1 min than 15 min", async () => {
    const { sys, published, state } = setup()
    await sys.tick()
    expect(last(published, '$SYS/broker/load/publish/received/1min')).toBe('0.00')
    // 600 publishes every 10 s: 3600 per minute
    for (let i = 0; i < 60; i++) {
      state.now += 10_000
      state.received += 600
      await sys.tick()
    }
    const one = Number(last(published, '$SYS/broker/load/publish/received/1min'))
    const fifteen = Number(last(published, '$SYS/broker/load/publish/received/15min'))
    expect(one).toBeCloseTo(3600, 0)
    // after 10 min, the 15 min average is 1 - e^(-600/900) of the way there
    expect(fifteen).toBeCloseTo(3600 * (1 - Math.exp(-600 / 900)), 0)
    expect(last(published, '$SYS/broker/uptime')).toBe('600 seconds')
  })

  it('publishes a topic again only when its value changed, and clears the topics of a group that went away', async () => {
    const { sys, published, state } = setup()
    state.groups = [{ group: 'g', state: 'empty', generation: 0, members: 0, streams: ['s'], lag: 3 }]
    await sys.tick()
    expect(last(published, '$SYS/culex/groups/g/lag')).toBe('3')
    expect(published.filter(([t]) => t === '$SYS/broker/version')).toHaveLength(1)
    published.length = 0
    state.groups = []
    state.now += 1000
    await sys.tick()
    expect(published.filter(([t]) => t === '$SYS/broker/version')).toHaveLength(0)
    expect(last(published, '$SYS/broker/uptime')).toBe('1 seconds')
    // an empty retained message deletes the retained value
    expect(last(published, '$SYS/culex/groups/g/lag')).toBe('')
    expect(last(published, '$SYS/culex/groups/g/members')).toBe('')
  })

  it('refuses to start without a positive interval', () => {
    expect(
      () =>
        new SysPublisher(
          { broker: { snapshot: () => Promise.resolve(snapshot(0)) } },
          { intervalMs: 0, publish: () => Promise.resolve(), onError: () => undefined }
        )
    ).toThrow(/sys-interval/)
  })
})
