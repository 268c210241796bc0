import { describe, expect, it } from 'vitest'
import { AMQP_DEFAULTS, parseSource, parseTarget } from '../../src/bridges/amqp/config.js'
import { amqpDriver } from '../../src/bridges/amqp/index.js'
import { DRIVERS } from '../../src/bridges/registry.js'
import { SectionContext } from '../../src/config/values.js'

// The amqp driver's `target:` and `source:`: defaults, and every refusal names its field.

const ctx = new SectionContext('config file culex.yaml')
const T = 'bridges[0].target'
const S = 'bridges[1].source'

const target = (raw: Record<string, unknown>) => parseTarget({ exchange: 'culex', ...raw }, ctx, T)
const source = (raw: Record<string, unknown>) => parseSource({ queue: 'commands', ...raw }, ctx, S)

describe('amqp config', () => {
  it('is registered as kind amqp', () => {
    expect(DRIVERS.get('amqp')).toBe(amqpDriver)
  })

  it('target defaults', () => {
    expect(JSON.parse(JSON.stringify(target({})))).toEqual({
      host: '127.0.0.1',
      port: 5672,
      vhost: '/',
      username: 'guest',
      password: '(hidden)',
      heartbeatS: 30,
      connectTimeoutMs: 10_000,
      exchange: 'culex',
      exchangeType: 'topic',
      declareExchange: true,
      durable: true,
      routingKey: '{topic.}',
      confirmTimeoutMs: 30_000
    })
  })

  it('target: every key', () => {
    process.env.CULEX_TEST_AMQP_PASSWORD = 's3cret'
    const t = target({
      'host': 'rabbit.local',
      'port': 5673,
      'vhost': 'iot',
      'username': 'culex',
      'password-env': 'CULEX_TEST_AMQP_PASSWORD',
      'heartbeat': '10s',
      'connect-timeout': '2s',
      'exchange': 'telemetry',
      'exchange-type': 'direct',
      'declare-exchange': false,
      'durable': false,
      'routing-key': '{stream}.{key}',
      'confirm-timeout': '5s'
    })
    expect(t).toMatchObject({ host: 'rabbit.local', port: 5673, vhost: 'iot', username: 'culex', password: 's3cret', heartbeatS: 10, connectTimeoutMs: 2000 })
    expect(t).toMatchObject({
      exchange: 'telemetry',
      exchangeType: 'direct',
      declareExchange: false,
      durable: false,
      routingKey: '{stream}.{key}',
      confirmTimeoutMs: 5000
    })
    // the secret never shows in the JSON form
    expect(JSON.stringify(t)).not.toContain('s3cret')
    expect(target({ heartbeat: 'off' }).heartbeatS).toBe(0)
  })

  it('the default exchange and amq.* are not declared', () => {
    expect(target({ exchange: '' })).toMatchObject({ exchange: '', declareExchange: false })
    expect(target({ exchange: 'amq.topic' })).toMatchObject({ declareExchange: false })
    expect(() => target({ 'exchange': '', 'declare-exchange': true })).toThrow(`invalid value for ${T}.declare-exchange`)
  })

  it.each([
    [{ exchange: undefined }, 'exchange'],
    [{ exchange: 42 }, 'exchange'],
    [{ exchange: 'x'.repeat(256) }, 'exchange'],
    [{ 'exchange-type': 'round-robin' }, 'exchange-type'],
    [{ 'declare-exchange': 'maybe' }, 'declare-exchange'],
    [{ durable: 3 }, 'durable'],
    [{ 'routing-key': '{nope}' }, 'routing-key'],
    [{ 'routing-key': 7 }, 'routing-key'],
    [{ 'confirm-timeout': 'soon' }, 'confirm-timeout'],
    [{ 'confirm-timeout': '1h' }, 'confirm-timeout'],
    [{ host: '' }, 'host'],
    [{ port: 70000 }, 'port'],
    [{ port: 'amqp' }, 'port'],
    [{ vhost: '' }, 'vhost'],
    [{ username: 5 }, 'username'],
    [{ password: 5 }, 'password'],
    [{ 'password': 'a', 'password-env': 'B' }, 'password-env'],
    [{ 'password-env': 'CULEX_TEST_AMQP_UNSET_VARIABLE' }, 'password-env'],
    [{ 'password-env': 'not a name' }, 'password-env'],
    [{ heartbeat: '200ms' }, 'heartbeat'],
    [{ 'connect-timeout': -1 }, 'connect-timeout']
  ])('target refuses %j naming %s', (raw, field) => {
    const m: Record<string, unknown> = { exchange: 'culex', ...raw }
    if ('exchange' in raw && raw.exchange === undefined) delete m.exchange
    expect(() => parseTarget(m, ctx, T)).toThrow(`invalid value for ${T}.${field} in config file culex.yaml`)
  })

  it('target refuses unknown keys, and a password is never echoed', () => {
    expect(() => target({ exchnage: 'x' })).toThrow(`unknown key "exchnage" in ${T}`)
    expect(() => target({ password: 123456 })).not.toThrow('123456')
    expect(() => target({ password: 123456 })).toThrow('(hidden)')
  })

  it('source defaults', () => {
    const s = source({})
    expect(s).toMatchObject({
      queue: 'commands',
      declareQueue: true,
      durable: true,
      queueArguments: {},
      bindings: [],
      prefetch: 100,
      topic: '{routing-key}',
      qos: 1,
      retain: false
    })
    expect(s).toMatchObject({ host: AMQP_DEFAULTS.host, port: AMQP_DEFAULTS.port })
  })

  it('source: every key', () => {
    const s = source({
      'declare-queue': true,
      'durable': false,
      'queue-arguments': { 'x-dead-letter-exchange': 'culex.dlx', 'x-queue-type': 'quorum', 'x-max-length': 1000 },
      'bindings': [
        { exchange: 'commands', filter: 'devices/+/cmd/#' },
        { exchange: 'broadcast', filter: '#' }
      ],
      'prefetch': 500,
      'topic': 'from-rabbit/{exchange}/{routing-key}',
      'qos': 2,
      'retain': true
    })
    expect(s).toMatchObject({ durable: false, prefetch: 500, topic: 'from-rabbit/{exchange}/{routing-key}', qos: 2, retain: true })
    expect(s.queueArguments).toEqual({ 'x-dead-letter-exchange': 'culex.dlx', 'x-queue-type': 'quorum', 'x-max-length': 1000 })
    expect(s.bindings).toEqual([
      { exchange: 'commands', filter: 'devices/+/cmd/#', bindingKey: 'devices.*.cmd.#' },
      { exchange: 'broadcast', filter: '#', bindingKey: '#' }
    ])
  })

  it.each([
    [{ queue: undefined }, 'queue'],
    [{ queue: '' }, 'queue'],
    [{ 'declare-queue': 'yes please' }, 'declare-queue'],
    [{ 'declare-queue': false, 'queue-arguments': { 'x-max-length': 1 } }, 'queue-arguments'],
    [{ 'queue-arguments': ['x'] }, 'queue-arguments'],
    [{ 'queue-arguments': { 'max-length': 1 } }, 'queue-arguments.max-length'],
    [{ 'queue-arguments': { 'x-max-length': { n: 1 } } }, 'queue-arguments.x-max-length'],
    [{ bindings: 'commands' }, 'bindings'],
    [{ bindings: [{ filter: '#' }] }, 'bindings[0].exchange'],
    [{ bindings: [{ exchange: '', filter: '#' }] }, 'bindings[0].exchange'],
    [{ bindings: [{ exchange: 'x', filter: 'a/b.c' }] }, 'bindings[0].filter'],
    [{ bindings: [{ exchange: 'x' }] }, 'bindings[0].filter'],
    [
      {
        bindings: [
          { exchange: 'x', filter: '#' },
          { exchange: 'y', filter: 'a//b' }
        ]
      },
      'bindings[1].filter'
    ],
    [{ prefetch: 0 }, 'prefetch'],
    [{ prefetch: 70_000 }, 'prefetch'],
    [{ topic: 'a/{key}' }, 'topic'],
    [{ topic: 'a/+/{routing-key}' }, 'topic'],
    [{ topic: '' }, 'topic'],
    [{ qos: 3 }, 'qos'],
    [{ retain: 'sometimes' }, 'retain'],
    [{ port: 0 }, 'port']
  ])('source refuses %j naming %s', (raw, field) => {
    const m: Record<string, unknown> = { queue: 'commands', ...raw }
    if ('queue' in raw && raw.queue === undefined) delete m.queue
    expect(() => parseSource(m, ctx, S)).toThrow(`invalid value for ${S}.${field} in config file culex.yaml`)
  })

  it('source refuses unknown keys, in bindings too', () => {
    expect(() => source({ bindigns: [] })).toThrow(`unknown key "bindigns" in ${S}`)
    expect(() => source({ bindings: [{ exchange: 'x', filter: '#', key: 'y' }] })).toThrow(`unknown key "key" in ${S}.bindings[0]`)
  })
})
