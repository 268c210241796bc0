import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { hashPassword, writePasswordFile } from '../../src/auth/password-file.js'
import { GatewayProcess, tempDataDir } from '../helpers/gateway-process.js'
import { closeAll, connect } from '../helpers/mqtt.js'

// The gateway process as an operator runs it: a password file and an ACL file, edited while it
// runs, and `kill -HUP` to reload them. Failed logins are logged with the client's address.

let gw: GatewayProcess
let passwordFile: string
let aclFile: string

async function writeUsers(users: Record<string, string>): Promise<void> {
  const entries = new Map<string, string>()
  for (const [user, password] of Object.entries(users)) entries.set(user, await hashPassword(password, { ln: 10, r: 8, p: 1 }))
  await writePasswordFile(passwordFile, entries)
}

async function hup(): Promise<Record<string, unknown>> {
  const before = gw.logs.length
  gw.child.kill('SIGHUP')
  await expect.poll(() => gw.logs.slice(before).some((l) => l.msg === 'reloaded'), { timeout: 5000 }).toBe(true)
  return gw.logs.slice(before).find((l) => l.msg === 'reloaded') as Record<string, unknown>
}

beforeAll(async () => {
  const dir = tempDataDir('sighup')
  passwordFile = join(dir, 'passwords')
  aclFile = join(dir, 'acl')
  await writeUsers({ alice: 'a-secret', bob: 'b-secret' })
  writeFileSync(aclFile, 'user alice\ntopic readwrite #\nuser bob\ntopic readwrite #\n')
  gw = await GatewayProcess.start(join(dir, 'data'), ['--password-file', passwordFile, '--acl-file', aclFile, '--log-level', 'info'])
})
afterAll(async () => {
  expect(await gw.stop()).toBe(0)
})

describe('kill -HUP', () => {
  it('reloads the password file: a new user may connect, a removed one is disconnected, the others stay', async () => {
    const alice = await connect(gw.url('mqtt'), { username: 'alice', password: 'a-secret' })
    const bob = await connect(gw.url('mqtt'), { username: 'bob', password: 'b-secret' })
    let bobClosed = false
    bob.on('close', () => (bobClosed = true))
    await expect(connect(gw.url('mqtt'), { username: 'carol', password: 'c-secret' })).rejects.toThrow(/Bad username or password/i)

    await writeUsers({ alice: 'a-secret', carol: 'c-secret' })
    expect(await hup()).toMatchObject({ reloaded: ['password-file', 'acl-file'], failed: [], disconnected: 1 })

    const carol = await connect(gw.url('mqtt'), { username: 'carol', password: 'c-secret' })
    await expect.poll(() => bobClosed, { timeout: 3000 }).toBe(true)
    expect(alice.connected).toBe(true)
    await closeAll(alice, bob, carol)
  })

  it('keeps the rules in force when a file is broken, and says which line', async () => {
    writeFileSync(aclFile, 'user alice\ntopic readwrite #\nusr bob\n')
    const line = await hup()
    expect(line).toMatchObject({ failed: ['acl-file'] })
    expect(gw.logs.some((l) => l.msg === 'reload failed; the rules in force stay' && /line 3/.test(String(l.error)))).toBe(true)
    const alice = await connect(gw.url('mqtt'), { username: 'alice', password: 'a-secret' })
    await closeAll(alice)
  })

  it('logs each failed login with the address it came from', async () => {
    await expect(connect(gw.url('mqtt'), { username: 'alice', password: 'wrong' })).rejects.toThrow()
    await expect
      .poll(() => gw.logs.some((l) => l.msg === 'connection refused' && l.address === '127.0.0.1' && l.username === 'alice'), { timeout: 3000 })
      .toBe(true)
  })
})
