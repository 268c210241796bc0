import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { MQTT_DEFAULTS, SESSION_NEVER_EXPIRES, parseSource, parseTarget, topicProblem } from '../../src/bridges/mqtt/config.js'
import { MqttSource } from '../../src/bridges/mqtt/source.js'
import { SectionContext } from '../../src/config/values.js'
import { pino } from 'pino'

// `target:` and `source:` of a kind: mqtt bridge: defaults, and every refusal naming its field.

const ctx = new SectionContext('config file culex.yaml')
const url = 'mqtt://broker.example:1883'
const dir = mkdtempSync(join(tmpdir(), 'culex-mqtt-config-'))
const pem = join(dir, 'ca.pem')
writeFileSync(pem, '-----BEGIN CERTIFICATE-----\n')

afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe('mqtt target', () => {
  it('has defaults: {topic}, QoS 1, no retain, MQTT 5, 30 s keepalive and timeout', () => {
    expect(parseTarget({ url }, ctx, 'bridges[0].target')).toEqual({
      url,
      username: null,
      password: null,
      clientId: null,
      protocolVersion: 5,
      keepaliveS: 30,
      connectTimeoutMs: 10_000,
      ca: null,
      cert: null,
      key: null,
      topic: '{topic}',
      qos: 1,
      retain: false,
      timeoutMs: 30_000,
      maxInflight: MQTT_DEFAULTS.maxInflight
    })
  })

  it('takes every key', () => {
    process.env.CULEX_TEST_MQTT_SECRET = 's3cret'
    const t = parseTarget(
      {
        'url': 'mqtts://broker.example',
        'username': 'bridge',
        'password-env': 'CULEX_TEST_MQTT_SECRET',
        'client-id': 'site1-bridge',
        'protocol-version': '3.1.1',
        'keepalive': '1m',
        'connect-timeout': '5s',
        'ca': pem,
        'topic': 'site1/{topic}',
        'qos': 2,
        'retain': true,
        'timeout': '10s',
        'max-inflight': 20
      },
      ctx,
      't'
    )
    expect(t).toMatchObject({
      url: 'mqtts://broker.example',
      username: 'bridge',
      password: 's3cret',
      clientId: 'site1-bridge',
      protocolVersion: 4,
      keepaliveS: 60,
      connectTimeoutMs: 5000,
      ca: pem,
      topic: 'site1/{topic}',
      qos: 2,
      retain: true,
      timeoutMs: 10_000,
      maxInflight: 20
    })
    // a status page or a log line never shows the password
    expect(JSON.stringify(t)).not.toContain('s3cret')
    expect(JSON.parse(JSON.stringify(t))).toMatchObject({ password: '(hidden)', username: 'bridge' })
  })

  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['no url', {}, /t\.url in config file culex\.yaml: undefined; expected the URL/],
    ['an http url', { url: 'http://x' }, /t\.url in config file culex\.yaml: "http:\/\/x"; expected an mqtt:\/\/ or mqtts:\/\//],
    ['credentials in the url', { url: 'mqtt://u:p@x' }, /t\.url/],
    ['a path in the url', { url: 'mqtt://x/path' }, /t\.url/],
    ['an unknown key', { url, colour: 'red' }, /unknown key "colour" in t .*known keys: url, username/],
    [
      'password and password-env',
      { url, 'username': 'u', 'password': 'p', 'password-env': 'X' },
      /t\.password-env in config file culex\.yaml: "X"; expected password or password-env, not both/
    ],
    [
      'an unset env var',
      { 'url': url, 'username': 'u', 'password-env': 'CULEX_TEST_UNSET_VAR' },
      /t\.password-env in config file culex\.yaml: "CULEX_TEST_UNSET_VAR"; expected an environment variable that is set/
    ],
    ['a password without a user', { url, password: 'p' }, /t\.username in config file culex\.yaml: undefined; expected a user name/],
    ['an empty password', { url, username: 'u', password: '' }, /t\.password in config file culex\.yaml: "\(hidden\)"/],
    ['a protocol version 3', { 'url': url, 'protocol-version': 3 }, /t\.protocol-version in config file culex\.yaml: 3; expected 5 \(MQTT 5\.0\) or 4/],
    ['a keepalive of 100000 s', { url, keepalive: '100000s' }, /t\.keepalive in config file culex\.yaml: "100000s"/],
    ['a bad connect-timeout', { 'url': url, 'connect-timeout': 'soon' }, /t\.connect-timeout in config file culex\.yaml: "soon"/],
    [
      'a missing CA file',
      { url: 'mqtts://x', ca: join(dir, 'nope.pem') },
      /t\.ca in config file culex\.yaml: ".*nope\.pem"; expected the path of a PEM file that exists/
    ],
    ['a cert without a key', { url: 'mqtts://x', cert: pem }, /t\.key in config file culex\.yaml: undefined; expected cert and key together/],
    ['TLS files with mqtt://', { url, ca: pem }, /t\.url in config file culex\.yaml: "mqtt:\/\/broker\.example:1883"; expected an mqtts:\/\/ URL/],
    [
      'an unknown placeholder',
      { url, topic: 'a/{colour}' },
      /t\.topic in config file culex\.yaml: "a\/\{colour\}"; expected a topic template .*unknown placeholder \{colour\}/
    ],
    [
      'a wildcard in the topic',
      { url, topic: 'a/+/{topic}' },
      /t\.topic in config file culex\.yaml: "a\/\+\/\{topic\}"; expected a template for an MQTT topic name/
    ],
    ['a QoS 3', { url, qos: 3 }, /t\.qos in config file culex\.yaml: 3; expected a QoS: 0, 1 or 2/],
    ['a retain maybe', { url, retain: 'maybe' }, /t\.retain in config file culex\.yaml: "maybe"; expected true or false/],
    ['a timeout of an hour', { url, timeout: '1h' }, /t\.timeout in config file culex\.yaml: "1h"; expected .*at most 10m/],
    ['max-inflight 0', { 'url': url, 'max-inflight': 0 }, /t\.max-inflight in config file culex\.yaml: 0; expected a number of messages from 1 to 65535/],
    ['a client id with NUL', { 'url': url, 'client-id': 'a\u0000b' }, /t\.client-id/]
  ]
  for (const [what, raw, message] of bad) {
    it(`refuses ${what}, naming the field`, () => {
      expect(() => parseTarget(raw, ctx, 't')).toThrow(message)
    })
  }
})

describe('mqtt source', () => {
  it('has defaults: filters at QoS 1, a 7 day session, {topic}, QoS 1, no retain', () => {
    expect(parseSource({ url, filters: ['devices/+/cmd'] }, ctx, 's')).toMatchObject({
      filters: [{ filter: 'devices/+/cmd', qos: 1 }],
      sessionExpiryS: 7 * 24 * 3600,
      topic: '{topic}',
      stripPrefix: null,
      qos: 1,
      retain: false,
      protocolVersion: 5
    })
  })

  it('takes filters with their QoS, a session that never expires, the mapping', () => {
    const s = parseSource(
      {
        'url': url,
        'filters': ['a/#', { filter: 'b/+', qos: 2 }, { filter: 'c', qos: 0 }],
        'session-expiry': 'never',
        'topic': 'remote/{topic}',
        'strip-prefix': 'site1/',
        'qos': 0,
        'retain': 'as-published'
      },
      ctx,
      's'
    )
    expect(s).toMatchObject({
      filters: [
        { filter: 'a/#', qos: 1 },
        { filter: 'b/+', qos: 2 },
        { filter: 'c', qos: 0 }
      ],
      sessionExpiryS: SESSION_NEVER_EXPIRES,
      topic: 'remote/{topic}',
      stripPrefix: 'site1/',
      qos: 0,
      retain: 'as-published'
    })
    const source = new MqttSource(s, { logger: pino({ level: 'silent' }), bridge: 'b' })
    expect(source.mapTopic('site1/devices/d1/cmd')).toBe('remote/devices/d1/cmd')
    expect(source.mapTopic('other/x')).toBe('remote/other/x')
  })

  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['no filters', { url }, /s\.filters in config file culex\.yaml: undefined; expected a non-empty list/],
    ['an empty list', { url, filters: [] }, /s\.filters in config file culex\.yaml: \[\]; expected a non-empty list/],
    [
      'a bad wildcard',
      { url, filters: ['a/#/b'] },
      /s\.filters\[0\] in config file culex\.yaml: "a\/#\/b"; expected an MQTT topic filter \('#' fills the last level\)/
    ],
    [
      'a partial +',
      { url, filters: ['ok', 'a/b+'] },
      /s\.filters\[1\] in config file culex\.yaml: "a\/b\+"; expected an MQTT topic filter \('\+' fills a whole level\)/
    ],
    ['an empty filter', { url, filters: [''] }, /s\.filters\[0\] in config file culex\.yaml: ""; expected an MQTT topic filter \(it is empty\)/],
    ['a filter without its name', { url, filters: [{ qos: 1 }] }, /s\.filters\[0\]\.filter in config file culex\.yaml: undefined/],
    ['a filter QoS 5', { url, filters: [{ filter: 'a', qos: 5 }] }, /s\.filters\[0\]\.qos in config file culex\.yaml: 5; expected a QoS/],
    ['an unknown filter key', { url, filters: [{ filter: 'a', nl: true }] }, /unknown key "nl" in s\.filters\[0\]/],
    ['a filter twice', { url, filters: ['a', 'a'] }, /s\.filters\[1\] in config file culex\.yaml: "a"; expected a filter listed once/],
    [
      'QoS 2 with 3.1.1',
      { 'url': url, 'protocol-version': 4, 'filters': [{ filter: 'a', qos: 2 }] },
      /s\.filters\[0\]\.qos in config file culex\.yaml: 2; expected QoS 0 or 1 with protocol-version 4/
    ],
    [
      'as-published with 3.1.1',
      { 'url': url, 'protocol-version': 4, 'filters': ['a'], 'retain': 'as-published' },
      /s\.retain in config file culex\.yaml: "as-published"; expected true or false with protocol-version 4/
    ],
    [
      'a bad session expiry',
      { 'url': url, 'filters': ['a'], 'session-expiry': 'forever' },
      /s\.session-expiry in config file culex\.yaml: "forever"; expected .* or never/
    ],
    [
      'another placeholder in the topic',
      { url, filters: ['a'], topic: '{key}/x' },
      /s\.topic in config file culex\.yaml: "\{key\}\/x"; expected a topic template with \{topic\} only/
    ],
    ['a wildcard in the topic', { url, filters: ['a'], topic: '#' }, /s\.topic in config file culex\.yaml: "#"; expected a template for an MQTT topic name/],
    [
      'a wildcard in strip-prefix',
      { 'url': url, 'filters': ['a'], 'strip-prefix': 'a/+/' },
      /s\.strip-prefix in config file culex\.yaml: "a\/\+\/"; expected a fixed text/
    ],
    ['a bad retain', { url, filters: ['a'], retain: 'sometimes' }, /s\.retain in config file culex\.yaml: "sometimes"; expected true, false or as-published/],
    ['a target key', { url, filters: ['a'], timeout: '1s' }, /unknown key "timeout" in s/]
  ]
  for (const [what, raw, message] of bad) {
    it(`refuses ${what}, naming the field`, () => {
      expect(() => parseSource(raw, ctx, 's')).toThrow(message)
    })
  }
})

describe('topicProblem (MQTT 5 4.7)', () => {
  it('tells topic names from filters', () => {
    expect(topicProblem('a/b/c', false)).toBeNull()
    expect(topicProblem('a//c', false)).toBeNull()
    expect(topicProblem('a/+/c', false)).toMatch(/no wildcard/)
    expect(topicProblem('a/#', true)).toBeNull()
    expect(topicProblem('+/+/#', true)).toBeNull()
    expect(topicProblem('#/a', true)).toMatch(/last level/)
    expect(topicProblem('a\u0000', false)).toMatch(/U\+0000/)
    expect(topicProblem('x'.repeat(70_000), false)).toMatch(/65,535 bytes/)
    expect(topicProblem('a\uD800', false)).toMatch(/lone surrogate/)
  })
})
