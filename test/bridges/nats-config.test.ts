import { describe, expect, it } from 'vitest'
import { durableName, parseSource, parseTarget } from '../../src/bridges/nats/config.js'
import { topicOf } from '../../src/bridges/nats/source.js'
import { subjectMatches } from '../../src/bridges/nats/client.js'
import { ConfigError } from '../../src/config/errors.js'
import { SectionContext } from '../../src/config/values.js'

// The nats bridge's `target:` and `source:` parsers: defaults, and every refusal names its field.

const ctx = new SectionContext('culex.yaml')
const T = 'bridges[0].target'
const S = 'bridges[1].source'
const servers = 'nats://127.0.0.1:4333'

function targetError(raw: Record<string, unknown>): string {
  try {
    parseTarget(raw, ctx, T)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return (e as Error).message
  }
  throw new Error('parsed')
}

function sourceError(raw: Record<string, unknown>): string {
  try {
    parseSource(raw, ctx, S)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    return (e as Error).message
  }
  throw new Error('parsed')
}

describe('nats target config', () => {
  it('has defaults', () => {
    const t = parseTarget({ servers: '127.0.0.1:4333' }, ctx, T)
    expect({ ...t }).toEqual({
      servers: ['nats://127.0.0.1:4333'],
      user: null,
      password: null,
      token: null,
      connectTimeoutMs: 5000,
      subject: '{topic.}',
      stream: null,
      ackTimeoutMs: 5000
    })
  })

  it('takes a list of servers, credentials from the environment and a stream', () => {
    process.env.NATS_CFG_TOKEN = 'tok'
    const t = parseTarget(
      {
        'servers': ['nats://a:4222', 'tls://b:4223'],
        'token-env': 'NATS_CFG_TOKEN',
        'stream': 'CULEX',
        'subject': 'culex.{stream}.{topic.}',
        'ack-timeout': '2s'
      },
      ctx,
      T
    )
    expect(t.servers).toEqual(['nats://a:4222', 'tls://b:4223'])
    expect(t.token).toBe('tok')
    expect(JSON.stringify(t)).not.toContain('tok"')
    expect(t.ackTimeoutMs).toBe(2000)
  })

  it.each([
    [{}, `${T}.servers`],
    [{ servers: [] }, `${T}.servers`],
    [{ servers: ['nats://a:1', 'http://b:2'] }, `${T}.servers[1]`],
    [{ servers: 'nats://u:p@a:1' }, `${T}.servers`],
    [{ servers, subject: 'culex.>' }, `${T}.subject`],
    [{ servers, subject: 'culex..{topic.}' }, `${T}.subject`],
    [{ servers, subject: 'culex.{nope}' }, `${T}.subject`],
    [{ servers, subject: 'has space.{topic.}' }, `${T}.subject`],
    [{ servers, stream: 'a.b' }, `${T}.stream`],
    [{ 'servers': servers, 'ack-timeout': 'soon' }, `${T}.ack-timeout`],
    [{ 'servers': servers, 'connect-timeout': '1h' }, `${T}.connect-timeout`],
    [{ servers, user: 'u' }, `${T}.password`],
    [{ servers, password: 'p' }, `${T}.user`],
    [{ 'servers': servers, 'user': 'u', 'password': 'p', 'password-env': 'X' }, `${T}.password-env`],
    [{ 'servers': servers, 'user': 'u', 'password-env': 'NATS_CFG_UNSET_VARIABLE' }, `${T}.password-env`],
    [{ servers, user: 'u', password: 'p', token: 't' }, `${T}.token`]
  ])('refuses %j naming %s', (raw, field) => {
    expect(targetError(raw)).toContain(`invalid value for ${field} in culex.yaml`)
  })

  it('refuses an unknown key by name', () => {
    expect(targetError({ servers, topic: 'x' })).toMatch(/unknown key "topic" in bridges\[0\]\.target/)
  })

  it('never shows a password in an error', () => {
    expect(targetError({ servers, user: 'u', password: 42 })).not.toContain('42')
  })
})

describe('nats source config', () => {
  it('has defaults', () => {
    const s = parseSource({ servers, stream: 'IN' }, ctx, S)
    expect({ ...s }).toMatchObject({
      stream: 'IN',
      consumer: null,
      filterSubject: null,
      deliverPolicy: 'all',
      ackWaitMs: 30_000,
      maxDeliver: -1,
      maxAckPending: 1000,
      maxMessages: 20,
      topic: '{subject}',
      stripPrefix: null,
      qos: 1,
      retain: false
    })
    expect(durableName(s, 'cmd.in')).toBe('culex-cmd_in')
  })

  it('maps an MQTT filter to a subject filter, and takes a NATS one as is', () => {
    expect(parseSource({ servers, stream: 'IN', filter: 'devices/+/cmd/#' }, ctx, S).filterSubject).toBe('devices.*.cmd.>')
    expect(parseSource({ 'servers': servers, 'stream': 'IN', 'filter-subject': 'devices.*.cmd.>' }, ctx, S).filterSubject).toBe('devices.*.cmd.>')
    expect(parseSource({ 'servers': servers, 'stream': 'IN', 'strip-prefix': 'culex.in.' }, ctx, S).stripPrefix).toBe('culex.in')
  })

  it.each([
    [{ servers }, `${S}.stream`],
    [{ servers, stream: 'has space' }, `${S}.stream`],
    [{ servers, stream: 'IN', consumer: 'a.b' }, `${S}.consumer`],
    [{ 'servers': servers, 'stream': 'IN', 'filter': 'a/#', 'filter-subject': 'a.>' }, `${S}.filter-subject`],
    [{ servers, stream: 'IN', filter: 'a/b.c' }, `${S}.filter`],
    [{ 'servers': servers, 'stream': 'IN', 'filter-subject': 'a.>.b' }, `${S}.filter-subject`],
    [{ 'servers': servers, 'stream': 'IN', 'deliver-policy': 'first' }, `${S}.deliver-policy`],
    [{ 'servers': servers, 'stream': 'IN', 'ack-wait': '500ms' }, `${S}.ack-wait`],
    [{ 'servers': servers, 'stream': 'IN', 'max-deliver': 0 }, `${S}.max-deliver`],
    [{ 'servers': servers, 'stream': 'IN', 'max-ack-pending': 0 }, `${S}.max-ack-pending`],
    [{ 'servers': servers, 'stream': 'IN', 'max-ack-pending': 10, 'max-messages': 20 }, `${S}.max-messages`],
    [{ servers, stream: 'IN', topic: 'a/+/{subject}' }, `${S}.topic`],
    [{ servers, stream: 'IN', topic: 'nats/{topic}' }, `${S}.topic`],
    [{ 'servers': servers, 'stream': 'IN', 'strip-prefix': 'a.*' }, `${S}.strip-prefix`],
    [{ servers, stream: 'IN', qos: 3 }, `${S}.qos`],
    [{ servers, stream: 'IN', retain: 'yes' }, `${S}.retain`],
    [{ servers: 'nats://', stream: 'IN' }, `${S}.servers`]
  ])('refuses %j naming %s', (raw, field) => {
    expect(sourceError(raw)).toContain(`invalid value for ${field} in culex.yaml`)
  })

  it('refuses an unknown key by name', () => {
    expect(sourceError({ servers, stream: 'IN', subject: 'x' })).toMatch(/unknown key "subject" in bridges\[1\]\.source/)
  })
})

describe('nats names', () => {
  it('maps a subject to a topic: strip-prefix, dots to slashes, no wildcards', () => {
    const o = { topic: 'nats/{subject}', stripPrefix: 'culex.in' }
    expect(topicOf(o, 'culex.in.devices.d1.cmd')).toBe('nats/devices/d1/cmd')
    expect(topicOf(o, 'other.x')).toBe('nats/other/x')
    expect(() => topicOf(o, 'culex.in')).toThrow(/only the strip-prefix/)
    expect(() => topicOf(o, 'culex.in.a+b')).toThrow(/'\+'/)
    expect(() => topicOf(o, 'culex.in.a/b')).toThrow(/'\/'/)
  })

  it('matches subjects against stream subjects as nats-server does', () => {
    expect(subjectMatches('a.b.c', 'a.>')).toBe(true)
    expect(subjectMatches('a', 'a.>')).toBe(false)
    expect(subjectMatches('a.b.c', 'a.*.c')).toBe(true)
    expect(subjectMatches('a.b.c', 'a.*')).toBe(false)
    expect(subjectMatches('a.b', 'a.b')).toBe(true)
    expect(subjectMatches('a.b', '>')).toBe(true)
  })
})
