import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { decodeJwt, exportJWK, generateKeyPair, SignJWT, UnsecuredJWT, type CryptoKey, type JWTPayload } from 'jose'
import type { IClientOptions, MqttClient } from 'mqtt'
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { Authentication } from '../../src/auth/authentication.js'
import { JwtKeyError } from '../../src/auth/jwt.js'
import { hashPassword, writePasswordFile } from '../../src/auth/password-file.js'
import { BrokerCounters } from '../../src/broker/counters.js'
import { HookChain } from '../../src/broker/hooks.js'
import { DEFAULTS, type CulexConfig } from '../../src/config/index.js'
import { brokersClosedAfterEach, type InProcessBroker } from '../helpers/broker.js'
import { tempDataDir } from '../helpers/gateway-process.js'
import { Inbox, closeAll, connect, subackCode } from '../helpers/mqtt.js'
import { RawClient, connackCode } from '../helpers/raw-mqtt.js'

// JWTs as MQTT passwords (src/auth/jwt.ts), enforced by an in-process broker whose hook chain is
// Authentication.hooks(): signature and claim checks (CONNACK 4), `sub` as the user name, the
// `acl` claim in place of the ACL file, the disconnect at `exp`, a password file beside it, and a
// reload of the key. The broker helper makes its own BrokerCounters, so Authentication gets a
// second one: throttle counts land there, the broker's (publish-denied, credential-expired...) in b.counters.

const logger = pino({ level: process.env.CULEX_TEST_LOG_LEVEL ?? 'silent' })
const start = brokersClosedAfterEach()
/** Every MQTT.js client a test opened, closed after it (before its broker: after-hooks run last-registered first), passed or failed. */
const clients: MqttClient[] = []
afterEach(async () => closeAll(...clients.splice(0)))

async function open(url: string, options: IClientOptions): Promise<MqttClient> {
  const client = await connect(url, options)
  clients.push(client)
  return client
}
const encoder = new TextEncoder()

/** An HMAC secret as the file holds it: text, here 43 base64url characters (32 random bytes). */
const newSecret = (): string => randomBytes(32).toString('base64url')

interface Setup {
  b: InProcessBroker
  auth: Authentication
  dir: string
  /** The HMAC key tokens are signed with: the file's text as UTF-8. */
  key: Uint8Array
  secretFile: string
}

/**
 * A broker with JWT from a secret file, and an ACL file and a password file if given; the login
 * throttle off, so that the refusals a test makes on purpose do not add up to a block.
 */
async function setup(more: Partial<CulexConfig> = {}, files: { acl?: string; passwords?: Record<string, string> } = {}): Promise<Setup> {
  const dir = tempDataDir('jwt')
  const secretFile = join(dir, 'jwt-secret')
  const secret = newSecret()
  // a trailing newline, as an editor or `echo` leaves: the secret is the trimmed text
  writeFileSync(secretFile, `${secret}\n`)
  const paths: Partial<CulexConfig> = {}
  if (files.acl !== undefined) {
    paths.aclFile = join(dir, 'acl')
    writeFileSync(paths.aclFile, files.acl)
  }
  if (files.passwords !== undefined) {
    paths.passwordFile = join(dir, 'passwords')
    const users = new Map<string, string>()
    for (const [user, password] of Object.entries(files.passwords)) users.set(user, await hashPassword(password, { ln: 10, r: 8, p: 1 }))
    await writePasswordFile(paths.passwordFile, users)
  }
  const config: CulexConfig = { ...DEFAULTS, jwtSecretFile: secretFile, loginFailuresPerMinute: 0, ...paths, ...more }
  const auth = await Authentication.load(config, logger, new BrokerCounters(logger))
  const b = await start(new HookChain(auth.hooks()))
  return { b, auth, dir, key: encoder.encode(secret), secretFile }
}

interface TokenOptions {
  /** Seconds since the epoch, a jose time span ('1h'), or null for no exp at all. */
  exp?: number | string | null
  alg?: string
  kid?: string
}

function sign(key: Uint8Array | CryptoKey, claims: JWTPayload, { exp = '1h', alg = 'HS256', kid }: TokenOptions = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg, ...(kid !== undefined ? { kid } : {}) }).setIssuedAt()
  if (exp !== null) jwt.setExpirationTime(exp)
  return jwt.sign(key)
}

const nowSeconds = (): number => Math.floor(Date.now() / 1000)

let ids = 0
const clientId = (tag: string): string => `${tag}-${++ids}`

/**
 * A CONNECT with the password flag and no user name flag. MQTT 3.1.1 wants a user name with a
 * password [MQTT-3.1.2-22] and mqtt-packet will not write one without, so it is put together
 * here; it is the one way a 3.1.1 client presents a token and no user name at all.
 */
function connectWithoutUsername(id: string, password: string): Buffer {
  const field = (b: Buffer): Buffer => Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b])
  // protocol name, level 4, flags: password (0x40) and clean session (0x02), keep-alive 0
  const body = Buffer.concat([field(Buffer.from('MQTT')), Buffer.from([4, 0x42, 0, 0]), field(Buffer.from(id)), field(Buffer.from(password))])
  const length: number[] = []
  let n = body.length
  do {
    const digit = n % 128
    n = Math.floor(n / 128)
    length.push(n > 0 ? digit | 0x80 : digit)
  } while (n > 0)
  return Buffer.concat([Buffer.from([0x10, ...length]), body])
}

async function connackWithoutUsername(b: InProcessBroker, password: string): Promise<number> {
  const c = await RawClient.open(b.port)
  try {
    c.write(connectWithoutUsername(clientId('nouser'), password))
    const ack = await c.next((p) => p.cmd === 'connack')
    return ack.cmd === 'connack' ? (ack.returnCode ?? -1) : -1
  } finally {
    c.end()
  }
}

/**
 * An MQTT.js client logged in with a token, with its sub as the user name: MQTT.js (as MQTT 3.1.1)
 * sends no password without a user name (an empty one works too, tested below).
 */
function withToken(b: InProcessBroker, token: string, more: IClientOptions = {}): Promise<MqttClient> {
  return open(b.url, { clientId: clientId('jwt'), username: decodeJwt(token).sub, password: token, ...more })
}

/** Resolves with the time the client's connection closed; rejects after timeoutMs. */
function closedAt(client: MqttClient, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`still connected after ${timeoutMs} ms`)), timeoutMs)
    client.once('close', () => {
      clearTimeout(timer)
      resolve(Date.now())
    })
  })
}

describe('JWT passwords: who may connect (HS256 secret file)', () => {
  it('accepts a valid token with the user name equal to sub, and with no user name; another user name gets 4', async () => {
    const { b, key } = await setup()
    const token = await sign(key, { sub: 'd7' })
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: token })).toBe(0)
    expect(await connackWithoutUsername(b, token)).toBe(0)
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd8', password: token })).toBe(4)
    // and a session works: MQTT.js with the token, a publish to itself
    const client = await open(b.url, { clientId: clientId('d7'), username: 'd7', password: token })
    const inbox = new Inbox(client)
    await client.subscribeAsync('t/d7', { qos: 1 })
    await client.publishAsync('t/d7', 'hello', { qos: 1 })
    expect((await inbox.waitFor(1)).map((m) => m.payload)).toEqual(['hello'])
    await closeAll(client)
  })

  it('accepts a valid token with an empty user name (MQTT 3.1.1 needs one beside a password)', async () => {
    const { b, key } = await setup()
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: '', password: await sign(key, { sub: 'd7' }) })).toBe(0)
  })

  it('accepts HS384 and HS512 tokens made with the same secret', async () => {
    const { b, key } = await setup()
    for (const alg of ['HS384', 'HS512'])
      expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: await sign(key, { sub: 'd7' }, { alg }) })).toBe(0)
  })

  it('refuses with CONNACK 4: an expired token, a token without exp, a wrong signature, a changed payload, alg none, a future nbf', async () => {
    const { b, key } = await setup()
    const claims = { sub: 'd7' }
    const refused = async (token: string): Promise<void> =>
      expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: token })).toBe(4)
    // the same claims, valid: each refusal below is for the one thing changed
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: await sign(key, claims, { exp: nowSeconds() + 60 }) })).toBe(0)

    await refused(await sign(key, claims, { exp: nowSeconds() - 60 }))
    await refused(await sign(key, claims, { exp: null }))
    await refused(await sign(encoder.encode(newSecret()), claims))
    const [header, , signature] = (await sign(key, claims)).split('.')
    const forged = Buffer.from(JSON.stringify({ sub: 'd7', exp: nowSeconds() + 3600, acl: { all: ['#'] } })).toString('base64url')
    await refused(`${header}.${forged}.${signature}`)
    await refused(new UnsecuredJWT(claims).setExpirationTime('1h').encode())
    await refused(await sign(key, { ...claims, nbf: nowSeconds() + 3600 }))
    // a JWT-shaped password that is not one
    await refused('eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2lnbmF0dXJl')
  })

  it('checks iss and aud when jwt-issuer and jwt-audience are set', async () => {
    const { b, key } = await setup({ jwtIssuer: 'https://issuer.example', jwtAudience: 'culex' })
    const code = async (claims: JWTPayload): Promise<number> =>
      connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: await sign(key, { sub: 'd7', ...claims }) })
    expect(await code({ iss: 'https://issuer.example', aud: 'culex' })).toBe(0)
    expect(await code({ iss: 'https://issuer.example', aud: ['other', 'culex'] })).toBe(0)
    expect(await code({ iss: 'https://other.example', aud: 'culex' })).toBe(4)
    expect(await code({ aud: 'culex' })).toBe(4)
    expect(await code({ iss: 'https://issuer.example', aud: 'other' })).toBe(4)
    expect(await code({ iss: 'https://issuer.example' })).toBe(4)
  })

  it('refuses a password that is not a JWT with CONNACK 5 when there is no password file (no authenticator accepts it), and no credentials with 5', async () => {
    const { b, key } = await setup()
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: 'hunter2' })).toBe(5)
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7' })).toBe(5)
    expect(await connackCode(b.port, { clientId: clientId('raw') })).toBe(5)
    // the same user with a token: the refusals above were for the credential
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: await sign(key, { sub: 'd7' }) })).toBe(0)
  })

  it('refuses to start with a secret shorter than 32 bytes, or without a key file', async () => {
    const dir = tempDataDir('jwt-short')
    const short = join(dir, 'short')
    writeFileSync(short, 'x'.repeat(31) + '\n')
    const load = (more: Partial<CulexConfig>): Promise<Authentication> => Authentication.load({ ...DEFAULTS, ...more }, logger, new BrokerCounters(logger))
    await expect(load({ jwtSecretFile: short })).rejects.toThrow(JwtKeyError)
    await expect(load({ jwtSecretFile: short })).rejects.toThrow(/31 bytes; at least 32/)
    await expect(load({ jwtSecretFile: join(dir, 'missing') })).rejects.toThrow(/cannot read jwt-secret-file/)
    writeFileSync(short, 'x'.repeat(32))
    await expect(load({ jwtSecretFile: short })).resolves.toBeInstanceOf(Authentication)
  })
})

describe('JWT passwords: public keys from a JWKS file (ES256)', () => {
  it('accepts an ES256 token signed by a key in the set; refuses another key, an HS256 token and alg none', async () => {
    const dir = tempDataDir('jwt-jwks')
    const { publicKey, privateKey } = await generateKeyPair('ES256')
    const jwksFile = join(dir, 'jwks.json')
    writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }] }))
    const auth = await Authentication.load({ ...DEFAULTS, jwtJwksFile: jwksFile, loginFailuresPerMinute: 0 }, logger, new BrokerCounters(logger))
    const b = await start(new HookChain(auth.hooks()))
    const code = async (token: string): Promise<number> => connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: token })

    expect(await code(await sign(privateKey, { sub: 'd7' }, { alg: 'ES256', kid: 'k1' }))).toBe(0)
    // without a kid: the one key of the set that fits the algorithm
    expect(await code(await sign(privateKey, { sub: 'd7' }, { alg: 'ES256' }))).toBe(0)
    expect(await code(await sign((await generateKeyPair('ES256')).privateKey, { sub: 'd7' }, { alg: 'ES256', kid: 'k1' }))).toBe(4)
    expect(await code(await sign(privateKey, { sub: 'd7' }, { alg: 'ES256', kid: 'k1', exp: nowSeconds() - 60 }))).toBe(4)
    // HMAC is not accepted with public keys, whatever the secret (no algorithm confusion)
    expect(await code(await sign(encoder.encode(newSecret()), { sub: 'd7' }))).toBe(4)
    expect(await code(await sign(encoder.encode(JSON.stringify(await exportJWK(publicKey))), { sub: 'd7' }, { kid: 'k1' }))).toBe(4)
    expect(await code(new UnsecuredJWT({ sub: 'd7' }).setExpirationTime('1h').encode())).toBe(4)
  })
})

describe('JWT passwords: exp while connected', () => {
  it('disconnects a client when its token expires, and only that client', async () => {
    const { b, key } = await setup()
    const exp = nowSeconds() + 2
    const short = await withToken(b, await sign(key, { sub: 'short' }, { exp }))
    const long = await withToken(b, await sign(key, { sub: 'long' }))
    const inbox = new Inbox(long)
    await long.subscribeAsync('still/here', { qos: 1 })
    const closed = closedAt(short, exp * 1000 - Date.now() + 3000)
    expect(short.connected).toBe(true)

    const at = await closed
    // at exp (the timer may fire a few ms early on a coarse clock), and within a second of it
    expect(at).toBeGreaterThanOrEqual(exp * 1000 - 20)
    expect(at).toBeLessThanOrEqual(exp * 1000 + 1000)
    expect(b.counters.get('credential-expired')).toBe(1)

    // the other client keeps its connection and its traffic
    expect(long.connected).toBe(true)
    await long.publishAsync('still/here', 'yes', { qos: 1 })
    expect((await inbox.waitFor(1)).map((m) => m.payload)).toEqual(['yes'])
    // and the expired token is refused at the next CONNECT
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'short', password: await sign(key, { sub: 'short' }, { exp }) })).toBe(4)
    await closeAll(short, long)
  })
})

describe('JWT passwords: the acl claim', () => {
  it('acknowledges a publish outside pub and delivers it to nobody', async () => {
    const { b, key } = await setup()
    const watcher = await withToken(b, await sign(key, { sub: 'watcher', acl: { sub: ['#'] } }))
    const seen = new Inbox(watcher)
    expect(await subackCode(watcher, '#')).toBe(1)
    const device = await withToken(b, await sign(key, { sub: 'd7', acl: { pub: ['devices/d7/#'], sub: ['commands/d7'] } }))
    // each resolves on its PUBACK: the refused ones are acknowledged
    await device.publishAsync('devices/d8/t', 'denied', { qos: 1 })
    await device.publishAsync('commands/d7', 'denied: sub only', { qos: 1 })
    await device.publishAsync('elsewhere', 'denied', { qos: 1 })
    await device.publishAsync('devices/d7/t', 'allowed', { qos: 1 })
    expect((await seen.settle(300)).map((m) => `${m.topic} ${m.payload}`)).toEqual(['devices/d7/t allowed'])
    expect(b.counters.get('publish-denied')).toBe(3)
    expect(device.connected).toBe(true)
    // the watcher may only read: its own publish is dropped too
    await watcher.publishAsync('devices/d7/t', 'from the watcher', { qos: 1 })
    expect((await seen.settle(200)).map((m) => m.payload)).toEqual(['allowed'])
    await closeAll(watcher, device)
  })

  it('refuses a subscription outside sub (0x80), grants a wildcard over partly granted topics and delivers only the granted ones', async () => {
    const { b, key } = await setup()
    const device = await withToken(b, await sign(key, { sub: 'd7', acl: { sub: ['devices/d7/#', 'commands/d7'] } }))
    expect(await subackCode(device, 'commands/d8')).toBe(128)
    expect(await subackCode(device, 'other/#')).toBe(128)
    expect(await subackCode(device, 'commands/d7')).toBe(1)
    // devices/# meets devices/d7/#: granted, and filtered per delivery
    expect(await subackCode(device, 'devices/#')).toBe(1)
    const inbox = new Inbox(device)
    const publisher = await withToken(b, await sign(key, { sub: 'operator', acl: { pub: ['#'] } }))
    for (const topic of ['devices/d8/t', 'devices/d7/t', 'commands/d8', 'commands/d7']) await publisher.publishAsync(topic, topic, { qos: 1 })
    expect((await inbox.settle(300)).map((m) => m.topic)).toEqual(['devices/d7/t', 'commands/d7'])
    expect(b.counters.get('subscribe-denied')).toBe(2)
    expect(b.counters.get('delivery-denied')).toBe(1)
    await closeAll(device, publisher)
  })

  it('grants both publish and subscribe with all', async () => {
    const { b, key } = await setup()
    const client = await withToken(b, await sign(key, { sub: 'd7', acl: { all: ['shared/#'] } }))
    const inbox = new Inbox(client)
    expect(await subackCode(client, 'shared/#')).toBe(1)
    expect(await subackCode(client, 'private/#')).toBe(128)
    await client.publishAsync('shared/x', 'round trip', { qos: 1 })
    await client.publishAsync('private/x', 'denied', { qos: 1 })
    expect((await inbox.settle(300)).map((m) => `${m.topic} ${m.payload}`)).toEqual(['shared/x round trip'])
    await closeAll(client)
  })

  it('refuses a will outside pub at CONNECT (CONNACK 5) and accepts one inside', async () => {
    const { b, key } = await setup()
    const token = await sign(key, { sub: 'd7', acl: { pub: ['devices/d7/#'] } })
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: token, will: 'devices/d8/gone' })).toBe(5)
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: token, will: 'devices/d7/gone' })).toBe(0)
    expect(b.counters.get('will-denied')).toBe(1)
  })

  it('refuses a token whose claim has an invalid filter or a wrong shape (CONNACK 4)', async () => {
    const { b, key } = await setup()
    const code = async (acl: unknown): Promise<number> =>
      connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: await sign(key, { sub: 'd7', acl }) })
    expect(await code({ pub: ['devices/d7/#'], sub: [], all: [] })).toBe(0)
    expect(await code({ pub: ['devices/#/d7'] })).toBe(4)
    expect(await code({ sub: ['devices/d7+'] })).toBe(4)
    expect(await code({ all: [''] })).toBe(4)
    expect(await code({ pub: 'devices/d7/#' })).toBe(4)
    expect(await code({ pub: [7] })).toBe(4)
    expect(await code(['devices/d7/#'])).toBe(4)
    expect(await code('devices/d7/#')).toBe(4)
    expect(await code(null)).toBe(4)
  })

  it('reads the grants from the claim jwt-acl-claim names', async () => {
    const { b, key } = await setup({ jwtAclClaim: 'mqtt' })
    const watcher = await withToken(b, await sign(key, { sub: 'watcher', mqtt: { sub: ['#'] } }))
    const seen = new Inbox(watcher)
    expect(await subackCode(watcher, '#')).toBe(1)
    // `acl` is just another claim here; `mqtt` grants nothing to publish
    const device = await withToken(b, await sign(key, { sub: 'd7', mqtt: { sub: ['x'] }, acl: { pub: ['#'] } }))
    await device.publishAsync('devices/d7/t', 'denied', { qos: 1 })
    expect(await seen.settle(300)).toEqual([])
    await closeAll(watcher, device)
  })

  it('without the claim, holds the client to the ACL file as the user named by sub (user sections and %u)', async () => {
    const { b, key } = await setup({}, { acl: 'user watcher\ntopic read #\n\nuser d7\ntopic read commands/d7\n\npattern readwrite devices/%u/#\n' })
    const watcher = await withToken(b, await sign(key, { sub: 'watcher' }))
    const seen = new Inbox(watcher)
    expect(await subackCode(watcher, '#')).toBe(1)
    // no user name in CONNECT: sub names the user
    const device = await withToken(b, await sign(key, { sub: 'd7' }))
    expect(await subackCode(device, 'commands/d7')).toBe(1)
    expect(await subackCode(device, 'commands/d8')).toBe(128)
    await device.publishAsync('devices/d8/t', 'denied', { qos: 1 })
    await device.publishAsync('devices/d7/t', 'allowed', { qos: 1 })
    expect((await seen.settle(300)).map((m) => m.topic)).toEqual(['devices/d7/t'])
    // a token that carries grants is held to them, not to the file
    const granted = await withToken(b, await sign(key, { sub: 'd7', acl: { pub: ['elsewhere/#'] } }))
    await granted.publishAsync('devices/d7/t', 'denied: not in the grants', { qos: 1 })
    await granted.publishAsync('elsewhere/x', 'allowed by the grants', { qos: 1 })
    expect((await seen.settle(300)).map((m) => m.topic)).toEqual(['devices/d7/t', 'elsewhere/x'])
    await closeAll(watcher, device, granted)
  })
})

describe('JWT passwords beside a password file', () => {
  it('logs a user of the file in with the password, and a user not in it with a token', async () => {
    const { b, key } = await setup({}, { passwords: { alice: 'alice-secret' } })
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'alice', password: 'alice-secret' })).toBe(0)
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'alice', password: 'wrong' })).toBe(4)
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'carol', password: 'alice-secret' })).toBe(4)
    const bob = await sign(key, { sub: 'bob' })
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'bob', password: bob })).toBe(0)
    expect(await connackWithoutUsername(b, bob)).toBe(0)
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'bob', password: await sign(encoder.encode(newSecret()), { sub: 'bob' }) })).toBe(4)
    // no credentials at all: anonymous access is off once credentials are configured
    expect(await connackCode(b.port, { clientId: clientId('raw') })).toBe(5)
    // both kinds carry traffic
    const alice = await open(b.url, { clientId: clientId('alice'), username: 'alice', password: 'alice-secret' })
    const inbox = new Inbox(alice)
    await alice.subscribeAsync('chat', { qos: 1 })
    const bobClient = await withToken(b, bob, { username: 'bob' })
    await bobClient.publishAsync('chat', 'from bob', { qos: 1 })
    expect((await inbox.waitFor(1)).map((m) => m.payload)).toEqual(['from bob'])
    await closeAll(alice, bobClient)
  })
})

describe('JWT passwords: reload', () => {
  it('takes a new secret from the file: old tokens fail and new ones work for new connections', async () => {
    const { b, auth, key, secretFile } = await setup()
    const oldToken = await sign(key, { sub: 'd7' })
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: oldToken })).toBe(0)
    const connected = await withToken(b, oldToken)

    const secret = newSecret()
    writeFileSync(secretFile, secret)
    const report = await auth.reload((match, reason) => b.broker.disconnect(match, reason))
    expect(report.reloaded).toContain('jwt key')
    expect(report.failed).toEqual([])

    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: oldToken })).toBe(4)
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: await sign(encoder.encode(secret), { sub: 'd7' }) })).toBe(0)
    // a reload checks new connections only: a client connected with the old key stays (until its exp)
    expect(report.disconnected).toBe(0)
    expect(connected.connected).toBe(true)
    await closeAll(connected)
  })

  it('keeps the key in force when the new file is unusable, and says so', async () => {
    const { b, auth, key, secretFile } = await setup()
    writeFileSync(secretFile, 'too short')
    const report = await auth.reload((match, reason) => b.broker.disconnect(match, reason))
    expect(report.reloaded).not.toContain('jwt key')
    expect(report.failed).toEqual([{ what: 'jwt key', error: expect.stringMatching(/9 bytes; at least 32/) as unknown }])
    expect(await connackCode(b.port, { clientId: clientId('raw'), username: 'd7', password: await sign(key, { sub: 'd7' }) })).toBe(0)
  })
})
