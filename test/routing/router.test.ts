import { describe, expect, it } from 'vitest'
import { Router } from '../../src/routing/router.js'
import { keyFor, type RouteConfig, type RouteKey } from '../../src/routing/routes.js'

const none: RouteKey = { kind: 'none' }
const route = (filter: string, stream: string, key: RouteKey = none): RouteConfig => ({ filter, stream, key })
const streamsOf = (router: Router, topic: string): string[] => router.match(topic).map((r) => r.stream)
const matches = (filter: string, topic: string): boolean => new Router([route(filter, 's')]).match(topic).length === 1

describe('Router.match', () => {
  // the full matching table is in test/mqtt/topics.test.ts; the router uses the same rules
  it.each([
    ['devices/+/telemetry', 'devices/d1/telemetry', true],
    ['a/+', 'a/', true],
    ['a/#', 'a', true],
    ['#', '$SYS/broker/heartbeat', false],
    ['+/x', '$data/x', false],
    ['$data/#', '$data/x', true]
  ])('%s matches %s: %s', (filter, topic, expected) => {
    expect(matches(filter, topic)).toBe(expected)
  })

  it('returns nothing without routes', () => {
    const router = new Router([])
    expect(router.size).toBe(0)
    expect(router.match('a/b')).toEqual([])
  })

  it('appends to a stream once when several routes to it match; the first route (config order) gives the key', () => {
    const router = new Router([
      route('devices/#', 'telemetry', { kind: 'client-id' }),
      route('devices/+/telemetry', 'telemetry', { kind: 'topic-level', level: 2 }),
      route('devices/d1/telemetry', 'telemetry', none)
    ])
    expect(router.match('devices/d1/telemetry')).toEqual([route('devices/#', 'telemetry', { kind: 'client-id' })])

    // the order of the config decides, not which filter is more specific
    const reversed = new Router([
      route('devices/d1/telemetry', 'telemetry', none),
      route('devices/+/telemetry', 'telemetry', { kind: 'topic-level', level: 2 })
    ])
    expect(reversed.match('devices/d1/telemetry')).toEqual([route('devices/d1/telemetry', 'telemetry', none)])
    expect(reversed.match('devices/d2/telemetry')).toEqual([route('devices/+/telemetry', 'telemetry', { kind: 'topic-level', level: 2 })])
  })

  it('appends once to each of several streams, in config order', () => {
    const router = new Router([
      route('devices/+/telemetry', 'telemetry'),
      route('#', 'audit', { kind: 'client-id' }),
      route('devices/#', 'all-devices'),
      route('devices/+/+', 'telemetry'),
      route('other/#', 'other')
    ])
    expect(streamsOf(router, 'devices/d1/telemetry')).toEqual(['telemetry', 'audit', 'all-devices'])
    expect(streamsOf(router, 'devices/d1/status')).toEqual(['audit', 'all-devices', 'telemetry'])
    expect(streamsOf(router, 'other')).toEqual(['audit', 'other'])
    expect(streamsOf(router, '$SYS/x')).toEqual([])
  })

  it('does not change when the configs it was built from change', () => {
    const routes = [route('a/+', 's', { kind: 'topic-level', level: 2 })]
    const router = new Router(routes)
    routes[0]!.stream = 'other'
    expect(streamsOf(router, 'a/b')).toEqual(['s'])
  })

  it('matches many routes quickly (trie, not a scan)', () => {
    const routes = Array.from({ length: 10_000 }, (_, i) => route(`site/${i}/+/telemetry`, `s${i % 50}`))
    const router = new Router(routes)
    const started = performance.now()
    let hits = 0
    for (let i = 0; i < 10_000; i++) hits += router.match(`site/${i}/dev/telemetry`).length
    expect(hits).toBe(10_000)
    expect(performance.now() - started).toBeLessThan(1000)
  })
})

describe('keyFor', () => {
  it('takes the N-th topic level (1-based), null when the topic is shorter', () => {
    const level = (n: number): Pick<RouteConfig, 'key'> => ({ key: { kind: 'topic-level', level: n } })
    expect(keyFor(level(1), 'devices/d1/telemetry', 'c')).toBe('devices')
    expect(keyFor(level(2), 'devices/d1/telemetry', 'c')).toBe('d1')
    expect(keyFor(level(3), 'devices/d1/telemetry', 'c')).toBe('telemetry')
    expect(keyFor(level(4), 'devices/d1/telemetry', 'c')).toBeNull()
    expect(keyFor(level(2), 'a//c', 'c')).toBe('')
  })

  it('takes the publishing client id (null for the broker itself), or no key', () => {
    expect(keyFor({ key: { kind: 'client-id' } }, 'a/b', 'sensor-7')).toBe('sensor-7')
    expect(keyFor({ key: { kind: 'client-id' } }, 'a/b', null)).toBeNull()
    expect(keyFor({ key: none }, 'a/b', 'sensor-7')).toBeNull()
  })
})
