import { describe, expect, it } from 'vitest'
import { SectionContext } from '../../src/config/values.js'
import { parseRedisSource, parseRedisTarget } from '../../src/bridges/redis/config.js'

// The redis target/source parsers: defaults, and every refusal names its field.

const ctx = new SectionContext('culex.yaml')

describe('redis target', () => {
  it('has defaults', () => {
    expect(parseRedisTarget({}, ctx, 'bridges[0].target')).toEqual({
      host: '127.0.0.1',
      port: 6379,
      username: null,
      password: null,
      db: 0,
      commandTimeoutMs: 5000,
      key: 'culex:{stream}',
      maxlen: null,
      approximate: true
    })
  })

  it('parses every key', () => {
    process.env.CULEX_TEST_REDIS_PW = 's3cret'
    expect(
      parseRedisTarget(
        {
          'host': 'redis.local',
          'port': 6380,
          'username': 'culex',
          'password-env': 'CULEX_TEST_REDIS_PW',
          'db': 2,
          'command-timeout': '2s',
          'key': 'devices:{key}',
          'maxlen': 1000,
          'approximate': false
        },
        ctx,
        't'
      )
    ).toEqual({
      host: 'redis.local',
      port: 6380,
      username: 'culex',
      password: 's3cret',
      db: 2,
      commandTimeoutMs: 2000,
      key: 'devices:{key}',
      maxlen: 1000,
      approximate: false
    })
    expect(parseRedisTarget({ password: 'pw', maxlen: 0 }, ctx, 't')).toMatchObject({ password: 'pw', maxlen: null })
    expect(parseRedisTarget({ maxlen: null }, ctx, 't').maxlen).toBeNull()
  })

  it.each([
    [{ nope: 1 }, /unknown key "nope" in t in culex.yaml/],
    ['x', /invalid value for t in culex.yaml/],
    [{ host: '' }, /t\.host/],
    [{ port: 70000 }, /t\.port/],
    [{ port: 'x' }, /t\.port/],
    [{ username: 3 }, /t\.username/],
    [{ password: 5 }, /t\.password in culex\.yaml: "\(hidden\)"/],
    [{ 'password': 'a', 'password-env': 'B' }, /t\.password-env/],
    [{ 'password-env': 'CULEX_TEST_SURELY_UNSET' }, /t\.password-env/],
    [{ db: -1 }, /t\.db/],
    [{ 'command-timeout': 'soon' }, /t\.command-timeout/],
    [{ key: '' }, /t\.key/],
    [{ key: 'x:{nope}' }, /t\.key.*unknown placeholder \{nope\}/],
    [{ maxlen: -5 }, /t\.maxlen/],
    [{ maxlen: 'lots' }, /t\.maxlen/],
    [{ approximate: 'maybe' }, /t\.approximate/]
  ])('refuses %j naming the field', (raw, message) => {
    expect(() => parseRedisTarget(raw, ctx, 't')).toThrow(message)
  })

  it('serialises the password as (hidden)', () => {
    const t = parseRedisTarget({ password: 'hunter2' }, ctx, 't')
    expect(t.password).toBe('hunter2')
    expect(JSON.stringify(t)).not.toContain('hunter2')
    expect(JSON.parse(JSON.stringify(t))).toMatchObject({ password: '(hidden)', port: 6379 })
    expect(JSON.stringify(parseRedisSource({ key: 'k', password: 'hunter2' }, ctx, 's'))).not.toContain('hunter2')
  })

  it('never shows the password in a message', () => {
    expect(() => parseRedisTarget({ password: 'hunter2', port: 'x' }, ctx, 't')).toThrow(/^(?!.*hunter2)/)
  })
})

describe('redis source', () => {
  it('has defaults', () => {
    expect(parseRedisSource({ key: 'commands' }, ctx, 's')).toEqual({
      host: '127.0.0.1',
      port: 6379,
      username: null,
      password: null,
      db: 0,
      commandTimeoutMs: 5000,
      key: 'commands',
      group: 'culex',
      consumer: null,
      startId: '$',
      count: 100,
      blockMs: 2000,
      claimIdleMs: null,
      topic: '{field:topic}',
      valueField: 'value',
      qos: 1,
      retain: false,
      deadLetterKey: null
    })
  })

  it('parses every key', () => {
    expect(
      parseRedisSource(
        {
          'key': 'commands',
          'group': 'g',
          'consumer': 'node-1',
          'start-id': '0',
          'count': 10,
          'block': '1s',
          'claim-idle': '1m',
          'topic': 'devices/{field:device}/cmd',
          'value-field': 'payload',
          'qos': 0,
          'retain': true,
          'dead-letter-key': 'commands:dlq'
        },
        ctx,
        's'
      )
    ).toMatchObject({
      group: 'g',
      consumer: 'node-1',
      startId: '0',
      count: 10,
      blockMs: 1000,
      claimIdleMs: 60_000,
      topic: 'devices/{field:device}/cmd',
      valueField: 'payload',
      qos: 0,
      retain: true,
      deadLetterKey: 'commands:dlq'
    })
    expect(parseRedisSource({ 'key': 'k', 'start-id': 0 }, ctx, 's').startId).toBe('0')
    expect(parseRedisSource({ 'key': 'k', 'start-id': '1700000000000-3' }, ctx, 's').startId).toBe('1700000000000-3')
    expect(parseRedisSource({ 'key': 'k', 'claim-idle': 'off' }, ctx, 's').claimIdleMs).toBeNull()
  })

  it.each([
    [{}, /s\.key/],
    [{ key: 'k', other: 1 }, /unknown key "other" in s/],
    [{ key: 'k', group: '' }, /s\.group/],
    [{ key: 'k', consumer: 7 }, /s\.consumer/],
    [{ 'key': 'k', 'start-id': 'latest' }, /s\.start-id/],
    [{ key: 'k', count: 0 }, /s\.count/],
    [{ key: 'k', count: 20_000 }, /s\.count/],
    [{ key: 'k', block: 'long' }, /s\.block/],
    [{ 'key': 'k', 'claim-idle': 'sometimes' }, /s\.claim-idle/],
    [{ key: 'k', topic: '' }, /s\.topic/],
    [{ key: 'k', topic: 'a/{field}' }, /s\.topic.*\{key\} and \{field:<name>\}/],
    [{ key: 'k', topic: 'a/+/b' }, /s\.topic.*'\+'/],
    [{ 'key': 'k', 'value-field': '' }, /s\.value-field/],
    [{ key: 'k', qos: 3 }, /s\.qos/],
    [{ key: 'k', retain: 'perhaps' }, /s\.retain/],
    [{ 'key': 'k', 'dead-letter-key': 'k' }, /s\.dead-letter-key/],
    [{ key: 'k', port: 0 }, /s\.port/]
  ])('refuses %j naming the field', (raw, message) => {
    expect(() => parseRedisSource(raw, ctx, 's')).toThrow(message)
  })
})
