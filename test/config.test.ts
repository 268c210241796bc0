import { spawnSync } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, DEFAULTS, anonymousAllowed, apiCredentialsRequired, apiHost, loadConfig } from '../src/config/index.js'
import { CLI, tempDataDir } from './helpers/gateway-process.js'

describe('loadConfig', () => {
  it('defaults to localhost, the standard ports, ./data and fsync', () => {
    const c = loadConfig({ env: {} })
    expect(c).toEqual(DEFAULTS)
    expect(c).toMatchObject({ host: '127.0.0.1', mqttPort: 1883, wsPort: 8083, wsPath: '/mqtt', dataDir: './data', durability: 'fsync' })
  })

  it('layers file < environment < flags', () => {
    const dir = tempDataDir('config')
    const file = join(dir, 'culex.yaml')
    writeFileSync(file, 'mqtt-port: 1000\nws-port: 2000\ndurability: none\nlog-level: debug\n')
    const c = loadConfig({
      env: { CULEX_CONFIG: file, CULEX_WS_PORT: '3000', CULEX_MQTT_PORT: '3001' },
      flags: { 'mqtt-port': '4000' }
    })
    expect(c).toMatchObject({ mqttPort: 4000, wsPort: 3000, durability: 'none', logLevel: 'debug' })
  })

  it('reads JSON config files and "off" listeners', () => {
    const dir = tempDataDir('config')
    const file = join(dir, 'culex.json')
    writeFileSync(file, JSON.stringify({ 'ws-port': 'off', 'data-dir': '/var/lib/culex' }))
    expect(loadConfig({ env: {}, flags: { config: file } })).toMatchObject({ wsPort: null, dataDir: '/var/lib/culex' })
  })

  it.each([
    [{ flags: { 'mqtt-port': 'abc' } }, /mqtt-port \(flag --mqtt-port\): "abc"; expected a port 0-65535/],
    [{ env: { CULEX_MQTT_PORT: '70000' } }, /mqtt-port \(environment variable CULEX_MQTT_PORT\): "70000"/],
    [{ flags: { durability: 'sometimes' } }, /durability.*"sometimes"; expected "fsync" or "none"/],
    [{ flags: { 'log-level': 'loud' } }, /log-level.*expected fatal, error, warn, info, debug, trace, silent/],
    [{ flags: { 'ws-path': 'mqtt' } }, /ws-path.*starting with \//],
    [{ flags: { 'tls-cert': '/x.pem' } }, /tls-cert and tls-key must be given together/],
    [{ flags: { 'mqtt-port': '1883', 'ws-port': '1883' } }, /ws-port and mqtt-port are both 1883/],
    [{ flags: { host: '0.0.0.0' } }, /host 0\.0\.0\.0 is not loopback.*allow-anonymous/],
    [{ flags: { 'max-connections': '0' } }, /max-connections.*positive integer/]
  ])('refuses %j with a message naming the key', (sources, message) => {
    expect(() => loadConfig({ env: {}, ...sources })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, ...sources })).toThrow(message)
  })

  it('refuses unknown keys in a config file (typos are not ignored)', () => {
    const file = join(tempDataDir('config'), 'culex.yaml')
    writeFileSync(file, 'mqtt_port: 1884\n')
    expect(() => loadConfig({ env: {}, flags: { config: file } })).toThrow(/unknown key "mqtt_port"/)
  })

  it('accepts a non-loopback host when anonymous access is explicitly allowed', () => {
    expect(loadConfig({ env: {}, flags: { 'host': '0.0.0.0', 'allow-anonymous': 'true' } })).toMatchObject({ host: '0.0.0.0', allowAnonymous: true })
  })
})

describe('limits', () => {
  it('take sizes and durations with units', () => {
    const c = loadConfig({
      env: { CULEX_MAX_PACKET_SIZE: '256KiB' },
      flags: { 'packet-timeout': '2s', 'stuck-client-timeout': '1m', 'max-queued-bytes': '10MB', 'queue-full-policy': 'drop-oldest', 'publish-rate': '50' }
    })
    expect(c).toMatchObject({
      maxPacketSize: 256 * 1024,
      packetTimeoutMs: 2000,
      stuckClientTimeoutMs: 60_000,
      maxQueuedBytes: 10_000_000,
      queueFullPolicy: 'drop-oldest',
      publishRate: 50
    })
  })

  it.each([
    [{ 'max-packet-size': '10' }, /max-packet-size \(flag --max-packet-size\): "10"; expected .*from 64 B to 256 MiB/],
    [{ 'max-packet-size': '1GiB' }, /max-packet-size.*"1GiB"/],
    [{ 'packet-timeout': 'soon' }, /packet-timeout.*"soon"/],
    [{ 'max-connections-per-address': '-1' }, /max-connections-per-address.*an integer >= 0/],
    [{ 'queue-full-policy': 'drop-all' }, /queue-full-policy.*"drop-new" or "drop-oldest"/],
    [{ 'max-subscriptions': '0' }, /max-subscriptions.*from 1 to 1000000/],
    [{ 'max-topic-length': '65536' }, /max-topic-length.*from 1 to 65535/],
    [{ 'max-topic-levels': '101' }, /max-topic-levels.*from 1 to 100/],
    [{ 'max-inflight-messages': '0' }, /max-inflight-messages.*from 1 to 65535/],
    [{ 'share-max-inflight': '0' }, /share-max-inflight.*from 1 to 65535/],
    [{ 'max-outgoing-bytes': '100' }, /max-outgoing-bytes.*at least 1KiB/],
    [{ 'max-outgoing-bytes': '64KiB', 'max-packet-size': '1MiB' }, /max-outgoing-bytes/]
  ])('refuses %j with a message naming the key', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, flags })).toThrow(message)
  })
})

describe('admin-port', () => {
  it('defaults to 18083 and takes the same values as the other ports', () => {
    expect(loadConfig({ env: {} }).adminPort).toBe(18083)
    expect(loadConfig({ env: { CULEX_ADMIN_PORT: '9000' } }).adminPort).toBe(9000)
    expect(loadConfig({ env: {}, flags: { 'admin-port': 'off' } }).adminPort).toBeNull()
    expect(loadConfig({ env: {}, flags: { 'admin-port': '0', 'mqtt-port': '0' } })).toMatchObject({ adminPort: 0, mqttPort: 0 })
  })

  it.each([
    [{ env: { CULEX_ADMIN_PORT: 'x' } }, /invalid value for admin-port \(environment variable CULEX_ADMIN_PORT\): "x"; expected a port 0-65535 or "off"/],
    [{ flags: { 'admin-port': '1883' } }, /admin-port and mqtt-port are both 1883/],
    [{ flags: { 'admin-port': '8083' } }, /admin-port and ws-port are both 8083/]
  ])('refuses %j', (sources, message) => {
    expect(() => loadConfig({ env: {}, ...sources })).toThrow(message)
  })
})

describe('streams and routes (config file only)', () => {
  const load = (yaml: string): ReturnType<typeof loadConfig> => {
    const file = join(tempDataDir('config'), 'culex.yaml')
    writeFileSync(file, yaml)
    return loadConfig({ env: {}, flags: { config: file } })
  }

  it('default to none', () => {
    expect(loadConfig({ env: {} })).toMatchObject({ streams: [], routes: [] })
    expect(load('mqtt-port: 1883\n')).toMatchObject({ streams: [], routes: [] })
  })

  it('map to StreamConfig and RouteConfig', () => {
    const c = load(`
streams:
  telemetry:
    partitions: 4
    retention:
      max-age: 7d
      max-bytes: 1GiB
      max-records: 1000000
  events:
    retention:
      max-age: 1500
      max-bytes: 10kB
      max-records: null
  audit.v2:
routes:
  - filter: devices/+/telemetry
    stream: telemetry
    key: topic-level:2
  - filter: devices/#
    stream: events
    key: client-id
  - filter: audit/#
    stream: audit.v2
`)
    expect(c.streams).toEqual([
      { name: 'telemetry', partitions: 4, retention: { maxAgeMs: 7 * 86_400_000, maxBytes: 2 ** 30, maxRecords: 1_000_000 } },
      { name: 'events', partitions: 1, retention: { maxAgeMs: 1500, maxBytes: 10_000, maxRecords: null } },
      { name: 'audit.v2', partitions: 1, retention: { maxAgeMs: null, maxBytes: null, maxRecords: null } }
    ])
    expect(c.routes).toEqual([
      { filter: 'devices/+/telemetry', stream: 'telemetry', key: { kind: 'topic-level', level: 2 } },
      { filter: 'devices/#', stream: 'events', key: { kind: 'client-id' } },
      { filter: 'audit/#', stream: 'audit.v2', key: { kind: 'none' } }
    ])
  })

  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['12h', 43_200_000],
    ['7d', 604_800_000],
    [2000, 2000],
    ['"2000"', 2000]
  ])('reads max-age %s as %i ms', (raw, ms) => {
    expect(load(`streams:\n  s:\n    retention:\n      max-age: ${raw}\n`).streams[0]!.retention.maxAgeMs).toBe(ms)
  })

  it.each([
    ['512', 512],
    ['10kB', 10_000],
    ['10KiB', 10_240],
    ['5MB', 5_000_000],
    ['5MiB', 5 * 2 ** 20],
    ['2GB', 2_000_000_000],
    ['1.5GiB', 1.5 * 2 ** 30],
    ['100B', 100]
  ])('reads max-bytes %s as %i bytes', (raw, bytes) => {
    expect(load(`streams:\n  s:\n    retention:\n      max-bytes: ${raw}\n`).streams[0]!.retention.maxBytes).toBe(bytes)
  })

  it('reads JSON config files too', () => {
    const file = join(tempDataDir('config'), 'culex.json')
    writeFileSync(
      file,
      JSON.stringify({ streams: { t: { partitions: 2, retention: { 'max-age': '1h' } } }, routes: [{ filter: 't/#', stream: 't', key: 'topic-level:2' }] })
    )
    expect(loadConfig({ env: {}, flags: { config: file } })).toMatchObject({
      streams: [{ name: 't', partitions: 2, retention: { maxAgeMs: 3_600_000, maxBytes: null, maxRecords: null } }],
      routes: [{ filter: 't/#', stream: 't', key: { kind: 'topic-level', level: 2 } }]
    })
  })

  const STREAM = 'streams:\n  telemetry:\n    partitions: 4\n'
  it.each([
    // streams
    ['streams: [a, b]\n', /invalid value for streams in config file .*culex\.yaml: \["a","b"\]; expected a mapping of stream names/],
    ['streams:\n  "bad name":\n', /invalid stream name "bad name" under streams in config file .*; expected 1 to 128 letters/],
    ['streams:\n  -x:\n', /invalid stream name "-x"/],
    [`streams:\n  ${'a'.repeat(129)}:\n`, /invalid stream name "a{129}"/],
    ['streams:\n  t: 4\n', /invalid value for streams\.t in config file .*: 4; expected a mapping with partitions/],
    ['streams:\n  t:\n    partition: 4\n', /unknown key "partition" in streams\.t in config file .*; known keys: partitions, retention/],
    ['streams:\n  t:\n    partitions: 0\n', /invalid value for streams\.t\.partitions in config file .*: 0; expected an integer from 1 to 1024/],
    ['streams:\n  t:\n    partitions: 1025\n', /streams\.t\.partitions .*: 1025/],
    ['streams:\n  t:\n    partitions: 2.5\n', /streams\.t\.partitions .*: 2\.5/],
    ['streams:\n  a.b:\n    partitions: x\n', /invalid value for streams\["a\.b"\]\.partitions/],
    ['streams:\n  t:\n    retention: 7d\n', /invalid value for streams\.t\.retention .*: "7d"; expected a mapping/],
    ['streams:\n  t:\n    retention:\n      max_age: 7d\n', /unknown key "max_age" in streams\.t\.retention/],
    [
      'streams:\n  t:\n    retention:\n      max-age: 7 days\n',
      /invalid value for streams\.t\.retention\.max-age in config file .*: "7 days"; expected a positive number of milliseconds or a duration such as 500ms, 30s, 15m, 12h, 7d, or null for no limit/
    ],
    ['streams:\n  t:\n    retention:\n      max-age: 0\n', /streams\.t\.retention\.max-age .*: 0; expected a positive/],
    ['streams:\n  t:\n    retention:\n      max-age: -5\n', /streams\.t\.retention\.max-age .*: -5/],
    [
      'streams:\n  t:\n    retention:\n      max-bytes: 1gb\n',
      /invalid value for streams\.t\.retention\.max-bytes .*: "1gb"; expected a positive number of bytes or a size such as 10kB/
    ],
    ['streams:\n  t:\n    retention:\n      max-bytes: 1.5\n', /streams\.t\.retention\.max-bytes .*: 1\.5/],
    ['streams:\n  t:\n    retention:\n      max-records: 10k\n', /invalid value for streams\.t\.retention\.max-records .*: "10k"; expected a positive integer/],
    // routes
    [`${STREAM}routes:\n  filter: a\n`, /invalid value for routes in config file .*: \{"filter":"a"\}; expected a list of routes/],
    [`${STREAM}routes:\n  - a/b\n`, /invalid value for routes\[0\] in config file .*: "a\/b"; expected a mapping with filter, stream/],
    [
      `${STREAM}routes:\n  - filter: a\n    stream: telemetry\n    partition: 1\n`,
      /unknown key "partition" in routes\[0\] in config file .*; known keys: filter, stream, key/
    ],
    [`${STREAM}routes:\n  - stream: telemetry\n`, /invalid value for routes\[0\]\.filter in config file .*: undefined; expected an MQTT topic filter/],
    [`${STREAM}routes:\n  - filter: ""\n    stream: telemetry\n`, /routes\[0\]\.filter .*: ""; expected an MQTT topic filter.*; it is empty/],
    [`${STREAM}routes:\n  - filter: a/#/b\n    stream: telemetry\n`, /routes\[0\]\.filter .*: "a\/#\/b"; .*'#' must be a whole level and the last one/],
    [`${STREAM}routes:\n  - filter: a/b#\n    stream: telemetry\n`, /routes\[0\]\.filter .*'#' must be a whole level/],
    [`${STREAM}routes:\n  - filter: a/b+/c\n    stream: telemetry\n`, /routes\[0\]\.filter .*'\+' must be a whole level/],
    [`${STREAM}routes:\n  - filter: $SYS/#\n    stream: telemetry\n`, /routes\[0\]\.filter .*"\$SYS\/#"; expected a filter outside \$SYS\//],
    [
      `${STREAM}routes:\n  - filter: a/#\n    stream: telemetry\n  - filter: b/#\n    stream: telemtry\n`,
      /invalid value for routes\[1\]\.stream in config file .*: "telemtry"; expected one of the streams defined under streams \(telemetry\)/
    ],
    ['routes:\n  - filter: a/#\n    stream: t\n', /routes\[0\]\.stream .*: "t"; expected a stream defined under streams \(none is defined\)/],
    [
      `${STREAM}routes:\n  - filter: a/#\n    stream: telemetry\n  - filter: b/#\n    stream: telemetry\n    key: level:9\n`,
      /invalid value for routes\[1\]\.key in config file .*culex\.yaml: "level:9"; expected topic-level:N \(N >= 1, the N-th level of the topic\), client-id or none/
    ],
    [`${STREAM}routes:\n  - filter: a/#\n    stream: telemetry\n    key: topic-level:0\n`, /routes\[0\]\.key .*: "topic-level:0"/],
    [`${STREAM}routes:\n  - filter: a/#\n    stream: telemetry\n    key: 2\n`, /routes\[0\]\.key .*: 2; expected topic-level:N/],
    [
      `${STREAM}routes:\n  - filter: devices/+\n    stream: telemetry\n    key: topic-level:3\n`,
      /routes\[0\]\.key .*: "topic-level:3"; expected a level the filter "devices\/\+" has \(1 to 2\), client-id or none/
    ]
  ])('refuses %j naming the path of the bad value', (yaml, message) => {
    expect(() => load(yaml)).toThrow(ConfigError)
    expect(() => load(yaml)).toThrow(message)
  })

  it('accepts topic-level beyond the filter when the filter ends with #', () => {
    expect(load(`${STREAM}routes:\n  - filter: devices/#\n    stream: telemetry\n    key: topic-level:5\n`).routes[0]!.key).toEqual({
      kind: 'topic-level',
      level: 5
    })
  })

  it('are not taken from the environment or flags, and are known keys of the file', () => {
    expect(loadConfig({ env: { CULEX_STREAMS: 'x', CULEX_ROUTES: 'y' } })).toMatchObject({ streams: [], routes: [] })
    const file = join(tempDataDir('config'), 'culex.yaml')
    writeFileSync(file, 'stream:\n  t:\n')
    expect(() => loadConfig({ env: {}, flags: { config: file } })).toThrow(/unknown key "stream" in config file .*known keys: .*admin-port.*streams, routes/)
  })
})

describe('culex start with a bad value', () => {
  it('exits non-zero with a clear message and touches no data', () => {
    const dataDir = join(tempDataDir('badconfig'), 'data')
    const r = spawnSync(process.execPath, [CLI, 'start', '--data-dir', dataDir, '--mqtt-port', 'eighteen'], { encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/culex: invalid value for mqtt-port \(flag --mqtt-port\): "eighteen"/)
    expect(existsSync(dataDir)).toBe(false)
  })

  it('names the environment variable when that is where the bad value came from', () => {
    const dataDir = join(tempDataDir('badconfig'), 'data')
    const r = spawnSync(process.execPath, [CLI, 'start', '--data-dir', dataDir], {
      encoding: 'utf8',
      env: { ...process.env, CULEX_DURABILITY: 'maybe' }
    })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/environment variable CULEX_DURABILITY/)
    expect(existsSync(dataDir)).toBe(false)
  })
})

describe('tls-crl', () => {
  const tls = { 'tls-cert': '/etc/culex/cert.pem', 'tls-key': '/etc/culex/key.pem' }

  it('is off by default and taken with tls-ca from flags or the environment', () => {
    expect(loadConfig({ env: {} }).tlsCrl).toBeNull()
    expect(loadConfig({ env: {}, flags: { ...tls, 'tls-ca': '/etc/culex/ca.pem', 'tls-crl': '/etc/culex/crl.pem' } })).toMatchObject({
      tlsCa: '/etc/culex/ca.pem',
      tlsCrl: '/etc/culex/crl.pem'
    })
    expect(loadConfig({ env: { CULEX_TLS_CA: '/ca.pem', CULEX_TLS_CRL: '/crl.pem' }, flags: tls })).toMatchObject({ tlsCrl: '/crl.pem' })
    expect(loadConfig({ env: {}, flags: { ...tls, 'tls-crl': 'off' } }).tlsCrl).toBeNull()
  })

  it.each([
    ['with tls-cert and tls-key but no tls-ca', { ...tls, 'tls-crl': '/crl.pem' }],
    ['without any TLS', { 'tls-crl': '/crl.pem' }]
  ])('is refused %s, naming the key', (_, flags) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, flags })).toThrow(/^tls-crl needs tls-ca/)
  })

  it('makes culex start exit 2 without tls-ca', () => {
    const dataDir = join(tempDataDir('badconfig'), 'data')
    const r = spawnSync(process.execPath, [CLI, 'start', '--data-dir', dataDir, '--tls-crl', '/crl.pem'], { encoding: 'utf8' })
    expect(r.status).toBe(2)
    expect(r.stderr).toMatch(/culex: tls-crl needs tls-ca/)
    expect(existsSync(dataDir)).toBe(false)
  })
})

describe('auth', () => {
  it('refuses a non-loopback host without any way for clients to authenticate, and accepts one with a password file', () => {
    expect(() => loadConfig({ env: {}, flags: { host: '0.0.0.0' } })).toThrow(/host 0\.0\.0\.0 is not loopback.*password-file.*allow-anonymous/)
    expect(loadConfig({ env: {}, flags: { 'host': '0.0.0.0', 'password-file': '/etc/culex/passwords' } })).toMatchObject({
      host: '0.0.0.0',
      passwordFile: '/etc/culex/passwords'
    })
  })

  it('turns anonymous MQTT access off by default once credentials are configured, and then requires API credentials', () => {
    const open = loadConfig({ env: {} })
    expect([anonymousAllowed(open), apiCredentialsRequired(open)]).toEqual([true, false])
    const withPasswords = loadConfig({ env: {}, flags: { 'password-file': '/p' } })
    expect([anonymousAllowed(withPasswords), apiCredentialsRequired(withPasswords)]).toEqual([false, true])
    const explicit = loadConfig({ env: {}, flags: { 'password-file': '/p', 'allow-anonymous': 'true' } })
    expect([anonymousAllowed(explicit), apiCredentialsRequired(explicit)]).toEqual([true, false])
    const closed = loadConfig({ env: {}, flags: { 'allow-anonymous': 'false' } })
    expect([anonymousAllowed(closed), apiCredentialsRequired(closed)]).toEqual([false, true])
  })

  it('reads api-tokens from the config file only, as name: scrypt hash', () => {
    const file = join(tempDataDir('config'), 'culex.yaml')
    writeFileSync(file, "api-tokens:\n  ci-bot: '$scrypt$ln=14,r=8,p=1$GS9ThIW8aOCocwiw3gX8qQ$+rS5/i9U93CvVpwSJ+jXjLa2evpFLuSOjkep18f0TmY'\n")
    expect(loadConfig({ env: {}, flags: { config: file } }).apiTokens).toEqual({
      'ci-bot': '$scrypt$ln=14,r=8,p=1$GS9ThIW8aOCocwiw3gX8qQ$+rS5/i9U93CvVpwSJ+jXjLa2evpFLuSOjkep18f0TmY'
    })
  })

  it.each([
    ['api-tokens:\n  ci: culex_ci_abc\n', /api-tokens\.ci.*"\(hidden\)".*scrypt hash/],
    ['api-tokens:\n  CI: $scrypt$ln=14,r=8,p=1$a$b\n', /invalid token name "CI"/],
    ['api-tokens: [a, b]\n', /api-tokens.*a mapping of token names/]
  ])('refuses api-tokens %j, without echoing a token', (yaml, message) => {
    const file = join(tempDataDir('config'), 'culex.yaml')
    writeFileSync(file, yaml)
    expect(() => loadConfig({ env: {}, flags: { config: file } })).toThrow(message)
    try {
      loadConfig({ env: {}, flags: { config: file } })
    } catch (err) {
      expect(String(err)).not.toContain('culex_ci_abc')
    }
  })

  it.each([
    [{ 'use-identity-as-username': 'true' }, /use-identity-as-username needs tls-ca/],
    [{ 'jwt-secret-file': '/a', 'jwt-jwks-file': '/b' }, /jwt-secret-file and jwt-jwks-file exclude each other/],
    [{ 'jwt-issuer': 'me' }, /jwt-issuer and jwt-audience need jwt-secret-file or jwt-jwks-file/],
    [{ 'login-failures-per-minute': '-1' }, /login-failures-per-minute.*an integer from 0/],
    [{ 'use-identity-as-username': 'maybe' }, /use-identity-as-username.*true or false/]
  ])('refuses %j with a message naming the key', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags })).toThrow(ConfigError)
    expect(() => loadConfig({ env: {}, flags })).toThrow(message)
  })
})

describe('admin-host', () => {
  it('binds the HTTP API apart from MQTT; credentials are required when either faces beyond loopback', () => {
    const c = loadConfig({ env: {}, flags: { 'host': '0.0.0.0', 'password-file': '/p', 'allow-anonymous': 'true', 'admin-host': '127.0.0.1' } })
    expect([apiHost(c), apiCredentialsRequired(c)]).toEqual(['127.0.0.1', false])
    const open = loadConfig({ env: {}, flags: { 'admin-host': '0.0.0.0' } })
    expect([apiHost(open), apiCredentialsRequired(open)]).toEqual(['0.0.0.0', true])
    expect(apiHost(loadConfig({ env: {} }))).toBe('127.0.0.1')
  })
})
