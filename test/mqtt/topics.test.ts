import { describe, expect, it } from 'vitest'
import { FilterIndex } from '../../src/mqtt/filter-index.js'
import { TopicIndex } from '../../src/mqtt/topic-index.js'
import { isSysTopic, matches, parseSharedSubscription, stringProblem, topicFilterProblem, topicNameProblem, utf8Problem } from '../../src/mqtt/topics.js'

// Each case names the normative statement of MQTT 3.1.1 (or 5.0 for shared subscriptions) it checks.

describe('UTF-8 strings', () => {
  it.each([
    ['ill-formed: a lone continuation byte', [0x61, 0x80], /not well-formed UTF-8 \[MQTT-1\.5\.3-1\]/],
    ['ill-formed: the surrogate U+D800 encoded (ED A0 80)', [0xed, 0xa0, 0x80], /MQTT-1\.5\.3-1/],
    ['ill-formed: an overlong U+0000 (C0 80)', [0xc0, 0x80], /MQTT-1\.5\.3-1/],
    ['ill-formed: a truncated sequence', [0xe2, 0x82], /MQTT-1\.5\.3-1/],
    ['U+0000', [0x61, 0x00, 0x62], /U\+0000 \[MQTT-1\.5\.3-2\]/]
  ])('refuses %s', (_, bytes, problem) => {
    expect(utf8Problem(Uint8Array.from(bytes))).toMatch(problem)
  })

  it('accepts well-formed UTF-8, U+FEFF included [MQTT-1.5.3-3]', () => {
    expect(utf8Problem(Buffer.from('temp/ü/€/😀'))).toBeNull()
    expect(utf8Problem(Buffer.from('\uFEFFa'))).toBeNull()
    expect(stringProblem('\uFEFFa')).toBeNull()
  })

  it('refuses strings that no UTF-8 decodes to: lone surrogates, and U+0000', () => {
    expect(stringProblem('a\uD800')).toMatch(/lone surrogate/)
    expect(stringProblem('a\u0000')).toMatch(/U\+0000/)
  })
})

describe('topic names', () => {
  it.each([
    ['', /empty \[MQTT-4\.7\.3-1\]/],
    ['a/+', /wildcard.*\[MQTT-3\.3\.2-2\]/],
    ['a/#', /wildcard/],
    ['a+b', /wildcard/],
    ['a\u0000b', /U\+0000/],
    ['x'.repeat(65_536), /65536 bytes long; the limit is 65535 \[MQTT-4\.7\.3-3\]/],
    ['€'.repeat(21_846), /65538 bytes/]
  ])('refuses %j', (topic, problem) => {
    expect(topicNameProblem(topic)).toMatch(problem)
  })

  it.each(['a', '/', 'a//b', '$SYS/x', ' ', 'ü', 'x'.repeat(65_535)])('accepts %j', (topic) => {
    expect(topicNameProblem(topic)).toBeNull()
  })

  it('applies configured limits on bytes and levels', () => {
    expect(topicNameProblem('abcd', { maxBytes: 3 })).toMatch(/4 bytes long; the limit is 3/)
    expect(topicNameProblem('a/b/c', { maxLevels: 2 })).toMatch(/3 levels; the limit is 2/)
    expect(topicNameProblem('a/b', { maxLevels: 2, maxBytes: 3 })).toBeNull()
  })
})

describe('topic filters', () => {
  it.each([
    ['', /empty/],
    ['a/#/b', /'#' must be a whole level and the last one \[MQTT-4\.7\.1-2\]/],
    ['a#', /MQTT-4\.7\.1-2/],
    ['#/', /MQTT-4\.7\.1-2/],
    ['a/b+', /'\+' must be a whole level \[MQTT-4\.7\.1-3\]/],
    ['+a', /MQTT-4\.7\.1-3/],
    ['a/\u0000', /U\+0000/]
  ])('refuses %j', (filter, problem) => {
    expect(topicFilterProblem(filter)).toMatch(problem)
  })

  it.each(['#', '+', '+/+', 'a/#', '+/#', '/+', 'a//+', '$SYS/#', 'sport/tennis/+/#'])('accepts %j [MQTT-4.7.1-2, MQTT-4.7.1-3]', (filter) => {
    expect(topicFilterProblem(filter)).toBeNull()
  })
})

const MATCHING: Array<[string, string, boolean]> = [
  ['devices/+/telemetry', 'devices/d1/telemetry', true],
  ['devices/+/telemetry', 'devices/d1/status', false],
  ['devices/+/telemetry', 'devices/d1/telemetry/x', false],
  ['devices/+/telemetry', 'devices/telemetry', false],
  ['devices/d1', 'Devices/d1', false],
  // '+' matches exactly one level, an empty one too (4.7.1.3)
  ['a/+', 'a/', true],
  ['+/b', '/b', true],
  ['a/+/c', 'a//c', true],
  ['a/+', 'a', false],
  ['a/+', 'a/b/c', false],
  ['+', 'a', true],
  ['+', '/a', false],
  ['+/+', '/finance', true],
  // '#' matches its parent and every level below [MQTT-4.7.1-2]
  ['a/#', 'a', true],
  ['a/#', 'a/', true],
  ['a/#', 'a/b/c/d', true],
  ['a/#', 'ab', false],
  ['a/+/#', 'a/b', true],
  ['#', 'a', true],
  ['#', '/', true],
  // a filter starting with a wildcard never matches a '$' topic [MQTT-4.7.2-1]
  ['#', '$SYS/broker/heartbeat', false],
  ['+/monitor/Clients', '$SYS/monitor/Clients', false],
  ['+/x', '$data/x', false],
  ['+/#', '$data/x', false],
  ['$SYS/#', '$SYS/x', true],
  ['$SYS/monitor/+', '$SYS/monitor/Clients', true],
  ['a/#', 'a/$x', true],
  ['a/+', 'a/$x', true],
  // no normalization [MQTT-4.7.3-4]
  ['ä', 'a\u0308', false],
  ['a/b', 'a/b ', false]
]

describe('matching', () => {
  it.each(MATCHING)('%j matches %j: %s', (filter, topic, expected) => {
    expect(matches(filter, topic)).toBe(expected)
  })

  it.each(MATCHING)('FilterIndex: %j matches %j: %s', (filter, topic, expected) => {
    const index = new FilterIndex<string>()
    index.add(filter, 'v')
    expect(index.match(topic)).toEqual(expected ? ['v'] : [])
  })

  it.each(MATCHING)('TopicIndex: %j matches %j: %s', (filter, topic, expected) => {
    const index = new TopicIndex()
    index.add(topic)
    index.add('x/y/z')
    expect(index.match(filter).includes(topic)).toBe(expected)
    expect(index.match(filter).includes('x/y/z')).toBe(matches(filter, 'x/y/z'))
  })

  it('FilterIndex returns every matching value, several per filter', () => {
    const index = new FilterIndex<number>()
    index.add('a/#', 1)
    index.add('a/+', 2)
    index.add('a/b', 3)
    index.add('a/b', 4)
    index.add('#', 5)
    index.add('c', 6)
    expect(index.match('a/b').sort()).toEqual([1, 2, 3, 4, 5])
    expect(index.size).toBe(6)
  })

  it('TopicIndex forgets deleted topics and prunes their branches', () => {
    const index = new TopicIndex()
    for (const t of ['a/b/c', 'a/b', 'a/d']) index.add(t)
    index.delete('a/b/c')
    index.delete('a/b/c')
    expect(index.size).toBe(2)
    expect(index.match('a/#').sort()).toEqual(['a/b', 'a/d'])
    index.delete('a/b')
    index.delete('a/d')
    expect(index.match('#')).toEqual([])
    expect(index.size).toBe(0)
  })
})

describe('$ topics and shared subscriptions', () => {
  it('knows $SYS topics', () => {
    expect(isSysTopic('$SYS/broker/uptime')).toBe(true)
    expect(isSysTopic('$SYS')).toBe(true)
    expect(isSysTopic('$SYSTEM/x')).toBe(false)
    expect(isSysTopic('a/$SYS/x')).toBe(false)
  })

  it('splits $share/<ShareName>/<filter> (MQTT 5.0 4.8.2)', () => {
    expect(parseSharedSubscription('$share/workers/jobs/+')).toEqual({ group: 'workers', filter: 'jobs/+' })
    expect(parseSharedSubscription('$share/g/#')).toEqual({ group: 'g', filter: '#' })
    expect(parseSharedSubscription('jobs/+')).toBeNull()
    expect(parseSharedSubscription('$sharex/g/a')).toBeNull()
  })

  it.each([
    ['$share//a', /empty ShareName \[MQTT-4\.8\.2-1\]/],
    ['$share/g+/a', /must not contain '\+' or '#' \[MQTT-4\.8\.2-2\]/],
    ['$share/#', /MQTT-4\.8\.2-2/],
    ['$share/g', /needs a topic filter after the ShareName/],
    ['$share/g/', /needs a topic filter.*empty/],
    ['$share/g/a/#/b', /needs a topic filter.*MQTT-4\.7\.1-2/]
  ])('refuses %j', (filter, problem) => {
    expect(() => parseSharedSubscription(filter)).toThrow(problem)
  })
})
